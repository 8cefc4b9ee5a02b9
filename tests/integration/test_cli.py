"""The commands as a user runs them: demo into a local directory, failures and their exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

from click.testing import CliRunner
from support.archive_truth import read_archive
from support.simulator_helpers import SMALL_RECORDING_BYTES

from etl.cli import RunHooks, main
from etl.simulator.process import running_simulator
from etl.storage import Storage


def test_demo_archives_the_simulated_account_locally(tmp_path: Path) -> None:
    dest = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--calls", "40", "--dest", str(dest)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "What landed" in result.output
    archive = read_archive(str(dest))
    assert len(archive.calls) > 30
    archived = [row for row in archive.calls if row["recording_status"] == "archived"]
    assert archived and all(row["recording_uri"].startswith("file://") for row in archived)
    assert (Path(archived[0]["recording_uri"].removeprefix("file://"))).stat().st_size == archived[0][
        "recording_bytes"
    ]
    (run_record,) = (dest / "_runs").iterdir()
    assert json.loads(run_record.read_text())["complete"] is True
    # The query it suggests runs as printed, with the archiver's own Python (which has pyarrow).
    snippet = result.stdout[result.stdout.index("Query it") :].split("\n  # or, with DuckDB")[0]
    script = "\n".join(line.removeprefix("  ") for line in snippet.splitlines()[1:]) + "\n"
    query = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert query.returncode == 0, query.stderr
    assert "recording_status" in query.stdout and "archived" in query.stdout


def test_missing_bucket_is_fatal_before_any_api_request(s3_endpoint: str, tmp_path: Path) -> None:
    with running_simulator(calls=3, seed=3, recording_bytes=SMALL_RECORDING_BYTES) as sim:
        sim.reset_stats()
        env = {
            "ULTRAVOX_API_KEY": sim.api_key,
            "ULTRAVOX_API_BASE_URL": sim.api_base_url,
            "ARCHIVE_DEST": "s3://no-such-bucket-for-archiver/x",
        }
        result = CliRunner().invoke(main, ["backfill", "--since", sim.since, "--until", sim.until], env=env)
        stats = sim.stats()
    assert result.exit_code == 3, result.output
    assert "no-such-bucket-for-archiver" in result.output
    assert sum(stats["requests"].values()) == 0


def test_missing_key_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["backfill", "--since", "2026-01-01", "--until", "2026-01-02"], env={"ULTRAVOX_API_KEY": ""}
    )
    assert result.exit_code == 2
    assert "ULTRAVOX_API_KEY" in result.output


def test_until_before_since_is_a_usage_error() -> None:
    result = CliRunner().invoke(
        main, ["backfill", "--since", "2026-01-02", "--until", "2026-01-01"], env={"ULTRAVOX_API_KEY": "k"}
    )
    assert result.exit_code == 2


def test_summary_as_json_for_schedulers(tmp_path: Path) -> None:
    with running_simulator(calls=8, seed=3, days=1, recording_bytes=SMALL_RECORDING_BYTES) as sim:
        env = {"ULTRAVOX_API_KEY": sim.api_key, "ULTRAVOX_API_BASE_URL": sim.api_base_url}
        args = ["backfill", "--since", sim.since, "--until", sim.until, "--dest", str(tmp_path / "a")]
        result = CliRunner().invoke(
            main, [*args, "--summary-format", "json", "--log-level", "error"], env=env
        )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["complete"] is True
    assert summary["calls_archived"] + summary["calls_underway"] == 8


def test_an_explicit_key_file_beats_the_inherited_key_and_an_inherited_key_file_does_not(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "key"
    with running_simulator(calls=3, seed=5, days=1, recording_bytes=SMALL_RECORDING_BYTES) as sim:
        key_file.write_text(sim.api_key + "\n")
        # click reads ULTRAVOX_API_KEY_FILE too, but a value from the environment keeps its rank.
        env = {
            "ULTRAVOX_API_KEY": "wrong." + "z" * 32,
            "ULTRAVOX_API_KEY_FILE": str(key_file),
            "ULTRAVOX_API_BASE_URL": sim.api_base_url,
        }
        args = ["backfill", "--since", sim.since, "--until", sim.until, "--log-level", "error"]
        inherited = CliRunner().invoke(main, [*args, "--dest", str(tmp_path / "a")], env=env)
        explicit = CliRunner().invoke(
            main, [*args, "--dest", str(tmp_path / "b"), "--api-key-file", str(key_file)], env=env
        )
        finished = sum(not call["underway"] for call in sim.truth(messages=False))
    # The inherited key was used, and rejected by the check before the run (a configuration error).
    assert inherited.exit_code == 2, inherited.output
    assert explicit.exit_code == 0, explicit.output
    assert len(read_archive(str(tmp_path / "b")).calls) == finished > 0


def test_a_run_into_a_directory_removes_stale_temp_files_and_keeps_fresh_ones(tmp_path: Path) -> None:
    dest = tmp_path / "archive"
    (dest / "recordings").mkdir(parents=True)
    stale, fresh = dest / "recordings" / ".tmp-killed-run", dest / ".tmp-writing-now"
    stale.write_bytes(b"left by a run killed mid-write")
    fresh.write_bytes(b"another run's write in progress")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    with running_simulator(calls=3, seed=5, days=1, recording_bytes=SMALL_RECORDING_BYTES) as sim:
        env = {"ULTRAVOX_API_KEY": sim.api_key, "ULTRAVOX_API_BASE_URL": sim.api_base_url}
        args = ["backfill", "--since", sim.since, "--until", sim.until, "--dest", str(dest)]
        result = CliRunner().invoke(main, [*args, "--log-level", "error"], env=env)
    assert result.exit_code == 0, result.output
    assert not stale.exists()
    assert fresh.exists()


class _CountingStorage:
    """Passes everything through to the destination and counts the writes by top-level prefix."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.puts: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str:
        self.puts[key.split("/")[0]] += 1
        return self.inner.put_bytes(key, data, content_type=content_type)

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> str:
        self.puts[key.split("/")[0]] += 1
        return self.inner.put_file(key, path, content_type=content_type)

    def put_bytes_if(self, key: str, data: bytes, **conditions: Any) -> str:
        self.puts[key.split("/")[0]] += 1
        return self.inner.put_bytes_if(key, data, **conditions)

    def put_checked(self, key: str, data: bytes | bytearray, **options: Any) -> str:
        self.puts[key.split("/")[0]] += 1
        return self.inner.put_checked(key, data, **options)

    def start_upload(self, key: str, **options: Any) -> Any:
        self.puts[key.split("/")[0]] += 1
        return self.inner.start_upload(key, **options)


def test_a_program_embedding_the_cli_can_wrap_the_destination(tmp_path: Path) -> None:
    wrapped: list[_CountingStorage] = []

    def wrap(storage: Storage) -> Storage:
        wrapped.append(_CountingStorage(storage))
        return cast(Storage, wrapped[-1])

    with running_simulator(calls=3, seed=5, days=1, recording_bytes=SMALL_RECORDING_BYTES) as sim:
        env = {"ULTRAVOX_API_KEY": sim.api_key, "ULTRAVOX_API_BASE_URL": sim.api_base_url}
        args = ["backfill", "--since", sim.since, "--until", sim.until, "--dest", str(tmp_path / "a")]
        result = CliRunner().invoke(
            main, [*args, "--log-level", "error"], env=env, obj=RunHooks(wrap_storage=wrap)
        )
    assert result.exit_code == 0, result.output
    (counting,) = wrapped
    # Every file the archive holds was written through the wrapper.
    archived = {path.relative_to(tmp_path / "a").parts[0] for path in (tmp_path / "a").rglob("*.*")}
    assert archived >= {"calls", "messages", "_runs"}
    assert {prefix for prefix, count in counting.puts.items() if count} >= archived
    assert counting.puts["_runs"] == 1
