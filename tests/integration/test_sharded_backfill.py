"""Sharded backfill end to end (issue 12): four shard processes in parallel against one simulator and
one bucket make exactly the archive one worker makes, and the ground truth; no object is written by
two of them (the bucket is versioned, so a second write would leave a second version); and all
shards together ask the API for what one worker does, within 5 %. A shard killed mid-run and run
again still yields the exact archive. The shards get their index every way a scheduler gives it:
`--shard I/N`, `JOB_COMPLETION_INDEX` and `AWS_BATCH_JOB_ARRAY_INDEX` with a shard count.

One worker and the shards each run against a simulator of their own with the same seed: a
simulator's recordings answer 425 a set number of times and are then ready for good, so a second
run against the same one would make fewer requests than the first.
"""

from __future__ import annotations

import json
import signal
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.archive_truth import Expected, assert_matches_truth, comparable, read_archive, s3_filesystem
from support.archiver_process import Finished, run, start, write_config
from support.simulator_helpers import StartSimulator

from etl.simulator.process import SimulatorHandle

SHARDS = 4
# How each shard is told its index: the flag, a Kubernetes Indexed Job, AWS Batch (count by flag and
# by environment), so the one test covers every way in.
HOW: list[tuple[list[str], dict[str, str]]] = [
    (["--shard", "0/4"], {}),
    (["--shard", "1/4", "--shard-count", "4"], {}),
    ([], {"JOB_COMPLETION_INDEX": "2", "ARCHIVER_SHARD_COUNT": "4"}),
    (["--shard-count", "4"], {"AWS_BATCH_JOB_ARRAY_INDEX": "3"}),
]
# Days spread over more than one round of the shards, and a dozen calls each.
ACCOUNT: dict[str, Any] = {"calls": 110, "seed": 12, "days": 9}


def _account(start_simulator: StartSimulator) -> SimulatorHandle:
    start_date = datetime.now(UTC).date() - timedelta(days=14)
    return start_simulator(**ACCOUNT, start_date=start_date.isoformat())


@pytest.fixture
def versioned_bucket(s3_bucket: str, s3: Any) -> Iterator[str]:
    """The test bucket with versioning on: every write of a key leaves a version. Its versions are
    removed afterwards (the s3_bucket fixture empties only current objects)."""
    s3.put_bucket_versioning(Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    yield s3_bucket
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=s3_bucket):
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            s3.delete_object(Bucket=s3_bucket, Key=item["Key"], VersionId=item["VersionId"])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    # A second's recording wait: the account's never-ready recordings are reported pending soon.
    return write_config(tmp_path / "c.toml", recording_wait_s=1, lease_ttl_s=10)


def _summary(finished: Finished) -> dict[str, Any]:
    """The run's JSON summary among its JSON log lines (one stream)."""
    for line in reversed(finished.output.splitlines()):
        if line.startswith("{") and '"run_id"' in line and '"api_requests"' in line:
            summary: dict[str, Any] = json.loads(line)
            return summary
    raise AssertionError(f"no summary in:\n{finished.output}")


def _api_requests(sim: SimulatorHandle) -> int:
    """API requests as the simulator counted them (storage downloads are not API requests)."""
    requests: dict[str, int] = sim.stats()["requests"]
    return sum(count for kind, count in requests.items() if kind != "storage")


def _window(sim: SimulatorHandle) -> list[str]:
    return ["--since", sim.since, "--until", sim.until, "--summary-format", "json"]


def _run_shards(sim: SimulatorHandle, dest: str, config: Path, *extra: str) -> list[Finished]:
    processes = [
        start(sim, dest, config, "backfill", *_window(sim), *args, *extra, extra_env=env) for args, env in HOW
    ]
    finished = []
    for process in processes:
        output, _ = process.communicate(timeout=120)
        finished.append(Finished(process.returncode, output))
    return finished


def _versions(s3: Any, bucket: str, prefix: str) -> dict[str, list[bytes]]:
    """Every version of every object under `prefix` (key relative to it), oldest first, with its body."""
    found: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Versions", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])["Body"].read()
            found[item["Key"].removeprefix(prefix)].append((item["LastModified"].isoformat(), body))
    return {key: [body for _, body in sorted(versions)] for key, versions in found.items()}


