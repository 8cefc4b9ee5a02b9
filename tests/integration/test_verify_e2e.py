"""`verify` over real HTTP (the simulator, the moto S3 server, a local directory): it passes an
intact archive, catches each kind of drift made on purpose, and passes again once a `backfill` of
the window has repaired it, the archive then matching the simulator's ground truth."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from support.archive_truth import Expected, assert_matches_truth, read_archive, s3_filesystem
from support.archiver_process import archiver_env, write_config
from support.simulator_helpers import StartSimulator

from etl.api.recordings import recording_key
from etl.cli import main
from etl.simulator.process import SimulatorHandle
from etl.storage import LocalStorage, S3Storage, Storage

DAYS = 3


@dataclass(frozen=True)
class Target:
    """The call a test breaks, on its day."""

    day: date
    call_id: str


@pytest.fixture(scope="module")
def account(start_shared_simulator: StartSimulator) -> SimulatorHandle:
    # Days in the past, every recording ready in time, no call underway: the archive is final.
    first = datetime.now(UTC).date() - timedelta(days=DAYS + 5)
    sim = start_shared_simulator(
        calls=15, seed=3, days=DAYS, start_date=first.isoformat(), stuck_recording_rate=0
    )
    assert not [t for t in sim.truth(messages=False) if t["underway"]], "pick a seed without underway calls"
    return sim


def window(sim: SimulatorHandle) -> list[str]:
    first = date.fromisoformat(sim.since)
    return ["--since", sim.since, "--until", (first + timedelta(days=DAYS - 1)).isoformat()]


def cli(sim: SimulatorHandle, dest: str, config: Path, *args: str) -> tuple[int, str]:
    env = archiver_env(sim, dest, config)
    result = CliRunner().invoke(main, [*args, "--log-format", "json"], env=env, catch_exceptions=False)
    return result.exit_code, result.stdout


def verify(sim: SimulatorHandle, dest: str, config: Path) -> tuple[int, dict[str, Any]]:
    code, out = cli(sim, dest, config, "verify", *window(sim), "--format", "json")
    return code, json.loads(out)


def target(sim: SimulatorHandle) -> Target:
    """A call with a recording and at least two messages."""
    truth = next(t for t in sim.truth() if t["recording"]["status"] == "ready" and len(t["messages"]) >= 2)
    return Target(date.fromisoformat(truth["call_date"]), truth["call_id"])


# -- the ways to break an archive ------------------------------------------------------------------


def _rewrite(storage: Storage, key: str, tmp: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    path = tmp / "part.parquet"
    assert storage.get_file(key, path)
    table = pq.read_table(path)
    pq.write_table(change(table), path)
    storage.put_file(key, path)


def _rows_of(table: pa.Table, call_id: str) -> list[int]:
    return [i for i, value in enumerate(table.column("call_id").to_pylist()) if value == call_id]


def drop_call_row(storage: Storage, t: Target, tmp: Path) -> None:
    key = f"calls/call_date={t.day}/data.parquet"
    _rewrite(storage, key, tmp, lambda table: table.filter(pa.compute.not_equal(table["call_id"], t.call_id)))


def delete_calls_file(storage: Storage, t: Target, tmp: Path) -> None:
    storage.delete(f"calls/call_date={t.day}/data.parquet")


def duplicate_part_file(storage: Storage, t: Target, tmp: Path) -> None:
    path = tmp / "copy.parquet"
    assert storage.get_file(f"calls/call_date={t.day}/data.parquet", path)
    storage.put_file(f"calls/call_date={t.day}/copy-0001.parquet", path)


def duplicate_message_row(storage: Storage, t: Target, tmp: Path) -> None:
    def change(table: pa.Table) -> pa.Table:
        return pa.concat_tables([table, table.take([_rows_of(table, t.call_id)[0]])])

    _rewrite(storage, f"messages/call_date={t.day}/data.parquet", tmp, change)


def drop_message_row(storage: Storage, t: Target, tmp: Path) -> None:
    def change(table: pa.Table) -> pa.Table:
        drop = _rows_of(table, t.call_id)[-1]
        return table.take([i for i in range(table.num_rows) if i != drop])

    _rewrite(storage, f"messages/call_date={t.day}/data.parquet", tmp, change)


def delete_recording(storage: Storage, t: Target, tmp: Path) -> None:
    storage.delete(recording_key(t.day, t.call_id))


def overwrite_recording(storage: Storage, t: Target, tmp: Path) -> None:
    # Same size, other bytes, written with their own valid SHA-256: only the row's digest tells.
    key = recording_key(t.day, t.call_id)
    stored = storage.get_bytes(key)
    assert stored is not None
    other = bytes(b ^ 0xFF for b in stored)
    storage.put_checked(key, other, sha256=hashlib.sha256(other).digest())


BREAKS: dict[str, tuple[Callable[[Storage, Target, Path], None], str]] = {
    "drop_call_row": (drop_call_row, "missing_call"),
    "delete_calls_file": (delete_calls_file, "missing_call"),
    "duplicate_part_file": (duplicate_part_file, "duplicate_call"),
    "duplicate_message_row": (duplicate_message_row, "duplicate_message"),
    "drop_message_row": (drop_message_row, "message_count"),
    "delete_recording": (delete_recording, "recording_missing"),
    "overwrite_recording": (overwrite_recording, "recording_mismatch"),
}


def _break_and_repair(
    sim: SimulatorHandle,
    dest: str,
    storage: Storage,
    config: Path,
    tmp: Path,
    case: str,
    check: Callable[[], None],
) -> None:
    code, out = cli(sim, dest, config, "backfill", *window(sim))
    assert code == 0, out
    code, report = verify(sim, dest, config)
    assert code == 0, report
    assert report["agrees"] and report["drift"] == 0

    t = target(sim)
    breaking, kind = BREAKS[case]
    breaking(storage, t, tmp)
    code, report = verify(sim, dest, config)
    assert code == 8, report
    drift = [f for f in report["findings"] if f["drift"]]
    assert {f["kind"] for f in drift} == {kind}, drift
    assert t.call_id in {f["call_id"] for f in drift}
    assert all(f["day"] == t.day.isoformat() for f in drift)

    code, out = cli(sim, dest, config, "backfill", *window(sim), "--summary-format", "json")
    assert code == 0, out
    summary = json.loads(out)
    if kind.startswith("recording_"):
        # Every archived recording was checked once (a HEAD each), and only the broken one fetched again.
        ready = [t for t in sim.truth(messages=False) if t["recording"]["status"] == "ready"]
        assert (summary["recording_checks"], summary["recordings_refetched"]) == (len(ready), 1)
    code, report = verify(sim, dest, config)
    assert code == 0, report
    check()


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_verify_catches_each_drift_on_s3_and_backfill_repairs_it(
    account: SimulatorHandle, s3_endpoint: str, s3_bucket: str, tmp_path: Path, case: str
) -> None:
    dest = f"s3://{s3_bucket}/a"
    storage = S3Storage(s3_bucket, "a")
    config = write_config(tmp_path / "c.toml")

    def check() -> None:
        assert_matches_truth(
            read_archive(f"{s3_bucket}/a", s3_filesystem(s3_endpoint)), Expected(account.truth())
        )
        if case == "duplicate_part_file":
            assert [k for k in storage.list_keys("calls/") if not k.endswith("/data.parquet")] == []

    _break_and_repair(account, dest, storage, config, tmp_path, case, check)


@pytest.mark.parametrize("case", ["duplicate_part_file", "overwrite_recording", "drop_message_row"])
def test_verify_catches_drift_in_a_local_directory_and_backfill_repairs_it(
    account: SimulatorHandle, tmp_path: Path, case: str
) -> None:
    root = tmp_path / "archive"
    storage = LocalStorage(root)
    config = write_config(tmp_path / "c.toml")

    def check() -> None:
        assert_matches_truth(read_archive(str(root)), Expected(account.truth()))

    _break_and_repair(account, str(root), storage, config, tmp_path, case, check)


def test_verify_of_an_intact_archive_reports_in_json_and_text(
    account: SimulatorHandle, s3_bucket: str, tmp_path: Path
) -> None:
    dest, config = f"s3://{s3_bucket}/a", write_config(tmp_path / "c.toml")
    account.reset_stats()
    code, out = cli(account, dest, config, "backfill", *window(account))
    assert code == 0, out
    truth = account.truth()
    account.reset_stats()

    code, report = verify(account, dest, config)
    assert code == 0
    ready = [t for t in truth if t["recording"]["status"] == "ready"]
    assert report == {
        "dest": dest,
        "since": window(account)[1],
        "until": window(account)[3],
        "exit_code": 0,
        "agrees": True,
        "drift": 0,
        "calls_listed": len(truth),
        "calls_archived": len(truth),
        "transcripts_listed": len(truth),
        "api_requests": report["api_requests"],
        "recordings_checked": len(ready),
        "findings": [],
    }
    # A listing page per day, a messages page per call (all are short here), and nothing else: no
    # recording was asked for. The key check before any work is one more request of its own.
    assert report["api_requests"] == DAYS + len(truth)
    stats = account.stats()
    assert stats["requests"]["recording"] == stats["requests"]["storage"] == 0, stats

    code, text = cli(account, dest, config, "verify", *window(account))
    assert code == 0
    assert "the archive agrees with the source (exit 0)" in text
    # The jobs give every command `--summary-format json`: verify then prints its JSON too.
    code, out = cli(account, dest, config, "verify", *window(account), "--summary-format", "json")
    assert (code, json.loads(out)["agrees"]) == (0, True)


def test_verify_exit_codes_for_what_it_could_not_check(
    account: SimulatorHandle, s3_bucket: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml")
    dest = f"s3://{s3_bucket}/a"
    code, out = cli(account, dest, config, "backfill", *window(account))
    assert code == 0, out

    # Listings that fail (every answer a 5xx, no retries left): nothing is compared, exit 1.
    account.configure(error_rate_5xx=1.0)
    try:
        code, out = cli(
            account, dest, config, "verify", *window(account), "--format", "json", "--retry-budget", "0"
        )
    finally:
        account.configure(error_rate_5xx=0.0)
    report = json.loads(out)
    assert code == 1, report
    assert [f["kind"] for f in report["findings"]] == ["not_checked"] * DAYS

    # A bucket that does not exist is fatal (3); no key is a configuration error (2).
    code, _ = cli(account, f"s3://{s3_bucket}-missing/a", config, "verify", *window(account))
    assert code == 3
    env = {**archiver_env(account, dest, config), "ULTRAVOX_API_KEY": ""}
    result = CliRunner().invoke(main, ["verify", *window(account)], env=env)
    assert result.exit_code == 2, result.output
