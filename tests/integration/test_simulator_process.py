"""Starting and stopping the simulator: the CLI, the subprocess helper, in-process `serve`, advance."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest
from support.simulator_helpers import StartSimulator, api_client

from etl.simulator import ReadyInfo, SimulatorOptions, serve
from etl.simulator.__main__ import main
from etl.simulator.process import SimulatorStartError, running_simulator


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"], prog="ultravox-archiver simulate")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ultravox-archiver simulate") and "--rate-limit-rps" in out


def test_cli_prints_one_ready_line_and_exits_0_on_sigterm() -> None:
    command = [sys.executable, "-m", "etl.simulator", "--calls", "3", "--seed", "2", "--api-key", "k" * 41]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == b""
    assert ready["event"] == "ready" and ready["api_key"] == "k" * 41
    assert set(ready) == {
        "event",
        "api_base_url",
        "storage_url",
        "control_url",
        "api_key",
        "since",
        "until",
        "tls_cert",
    }


def test_start_failure_reports_stderr() -> None:
    with pytest.raises(SimulatorStartError, match="calls must be"), running_simulator(calls=-1):
        pass


def test_the_subprocess_is_gone_after_the_block() -> None:
    with running_simulator(calls=2) as sim:
        pid = sim.pid
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_serve_in_process() -> None:
    async def scenario() -> tuple[ReadyInfo, int, dict[str, Any]]:
        stop, ready = asyncio.Event(), asyncio.Future[ReadyInfo]()
        server = asyncio.create_task(serve(SimulatorOptions(calls=12, days=2), ready.set_result, stop))
        info = await asyncio.wait_for(ready, 10)
        async with httpx.AsyncClient(headers={"X-API-Key": info.api_key}, trust_env=False) as client:
            listed = (await client.get(f"{info.api_base_url}/calls")).json()
            stats = (await client.get(f"{info.control_url}/stats")).json()
        stop.set()
        await server
        return info, listed["total"], stats

    info, total, stats = asyncio.run(scenario())
    assert total == 12 and (info.since, info.until) == ("2026-03-02", "2026-03-03")
    assert stats["requests"]["list_calls"] == 1


def test_advance_adds_and_deletes_calls_without_breaking_a_walk(start_simulator: StartSimulator) -> None:
    sim = start_simulator(calls=40, seed=8, days=2)
    with api_client(sim) as api:
        page = api.get("/calls", params={"pageSize": 5}).json()
        seen = [c["callId"] for c in page["results"]]
        victim = seen[0]
        changes = sim.advance(new_calls=3, delete_calls=[victim], end_underway=True, fill_summaries=True)
        while page["next"]:
            page = api.get(page["next"]).json()
            seen += [c["callId"] for c in page["results"]]
        tombstones = api.get("/deleted_calls").json()
        gone = api.get(f"/calls/{victim}")
    truth = sim.truth()
    assert len(seen) == len(set(seen)) == 43  # the 40 walked + 3 new; the victim was already seen
    assert set(changes["new_calls"]) <= set(seen)
    assert gone.status_code == 404
    assert [t["callId"] for t in tombstones["results"]] == [victim] and tombstones["total"] == 1
    assert {t["call_id"] for t in truth if t["deleted"]} == {victim}
    assert not [t for t in truth if t["underway"] and t["call_id"] not in changes["new_calls"]]
