"""The shipped jobs work on their first run: each job's own command line and environment (its key
file, destination and start date pointed at a simulator) archive an empty destination and exit 0,
and everything the run prints is JSON lines (cron appends it all to one `.jsonl` file)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from support.archive_truth import Expected, assert_matches_truth, read_archive
from support.archiver_process import write_config
from support.simulator_helpers import StartSimulator

from etl.simulator.process import SimulatorHandle

JOBS = Path(__file__).resolve().parents[2] / "jobs"
_INVOCATION = re.compile(r"ultravox-archiver\s+(sync[^&|;>\n\"'`]*)")
# Pointed at the test's own simulator and directory; every other variable stays as the job sets it.
_REPLACED = ("ULTRAVOX_API_KEY_FILE", "ARCHIVE_DEST", "ARCHIVER_SINCE")


def _argv(text: str) -> list[str]:
    (line,) = _INVOCATION.findall(text)
    return line.split()


def cron_job() -> tuple[list[str], dict[str, str]]:
    text = (JOBS / "cron" / "ultravox-archiver.cron").read_text()
    env = dict(re.findall(r"^#\s+export ([A-Z_]+)=(\S+)", text, re.MULTILINE))
    return _argv(text), env


def kubernetes_job() -> tuple[list[str], dict[str, str]]:
    document = yaml.safe_load((JOBS / "kubernetes" / "cronjob.yaml").read_text())
    (container,) = document["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: str(item["value"]) for item in container["env"]}
    return _argv(" ".join(container["args"])), env


def airflow_job() -> tuple[list[str], dict[str, str]]:
    tree = ast.parse((JOBS / "airflow" / "ultravox_archiver_dag.py").read_text())
    (call,) = [
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "BashOperator"
    ]
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("bash_command", "env")}
    return _argv(keywords["bash_command"]), keywords["env"]


JOBS_UNDER_TEST = {"cron": cron_job, "kubernetes": kubernetes_job, "airflow": airflow_job}


@pytest.fixture(scope="module")
def account(start_shared_simulator: StartSimulator) -> SimulatorHandle:
    """Calls over yesterday and today: a first sync from yesterday covers them all."""
    start = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    return start_shared_simulator(calls=30, seed=41, days=2, start_date=start)


def _environment(job_env: dict[str, str], sim: SimulatorHandle, tmp_path: Path) -> Iterator[tuple[str, str]]:
    for name, value in os.environ.items():
        if not name.startswith(("ULTRAVOX_", "ARCHIVE", "AWS_")):
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


@pytest.mark.parametrize("job", sorted(JOBS_UNDER_TEST))
def test_the_first_run_of_each_job_archives_an_empty_destination(
    job: str, account: SimulatorHandle, tmp_path: Path
) -> None:
    argv, job_env = JOBS_UNDER_TEST[job]()
    assert {"ULTRAVOX_API_KEY_FILE", "ARCHIVE_DEST"} <= set(job_env)
    assert "ARCHIVER_SINCE" in job_env, f"the {job} job gives its first run no start date"
    env = dict(_environment(job_env, account, tmp_path))
    # stdout and stderr into one stream, as cron's `>> file 2>&1` does.
    finished = subprocess.run(
        [sys.executable, "-m", "etl", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout
    lines = finished.stdout.splitlines()
    entries = [json.loads(line) for line in lines]  # every line is JSON, the summary included
    summary = entries[-1]
    assert summary["command"] == "sync" and summary["complete"] is True
    assert_matches_truth(read_archive(str(tmp_path / "archive")), Expected(account.truth()))
