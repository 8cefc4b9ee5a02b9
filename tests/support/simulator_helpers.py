"""Starting simulators (the fixtures' type) and talking to a running simulator's /api."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import httpx

from etl.simulator.process import SimulatorHandle

# The simulator serves real-sized recordings (~16 MB on average) unless told otherwise; tests ask for
# this mean size instead, so the default run stays a few minutes. Pass `recording_bytes=None` for
# real sizes.
SMALL_RECORDING_BYTES = 48_000


class StartSimulator(Protocol):
    """The `start_simulator` and `start_shared_simulator` fixtures (conftest.py): options are
    SimulatorOptions field names, as `running_simulator` takes them."""

    def __call__(self, **options: Any) -> SimulatorHandle: ...


def api_client(sim: SimulatorHandle) -> httpx.Client:
    """A client for the simulator's /api that sends its key, as the archiver does."""
    # trust_env=False: a proxy from the environment must never sit between the tests and loopback.
    return httpx.Client(base_url=sim.api_base_url, headers={"X-API-Key": sim.api_key}, trust_env=False)


def api_session(sim: SimulatorHandle, restore: Mapping[str, Any]) -> Iterator[httpx.Client]:
    """The body of an `api` fixture: an /api client, then the fault knobs in `restore` put back."""
    with api_client(sim) as client:
        yield client
    sim.configure(**restore)
