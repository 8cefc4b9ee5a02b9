"""Leases: the contract every storage backend must meet (`LeaseContract`, `LeaseRaces`).

Subclassed with a `storage` fixture by `tests/unit/test_lease.py` (a local directory) and
`tests/integration/test_lease_s3.py` (S3); only the storage differs. Expiry is driven by an injected
clock, never by sleeping.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from etl.errors import LeaseLost, PreconditionFailed
from etl.storage import Storage
from etl.storage.lease import Lease, Leases, lease_key
from support.concurrency import race

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
            "worker": None,
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

    # -- fencing: `confirm` before each publishing write --------------------------------------------

    def test_confirm_renews_while_ours(self, storage: Storage, clock: FakeClock) -> None:
        lease = self.leases(storage, clock, "run-a").acquire(NAME)
        assert lease is not None
        etag = lease.etag
        clock.advance(TTL_S / 2)

        lease.confirm()

        assert lease.etag != etag
        assert lease.expires_at == clock() + timedelta(seconds=TTL_S)
        stored = storage.get_with_etag(KEY)
        assert stored is not None
        assert stored[1] == lease.etag

    def test_confirm_fails_once_taken_over_and_writes_nothing(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        # The writer paused past its lease (a GC pause, a frozen VM, a partition) and another run took over.
        paused = self.leases(storage, clock, "paused").acquire(NAME)
        assert paused is not None
        clock.advance(TTL_S + 1)
        taker = self.leases(storage, clock, "taker").acquire(NAME)
        assert taker is not None
        taken = storage.get_with_etag(KEY)

        with pytest.raises(LeaseLost):
            paused.confirm()

        assert paused.lost
        assert storage.get_with_etag(KEY) == taken  # the loser's fence left the taker's lease alone
        taker.confirm()
        paused.release()
        assert self.leases(storage, clock, "observer").acquire(NAME) is None  # still the taker's

    def test_confirm_after_expiry_without_a_taker_keeps_the_lease(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        # Expired by the clock but nobody took it: the conditional renewal proves nobody else wrote.
        lease = self.leases(storage, clock, "run-a").acquire(NAME)
        assert lease is not None
        clock.advance(TTL_S * 2)

        lease.confirm()

        assert lease.still_held()
        assert self.leases(storage, clock, "run-b").acquire(NAME) is None

    def test_confirm_after_release_fails(self, storage: Storage, clock: FakeClock) -> None:
        lease = self.leases(storage, clock, "run-a").acquire(NAME)
        assert lease is not None
        lease.release()

        with pytest.raises(LeaseLost):
            lease.confirm()
        assert storage.get_bytes(KEY) is None

    # -- worker identity: a run takes over its own worker's leases at once ----------------------------

    def test_same_worker_takes_over_at_once(self, storage: Storage, clock: FakeClock) -> None:
        killed = self.leases(storage, clock, "killed", worker="nightly").acquire(NAME)
        assert killed is not None
        clock.advance(1)

        retry = Leases(
            storage, owner="retry", ttl_s=TTL_S, clock=clock, host="host-2", pid=1, worker="nightly"
        )
        lease = retry.acquire(NAME)

        assert lease is not None
        holder = retry.holder(NAME)
        assert holder is not None
        assert (holder.owner, holder.worker) == ("retry", "nightly")
        # Had the first run been alive after all, its next publishing write is fenced off.
        with pytest.raises(LeaseLost):
            killed.confirm()

    def test_other_workers_wait_for_expiry(self, storage: Storage, clock: FakeClock) -> None:
        assert self.leases(storage, clock, "first", worker="nightly").acquire(NAME) is not None
        clock.advance(1)

        for worker in ("hourly", None):
            other = Leases(storage, owner="o", ttl_s=TTL_S, clock=clock, host="host-2", pid=1, worker=worker)
            assert other.acquire(NAME) is None
        # A lease written without a worker identity is never taken over early.
        assert self.leases(storage, clock, "second").acquire("calls/call_date=2026-03-03") is not None
        same = self.leases(storage, clock, "third", worker="nightly")
        assert same.acquire("calls/call_date=2026-03-03") is None

    def test_same_worker_on_this_host_waits_while_the_holder_runs(
        self, storage: Storage, clock: FakeClock
    ) -> None:
        assert self.leases(storage, clock, "first", worker="nightly").acquire(NAME) is not None

        def second(alive: bool, pid: int = 5000) -> Leases:
            return Leases(
                storage,
                owner="second",
                ttl_s=TTL_S,
                clock=clock,
                host="host-1",
                pid=pid,
                worker="nightly",
                alive=lambda _pid: alive,
            )

        assert second(alive=True).acquire(NAME) is None  # an overlapping live run: not a dead one's
        # The same pid on the same host is an earlier incarnation (a restarted container).
        assert second(alive=True, pid=4242).acquire(NAME) is not None
        clock.advance(1)
        assert second(alive=False, pid=6000).acquire(NAME) is not None  # that process is gone


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
