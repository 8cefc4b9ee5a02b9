"""Run the archiver as a real process (for kills and overlapping runs) against a simulator."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from etl.simulator.process import SimulatorHandle
from support import crashing_archiver


@dataclass(frozen=True)
class Finished:
    code: int
    output: str


def archiver_env(sim: SimulatorHandle, dest: str, config: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ULTRAVOX_API_KEY=sim.api_key,
        ULTRAVOX_API_BASE_URL=sim.api_base_url,
        ARCHIVE_DEST=dest,
        ARCHIVER_CONFIG=str(config),
    )
    return env


def start(
    sim: SimulatorHandle,
    dest: str,
    config: Path,
    *args: str,
    crash_at: str | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.Popen[str]:
    """`crash_at` (put|delete:PREFIX:N) runs the CLI through the test entry point that SIGKILLs there;
    `extra_env` adds to (or overrides) the process's environment (a scheduler's JOB_COMPLETION_INDEX)."""
    entry = ["-m", "etl"] if crash_at is None else [crashing_archiver.__file__, crash_at]
    return subprocess.Popen(
        [sys.executable, *entry, *args, "--log-format", "json"],
        env={**archiver_env(sim, dest, config), **(extra_env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run(
    sim: SimulatorHandle,
    dest: str,
    config: Path,
    *args: str,
    crash_at: str | None = None,
    timeout_s: float = 120,
    extra_env: Mapping[str, str] | None = None,
) -> Finished:
    process = start(sim, dest, config, *args, crash_at=crash_at, extra_env=extra_env)
    output, _ = process.communicate(timeout=timeout_s)
    return Finished(process.returncode, output)


def write_config(path: Path, **overrides: float) -> Path:
    """Short waits, so that tests run in seconds: polling and retries. Leases keep their defaults."""
    settings: dict[str, float] = {
        "recording_wait_s": 4,
        "recording_poll_initial_s": 0.1,
        "recording_poll_max_s": 0.5,
        "retry_initial_s": 0.02,
        "retry_max_s": 0.2,
        "max_rps": 2000,
    }
    settings.update(overrides)
    path.write_text("[archiver]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    return path
