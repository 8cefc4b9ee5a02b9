"""Run the simulator as a subprocess (tests, benchmarks, the demo) and talk to its control endpoints.

A separate process rather than a thread: the simulator then never competes with the code under test
for the GIL, so benchmarks measure the archiver and not the stand-in.
"""

from __future__ import annotations

import dataclasses
import json
import os
import selectors
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from etl.simulator.options import option_argv
from etl.simulator.server import ReadyInfo

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class SimulatorStartError(RuntimeError):
    """The simulator subprocess died or did not report ready in time."""


@dataclass(frozen=True)
class SimulatorHandle(ReadyInfo):
    """The facts of the simulator's ready line, and the process that printed it."""

    pid: int

    def truth(self, *, messages: bool = True) -> list[dict[str, Any]]:
        """One record per call ever created: call object, in_call messages, recording facts.

        `messages=False` leaves out the transcripts (keeping `message_count`): for large accounts,
        where the full truth is gigabytes of JSON.
        """
        return list(self.iter_truth(messages=messages))

    def iter_truth(self, *, messages: bool = True) -> Iterator[dict[str, Any]]:
        """Like `truth`, streamed: constant memory on the client for any account size."""
        params = {} if messages else {"messages": "false"}
        with (
            httpx.Client(trust_env=False, timeout=600.0, verify=self._verify()) as client,
            client.stream("GET", f"{self.control_url}/truth", params=params) as response,
        ):
            response.raise_for_status()
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("GET", "stats").json()
        return result

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change fault knobs (latency_ms, rules, ...); returns the full configuration now in force."""
        result: dict[str, Any] = self._control("POST", "config", changes).json()
        return result

    def reset_stats(self) -> None:
        self._control("POST", "reset-stats")

    def advance(self, **changes: Any) -> dict[str, Any]:
        """new_calls, end_underway, finish_processing, fill_summaries, delete_calls, delete_auto_delete."""
        result: dict[str, Any] = self._control("POST", "advance", changes).json()
        return result

    def _verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=self.tls_cert) if self.tls_cert else True

    def _control(self, method: str, name: str, body: dict[str, Any] | None = None) -> httpx.Response:
        # trust_env=False: a proxy from the environment must never sit between us and loopback.
        with httpx.Client(trust_env=False, timeout=120.0, verify=self._verify()) as client:
            response = client.request(method, f"{self.control_url}/{name}", json=body)
        response.raise_for_status()
        return response


@contextmanager
def running_simulator(*, ready_timeout_s: float = 20.0, **options: Any) -> Iterator[SimulatorHandle]:
    """Start `python -m etl.simulator` with `options` (SimulatorOptions field names); stop it on exit."""
    argv = [sys.executable, "-m", "etl.simulator", *option_argv(**options)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")]))
    with tempfile.TemporaryFile() as stderr:
        # stderr goes to a file, not a pipe: nobody reads it while tests run, and a full pipe would
        # block the simulator.
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, env=env)
        try:
            ready = _wait_ready(process, stderr, ready_timeout_s)
            facts = {f.name: ready[f.name] for f in dataclasses.fields(ReadyInfo)}
            yield SimulatorHandle(**facts, pid=process.pid)
        finally:
            _stop(process)


def _wait_ready(process: subprocess.Popen[bytes], stderr: IO[bytes], timeout_s: float) -> dict[str, Any]:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SimulatorStartError(f"simulator not ready after {timeout_s} s{_tail(stderr)}")
            if not selector.select(remaining):
                continue
            data = os.read(process.stdout.fileno(), 65536)
            if not data:
                code = process.wait()
                raise SimulatorStartError(f"simulator exited with status {code}{_tail(stderr)}")
            buffer += data
    line = buffer.split(b"\n", 1)[0]
    ready: dict[str, Any] = json.loads(line)
    if ready.get("event") != "ready":
        raise SimulatorStartError(f"unexpected first line from simulator: {line!r}")
    return ready


def _tail(stderr: IO[bytes]) -> str:
    stderr.seek(0)
    text = stderr.read()[-4000:].decode(errors="replace").strip()
    return f"; stderr:\n{text}" if text else ""


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()
