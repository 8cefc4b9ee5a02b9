"""Leases on a local directory: the backend contract (`tests/support/contracts/leases.py`) plus what
only a directory has, lease documents, and renewing in the background.

`tests/integration/test_lease_s3.py` runs the same contract against S3. Expiry is driven by an
injected clock, never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.contracts.leases import KEY, NAME, T0, TTL_S, FakeClock, LeaseRaces

from etl.config import setting_defaults
from etl.storage import LocalStorage, Storage
from etl.storage.lease import Lease, LeaseInfo, Leases, Locked, acquire_within, keep_renewed, renewing


class TestLocalLeases(LeaseRaces):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> LocalStorage:
        return LocalStorage(tmp_path / "archive")

    def test_lock_files_stay_out_of_listings(self, storage: LocalStorage, clock: FakeClock) -> None:
        lease = self.leases(storage, clock, "run-a").acquire(NAME)
        assert lease is not None
        lease.renew()
        lease.release()
        assert self.leases(storage, clock, "run-b").acquire(NAME) is not None

        assert list(storage.list_keys()) == [KEY]
        on_disk = sorted(p.name for p in (storage.root / "_state" / "leases" / "calls").iterdir())
        assert on_disk == [".lock-call_date=2026-03-02.json", "call_date=2026-03-02.json"]


# --- lease documents ------------------------------------------------------------------------------


def _info(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": NAME,
        "owner": "run-a",
        "host": "h",
        "pid": 1,
        "token": "t",
        "acquired_at": "2026-03-02T12:00:00Z",
        "expires_at": "2026-03-02T12:10:00+00:00",
    }
    document.update(changes)
    return document


def test_lease_info_round_trips() -> None:
    info = LeaseInfo.from_json(json.dumps(_info()).encode())
    assert info.expires_at == T0 + timedelta(minutes=10)
    assert LeaseInfo.from_json(info.to_json()) == info
    assert info.is_expired(T0 + timedelta(minutes=10))
    assert not info.is_expired(T0 + timedelta(minutes=9))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff", "not JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({"owner": "x"}).encode(), "missing fields"),
        (json.dumps(_info(pid="1")).encode(), "pid an integer"),
        (json.dumps(_info(expires_at="soon")).encode(), "soon"),
        (json.dumps(_info(expires_at="2026-03-02T12:10:00")).encode(), "no time zone"),
        (json.dumps(_info(expires_at=5)).encode(), "not a string"),
    ],
)
def test_bad_lease_documents_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        LeaseInfo.from_json(data)


def test_settings_are_validated(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with pytest.raises(ValueError, match="margin_s"):
        Leases(storage, owner="a", ttl_s=10, margin_s=10)
    with pytest.raises(ValueError, match="ttl_s"):
        Leases(storage, owner="a", ttl_s=0)
    naive = Leases(storage, owner="a", ttl_s=TTL_S, clock=lambda: datetime(2026, 3, 2))
    with pytest.raises(ValueError, match="timezone-aware"):
        naive.acquire(NAME)


# --- renewing in the background -------------------------------------------------------------------


async def _until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def test_renewing_keeps_extending_until_the_block_ends(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    clock = FakeClock()
    lease = Leases(storage, owner="run-a", ttl_s=TTL_S, clock=clock).acquire(NAME)
    assert lease is not None

    async def work() -> None:
        async with renewing(lease, every_s=0.01):
            clock.advance(100)
            await _until(lambda: lease.expires_at == clock() + timedelta(seconds=TTL_S))
            clock.advance(100)
            await _until(lambda: lease.expires_at == clock() + timedelta(seconds=TTL_S))
        renewed = lease.expires_at
        clock.advance(100)
        await asyncio.sleep(0.05)
        assert lease.expires_at == renewed

    asyncio.run(work())
    assert lease.still_held()


def test_keep_renewed_stops_when_the_lease_is_lost(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    clock = FakeClock()
    lease = Leases(storage, owner="run-a", ttl_s=TTL_S, clock=clock).acquire(NAME)
    assert lease is not None
    clock.advance(TTL_S)
    assert Leases(storage, owner="run-b", ttl_s=TTL_S, clock=clock).acquire(NAME) is not None

    asyncio.run(asyncio.wait_for(keep_renewed(lease, every_s=0.01), timeout=2))

    assert lease.lost
    assert not lease.still_held()


# --- waiting for a held lease ---------------------------------------------------------------------


class Waiting:
    """A monotonic clock and a sleep that moves it, and the lease clock, forward at once."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.monotonic_s = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.monotonic_s

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.monotonic_s += seconds
        self.clock.advance(seconds)

    def acquire(self, storage: Storage, wait_s: float) -> Lease | Locked:
        """run-b's acquire_within on NAME."""
        leases = Leases(storage, owner="run-b", ttl_s=TTL_S, clock=self.clock)
        return asyncio.run(acquire_within(leases, NAME, wait_s, monotonic=self.monotonic, sleep=self.sleep))