def _writers(key: str, bodies: list[bytes]) -> set[str]:
    """Which runs wrote the versions of a lease (its owner) or an open marker (the run id)."""
    if key.startswith("_state/leases/"):
        return {json.loads(body)["owner"].split("@")[0] for body in bodies}
    return {body.decode() for body in bodies}


def _assert_each_object_written_once(versions: dict[str, list[bytes]]) -> None:
    for key, bodies in versions.items():
        if key.startswith(("_state/leases/", "_state/open/")):
            # A lease is renewed by its holder, a marker rewritten by the run that holds the day:
            # never by two runs.
            assert len(_writers(key, bodies)) == 1, (key, _writers(key, bodies))
        else:
            assert len(bodies) == 1, f"{key} was written {len(bodies)} times"


def test_four_shards_in_parallel_make_one_workers_archive(
    start_simulator: StartSimulator, versioned_bucket: str, s3: Any, s3_endpoint: str, config: Path
) -> None:
    one_sim, shards_sim = _account(start_simulator), _account(start_simulator)
    bucket, filesystem = versioned_bucket, s3_filesystem(s3_endpoint)

    one = run(one_sim, f"s3://{bucket}/one", config, "backfill", *_window(one_sim))
    assert one.code == 0, one.output
    one_requests = _api_requests(one_sim)

    finished = _run_shards(shards_sim, f"s3://{bucket}/sharded", config)
    for shard, result in enumerate(finished):
        assert result.code == 0, result.output
        assert _summary(result)["shard"] == f"{shard}/{SHARDS}"
        # The config file's max_rps is the user's own per-worker figure: not divided.
        assert _summary(result)["max_rps"] == 2000
    shard_requests = [_summary(result)["api_requests"] for result in finished]
    all_requests = _api_requests(shards_sim)
    print(
        f"\nAPI requests: one worker {one_requests} (its summary: {_summary(one)['api_requests']}); "
        f"shards {shard_requests}, together {all_requests} "
        f"({(all_requests / one_requests - 1) * 100:+.1f} %)"
    )
    # Each run also sends the check before any work (one listing request), which its summary leaves out.
    assert all_requests - sum(shard_requests) == SHARDS * (one_requests - _summary(one)["api_requests"])
    assert abs(all_requests - one_requests) <= 0.05 * one_requests

    # The union is one worker's archive, and the ground truth.
    sharded = read_archive(f"{bucket}/sharded", filesystem)
    assert comparable(sharded) == comparable(read_archive(f"{bucket}/one", filesystem))
    assert_matches_truth(sharded, Expected(shards_sim.truth()))

    # No object written twice, and no object the single worker did not write (but the run records).
    versions = _versions(s3, bucket, "sharded/")
    # The bucket does keep a version per write: each lease was renewed before its day was published.
    assert all(len(bodies) > 1 for key, bodies in versions.items() if key.startswith("_state/leases/"))
    _assert_each_object_written_once(versions)
    _assert_each_object_written_once(_versions(s3, bucket, "one/"))
    not_runs = {key for key in versions if not key.startswith(("_runs/", "_quarantine/"))}
    assert not_runs == {
        key for key in _versions(s3, bucket, "one/") if not key.startswith(("_runs/", "_quarantine/"))
    }

    # Each day was published by the shard the rule gives it.
    shard_of_run = {
        json.loads(bodies[0])["run_id"]: json.loads(bodies[0])["shard"]
        for key, bodies in versions.items()
        if key.startswith("_runs/")
    }
    manifests = {
        key: json.loads(bodies[0]) for key, bodies in versions.items() if key.startswith("_state/partitions/")
    }
    assert len(manifests) == ACCOUNT["days"]
    for manifest in manifests.values():
        day = date.fromisoformat(manifest["call_date"])
        assert shard_of_run[manifest["run_id"]] == f"{day.toordinal() % SHARDS}/{SHARDS}"


