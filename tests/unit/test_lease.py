"""Leases on a local directory, plus the contract every backend must meet (`LeaseContract`).

`tests/integration/test_lease_s3.py` runs the same contract against S3. Expiry is driven by an
injected clock, never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from concurrency import race

from etl.errors import LeaseLost, PreconditionFailed
from etl.storage import LocalStorage, Storage
from etl.storage.lease import (
    Lease,
    LeaseInfo,
    Leases,
    Locked,
    acquire_within,
    keep_renewed,
    lease_key,
    renewing,
)

NAME = "calls/call_date=2026-03-02"
KEY = lease_key(NAME)
TTL_S = 600.0
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Interleaving:
    """Delegates to a storage; runs `hook` once, just after the next `get_with_etag` has read.

    That is the moment between a taker's read of an expired lease and its conditional replace:
    whatever the hook does there is what a concurrent run would have done.
    """

    def __init__(self, inner: Storage, hook: Callable[[], object]) -> None:
        self._inner = inner
        self._hook: Callable[[], object] | None = hook

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get_with_etag(self, key: str) -> tuple[bytes, str] | None:
        result = self._inner.get_with_etag(key)
        hook, self._hook = self._hook, None
        if hook is not None:
            hook()
        return result


class LostReplies:
    """Delegates to a storage; the next conditional put is applied but reports PreconditionFailed.

    That is what a client sees when the first attempt's reply is lost and the retry finds the
    object it wrote itself.
    """

    def __init__(self, inner: Storage) -> None:
        self._inner = inner
        self.armed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def put_bytes_if(self, key: str, data: bytes, **kwargs: Any) -> str:
        etag = self._inner.put_bytes_if(key, data, **kwargs)
        if self.armed:
            self.armed = False
            raise PreconditionFailed("retried put lost to its own first attempt")
        return etag


class LeaseContract:
    """Lease behaviour every backend must show; subclasses provide a `storage` fixture."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    def leases(self, storage: Storage, clock: FakeClock, owner: str, **kwargs: Any) -> Leases:
        return Leases(storage, owner=owner, ttl_s=TTL_S, clock=clock, host="host-1", pid=4242, **kwargs)

    def test_first_acquire_creates_the_lease(self, storage: Storage, clock: FakeClock) -> None:
        lease = self.leases(storage, clock, "run-a").acquire(NAME)

        assert lease is not None
        assert (lease.key, lease.owner, lease.expires_at) == (KEY, "run-a", T0 + timedelta(seconds=TTL_S))
        assert lease.still_held()
        stored = storage.get_with_etag(KEY)
        assert stored is not None
        assert stored[1] == lease.etag
        document = json.loads(stored[0])
        # Small and readable; who, where and until when, nothing else.
        assert document == {
            "name": NAME,
            "owner": "run-a",
            "host": "host-1",
            "pid": 4242,
            "token": document["token"],
            "acquired_at": "2026-03-02T12:00:00.000000Z",
            "expires_at": "2026-03-02T12:10:00.000000Z",
        }
        assert list(storage.list_keys()) == [KEY]

    def test_held_lease_is_refused_to_another_owner(self, storage: Storage, clock: FakeClock) -> None:
        first = self.leases(storage, clock, "run-a").acquire(NAME)
        clock.advance(TTL_S - 1)

        assert self.leases(storage, clock, "run-b").acquire(NAME) is None
        holder = self.leases(storage, clock, "run-b").holder(NAME)
        assert first is not None
        assert holder is not None
        assert (holder.owner, holder.host, holder.pid) == ("run-a", "host-1", 4242)
        assert holder.expires_at == first.expires_at
        assert not holder.is_expired(clock())

    def test_other_names_are_independent(self, storage: Storage, clock: FakeClock) -> None:
        assert self.leases(storage, clock, "run-a").acquire(NAME) is not None
        assert self.leases(storage, clock, "run-b").acquire("calls/call_date=2026-03-03") is not None

    def test_expired_lease_is_taken_over(self, storage: Storage, clock: FakeClock) -> None:
        old = self.leases(storage, clock, "run-a").acquire(NAME)
        clock.advance(TTL_S)

        new = self.leases(storage, clock, "run-b").acquire(NAME)

        assert old is not None
        assert new is not None
        assert new.etag != old.etag
        holder = self.leases(storage, clock, "run-c").holder(NAME)
        assert holder is not None
        assert holder.owner == "run-b"
        assert not old.still_held()
        with pytest.raises(LeaseLost):
            old.renew()
        assert old.lost
        assert new.still_held()

    def test_renew_extends_expiry_and_changes_etag(self, storage: Storage, clock: FakeClock) -> None:
        lease = self.leases(storage, clock, "run-a").acquire(NAME)
        assert lease is not None
        first_etag = lease.etag
        clock.advance(TTL_S * 0.9)
        assert not lease.still_held()  # inside the safety margin

        lease.renew()

        assert lease.expires_at == clock() + timedelta(seconds=TTL_S)
        assert lease.etag != first_etag
        assert lease.still_held()
        holder = self.leases(storage, clock, "run-b").holder(NAME)
        assert holder is not None
        assert holder.expires_at == lease.expires_at
        # Renewed: not expired at the original expiry.
        clock.advance(TTL_S * 0.2)
        assert self.leases(storage, clock, "run-b").acquire(NAME) is None

    def test_release_deletes_only_our_own(self, storage: Storage, clock: FakeClock) -> None:
        old = self.leases(storage, clock, "run-a").acquire(NAME)
        clock.advance(TTL_S + 1)
        new = self.leases(storage, clock, "run-b").acquire(NAME)
        assert old is not None
        assert new is not None

        old.release()
        holder = self.leases(storage, clock, "run-c").holder(NAME)
        assert holder is not None
        assert holder.owner == "run-b"

        new.release()
        new.release()
        assert storage.get_bytes(KEY) is None
        assert not new.still_held()
        with pytest.raises(LeaseLost):
            new.renew()
        # Released, so the next run gets it at once.
        assert self.leases(storage, clock, "run-c").acquire(NAME) is not None

    def test_unreadable_lease_counts_as_expired(self, storage: Storage, clock: FakeClock) -> None:
        storage.put_bytes(KEY, b'{"owner": "run-a", "expires_at": ')
        leases = self.leases(storage, clock, "run-b")
        assert leases.holder(NAME) is None

        lease = leases.acquire(NAME)

        assert lease is not None
        holder = leases.holder(NAME)
        assert holder is not None
        assert holder.owner == "run-b"

    def test_takeover_loses_to_a_faster_taker(self, storage: Storage, clock: FakeClock) -> None:
        assert self.leases(storage, clock, "run-a").acquire(NAME) is not None
        clock.advance(TTL_S)
        faster: list[Lease | None] = []
        # The slow taker has read the expired lease when the fast one takes it over.
        slow = self.leases(
            Interleaving(storage, lambda: faster.append(self.leases(storage, clock, "fast").acquire(NAME))),
            clock,
            "slow",
        )

        assert slow.acquire(NAME) is None
        assert faster[0] is not None
        holder = slow.holder(NAME)
        assert holder is not None
        assert holder.owner == "fast"

    def test_lost_reply_on_create_still_grants(self, storage: Storage, clock: FakeClock) -> None:
        lease = self.leases(LostReplies(storage), clock, "run-a").acquire(NAME)

        assert lease is not None
        stored = storage.get_with_etag(KEY)
        assert stored is not None
        assert stored[1] == lease.etag

    def test_lost_reply_on_renew_keeps_the_lease(self, storage: Storage, clock: FakeClock) -> None:
        flaky = LostReplies(storage)
        flaky.armed = False
        lease = self.leases(flaky, clock, "run-a").acquire(NAME)
        assert lease is not None
        clock.advance(60)
        flaky.armed = True

        lease.renew()

        stored = storage.get_with_etag(KEY)
        assert stored is not None
        assert stored[1] == lease.etag
        assert not lease.lost
        assert lease.expires_at == clock() + timedelta(seconds=TTL_S)


class LeaseRaces(LeaseContract):
    """Truly simultaneous takers: for backends that decide conditional writes atomically (moto does not)."""

    def test_racing_takers_exactly_one_wins(self, storage: Storage, clock: FakeClock) -> None:
        for round_ in range(5):
            name = f"{NAME}-{round_}"
            assert self.leases(storage, clock, "crashed").acquire(name) is not None
            clock.advance(TTL_S)

            won = race(4, lambda i, name=name: self.leases(storage, clock, f"run-{i}").acquire(name))

            holder = self.leases(storage, clock, "observer").holder(name)
            assert len(won) == 1
            assert holder is not None
            assert holder.owner == f"run-{won[0]}"


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
