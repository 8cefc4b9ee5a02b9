"""Settings that cannot work stop a run before any work, with exit 2 and a message that says what to do.

Each test runs the CLI as a user does against a simulator over real HTTP and checks what the
simulator saw: no API request at all for what can be told locally (the destination, the dates), one
for what only the API can tell (the key, the base URL).
"""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from support.simulator_helpers import StartSimulator

from etl.cli import main
from etl.reporting.report import EXIT_USAGE
from etl.simulator.process import SimulatorHandle


@pytest.fixture(scope="module")
def sim(start_shared_simulator: StartSimulator) -> SimulatorHandle:
    return start_shared_simulator(calls=6, seed=13, days=2)


def _backfill(sim: SimulatorHandle, dest: Path, *extra: str, **env: str) -> Result:
    environment = {"ULTRAVOX_API_KEY": sim.api_key, "ULTRAVOX_API_BASE_URL": sim.api_base_url, **env}
    args = ["backfill", "--since", sim.since, "--until", sim.until, "--dest", str(dest), *extra]
    return CliRunner().invoke(main, [*args, "--log-level", "error"], env=environment)


def _requests(sim: SimulatorHandle) -> dict[str, Any]:
    return {kind: n for kind, n in sim.stats()["requests"].items() if n}


def test_a_rejected_key_is_a_configuration_error_after_one_request(
    sim: SimulatorHandle, tmp_path: Path
) -> None:
    sim.reset_stats()
    wrong = "wrong." + "q" * 32
    result = _backfill(sim, tmp_path / "a", ULTRAVOX_API_KEY=wrong)
    assert result.exit_code == EXIT_USAGE, result.output
    assert "the API rejected the key" in result.output
    assert "ULTRAVOX_API_KEY" in result.output
    assert wrong not in result.output
    assert _requests(sim) == {"list_calls": 1}
    # The run record says why; no partition was touched.
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["_runs"]


def test_a_base_url_without_api_is_a_configuration_error(sim: SimulatorHandle, tmp_path: Path) -> None:
    sim.reset_stats()
    result = _backfill(sim, tmp_path / "a", ULTRAVOX_API_BASE_URL=sim.api_base_url.removesuffix("/api"))
    assert result.exit_code == EXIT_USAGE, result.output
    assert "must end in /api" in result.output
    assert sum(_requests(sim).values()) == 1  # the check's request, not a 404 per day


def test_an_unreachable_host_fails_fast(sim: SimulatorHandle, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # nobody listens once the socket is closed
    started = time.monotonic()
    result = _backfill(sim, tmp_path / "a", ULTRAVOX_API_BASE_URL=f"http://127.0.0.1:{closed_port}/api")
    elapsed = time.monotonic() - started
    assert result.exit_code == EXIT_USAGE, result.output
    assert f"cannot connect to http://127.0.0.1:{closed_port}/api" in result.output
    assert elapsed < 10  # main: ~40 s of retries per day before exit 1


@pytest.mark.parametrize("below", [False, True], ids=["file", "below-a-file"])
def test_a_file_as_destination_is_a_configuration_error_before_any_request(
    sim: SimulatorHandle, tmp_path: Path, below: bool
) -> None:
    afile = tmp_path / "archive"
    afile.write_text("not a directory")
    sim.reset_stats()
    result = _backfill(sim, afile / "sub" if below else afile)
    assert result.exit_code == EXIT_USAGE, result.output
    assert "not a directory: give a directory" in result.output
    assert "NotADirectoryError" not in result.output
    assert _requests(sim) == {}
    assert afile.read_text() == "not a directory"


@pytest.mark.parametrize("command", ["backfill", "sync"])
def test_dates_in_the_future_are_a_configuration_error(
    sim: SimulatorHandle, tmp_path: Path, command: str
) -> None:
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    window = ["--since", sim.since, "--until", tomorrow] if command == "backfill" else ["--since", tomorrow]
    env = {"ULTRAVOX_API_KEY": sim.api_key, "ULTRAVOX_API_BASE_URL": sim.api_base_url}
    sim.reset_stats()
    result = CliRunner().invoke(main, [command, *window, "--dest", str(tmp_path / "a")], env=env)
    assert result.exit_code == EXIT_USAGE, result.output
    assert f"{tomorrow} is in the future" in result.output
    assert _requests(sim) == {}
    assert not (tmp_path / "a").exists()


def test_with_json_logs_the_reason_a_run_stops_is_a_json_line_too(
    sim: SimulatorHandle, tmp_path: Path
) -> None:
    # A scheduler's log file takes stderr and stdout together: a plain `error: ...` line in it was the
    # one line there that was not JSON.
    result = _backfill(
        sim,
        tmp_path / "a",
        "--log-format",
        "json",
        "--summary-format",
        "json",
        ULTRAVOX_API_BASE_URL=sim.api_base_url.removesuffix("/api"),
    )
    assert result.exit_code == EXIT_USAGE, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.strip()]
    [stopped] = [line for line in lines if line.get("msg") == "stopped"]
    assert "must end in /api" in stopped["error"]
    assert stopped["exit_code"] == EXIT_USAGE
