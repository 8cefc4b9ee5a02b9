"""Fencing, end to end: a writer paused past its lease in the middle of publishing a day publishes
nothing after another run has taken the day over, and the archive is exact afterwards.

Two runs in one process, over real HTTP against the simulator, on a local directory and on S3. The
first run's storage freezes every write once the step named by the test has been written (what a
GC pause, a frozen VM or a network partition does to a process): its lease stops being renewed and
expires, the second run takes the day over and publishes it, then the first run is let go.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.archive_truth import Expected, assert_matches_truth, read_archive, s3_filesystem
from support.simulator_helpers import StartSimulator

from etl.config import Settings
from etl.model import ProblemKind
from etl.pipeline.run import archive, backfill
from etl.reporting.report import EXIT_OK, exit_code
from etl.secrets import Secret
from etl.simulator.process import SimulatorHandle
from etl.storage import Storage, open_storage
from etl.storage.base import ObjectInfo, PartedUpload

# Keys a run may still write after it lost a day: its own run record and quarantine, never the day's.
_RUN_OWN = ("_runs/", "_quarantine/")


class Freezing:
    """Delegates to a storage; once a key under `after` has been written, every later write blocks
    until `thaw`. Records the writes that succeed after the thaw."""

    def __init__(self, inner: Storage, after: str) -> None:
        self._inner = inner
        self._after = after
        self._armed = False
        self.frozen = threading.Event()
        self._thawed = threading.Event()
        self.written_after_thaw: list[str] = []

    def thaw(self) -> None:
        self._thawed.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _write(self, operation: str, key: str, write: Any, *args: Any, **kwargs: Any) -> Any:
        if self._armed:
            self.frozen.set()
            assert self._thawed.wait(timeout=60), "never thawed"
        result = write(key, *args, **kwargs)
        if key.startswith(self._after):
            self._armed = True
        if self._thawed.is_set():
            self.written_after_thaw.append(f"{operation} {key}")
        return result

    def put_file(self, key: str, path: Path, **kwargs: Any) -> str:
        return str(self._write("put", key, self._inner.put_file, path, **kwargs))

    def put_bytes(self, key: str, data: bytes, **kwargs: Any) -> str:
        return str(self._write("put", key, self._inner.put_bytes, data, **kwargs))

    def put_checked(self, key: str, data: bytes | bytearray, **kwargs: Any) -> str:
        return str(self._write("put", key, self._inner.put_checked, data, **kwargs))

    def put_bytes_if(self, key: str, data: bytes, **kwargs: Any) -> str:
        return str(self._write("put", key, self._inner.put_bytes_if, data, **kwargs))

    def start_upload(self, key: str, **kwargs: Any) -> PartedUpload:
        return self._inner.start_upload(key, **kwargs)  # small recordings here: never parted

    def delete(self, key: str) -> None:
        self._write("delete", key, self._inner.delete)

    def delete_if(self, key: str, etag: str) -> None:
        self._write("delete", key, self._inner.delete_if, etag)

    def head(self, key: str) -> ObjectInfo | None:
        return self._inner.head(key)

    def digest(self, key: str) -> ObjectInfo | None:
        return self._inner.digest(key)

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        return self._inner.list_keys(prefix)


@pytest.fixture(scope="module")
def account(start_shared_simulator: StartSimulator) -> SimulatorHandle:
    # One finished day, every recording ready in time: the day becomes final, so publishing it
    # includes the open-marker delete.
    day = datetime.now(UTC).date() - timedelta(days=5)
    sim = start_shared_simulator(calls=12, seed=3, days=1, start_date=day.isoformat(), stuck_recording_rate=0)
    assert not [t for t in sim.truth(messages=False) if t["underway"]], "pick a seed without underway calls"
    return sim


def _settings(sim: SimulatorHandle, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "api_key": Secret(sim.api_key),
        "api_base_url": sim.api_base_url,
        "max_rps": 2000,
        "retry_initial_s": 0.02,
        "retry_max_s": 0.2,
        "recording_wait_s": 4,
        "recording_poll_initial_s": 0.1,
        "recording_poll_max_s": 0.5,
        "refresh_days": 0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(params=["local", "s3"])
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """(storage URI, S3 endpoint or None)."""
    if request.param == "local":
        return str(tmp_path / "archive"), None
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/fenced", request.getfixturevalue("s3_endpoint")


# Frozen right after: the messages file (before the calls file), the calls file (before the
# manifest), the manifest (before the open-marker delete).
@pytest.mark.parametrize("after", ["messages/", "calls/", "_state/partitions/"])
def test_a_writer_paused_past_its_lease_publishes_nothing_more(
    account: SimulatorHandle, destination: tuple[str, str | None], after: str
) -> None:
    dest, endpoint = destination
    day = account.truth(messages=False)[0]["call_date"]
    command = backfill(datetime.fromisoformat(day).date(), datetime.fromisoformat(day).date())
    paused = Freezing(open_storage(dest), after)

    async def both() -> tuple[Any, Any]:
        # Seconds-long leases for the paused run, so that the test waits seconds for them to expire.
        first = asyncio.create_task(archive(_settings(account, lease_ttl_s=2), paused, command))
        assert await asyncio.to_thread(paused.frozen.wait, 30), f"the first run never wrote {after}"
        try:
            second = await archive(_settings(account, lock_wait_s=20), open_storage(dest), command)
        finally:
            paused.thaw()
        return await first, second

    first, second = asyncio.run(both())

    assert exit_code(second) == EXIT_OK, second.problems
    assert second.partitions_written == 1
    assert first.partitions_written == 0
    assert [p.kind for p in first.problems] == [ProblemKind.LEASE_LOST]
    assert "abandoned" in first.problems[0].reason
    # Once thawed, the first run wrote its run record and nothing of the day.
    assert [w for w in paused.written_after_thaw if not w.split(" ", 1)[1].startswith(_RUN_OWN)] == []
    root = dest if endpoint is None else dest.removeprefix("s3://")
    archived = read_archive(root, None if endpoint is None else s3_filesystem(endpoint))
    assert_matches_truth(archived, Expected(account.truth()))
    marker = f"_state/open/call_date={day}"
    assert open_storage(dest).head(marker) is None, "the day is final: its open marker is gone"