def test_acquire_within_no_wait_reports_who_holds_the_lease(tmp_path: Path) -> None:
    storage, clock = LocalStorage(tmp_path), FakeClock()
    assert Leases(storage, owner="run-a", ttl_s=TTL_S, clock=clock).acquire(NAME) is not None
    waiting = Waiting(clock)

    result = waiting.acquire(storage, 0.0)

    assert isinstance(result, Locked)
    assert result.describe() == "run-a until 2026-03-02T12:10:00+00:00"
    assert waiting.sleeps == []
    assert Locked(None).describe() == "another run"


def test_acquire_within_wakes_up_when_the_holders_lease_expires(tmp_path: Path) -> None:
    storage, clock = LocalStorage(tmp_path), FakeClock()
    assert Leases(storage, owner="run-a", ttl_s=TTL_S, clock=clock).acquire(NAME) is not None
    clock.advance(TTL_S - 2)  # run-a stopped renewing: its lease runs out in 2 s
    waiting = Waiting(clock)

    result = waiting.acquire(storage, 30.0)

    assert isinstance(result, Lease) and result.owner == "run-b"
    assert waiting.sleeps == [pytest.approx(2.05)]


def test_acquire_within_gives_up_after_the_wait(tmp_path: Path) -> None:
    storage, clock = LocalStorage(tmp_path), FakeClock()
    assert Leases(storage, owner="run-a", ttl_s=TTL_S, clock=clock).acquire(NAME) is not None
    waiting = Waiting(clock)

    result = waiting.acquire(storage, 12.0)

    assert isinstance(result, Locked) and result.holder is not None and result.holder.owner == "run-a"
    # Polls at most every 5 s, and never sleeps past the end of the wait.
    assert waiting.sleeps == [5.0, 5.0, 2.0]


# --- renewals on their own threads, every quarter of the TTL --------------------------------------


def test_renewals_are_not_queued_behind_a_busy_default_executor(tmp_path: Path) -> None:
    # Recording uploads and Parquet writes fill the default executor; a renewal queued behind them
    # would let a one-minute lease run out under load.
    storage, clock = LocalStorage(tmp_path), FakeClock()
    lease = Leases(storage, owner="run-a", ttl_s=TTL_S, clock=clock).acquire(NAME)
    assert lease is not None
    release = threading.Event()

    async def work() -> None:
        loop = asyncio.get_running_loop()
        busy = [loop.run_in_executor(None, release.wait) for _ in range(64)]
        try:
            async with renewing(lease, every_s=0.01):
                clock.advance(100)
                await _until(lambda: lease.expires_at == clock() + timedelta(seconds=TTL_S))
        finally:
            release.set()
            await asyncio.gather(*busy)

    asyncio.run(work())


def test_the_default_lease_is_a_minute() -> None:
    # A run started right after a killed one waits at most this long (README: `--lock-wait 75`).
    assert setting_defaults()["lease_ttl_s"] == 60.0
