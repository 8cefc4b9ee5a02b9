"""An hourly `sync` costs what is new (issue 13): `--since` left set reopens no archived day, and a
recording an earlier run left pending is asked for once, not waited for again, yet archived by the
first sync after it becomes ready.

Over real HTTP: the simulator in its own process, a moto S3 server, the CLI through click's runner.
The measured figure for the issue (300 calls over 60 days) is `tests/perf/sync_cost.py`.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from click.testing import CliRunner
from support.archive_truth import Expected, assert_matches_truth, read_archive, s3_filesystem
from support.archiver_process import archiver_env, write_config
from support.simulator_helpers import StartSimulator

from etl.cli import main
from etl.simulator.process import SimulatorHandle


def today() -> date:
    return datetime.now(UTC).date()


def cli(sim: SimulatorHandle, dest: str, config: Path, *args: str) -> tuple[int, str]:
    env = archiver_env(sim, dest, config)
    result = CliRunner().invoke(main, [*args, "--log-format", "json"], env=env, catch_exceptions=False)
    return result.exit_code, result.output


def manifests(bucket: str, prefix: str) -> dict[str, dict[str, Any]]:
    s3 = boto3.session.Session().client("s3")
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/_state/partitions/")
    found = {}
    for item in listing.get("Contents", []):
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
        found[manifest["call_date"]] = manifest
    return found


def test_since_left_set_revisits_only_what_a_sync_without_it_would(
    start_simulator: StartSimulator, s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    first_day = today() - timedelta(days=7)
    sim = start_simulator(
        calls=40, seed=7, days=8, start_date=first_day.isoformat(), stuck_recording_rate=0.0
    )
    dest, since = f"s3://{s3_bucket}/since", first_day.isoformat()
    config = write_config(tmp_path / "c.toml")
    code, output = cli(sim, dest, config, "sync", "--since", since)
    assert code == 0, output
    first = manifests(s3_bucket, "since")
    final = {day for day, manifest in first.items() if manifest["final"]}
    assert len(first) == 8 and len(final) >= 4, "the account must have final days (past the refresh window)"

    sim.reset_stats()
    code, output = cli(sim, dest, config, "sync", "--since", since)  # ARCHIVER_SINCE left set
    assert code == 0, output
    with_since = sim.stats()["requests"]
    second = manifests(s3_bucket, "since")
    # No final day was listed or written again: its manifest is the first run's.
    assert {day for day in final if second[day]["run_id"] != first[day]["run_id"]} == set()
    assert with_since["list_calls"] == len(first) - len(final)

    sim.reset_stats()
    code, output = cli(sim, dest, config, "sync")
    assert code == 0, output
    assert sim.stats()["requests"] == with_since  # the same work as a sync without --since
    assert_matches_truth(
        read_archive(f"{s3_bucket}/since", s3_filesystem(s3_endpoint)), Expected(sim.truth())
    )


def test_a_recording_left_pending_is_asked_for_once_and_archived_by_the_first_sync_after_it_is_ready(
    start_simulator: StartSimulator, s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    first_day = today() - timedelta(days=10)  # past the refresh window: only pending days stay open
    sim = start_simulator(
        calls=40, seed=41, days=2, start_date=first_day.isoformat(), stuck_recording_rate=0.25
    )
    dest, since = f"s3://{s3_bucket}/pending", first_day.isoformat()
    fs = s3_filesystem(s3_endpoint)
    config = write_config(tmp_path / "c.toml", recording_wait_s=2, recording_heartbeat_s=0.2)
    expected = Expected(sim.truth())
    never_ready = {t["call_id"] for t in expected.archived if t["recording"]["status"] == "pending"}
    assert len(never_ready) >= 2, "the account must have recordings that never finish processing"

    # First found pending: waited for (with a heartbeat in the log meanwhile), then left pending.
    code, output = cli(sim, dest, config, "sync", "--since", since)
    assert code == 0, output
    beats = [json.loads(line) for line in output.splitlines() if "waiting for recordings" in line]
    recorded = [t for t in expected.archived if t["recording"]["status"] != "not_enabled"]
    assert beats and all(0 < beat["recordings_waiting"] <= len(recorded) for beat in beats)
    assert all(beat["longest_wait_left_s"] <= 2 for beat in beats)
    assert_matches_truth(read_archive(f"{s3_bucket}/pending", fs), expected)

    # The next sync, even with a long wait configured, asks for each of them once and waits for none.
    sim.reset_stats()
    started = time.monotonic()
    code, output = cli(sim, dest, config, "sync", "--since", since, "--recording-wait", "60")
    assert code == 0, output
    assert time.monotonic() - started < 20
    assert sim.stats()["requests"]["recording"] == len(never_ready)
    assert_matches_truth(read_archive(f"{s3_bucket}/pending", fs), expected)
    pending_days = {t["call_date"] for t in expected.archived if t["call_id"] in never_ready}
    for day, manifest in manifests(s3_bucket, "pending").items():
        assert (day in pending_days) is bool(manifest["pending_recording_call_ids"])

    # A backfill rewrites its window on purpose: it waits for them again.
    day = min(pending_days)
    sim.reset_stats()
    code, output = cli(sim, dest, config, "backfill", "--since", day, "--until", day, "--recording-wait", "1")
    assert code == 0, output
    on_day = [t for t in expected.archived if t["call_id"] in never_ready and t["call_date"] == day]
    assert sim.stats()["requests"]["recording"] > len(on_day)

    # They become ready between two syncs: the next one archives them, byte for byte.
    sim.advance(finish_processing=True)
    sim.reset_stats()
    code, output = cli(sim, dest, config, "sync", "--since", since, "--recording-wait", "60")
    assert code == 0, output
    assert sim.stats()["requests"]["recording"] == len(never_ready)
    truth = sim.truth()
    assert all(t["recording"]["status"] == "ready" for t in truth if t["call_id"] in never_ready)
    archive = read_archive(f"{s3_bucket}/pending", fs)
    assert_matches_truth(archive, Expected(truth))
    assert {row["recording_status"] for row in archive.calls if row["call_id"] in never_ready} == {"archived"}
    assert all(
        not manifest["pending_recording_call_ids"] for manifest in manifests(s3_bucket, "pending").values()
    )
