"""Progress on a terminal: `sync`, `backfill` and `demo` draw a bar with the run's total, its rate and
an ETA on stderr when it is a terminal (a pseudo-terminal here, as a user's would be), log lines
print whole above it, and stdout (the summary) carries none of it."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.archiver_process import archiver_env, write_config
from support.simulator_helpers import StartSimulator

# "calls 12/40 |####   | 31.5 calls/s, days 1/2, ... [00:01<00:02]": done/total, rate, elapsed<ETA.
_BAR = re.compile(r"calls (\d+)/(\d+) \|.*\| *[\d.]+ calls/s, days \d+/(\d+).*\[\d\d:\d\d<\d\d:\d\d\]")


def run_on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run with stderr on a 30x120 pseudo-terminal; returns the exit code, stdout and the terminal's text."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    with subprocess.Popen(
        [sys.executable, "-m", "etl", *argv],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=secondary,
    ) as process:
        os.close(secondary)
        screen = bytearray()
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the process closed its end
                break
            if not chunk:
                break
            screen += chunk
        stdout = process.stdout.read().decode() if process.stdout else ""
        code = process.wait(timeout=60)
    os.close(primary)
    return code, stdout, screen.decode(errors="replace")


@pytest.mark.parametrize("command", ["backfill", "sync", "demo"])
def test_a_terminal_gets_a_bar_with_total_rate_and_eta(
    command: str, start_simulator: StartSimulator, tmp_path: Path
) -> None:
    if command == "demo":
        argv, env = ["demo", "--calls", "40", "--dest", str(tmp_path / "demo")], dict(os.environ)
        listed = None
    else:
        # Yesterday and today: a sync from the first day plans just these two.
        yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
        sim = start_simulator(calls=40, seed=7, days=2, start_date=yesterday)
        env = archiver_env(sim, str(tmp_path / "archive"), write_config(tmp_path / "c.toml"))
        window = ["--since", sim.since] + (["--until", sim.until] if command == "backfill" else [])
        argv = [command, *window, "--log-level", "info"]
        listed = len(sim.truth())
    code, stdout, screen = run_on_a_terminal(argv, env)
    assert code == 0, stdout + screen
    bars = [m for m in map(_BAR.search, re.split(r"[\r\n]", screen)) if m]
    assert bars, screen
    done, total, days = map(int, bars[-1].groups())
    assert done <= total and days == (5 if command == "demo" else 2)
    if listed is not None:
        # Once every day is listed the total is exact, and the last bar drawn counts every call.
        assert any(int(m.group(2)) == listed for m in bars), screen
        # Log lines (text on a terminal) are printed whole, above the bar, never into it.
        assert re.search(r"(^|[\r\n])info +run started", screen), screen
    assert "calls/s" not in stdout and "\r" not in stdout


def test_no_terminal_no_bar(start_simulator: StartSimulator, tmp_path: Path) -> None:
    sim = start_simulator(calls=10, seed=7, days=1)
    env = archiver_env(sim, str(tmp_path / "archive"), write_config(tmp_path / "c.toml"))
    finished = subprocess.run(
        [sys.executable, "-m", "etl", "backfill", "--since", sim.since, "--until", sim.until],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert "calls/s" not in finished.stderr + finished.stdout and "\r" not in finished.stderr
