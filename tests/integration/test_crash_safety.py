"""SIGKILL at 23 moments of a sync; each time the next run completes the job and the archive is
identical (same rows, same audio checksums) to an uninterrupted run's, and equals the ground truth.
And with the default lease settings, a run started right after a kill takes the killed run's days
over at once (`--worker-id`) instead of skipping them.

Moments come two ways. Storage moments are exact: a crash point `put:PREFIX:N` runs the CLI through
tests/support/crashing_archiver.py, which makes the process SIGKILL itself right before its Nth
write under PREFIX (recordings, Parquet files, manifests, open markers, leases, run records). API
moments are taken from outside: the test watches the simulator's request counters and SIGKILLs the
process once it has made N requests of a kind.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.archive_truth import (
    Archive,
    Expected,
    assert_matches_truth,
    comparable,
    read_archive,
    s3_filesystem,
)
from support.archiver_process import run, start, write_config
from support.simulator_helpers import SMALL_RECORDING_BYTES, StartSimulator

from etl.simulator.process import SimulatorHandle, running_simulator
from etl.storage import open_storage
from etl.storage.lease import LEASE_PREFIX, LeaseInfo

STORAGE_MOMENTS = [
    "put:_state/leases/:1",
    "put:_state/open/:1",
    "put:_state/open/:3",
    "put:recordings/:1",
    "put:recordings/:8",
    "put:recordings/:20",
    "put:messages/:1",
    "put:messages/:3",
    "put:calls/:1",
    "put:calls/:2",
    "put:_state/partitions/:1",
    "put:_state/partitions/:3",
    "delete:_state/open/:1",
    "delete:_state/leases/:2",
    "put:_runs/:1",
]
API_MOMENTS = [
    ("list_calls", 1),
    ("list_calls", 3),
    ("messages", 3),
    ("messages", 20),
    ("messages", 45),
    ("recording", 2),
    ("recording", 15),
    ("storage", 10),
]
SIGKILLED = -signal.SIGKILL


@pytest.fixture(scope="module")
def account() -> Iterator[SimulatorHandle]:
    start_date = (datetime.now(UTC).date() - timedelta(days=2)).isoformat()
    with running_simulator(
        calls=50, seed=41, days=3, start_date=start_date, recording_bytes=SMALL_RECORDING_BYTES
    ) as sim:
        yield sim


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Short leases: a killed run's leases expire in seconds, and the next run waits that long for them.
    # A short recording wait: recordings that never finish processing are reported pending sooner.
    return write_config(
        tmp_path_factory.mktemp("crash") / "c.toml",
        lease_ttl_s=3,
        lock_wait_s=8,
        refresh_days=0,
        recording_wait_s=1,
    )


@pytest.fixture(scope="module")
def reference(account: SimulatorHandle, config: Path, s3_endpoint: str) -> Archive:
    bucket = _new_bucket("reference")
    finished = run(account, f"s3://{bucket}/a", config, "sync", "--since", account.since)
    assert finished.code == 0, finished.output
    return read_archive(f"{bucket}/a", s3_filesystem(s3_endpoint))


def _new_bucket(name: str) -> str:
    import boto3

    bucket = f"crash-{name}-{time.monotonic_ns()}"
    boto3.session.Session().client("s3").create_bucket(Bucket=bucket)
    return bucket


def _finish_and_compare(
    sim: SimulatorHandle, config: Path, endpoint: str, bucket: str, reference: Archive, moment: str
) -> None:
    finished = run(sim, f"s3://{bucket}/a", config, "sync", "--since", sim.since)
    assert finished.code == 0, f"{moment}: the run after the kill did not complete:\n{finished.output}"
    archive = read_archive(f"{bucket}/a", s3_filesystem(endpoint))
    assert comparable(archive) == comparable(reference), moment
    assert_matches_truth(archive, Expected(sim.truth()), check_audio=False)


def test_killed_at_storage_moments(
    account: SimulatorHandle, config: Path, s3_endpoint: str, reference: Archive
) -> None:
    def one(moment: str) -> None:
        bucket = _new_bucket("s")
        killed = run(account, f"s3://{bucket}/a", config, "sync", "--since", account.since, crash_at=moment)
        assert killed.code == SIGKILLED, f"{moment} was never reached:\n{killed.output}"
        _finish_and_compare(account, config, s3_endpoint, bucket, reference, moment)

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(one, STORAGE_MOMENTS))


def test_killed_at_api_moments(
    account: SimulatorHandle, config: Path, s3_endpoint: str, reference: Archive
) -> None:
    for kind, count in API_MOMENTS:
        moment = f"after {count} {kind} requests"
        bucket = _new_bucket("a")
        account.reset_stats()
        account.configure(latency_ms=20)  # slow enough for the watcher to catch the moment
        try:
            process = start(account, f"s3://{bucket}/a", config, "sync", "--since", account.since)
            while process.poll() is None and account.stats()["requests"][kind] < count:
                time.sleep(0.005)
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=30)
        finally:
            account.configure(latency_ms=0)
        assert process.returncode == SIGKILLED, f"the run ended before {moment}"
        _finish_and_compare(account, config, s3_endpoint, bucket, reference, moment)


@pytest.mark.parametrize("command", ["backfill", "sync"])
def test_a_run_started_right_after_a_kill_takes_its_days_over(
    start_simulator: StartSimulator, s3_endpoint: str, s3_bucket: str, tmp_path: Path, command: str
) -> None:
    # Default lease settings (a minute, renewed every 15 s): the killed run's leases are alive when
    # the next run starts, which takes them over because it is the same worker.
    sim = start_simulator(calls=60, seed=43, days=4, start_date=_days_ago(6))
    dest, config = f"s3://{s3_bucket}/{command}", write_config(tmp_path / "c.toml", refresh_days=0)
    window = ["--since", sim.since] + (["--until", sim.until] if command == "backfill" else [])
    worker = ["--worker-id", f"nightly-{command}", "--lock-wait", "75"]
    sim.configure(latency_ms=20)  # slow enough to be killed mid-run
    try:
        killed = start(sim, dest, config, command, *window, *worker)
        while killed.poll() is None and sim.stats()["requests"]["messages"] < 25:
            time.sleep(0.005)
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=30)
    finally:
        sim.configure(latency_ms=0)
    assert killed.returncode == SIGKILLED, "the run ended before it was killed"
    storage = open_storage(dest)
    leases = [LeaseInfo.from_json(storage.get_bytes(k) or b"") for k in storage.list_keys(LEASE_PREFIX)]
    assert leases, "the killed run held no lease"
    first_expiry = min(lease.expires_at for lease in leases)

    finished = run(sim, dest, config, command, *window, *worker)

    assert finished.code == 0, finished.output
    assert datetime.now(UTC) < first_expiry, "the run waited for the killed run's leases to expire"
    assert "taken over from this worker's dead run" in finished.output
    archive = read_archive(f"{s3_bucket}/{command}", s3_filesystem(s3_endpoint))
    assert_matches_truth(archive, Expected(sim.truth()))
    assert list(storage.list_keys(LEASE_PREFIX)) == []


def _days_ago(days: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=days)).isoformat()
