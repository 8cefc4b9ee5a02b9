"""Run what a user would use instead of the archiver, as subprocesses, and measure them like it.

Each alternative runs as its own process against the same simulator and S3 server as the archiver;
`os.wait4` gives its wall time, CPU seconds and peak RSS (the child's and its reaped children's, so
dlt's normalize worker processes count too).

- `run_sequential`: tests/perf/sequential_client.py, a hand-written one-request-at-a-time client.
- `run_dlt`: tests/perf/dlt_pipeline.py, dlt's rest_api source to the filesystem destination, in a
  venv of its own (tests/perf/.venv-dlt) so dlt never enters the project's dependencies.

Not collected by pytest; the benchmark imports it with tests/perf on sys.path.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3

PERF_DIR = Path(__file__).resolve().parent
DLT_VENV = PERF_DIR / ".venv-dlt"
DLT_REQUIREMENTS = PERF_DIR / "requirements-dlt.txt"
_STAMP = ".requirements-sha256"
_STDERR_TAIL = 4000
DEFAULT_TIMEOUT_S = 3600.0


class AlternativeFailed(RuntimeError):
    """The measured client exited non-zero, timed out, or printed no JSON summary."""


def ensure_venv(venv: Path, requirements: Path) -> Path:
    """Create (or reuse, if built from the same requirements) `venv`; return its python."""
    python = venv / "bin" / "python"
    wanted = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = venv / _STAMP
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    # As Python 3.13's venv does by itself: git, and so ruff and pytest, never look inside.
    (venv / ".gitignore").write_text("*\n")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(requirements)], check=True)
    # Written last: an install that died half-way is redone on the next call.
    stamp.write_text(wanted + "\n")
    return python


def ensure_dlt_venv() -> Path:
    """tests/perf/.venv-dlt, from requirements-dlt.txt; return its python."""
    return ensure_venv(DLT_VENV, DLT_REQUIREMENTS)


def measure(cmd: list[str], env: dict[str, str], *, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """Run `cmd` with exactly `env`; return its last JSON stdout line plus wall/CPU/peak RSS.

    The client's own `wall_s` (what it timed inside) is kept as `client_wall_s`; `wall_s` is the
    outside view, interpreter start-up and imports included.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        # Killing on a timer keeps the wait4 below blocking and exact, with no polling interval.
        killer = threading.Timer(timeout_s, process.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            killer.cancel()
        wall_s = time.monotonic() - started
        # wait4 reaped the child: tell Popen, or it would try to reap it again.
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if process.returncode != 0:
        raise AlternativeFailed(f"{cmd[1]} exited with {process.returncode}:\n{stderr[-_STDERR_TAIL:]}")
    result = _last_json_line(stdout, cmd, stderr)
    if "wall_s" in result:
        result["client_wall_s"] = result.pop("wall_s")
    result.update(
        wall_s=round(wall_s, 3),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 3),
        peak_rss_mib=round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        exit_code=process.returncode,
    )
    return result


def _last_json_line(stdout: str, cmd: list[str], stderr: str) -> dict[str, Any]:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    raise AlternativeFailed(f"{cmd[1]} printed no JSON summary; stderr:\n{stderr[-_STDERR_TAIL:]}")


def run_sequential(sim: Any, s3_env: dict[str, str], bucket: str, limit_calls: int) -> dict[str, Any]:
    """The hand-written sequential client on the first `limit_calls` calls of the simulator's window."""
    cmd = [
        sys.executable,
        str(PERF_DIR / "sequential_client.py"),
        *_window_args(sim, f"s3://{bucket}/sequential"),
        "--limit-calls",
        str(limit_calls),
    ]
    return _run_measured(sim, cmd, s3_env, bucket)


def run_dlt(sim: Any, s3_env: dict[str, str], bucket: str, config: str) -> dict[str, Any]:
    """dlt's rest_api pipeline over the whole window; `config` is "default" or "parallel"."""
    python = ensure_dlt_venv()
    cmd = [
        str(python),
        str(PERF_DIR / "dlt_pipeline.py"),
        *_window_args(sim, f"s3://{bucket}/dlt-{config}"),
        "--config",
        config,
    ]
    return _run_measured(sim, cmd, s3_env, bucket)


def _window_args(sim: Any, dest: str) -> list[str]:
    return [
        "--api-base-url",
        sim.api_base_url,
        "--api-key",
        sim.api_key,
        "--since",
        sim.since,
        "--until",
        sim.until,
        "--dest",
        dest,
    ]


def _run_measured(sim: Any, cmd: list[str], s3_env: dict[str, str], bucket: str) -> dict[str, Any]:
    env = {**os.environ, **s3_env, "NO_PROXY": "127.0.0.1,localhost"}
    _ensure_bucket(bucket, env)
    sim.reset_stats()
    result = measure(cmd, env)
    stats = sim.stats()
    result["calls_per_s"] = round(result["calls"] / result["wall_s"], 2) if result["wall_s"] else None
    result["requests"] = stats["requests"]
    result["requests_total"] = stats.get("requests_total")
    result["rate_limited"] = stats.get("rate_limited")
    result["max_in_flight_requests"] = stats.get("max_in_flight_requests")
    return result


def _ensure_bucket(bucket: str, env: dict[str, str]) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=env.get("AWS_ENDPOINT_URL"),
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket)