def test_a_killed_shard_run_again_completes_the_archive(
    start_simulator: StartSimulator, s3_bucket: str, s3_endpoint: str, config: Path
) -> None:
    sim = _account(start_simulator)
    dest = f"s3://{s3_bucket}/a"
    worker = ["--worker-id", "backfill-test"]  # one id for every shard, as a Job's name would be
    killed = run(
        sim, dest, config, "backfill", *_window(sim), "--shard", "1/4", *worker, crash_at="put:messages/:1"
    )
    assert killed.code == -signal.SIGKILL, killed.output
    # The other shards run meanwhile; the killed shard's days are its own, so none of them waits.
    others = [
        start(sim, dest, config, "backfill", *_window(sim), "--shard", f"{i}/4", *worker) for i in (0, 2, 3)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in others]
    assert [process.returncode for process in others] == [0, 0, 0], outputs
    # Re-run, as a scheduler retries a failed index: the same shard and worker id take the dead
    # run's leases over at once (etl.shard.worker_identity).
    again = run(sim, dest, config, "backfill", *_window(sim), "--shard", "1/4", *worker, timeout_s=60)
    assert again.code == 0, again.output
    assert not _summary(again)["partitions_locked"]
    assert_matches_truth(read_archive(f"{s3_bucket}/a", s3_filesystem(s3_endpoint)), Expected(sim.truth()))


def test_the_dry_run_shows_the_days_of_its_shard(
    start_simulator: StartSimulator, tmp_path: Path, config: Path
) -> None:
    sim = _account(start_simulator)
    finished = run(
        sim,
        str(tmp_path / "archive"),
        config,
        "backfill",
        *_window(sim),
        "--dry-run",
        extra_env={"JOB_COMPLETION_INDEX": "3", "ARCHIVER_SHARD_COUNT": "4"},
    )
    assert finished.code == 0, finished.output
    plan = json.loads(finished.output.splitlines()[-1])
    window = [date.fromisoformat(sim.since) + timedelta(days=n) for n in range(ACCOUNT["days"])]
    assert plan["shard"] == "3/4"
    assert [day["day"] for day in plan["days"]] == [d.isoformat() for d in window if d.toordinal() % 4 == 3]
    assert not (tmp_path / "archive").exists()


def test_a_shard_with_no_day_in_the_window_archives_nothing(
    start_simulator: StartSimulator, tmp_path: Path, config: Path
) -> None:
    sim = _account(start_simulator)
    day = date.fromisoformat(sim.since)
    other = (day.toordinal() + 1) % SHARDS
    dest = tmp_path / "archive"
    window = ["--since", sim.since, "--until", sim.since, "--summary-format", "json"]
    finished = run(sim, str(dest), config, "backfill", *window, "--shard", f"{other}/{SHARDS}")
    assert finished.code == 0, finished.output
    summary = _summary(finished)
    assert (summary["shard"], summary["calls_archived"], summary["partitions_written"]) == (
        f"{other}/4",
        0,
        0,
    )
    written = {path.relative_to(dest).parts[0] for path in dest.rglob("*") if path.is_file()}
    assert written == {"_runs"}
    assert sim.stats()["requests"]["list_calls"] == 1  # the check before any work, nothing more


def test_an_index_without_a_count_takes_every_day_and_says_so(
    start_simulator: StartSimulator, tmp_path: Path, config: Path
) -> None:
    # An Indexed Job whose pods were given no shard count: each pod would archive the whole window.
    sim = _account(start_simulator)
    finished = run(
        sim,
        str(tmp_path / "archive"),
        config,
        "backfill",
        *_window(sim),
        "--dry-run",
        extra_env={"JOB_COMPLETION_INDEX": "1"},
    )
    assert finished.code == 0, finished.output
    plan = json.loads(finished.output.splitlines()[-1])
    assert plan["shard"] is None and len(plan["days"]) == ACCOUNT["days"]
    warnings = [json.loads(line) for line in finished.output.splitlines() if '"level": "warning"' in line]
    assert any(w.get("variable") == "JOB_COMPLETION_INDEX" and "no shard count" in w["msg"] for w in warnings)
