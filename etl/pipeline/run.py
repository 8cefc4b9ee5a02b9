"""Wires the stages: plan days -> list calls -> transcripts and recordings -> rows -> partition -> state.

Concurrency lives here. Days are worked on a few at a time; each listed call becomes a task once one
of `concurrency` call slots is free, so listing never runs ahead of processing (memory stays flat
however many calls a day has). All API requests share the client's rate limiter; storage downloads
have their own bound. A failure inside one call is recorded against that call and the run goes on;
only a rejected API key or an unusable destination stops everything.

Each day is one partition, written by one run at a time: the run holds the partition's lease in the
destination while it works, marks the partition open before writing anything, and writes the
manifest last (see `state`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from etl import records
from etl.api.client import ApiClient, ClientOptions
from etl.api.recordings import RecordingFetcher, RecordingPolicy
from etl.config import Settings
from etl.errors import ArchiverError, AuthError, BadRecord, StorageError
from etl.pipeline.calls import CallArchiver
from etl.pipeline.partition import Partition
from etl.reporting.ledger import Ledger
from etl.reporting.summary import RunSummary
from etl.schema import load_table_schema, table_names
from etl.state import (
    MANIFEST_PREFIX,
    OPEN_PREFIX,
    PartitionManifest,
    day_from_key,
    is_final,
    lease_name,
    manifest_key,
    open_marker_key,
    plan_sync,
)
from etl.storage.base import Storage
from etl.storage.lease import Lease, Leases, renewing

log = logging.getLogger(__name__)

_DAYS_IN_FLIGHT = 2


def days_between(since: date, until: date) -> list[date]:
    return [since + timedelta(days=offset) for offset in range((until - since).days + 1)]


@dataclass(frozen=True)
class RunParts:
    """What every run of an Archiver works with, handed from the Archiver to each run."""

    settings: Settings
    client: ApiClient
    storage: Storage
    clock: Callable[[], float]
    now: Callable[[], datetime]
    progress: Callable[[RunSummary], None] | None


class Archiver:
    def __init__(
        self,
        settings: Settings,
        *,
        client: ApiClient,
        storage: Storage,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        progress: Callable[[RunSummary], None] | None = None,
    ) -> None:
        self._parts = RunParts(settings, client, storage, clock, now, progress)

    async def backfill(self, since: date, until: date) -> RunSummary:
        return await self._run("backfill", lambda: days_between(since, until))

    async def sync(self, since: date | None) -> RunSummary:
        """Every open partition, and every day from the newest archived one through today."""
        return await self._run("sync", lambda: self._plan_sync(since))

    def _plan_sync(self, since: date | None) -> list[date]:
        storage = self._parts.storage
        archived = {d for d in map(day_from_key, storage.list_keys(MANIFEST_PREFIX)) if d}
        open_days = {d for d in map(day_from_key, storage.list_keys(OPEN_PREFIX)) if d}
        today = self._parts.now().date()
        return plan_sync(archived_days=archived, open_days=open_days, today=today, since=since)

    async def _run(self, command: str, plan: Callable[[], list[date]]) -> RunSummary:
        started = self._parts.now()
        run_id = f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        summary = RunSummary(
            run_id=run_id, command=command, since="", until="", started_at=started.isoformat()
        )
        spool_parent = self._parts.settings.spool_dir
        with tempfile.TemporaryDirectory(prefix="ultravox-archiver-", dir=spool_parent) as spool:
            run = _Run(self._parts, summary, Path(spool), started)
            try:
                # Planning reads the state; it also fails fast on a missing bucket or permissions.
                days = await asyncio.to_thread(plan)
                if days:
                    summary.since, summary.until = days[0].isoformat(), days[-1].isoformat()
                log.info("run started", extra={"run_id": run_id, "command": command, "days": len(days)})
                await run.archive_days(days)
            except* (AuthError, StorageError) as group:
                # A rejected key or an unusable destination: nothing else in the run could succeed.
                summary.fatal_error = str(_first_leaf(group))
                log.error("run stopped", extra={"error": summary.fatal_error})
        summary.api_requests = self._parts.client.api_requests
        summary.rate_limited = self._parts.client.throttled
        summary.retries = self._parts.client.retries
        summary.finished_at = self._parts.now().isoformat()
        await asyncio.to_thread(self._write_run_records, summary)
        return summary

    def _write_run_records(self, summary: RunSummary) -> None:
        try:
            if summary.problems:
                lines = "".join(
                    json.dumps({"run_id": summary.run_id, **asdict(problem)}, ensure_ascii=False) + "\n"
                    for problem in summary.problems
                )
                self._parts.storage.put_bytes(
                    f"_quarantine/{summary.run_id}.jsonl", lines.encode(), content_type="application/x-ndjson"
                )
            self._parts.storage.put_bytes(
                f"_runs/{summary.run_id}.json",
                json.dumps(summary.to_json(), indent=2, ensure_ascii=False).encode(),
                content_type="application/json",
            )
        except StorageError as exc:
            log.error("could not write the run record", extra={"error": str(exc)})


async def run_archiver(
    settings: Settings,
    storage: Storage,
    work: Callable[[Archiver], Awaitable[RunSummary]],
    *,
    progress: Callable[[RunSummary], None] | None = None,
) -> RunSummary:
    """Open the API client for `settings`, hand an Archiver to `work` (a backfill or a sync), close."""
    async with ApiClient(ClientOptions.from_settings(settings)) as client:
        return await work(Archiver(settings, client=client, storage=storage, progress=progress))


class _Run:
    """The state of one run: shared slots, the fetcher, the summary it fills in."""

    def __init__(self, parts: RunParts, summary: RunSummary, spool_dir: Path, started: datetime) -> None:
        settings = parts.settings
        self.settings = settings
        self.client = parts.client
        self.storage = parts.storage
        self.now = parts.now
        self.summary = summary
        self.ledger = Ledger(summary, parts.progress)
        self.spool_dir = spool_dir
        self.call_slots = asyncio.Semaphore(settings.concurrency)
        self.leases = Leases(
            self.storage,
            owner=f"{summary.run_id}@{socket.gethostname()}",
            ttl_s=settings.lease_ttl_s,
            clock=parts.now,
        )
        fetcher = RecordingFetcher(
            self.client,
            self.storage,
            RecordingPolicy(
                wait_s=settings.recording_wait_s,
                poll_initial_s=settings.recording_poll_initial_s,
                poll_max_s=settings.recording_poll_max_s,
                url_refreshes=settings.recording_url_refreshes,
            ),
            spool_dir=spool_dir,
            download_slots=asyncio.Semaphore(settings.download_concurrency),
            clock=parts.clock,
        )
        self.calls = CallArchiver(
            client=self.client,
            storage=self.storage,
            fetcher=fetcher,
            ledger=self.ledger,
            run_time=started,
            call_slots=self.call_slots,
            message_page_size=settings.message_page_size,
            recording_give_up=timedelta(days=settings.recording_give_up_days),
        )

    async def archive_days(self, days: list[date]) -> None:
        day_slots = asyncio.Semaphore(_DAYS_IN_FLIGHT)

        async def one_day(day: date) -> None:
            async with day_slots:
                await self.archive_day(day)

        async with asyncio.TaskGroup() as group:
            for day in days:
                group.create_task(one_day(day))

    # -- one partition --------------------------------------------------------------------------------

    async def archive_day(self, day: date) -> None:
        lease = await self._acquire(day)
        if lease is None:
            return
        try:
            async with renewing(lease, every_s=self.settings.lease_ttl_s / 3):
                await self._archive_leased_day(day, lease)
        finally:
            await asyncio.to_thread(lease.release)

    async def _acquire(self, day: date) -> Lease | None:
        name = lease_name(day)
        deadline = time.monotonic() + self.settings.lock_wait_s
        while True:
            lease = await asyncio.to_thread(self.leases.acquire, name)
            if lease is not None:
                return lease
            holder = await asyncio.to_thread(self.leases.holder, name)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                who = f"{holder.owner} until {holder.expires_at.isoformat()}" if holder else "another run"
                self.summary.partitions_locked.append(f"{day.isoformat()} (locked by {who})")
                log.warning(
                    "partition locked by another run", extra={"call_date": day.isoformat(), "by": who}
                )
                return None
            # Wake up when the holder's lease would expire (a killed run stops renewing it).
            until_expiry = (holder.expires_at - self.now()).total_seconds() if holder else 0.0
            await asyncio.sleep(min(max(until_expiry + 0.05, 0.1), 5.0, remaining))

    async def _archive_leased_day(self, day: date, lease: Lease) -> None:
        # Open before any data is written: a run killed from here on leaves the day for the next run.
        await asyncio.to_thread(self.storage.put_bytes, open_marker_key(day), self.summary.run_id.encode())
        partition = Partition(day, self.spool_dir)
        try:
            await asyncio.to_thread(partition.load_archived, self.storage)
            if not await self._list_and_archive(day, partition):
                return
            tombstones = await self._tombstones(day) if partition.kept_call_ids() else {}
            if not lease.still_held():
                self.ledger.problem(
                    "lease_lost", f"lost the lease on {day} before publishing; nothing written", partition
                )
                return
            result = await asyncio.to_thread(partition.publish, self.storage, tombstones)
            manifest = PartitionManifest(
                call_date=day,
                run_id=self.summary.run_id,
                written_at=self.now(),
                final=False,
                calls=result.calls,
                messages=result.messages,
                recordings_archived=partition.recordings_archived,
                recording_bytes=partition.recording_bytes,
                calls_kept_from_archive=result.kept_from_archive,
                calls_deleted_at_source=result.deleted_at_source,
                schema_versions={name: load_table_schema(name).version for name in table_names()},
                underway_call_ids=tuple(partition.underway_call_ids),
                pending_recording_call_ids=tuple(partition.pending_recording_call_ids),
                failed_call_ids=tuple(partition.failed),
                newest_call_created=partition.newest_created,
            )
            await self._write_manifest(manifest)
            self.summary.partitions_written += 1
            self.summary.calls_kept_from_archive += result.kept_from_archive
            self.summary.calls_deleted_at_source += result.deleted_at_source
        finally:
            partition.discard()

    async def _write_manifest(self, manifest: PartitionManifest) -> None:
        day = manifest.call_date
        final = is_final(
            day,
            underway=len(manifest.underway_call_ids),
            pending_recordings=len(manifest.pending_recording_call_ids),
            failed=len(manifest.failed_call_ids),
            now=manifest.written_at,
            refresh_window=timedelta(days=self.settings.refresh_days),
        )
        manifest = dataclasses.replace(manifest, final=final)
        await asyncio.to_thread(
            self.storage.put_bytes, manifest_key(day), manifest.to_json(), content_type="application/json"
        )
        if final:
            await asyncio.to_thread(self.storage.delete, open_marker_key(day))
            self.summary.partitions_final += 1
        log.info(
            "partition written", extra={"call_date": day.isoformat(), "calls": manifest.calls, "final": final}
        )

    async def _list_and_archive(self, day: date, partition: Partition) -> bool:
        """List the day and archive each call; False when the listing could not be completed (then
        nothing of the day is published: a partial listing would look like deleted calls)."""
        async with asyncio.TaskGroup() as calls:
            try:
                await self._list_day(day, partition, calls)
                return True
            except AuthError:
                raise
            except ArchiverError as exc:
                self.ledger.problem("listing_failed", f"listing the calls of {day} failed: {exc}", partition)
        return False

    async def _list_day(self, day: date, partition: Partition, calls: asyncio.TaskGroup) -> None:
        params: dict[str, str | int] = {
            "fromDate": day.isoformat(),
            "toDate": day.isoformat(),
            "pageSize": self.settings.page_size,
        }
        async for page in self.client.iter_pages("calls", params, description=f"calls of {day}"):
            for raw in page:
                call = self.calls.admit(raw, partition)
                if call is None:
                    continue
                await self.call_slots.acquire()
                task = calls.create_task(self.calls.archive(call, partition))
                task.add_done_callback(lambda _: self.call_slots.release())

    async def _tombstones(self, day: date) -> dict[str, datetime]:
        """Which calls the source deleted that day, and when (`GET /api/deleted_calls`)."""
        params: dict[str, str | int] = {"fromDate": day.isoformat(), "toDate": day.isoformat()}
        tombstones: dict[str, datetime] = {}
        try:
            async for page in self.client.iter_pages(
                "deleted_calls", params, description=f"deleted calls of {day}"
            ):
                for item in page:
                    try:
                        tombstones[records.call_id_of(item)] = records.parse_timestamp(
                            item.get("deletionTime"), field="deletionTime"
                        )
                    except (BadRecord, AttributeError):
                        log.warning("unreadable tombstone skipped", extra={"call_date": day.isoformat()})
        except AuthError:
            raise
        except ArchiverError as exc:
            # Tombstones only annotate calls we keep anyway; the next run will try again.
            log.warning(
                "could not list deleted calls", extra={"call_date": day.isoformat(), "error": str(exc)}
            )
        return tombstones


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
