"""Leases: at most one run writes a partition at a time, coordinated through the destination itself.

A lease is a small JSON object at `_state/leases/<name>.json`. It is created with a conditional
"create if absent" write, and renewed, taken over or released only with "replace/delete if the ETag is
still the one I saw". The storage (S3, or one machine's flock for a local directory) decides every
race, so of two runs that try at once exactly one gets the lease. A lease expires `ttl_s` after its
last renewal, so a killed run blocks a partition for at most that long.

The pipeline's use: `acquire_within` (which waits a while for a held lease) -> work inside
`renewing(lease)` -> `lease.confirm()` right before each write that publishes (fencing: a
conditional renewal proves nobody took the lease over, and gives the write a whole TTL) -> `release`.
Clocks are wall clocks on different machines: `still_held` turns False `margin_s` before expiry,
which is the allowance for skew between hosts.

A run may name a worker identity (`worker`, the `--worker-id` setting): the operator promises that
at most one run with that identity is alive at a time (a cron line under `flock`, a Kubernetes Job
with one pod). A lease held by the same worker is then a dead run's, and is taken over at once
instead of after its TTL, unless it was written on this host by a process that is still running.

The object holds no secret: the run id, worker, host name and process id say who holds the lease.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from etl.errors import LeaseLost, PreconditionFailed, StorageError
from etl.storage.base import Storage

log = logging.getLogger(__name__)

LEASE_PREFIX = "_state/leases/"
_JSON = "application/json"
# Create/read/take-over rounds before `acquire` gives up on a key that keeps changing under it.
_ACQUIRE_ROUNDS = 3


def lease_key(name: str) -> str:
    return f"{LEASE_PREFIX}{name}.json"


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("lease clocks must return timezone-aware datetimes")
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


_FIELDS = ("name", "owner", "host", "pid", "token", "acquired_at", "expires_at")
# Renewals run on threads of their own: on the default executor they would queue behind recording
# uploads and Parquet writes, and a lease of a minute must be renewed within its margin. Eight: one
# per day a run keeps open, so one renewal stuck on a slow PUT delays no other.
_RENEWALS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lease-renewal")


def _parse_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"timestamp is not a string: {value!r}")
    moment = datetime.fromisoformat(value)  # ValueError names the bad text
    if moment.tzinfo is None:
        raise ValueError(f"timestamp has no time zone: {value!r}")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class LeaseInfo:
    """What a lease object says: who holds `name`, and until when."""

    name: str
    owner: str
    host: str
    pid: int
    # Unique per acquisition: tells our own earlier write apart from anyone else's (see `_ours`).
    token: str
    acquired_at: datetime
    expires_at: datetime
    # The run's `--worker-id`, if it gave one (leases written before it existed have none).
    worker: str | None = None

    def is_expired(self, now: datetime) -> bool:
        return _utc(now) >= self.expires_at

    def to_json(self) -> bytes:
        document = {
            "name": self.name,
            "owner": self.owner,
            "host": self.host,
            "pid": self.pid,
            "token": self.token,
            "acquired_at": _iso(self.acquired_at),
            "expires_at": _iso(self.expires_at),
            "worker": self.worker,
        }
        return (json.dumps(document, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> LeaseInfo:
        """Parse a lease object; ValueError says what is wrong with it."""
        try:
            document: Any = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        missing = [field for field in _FIELDS if field not in document]
        if missing:
            raise ValueError(f"missing fields: {', '.join(missing)}")
        name, owner, host, token, pid = (document[k] for k in ("name", "owner", "host", "token", "pid"))
        if not all(isinstance(v, str) for v in (name, owner, host, token)) or type(pid) is not int:
            raise ValueError("name, owner, host and token must be strings and pid an integer")
        worker = document.get("worker")
        if worker is not None and not isinstance(worker, str):
            raise ValueError("worker must be a string or null")
        return cls(
            name=name,
            owner=owner,
            host=host,
            pid=pid,
            token=token,
            acquired_at=_parse_time(document["acquired_at"]),
            expires_at=_parse_time(document["expires_at"]),
            worker=worker,
        )


class Lease:
    """A lease this process holds. Thread-safe: renewals run in a worker thread.

    `renew` and `release` are serialised by a lock held across their storage call, so a release
    never races a renewal into resurrecting the lease. `still_held` reads without that lock: the
    event loop calls it and must not wait for a PUT in flight.
    """

    def __init__(self, leases: Leases, info: LeaseInfo, etag: str) -> None:
        self._leases = leases
        self._info = info
        self._etag = etag
        self._lost = False
        self._released = False
        self._writing = threading.Lock()

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def key(self) -> str:
        return lease_key(self._info.name)

    @property
    def owner(self) -> str:
        return self._info.owner

    @property
    def etag(self) -> str:
        return self._etag

    @property
    def expires_at(self) -> datetime:
        return self._info.expires_at

    @property
    def ttl_s(self) -> float:
        return self._leases.ttl.total_seconds()

    @property
    def lost(self) -> bool:
        return self._lost

    def still_held(self) -> bool:
        """Not lost, not released, and more than the safety margin away from expiry by our clock."""
        if self._lost or self._released:
            return False
        return self._leases.now() + self._leases.margin < self._info.expires_at

    def renew(self) -> None:
        """Extend the expiry to now + ttl; LeaseLost if another run took the lease or it was released."""
        with self._writing:
            if self._lost or self._released:
                raise LeaseLost(f"lease {self.key} is no longer ours; not renewing")
            renewed = replace(self._info, expires_at=self._leases.now() + self._leases.ttl)
            try:
                self._etag = self._leases._swap(renewed, self._etag)
            except PreconditionFailed as exc:
                self._lost = True
                log.warning("lease lost", extra={"lease": self.key, "owner": self.owner})
                raise LeaseLost(f"lease {self.key} was taken over or removed") from exc
            self._info = renewed

    def confirm(self) -> None:
        """The fence before a write that publishes: renew now, LeaseLost if the lease is not ours.

        A renewal is a conditional write on the lease object, so its success proves that no other
        run took the lease over since our last one, and leaves a whole TTL for the write it guards.
        A storage error is raised as such: whether we still hold the lease is then unknown.
        """
        self.renew()
        if not self.still_held():
            # Renewed, yet within the margin by our clock: the clock jumped; do not trust it.
            raise LeaseLost(f"lease {self.key} expires too soon after renewal; not publishing")

    def release(self) -> None:
        """Delete the lease if it is still ours; calling it again, or after losing it, does nothing."""
        with self._writing:
            if self._released:
                return
            self._released = True
            if self._lost:
                return
            try:
                self._leases.storage.delete_if(self.key, self._etag)
            except PreconditionFailed:
                # Someone else holds it now (ours expired and was taken over): theirs to release.
                log.warning("lease already taken over at release", extra={"lease": self.key})


class Leases:
    """Acquires and inspects leases stored under `_state/leases/` in `storage`.

    `ttl_s` comes from the settings (`lease_ttl_s`); `margin_s` defaults to a tenth of it. `host`
    and `pid` default to this process's; `alive` says whether a process of this host still runs.
    `worker` is the run's worker identity (see the module docstring), None for none.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        owner: str,
        ttl_s: float,
        margin_s: float | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        host: str | None = None,
        pid: int | None = None,
        worker: str | None = None,
        alive: Callable[[int], bool] | None = None,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        margin = ttl_s / 10 if margin_s is None else margin_s
        if not 0 <= margin < ttl_s:
            raise ValueError("margin_s must be at least 0 and less than ttl_s")
        self.storage = storage
        self.owner = owner
        self.ttl = timedelta(seconds=ttl_s)
        self.margin = timedelta(seconds=margin)
        self._clock = clock
        self._host = socket.gethostname() if host is None else host
        self._pid = os.getpid() if pid is None else pid
        self.worker = worker
        self._alive = _process_alive if alive is None else alive

    def now(self) -> datetime:
        return _utc(self._clock())

    def acquire(self, name: str) -> Lease | None:
        """The lease on `name`, or None while another run holds an unexpired lease on it."""
        key = lease_key(name)
        now = self.now()
        info = LeaseInfo(
            name=name,
            owner=self.owner,
            host=self._host,
            pid=self._pid,
            token=uuid.uuid4().hex,
            acquired_at=now,
            expires_at=now + self.ttl,
            worker=self.worker,
        )
        data = info.to_json()
        for _ in range(_ACQUIRE_ROUNDS):
            try:
                etag = self.storage.put_bytes_if(key, data, if_none_match=True, content_type=_JSON)
                return self._granted(info, etag, how="created")
            except PreconditionFailed:
                pass
            current = self.storage.get_with_etag(key)
            if current is None:
                continue  # released between our create and our read: try the create again
            existing, etag = current
            if _ours(existing, info):
                # Our create succeeded but its reply was lost and the retry saw our own object.
                return self._granted(info, etag, how="created")
            held = self._unexpired(key, existing, now)
            if held is not None and not self._left_by_our_worker(held):
                log.info("lease held by another run", extra={"lease": key, "holder": held.owner})
                return None
            try:
                # If-Match: of several runs taking over the same expired lease, exactly one succeeds.
                etag = self._swap(info, etag)
                how = "taken over" if held is None else "taken over from this worker's dead run"
                return self._granted(info, etag, how=how)
            except PreconditionFailed:
                continue  # it changed under us: re-read and decide again
        log.info("lease contended; giving up for now", extra={"lease": key})
        return None

    def holder(self, name: str) -> LeaseInfo | None:
        """What the lease object on `name` says, possibly expired; None if absent or unreadable."""
        current = self.storage.get_with_etag(lease_key(name))
        if current is None:
            return None
        try:
            return LeaseInfo.from_json(current[0])
        except ValueError:
            return None

    def _swap(self, info: LeaseInfo, etag: str) -> str:
        """Replace the lease object if it still has `etag`; the new ETag, or PreconditionFailed."""
        key = lease_key(info.name)
        data = info.to_json()
        try:
            return self.storage.put_bytes_if(key, data, if_match=etag, content_type=_JSON)
        except PreconditionFailed:
            current = self.storage.get_with_etag(key)
            if current is None or not _ours(current[0], info):
                raise
            # A PUT retried after a lost reply fails its own If-Match. The token shows the object is
            # still from this acquisition (no other run writes it), so go on from what is there.
            if current[0] == data:
                return current[1]
            return self.storage.put_bytes_if(key, data, if_match=current[1], content_type=_JSON)

    def _left_by_our_worker(self, held: LeaseInfo) -> bool:
        """An unexpired lease that our worker identity says belongs to a run that is gone."""
        if self.worker is None or held.worker != self.worker:
            return False
        # The one case we can check: a process of this host. Our own pid is an earlier incarnation
        # (a restarted container reuses pids); any other live pid may be an overlapping run.
        return not (held.host == self._host and held.pid != self._pid and self._alive(held.pid))

    def _unexpired(self, key: str, data: bytes, now: datetime) -> LeaseInfo | None:
        try:
            info = LeaseInfo.from_json(data)
        except ValueError as exc:
            # A half-written or hand-edited lease must not block the partition forever.
            log.warning("unreadable lease treated as expired", extra={"lease": key, "reason": str(exc)})
            return None
        return None if info.is_expired(now) else info

    def _granted(self, info: LeaseInfo, etag: str, *, how: str) -> Lease:
        log.info(
            "lease acquired",
            extra={"lease": lease_key(info.name), "how": how, "expires_at": _iso(info.expires_at)},
        )
        return Lease(self, info, etag)


