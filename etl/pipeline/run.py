"""Wires the stages: plan days -> list calls -> transcripts and recordings -> rows -> partition -> state.

One `Run` is built per run; `backfill` and `sync` say which days it visits, `archive` opens the API
client and runs one of them.

Concurrency lives here, in three kinds of slots the run creates. A few days are open at once (leased,
listed, their calls in flight, not yet published), and they list one at a time, in date order: the
next day's listing starts the moment the previous one's ends, while that day's last calls finish,
so the rate budget never drains between days. Each listed call becomes a task once one of
`concurrency` call slots is free, so listing never runs ahead of processing (memory stays flat
however many calls a day has); the call's slot is lent to its recording fetch, which gives it up
while it waits for a recording that is not ready. Downloads from the storage host have their own
bound (download slots). All API requests share the client's rate limiter. A failure inside one call
is recorded against that call and the run goes on; only a rejected API key or an unusable
destination stops everything.

Each day is one partition, written by one run at a time: the run holds the partition's lease in the
destination while it works, marks the partition open before writing anything, and writes the
manifest last (see `state`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from etl import records
from etl.api.budget import recording_buffers
from etl.api.client import ApiClient, ClientOptions
from etl.api.listing import calls_of_day, deleted_calls_of_day
from etl.api.recordings import RecordingFetcher, RecordingPolicy
from etl.api.retry_budget import RetryBudget
from etl.api.transfer_guard import TransferLimits
from etl.config import Settings
from etl.errors import ArchiverError, AuthError, ConfigError, LeaseLost, StorageError
from etl.model import ProblemKind
from etl.pipeline.calls import CallArchiver
from etl.pipeline.deadline import Deadline
from etl.pipeline.heartbeat import recording_heartbeat
from etl.pipeline.partition import Partition
from etl.pipeline.preflight import check_destination, check_usable, check_window
from etl.pipeline.readahead import ReadAhead
from etl.pipeline.turns import Turns
from etl.reporting.ledger import Ledger, PartitionBook
from etl.reporting.progress import Progress
from etl.reporting.summary import RunSummary, run_records
from etl.shard import Shard, worker_identity
from etl.state import (
    MANIFEST_PREFIX,
    OPEN_PREFIX,
    PartitionManifest,
    day_from_key,
    lease_name,
    manifest_key,
    open_marker_key,
    plan_sync,
)
from etl.storage.base import Storage
from etl.storage.lease import Lease, Leases, Locked, acquire_within, renewing

log = logging.getLogger(__name__)

# Days leased and not yet published: one listing, some finishing their last calls (a recording not
# ready holds its day open for up to `recording_wait_s`), the rest prepared (leased, archived files
# read, first page fetched) so that the listing passes from day to day without a storage request or
# a listing round trip. Eight rather than three or four for accounts with few calls a day, where a
# day's turn is short and days are open mostly while they publish. Each open day holds a page of
# calls, its partition's unwritten rows and its archived index: this bounds memory as the call slots
# do for calls.
_DAYS_OPEN = 8


# -- the commands -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """What a run does: its name in the run record, and how it plans the days it visits (from the
    destination's state and today's date)."""

    name: str
    plan: Callable[[Storage, date], list[date]]
    # The days the user named, checked before any work (etl.pipeline.preflight.check_window).
    since: date | None = None
    until: date | None = None
    # A recording an earlier run left pending is asked for once, not waited for again (a sync must
    # cost what is new); a backfill, which rewrites its window on purpose, waits for it again.
    wait_again_for_pending: bool = False
    # A sharded backfill's share (etl.shard): `plan` gives only this shard's days.
    shard: Shard | None = None
    # Repair what `verify` finds (a backfill): read every part file of a partition, not only
    # data.parquet, and check each re-used recording's SHA-256 (etl.pipeline.partition).
    repair: bool = False


def days_between(since: date, until: date) -> list[date]:
    return [since + timedelta(days=offset) for offset in range((until - since).days + 1)]


def backfill(since: date, until: date, shard: Shard | None = None) -> Command:
    """Every day from `since` through `until`; with a shard, only the days that shard takes."""
    days = days_between(since, until) if shard is None else shard.days(days_between(since, until))
    return Command(
        "backfill",
        lambda _storage, _today: days,
        since,
        until,
        wait_again_for_pending=True,
        shard=shard,
        repair=True,
    )


def sync(since: date | None) -> Command:
    """Every open partition, and every day from the newest archived one through today."""
    return Command("sync", lambda storage, today: _plan_sync(storage, today, since), since)


def _plan_sync(storage: Storage, today: date, since: date | None) -> list[date]:
    archived = {d for d in map(day_from_key, storage.list_keys(MANIFEST_PREFIX)) if d}
    open_days = {d for d in map(day_from_key, storage.list_keys(OPEN_PREFIX)) if d}
    return plan_sync(archived_days=archived, open_days=open_days, today=today, since=since)


async def archive(
    settings: Settings,
    storage: Storage,
    command: Command,
    *,
    progress: Progress | None = None,
) -> RunSummary:
    """Check the settings (preflight), open the API client for `settings` and a spool directory, run
    `command`, close both."""
    check_before_run(settings, command)
    budget = RetryBudget(settings.retry_budget)
    async with ApiClient(ClientOptions.from_settings(settings), retry_budget=budget) as client:
        with tempfile.TemporaryDirectory(prefix="ultravox-archiver-", dir=settings.spool_dir) as spool:
            run = Run(
                settings,
                client=client,
                storage=storage,
                spool_dir=Path(spool),
                progress=progress,
                preflight=lambda: check_usable(settings, storage),
            )
            return await run.execute(command)


def check_before_run(settings: Settings, command: Command) -> None:
    """The checks that need no request: the destination and the dates the user gave."""
    check_destination(settings.dest)
    check_window(command.since, command.until, datetime.now(UTC).date())


# -- one run ------------------------------------------------------------------------------------------


class Run:
    """One run: its summary and ledger, its slots, leases and call archiver; `execute` once."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: ApiClient,
        storage: Storage,
        spool_dir: Path,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        progress: Progress | None = None,
        preflight: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._settings = settings
        # Checks the API before the first day (etl.pipeline.preflight.check_api); a ConfigError stops
        # the run with its run record written.
        self._preflight = preflight
        self._client = client
        self._storage = storage
        self._spool_dir = spool_dir
        self._now = now
        started = now()
        run_id = f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        self.summary = RunSummary(
            run_id=run_id, command="", since="", until="", started_at=started.isoformat()
        )
        self.summary.max_rps = settings.max_rps
        self._ledger = Ledger(self.summary, progress)
        self._leases = Leases(
            storage,
            owner=f"{run_id}@{socket.gethostname()}",
            ttl_s=settings.lease_ttl_s,
            clock=now,
            worker=worker_identity(settings.worker_id, settings.shard),
        )
        self._days_open = asyncio.Semaphore(_DAYS_OPEN)
        self._wait_again_for_pending = False
        self._repair = False
        self._listing_turns = Turns(0)
        self._call_slots = asyncio.Semaphore(settings.concurrency)
        self._deadline = Deadline(settings.max_run_time_s, clock=clock)
        self._fetcher = fetcher = RecordingFetcher(
            client,
            storage,
            _recording_policy(settings),
            buffers=recording_buffers(settings.audio_memory_mib * 1024 * 1024),
            download_slots=asyncio.Semaphore(settings.download_concurrency),
            limits=TransferLimits.of(
                max_recording_mib=settings.max_recording_mib,
                min_transfer_kib_s=settings.min_transfer_kib_s,
                window_s=settings.transfer_window_s,
            ),
            clock=clock,
            stop_polling=self._deadline.passed,
        )
        self._calls = CallArchiver(
            client=client,
            storage=storage,
            fetcher=fetcher,
            ledger=self._ledger,
            run_time=started,
            message_page_size=settings.message_page_size,
            recording_give_up=timedelta(days=settings.recording_give_up_days),
            stop_new_work=self._deadline.passed,
            spool_dir=spool_dir,
            underway_give_up=timedelta(hours=settings.underway_give_up_hours),
        )

    async def execute(self, command: Command) -> RunSummary:
        """Run `command`. The run record is written on every way out: a fatal error (recorded with
        its kind), a bug that escaped every per-call and per-day net, even an interruption."""
        try:
            return await self._execute(command)
        except ConfigError as exc:
            # From planning (a first sync without --since) or the API check before the first day: a
            # usage or configuration error, which the CLI reports.
            self._stopped(str(exc), "config")
            raise
        except Exception as exc:
            # A bug that got past the per-call and per-day nets: the run stops, but says so in its
            # record (exit 3), and the days it did not publish stay open for the next run.
            leaf = _first_leaf(exc) if isinstance(exc, BaseExceptionGroup) else exc
            log.error("run stopped by an internal error", exc_info=leaf)
            message = self._settings.api_key.redact(str(leaf))[:500]
            self._stopped(f"internal error {type(leaf).__name__}: {message}", "internal")
            return self.summary
        except BaseException as exc:
            # Cancelled or interrupted (KeyboardInterrupt, SystemExit): the record still goes out.
            self._stopped(f"interrupted ({type(exc).__name__})", "interrupted")
            raise

    def _stopped(self, error: str, kind: str) -> None:
        # Written synchronously: after an interruption the event loop may be going away.
        self.summary.fatal_error, self.summary.fatal_error_kind = error, kind
        self._finish_summary()
        self._write_run_records()

    async def _execute(self, command: Command) -> RunSummary:
        summary = self.summary
        summary.command = command.name
        summary.shard = None if command.shard is None else str(command.shard)
        self._wait_again_for_pending = command.wait_again_for_pending
        self._repair = command.repair
        try:
            # Planning reads the state; it also fails fast on a missing bucket or permissions.
            days = await asyncio.to_thread(command.plan, self._storage, self._now().date())
            if days:
                summary.since, summary.until = days[0].isoformat(), days[-1].isoformat()
            if self._preflight is not None:
                await self._preflight()
            log.info(
                "run started", extra={"run_id": summary.run_id, "command": command.name, "days": len(days)}
            )
            self._listing_turns = Turns(len(days))
            self._ledger.planned(len(days))
            stop_retrying = asyncio.create_task(self._stop_retrying_at_deadline())
            heartbeat = asyncio.create_task(
                recording_heartbeat(self._fetcher.waiting, self._settings.recording_heartbeat_s)
            )
            try:
                async with asyncio.TaskGroup() as group:
                    for index, day in enumerate(days):
                        group.create_task(self._archive_day(index, day))
            finally:
                stop_retrying.cancel()
                heartbeat.cancel()
        except* (AuthError, StorageError) as group:
            # A rejected key or an unusable destination: nothing else in the run could succeed.
            leaf = _first_leaf(group)
            summary.fatal_error = str(leaf)
            summary.fatal_error_kind = "auth" if isinstance(leaf, AuthError) else "storage"
            log.error("run stopped", extra={"error": summary.fatal_error})
        self._finish_summary()
        await asyncio.to_thread(self._write_run_records)
        return summary

    def _finish_summary(self) -> None:
        summary = self.summary
        summary.api_requests = self._client.api_requests
        summary.rate_limited = self._client.throttled
        summary.retries = self._client.retries
        summary.retries_refused = self._client.retry_budget.refused
        summary.finished_at = self._now().isoformat()

    async def _stop_retrying_at_deadline(self) -> None:
        remaining = self._deadline.remaining()
        if math.isinf(remaining):
            return
        await asyncio.sleep(remaining)
        self._ledger.deadline_reached()
        self._client.retry_budget.close()

    def _write_run_records(self) -> None:
        try:
            for key, body, content_type in run_records(self.summary):
                self._storage.put_bytes(key, body, content_type=content_type)
        except Exception as exc:  # the run's outcome stands (exit code, stdout) even without its record
            log.error("could not write the run record", extra={"error": str(exc)})

    # -- one partition --------------------------------------------------------------------------------

    async def _archive_day(self, index: int, day: date) -> None:
        """Archive `day`, the `index`th of the run's days (its turn to list)."""
        try:
            async with self._days_open:
                if self._deadline.passed():
                    self._ledger.unfinished(day, None)
                    return
                # A locked day is waited for only until the deadline.
                lock_wait = min(self._settings.lock_wait_s, self._deadline.remaining())
                lease = await acquire_within(self._leases, lease_name(day), lock_wait)
                if isinstance(lease, Locked):
                    self._ledger.partition_locked(day, lease.describe())
                    return
                try:
                    async with renewing(lease):
                        await self._archive_leased_day(index, day, lease)
                except Exception as exc:  # a bug must cost this day (left open), not the run
                    if _holds_fatal(exc):
                        raise
                    log.exception("internal error archiving a day", extra={"call_date": day.isoformat()})
                    why = self._settings.api_key.redact(f"{type(exc).__name__}: {exc}")[:300]
                    reason = f"archiving {day} failed: internal error {why}"
                    self._ledger.problem(ProblemKind.DAY_FAILED, reason, PartitionBook(day))
                finally:
                    await asyncio.to_thread(lease.release)
        finally:
            # A day that never lists (locked, failed, cancelled) must not hold up the days after it.
            self._listing_turns.end(index)
            self._ledger.day_done()

    async def _archive_leased_day(self, index: int, day: date, lease: Lease) -> None:
        # The first page is asked for as soon as the day is leased (listing writes nothing): it
        # arrives while the day is marked open and its archived files are read, and while the day
        # waits for its turn, which then passes from day to day without a listing round trip.
        pages = ReadAhead(calls_of_day(self._client, day, page_size=self._settings.page_size))
        partition, book = Partition(day, self._spool_dir), PartitionBook(day)
        try:
            # Open before any data is written: a run killed from here on leaves the day for the next run.
            marker = self.summary.run_id.encode()
            await asyncio.to_thread(self._storage.put_bytes, open_marker_key(day), marker)
            await asyncio.to_thread(partition.load_archived, self._storage, repair=self._repair)
            if self._wait_again_for_pending:
                partition.pending_recordings = frozenset()
            if not await self._list_and_archive(index, pages, partition, book):
                return
            if ProblemKind.UNFINISHED in book.failed_kinds and not partition.fresh_call_ids:
                return  # cut by the deadline before archiving anything: the day stays open as it was
            # Tombstones only annotate kept calls: after the deadline they wait for the next run.
            wanted = partition.kept_call_ids() and not self._deadline.passed()
            tombstones = await self._tombstones(day) if wanted else {}
            try:
                published = await asyncio.to_thread(
                    partition.publish, self._storage, tombstones, lease.confirm
                )
                manifest = book.manifest(
                    published,
                    run_id=self.summary.run_id,
                    written_at=self._now(),
                    refresh_window=timedelta(days=self._settings.refresh_days),
                )
                await self._write_manifest(manifest, lease)
            except LeaseLost as exc:
                # Another run took the day over: it publishes the day; the open marker stays until then.
                reason = f"lost the lease on {day} while publishing; abandoned, nothing more written: {exc}"
                self._ledger.problem(ProblemKind.LEASE_LOST, reason, book)
                return
            self._ledger.partition_written(manifest)
        finally:
            await pages.aclose()
            partition.discard()

    async def _write_manifest(self, manifest: PartitionManifest, lease: Lease) -> None:
        day = manifest.call_date
        await asyncio.to_thread(lease.confirm)
        await asyncio.to_thread(
            self._storage.put_bytes, manifest_key(day), manifest.to_json(), content_type="application/json"
        )
        if manifest.final:
            await asyncio.to_thread(lease.confirm)
            await asyncio.to_thread(self._storage.delete, open_marker_key(day))

    async def _list_and_archive(
        self, index: int, pages: ReadAhead[list[Any]], partition: Partition, book: PartitionBook
    ) -> bool:
        """List the day and archive each call; False when the listing could not be completed (then
        nothing of the day is published: a partial listing would look like deleted calls)."""
        day = partition.day
        async with asyncio.TaskGroup() as calls:
            try:
                await self._list_day(index, pages, partition, book, calls)
                return True
            except Exception as exc:
                if _holds_fatal(exc):
                    raise
                why = str(exc)
                if not isinstance(exc, ArchiverError):  # a bug in listing must cost this day, not the run
                    log.exception("internal error listing a day", extra={"call_date": day.isoformat()})
                    why = f"internal error {type(exc).__name__}"
                self._ledger.problem(
                    ProblemKind.LISTING_FAILED, f"listing the calls of {day} failed: {why}", book
                )
        return False

    async def _list_day(
        self,
        index: int,
        pages: ReadAhead[list[Any]],
        partition: Partition,
        book: PartitionBook,
        calls: asyncio.TaskGroup,
    ) -> None:
        slots = self._call_slots
        await self._listing_turns.wait(index)
        try:
            async for page in pages:
                self._ledger.listed(len(page))
                for raw in page:
                    if self._left_at_deadline(book):
                        return
                    call = self._calls.admit(raw, book, underway_since=partition.underway_since)
                    if call is None:
                        continue
                    await slots.acquire()
                    if self._left_at_deadline(book):  # it passed while the slot was awaited
                        slots.release()
                        return
                    task = calls.create_task(self._calls.archive(call, partition, book, slot=slots))
                    task.add_done_callback(lambda _: slots.release())
        finally:
            # The turn ends once every call is listed, not when they are done: the day's task
            # group still waits for its calls while the next day lists.
            self._listing_turns.end(index)
            self._ledger.day_listed()

    def _left_at_deadline(self, book: PartitionBook) -> bool:
        """True once the deadline has passed: the rest of the day is left open for the next run (what
        is in flight finishes)."""
        if not self._deadline.passed():
            return False
        self._ledger.unfinished(book.day, book)
        return True

    async def _tombstones(self, day: date) -> dict[str, datetime]:
        """Which calls the source deleted that day, and when."""
        items: list[Any] = []
        try:
            async for page in deleted_calls_of_day(self._client, day):
                items.extend(page)
        except AuthError:
            raise
        except ArchiverError as exc:
            # Tombstones only annotate calls we keep anyway; the next run will try again.
            log.warning(
                "could not list deleted calls", extra={"call_date": day.isoformat(), "error": str(exc)}
            )
        tombstones = records.tombstones(items)
        if tombstones.unreadable:
            log.warning(
                "unreadable tombstones skipped",
                extra={"call_date": day.isoformat(), "count": tombstones.unreadable},
            )
        return tombstones.deleted


def _recording_policy(settings: Settings) -> RecordingPolicy:
    return RecordingPolicy(
        wait_s=settings.recording_wait_s,
        poll_initial_s=settings.recording_poll_initial_s,
        poll_max_s=settings.recording_poll_max_s,
        url_refreshes=settings.recording_url_refreshes,
    )


def _holds_fatal(exc: BaseException) -> bool:
    """A rejected key or an unusable destination, alone or among a task group's errors: the run stops."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup((AuthError, StorageError)) is not None
    return isinstance(exc, AuthError | StorageError)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
