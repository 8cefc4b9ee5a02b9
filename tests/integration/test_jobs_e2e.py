"""The shipped jobs work on their first run: each job's own arguments to the image's entry point and
its environment (its key file, destination and start date or window pointed at a simulator) archive
an empty destination and exit 0, and everything the run prints is JSON lines (cron appends it all
to one `.jsonl` file). A sharded backfill's workers, each with the index its scheduler gives it
(an Indexed Job's JOB_COMPLETION_INDEX, Airflow's mapped `--shard I/N`), run at once and together
archive the whole window.

The image itself is not built here (no container builder runs where the tests do): the arguments
run as `python -m etl`, the entry point's module; tests/integration/test_image_install.py installs
what the image installs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.archive_truth import Expected, assert_matches_truth, read_archive
from support.archiver_process import write_config
from support.job_files import JobRun, all_runs
from support.simulator_helpers import StartSimulator

from etl.simulator.process import SimulatorHandle

# Pointed at the test's own simulator and directory; every other variable stays as the job sets it.
_REPLACED = ("ULTRAVOX_API_KEY_FILE", "ARCHIVE_DEST", "ARCHIVER_SINCE")


def _runs(command: str) -> dict[str, list[JobRun]]:
    """The job files' runs of `command`, grouped by file."""
    grouped: dict[str, list[JobRun]] = {}
    for run in all_runs():
        if run.argv[0] == command:
            grouped.setdefault(run.file, []).append(run)
    return grouped


SYNC_JOBS = _runs("sync")
BACKFILL_JOBS = _runs("backfill")


@pytest.fixture(scope="module")
def account(start_shared_simulator: StartSimulator) -> SimulatorHandle:
    """Calls over the last three days: a first sync from the first covers them all, and a window of
    three days goes to at least two shards of eight."""
    start = (datetime.now(UTC).date() - timedelta(days=2)).isoformat()
    return start_shared_simulator(calls=36, seed=41, days=3, start_date=start)


def _environment(
    job_env: Mapping[str, str], sim: SimulatorHandle, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    for name, value in os.environ.items():
        if not name.startswith(("ULTRAVOX_", "ARCHIVE", "AWS_", "JOB_COMPLETION_INDEX")):
            yield name, value
    key_file = tmp_path / "api-key"
    key_file.write_text(sim.api_key)
    test_values = {
        "ULTRAVOX_API_KEY_FILE": str(key_file),
        "ARCHIVE_DEST": str(tmp_path / "archive"),
        "ARCHIVER_SINCE": sim.since,
    }
    for name, value in job_env.items():
        if name.startswith("AWS_"):
            continue  # the test's destination is a local directory
        yield name, test_values.get(name, value)
    yield "ULTRAVOX_API_BASE_URL", sim.api_base_url
    yield "ARCHIVER_CONFIG", str(write_config(tmp_path / "waits.toml"))


def _window(argv: tuple[str, ...], sim: SimulatorHandle) -> list[str]:
    """The job's own arguments with its --since/--until moved to the simulator's days."""
    window = {"--since": sim.since, "--until": sim.until}
    words = list(argv)
    for flag, value in window.items():
        if flag in words:
            words[words.index(flag) + 1] = value
    return words


def _start(argv: list[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    # stdout and stderr into one stream, as cron's `>> file 2>&1` does.
    return subprocess.Popen(
        [sys.executable, "-m", "etl", *argv],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(*processes: subprocess.Popen[str]) -> list[dict[str, object]]:
    """Wait for every run (all of them before any assert, so none is left behind); each exits 0,
    prints only JSON lines, and its last is the summary."""
    outputs = []
    for process in processes:
        with process:
            outputs.append(process.communicate(timeout=120)[0])
    summaries = []
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output
        entries = [json.loads(line) for line in output.splitlines()]  # every line is JSON
        summaries.append(entries[-1])
    return summaries


@pytest.mark.parametrize("job", sorted(SYNC_JOBS))
def test_the_first_sync_of_each_job_archives_an_empty_destination(
    job: str, account: SimulatorHandle, tmp_path: Path
) -> None:
    (run,) = SYNC_JOBS[job]
    assert {"ULTRAVOX_API_KEY_FILE", "ARCHIVE_DEST"} <= set(run.env)
    assert "ARCHIVER_SINCE" in run.env, f"{job} gives its first run no start date"
    (summary,) = _finish(_start(list(run.argv), dict(_environment(run.env, account, tmp_path))))
    assert summary["command"] == "sync" and summary["complete"] is True
    assert_matches_truth(read_archive(str(tmp_path / "archive")), Expected(account.truth()))


def _shard_runs(runs: list[JobRun]) -> list[JobRun]:
    """One run per shard: the Airflow DAG maps them itself; an Indexed Job's one pod template runs
    once per index, with the index Kubernetes sets (JOB_COMPLETION_INDEX) and the count of the
    file's ARCHIVER_SHARD_COUNT."""
    if len(runs) > 1:
        return runs
    (run,) = runs
    count = int(run.env["ARCHIVER_SHARD_COUNT"])
    return [
        JobRun(
            run.file,
            f"{run.name}[{index}]",
            run.image,
            run.argv,
            {**run.env, "JOB_COMPLETION_INDEX": str(index)},
        )
        for index in range(count)
    ]


@pytest.mark.parametrize("job", sorted(BACKFILL_JOBS))
def test_each_sharded_backfill_job_archives_the_window_with_its_workers_at_once(
    job: str, account: SimulatorHandle, tmp_path: Path
) -> None:
    shards = _shard_runs(BACKFILL_JOBS[job])
    assert len(shards) > 1
    processes = [
        _start(_window(run.argv, account), dict(_environment(run.env, account, tmp_path))) for run in shards
    ]
    summaries = _finish(*processes)
    assert {summary["command"] for summary in summaries} == {"backfill"}
    # Each worker took its own shard, from its flag or from the index its scheduler set.
    assert sorted(str(summary["shard"]) for summary in summaries) == sorted(
        f"{index}/{len(shards)}" for index in range(len(shards))
    )
    assert_matches_truth(read_archive(str(tmp_path / "archive")), Expected(account.truth()))