@dataclass(frozen=True)
class Locked:
    """`acquire_within` gave up: another run held the lease for the whole wait."""

    # What the lease object said last; None when it was gone or unreadable by then.
    holder: LeaseInfo | None

    def describe(self) -> str:
        holder = self.holder
        return f"{holder.owner} until {holder.expires_at.isoformat()}" if holder else "another run"


async def acquire_within(
    leases: Leases,
    name: str,
    wait_s: float,
    *,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Lease | Locked:
    """The lease on `name`, waiting up to `wait_s` seconds while another run holds it (0: one try)."""
    deadline = monotonic() + wait_s
    while True:
        lease = await asyncio.to_thread(leases.acquire, name)
        if lease is not None:
            return lease
        holder = await asyncio.to_thread(leases.holder, name)
        remaining = deadline - monotonic()
        if remaining <= 0:
            return Locked(holder)
        # Wake up when the holder's lease would expire (a killed run stops renewing it).
        until_expiry = (holder.expires_at - leases.now()).total_seconds() if holder else 0.0
        await sleep(min(max(until_expiry + 0.05, 0.1), 5.0, remaining))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    except OSError:
        return True  # cannot tell: assume alive, i.e. wait for the lease to expire
    return True


def _ours(data: bytes, info: LeaseInfo) -> bool:
    try:
        return LeaseInfo.from_json(data).token == info.token
    except ValueError:
        return False


async def keep_renewed(lease: Lease, every_s: float | None = None) -> None:
    """Renew `lease` every `every_s` seconds (default: a quarter of the TTL) until cancelled or lost.

    A storage error is logged and retried at the next tick (three chances before the lease
    expires): the lease stays valid until it expires, `still_held` turns False by then if no
    renewal got through, and the fence before each publishing write renews it once more.
    """
    interval = lease.ttl_s / 4 if every_s is None else every_s
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        try:
            await loop.run_in_executor(_RENEWALS, lease.renew)
        except LeaseLost:
            return
        except StorageError as exc:
            log.warning("lease renewal failed; will retry", extra={"lease": lease.key, "error": str(exc)})


@asynccontextmanager
async def renewing(lease: Lease, every_s: float | None = None) -> AsyncIterator[Lease]:
    """Keep `lease` renewed in the background for the duration of the block."""
    task = asyncio.create_task(keep_renewed(lease, every_s), name=f"renew {lease.key}")
    try:
        yield lease
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
