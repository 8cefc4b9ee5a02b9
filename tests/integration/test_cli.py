"""The commands as a user runs them: demo into a local directory, failures and their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from support.archive_truth import read_archive

from etl.cli import main
from etl.simulator.process import running_simulator


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


def test_missing_bucket_is_fatal_before_any_api_request(s3_endpoint: str, tmp_path: Path) -> None:
    with running_simulator(calls=3, seed=3) as sim:
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
    with running_simulator(calls=8, seed=3, days=1) as sim:
        env = {"ULTRAVOX_API_KEY": sim.api_key, "ULTRAVOX_API_BASE_URL": sim.api_base_url}
        args = ["backfill", "--since", sim.since, "--until", sim.until, "--dest", str(tmp_path / "a")]
        result = CliRunner().invoke(
            main, [*args, "--summary-format", "json", "--log-level", "error"], env=env
        )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["complete"] is True
    assert summary["calls_archived"] + summary["calls_underway"] == 8
