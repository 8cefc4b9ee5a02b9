"""Wires the stages: list calls per day -> fetch transcripts and recordings -> rows -> Parquet -> storage.

Concurrency lives here. Days are listed a few at a time; each listed call becomes a task once one of
`concurrency` call slots is free, so listing never runs ahead of processing (memory stays flat however
many calls a day has). All API requests share the client's rate limiter; storage downloads have their
own bound. A failure inside one call is recorded against that call and the run goes on; only a
rejected API key stops everything, since nothing else could succeed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from etl import records
from etl.api import ApiClient
from etl.config import Settings
from etl.errors import ArchiverError, AuthError, BadRecord, StorageError
from etl.merge import carried_over_rows
from etl.model import RecordingOutcome, RecordingStatus
from etl.parquet import ParquetSpool, partition_key
from etl.recordings import RecordingFetcher, RecordingPolicy
from etl.schema import load_table_schema
from etl.storage import Storage

log = logging.getLogger(__name__)

# Call ids end up in URL paths and object keys: accept only what a UUID-like id can contain.
_SAFE_CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_RAW_QUARANTINE_LIMIT = 64 * 1024
_DAYS_IN_FLIGHT = 3
PARTITION_FILE = "data.parquet"


@dataclass
class Problem:
    """One call (or listing) that could not be archived, with the reason; written to `_quarantine/`."""

    kind: str
    reason: str
    call_date: str | None = None
    call_id: str | None = None
    raw_json: str | None = None


@dataclass
class RunSummary:
    run_id: str
    since: str
    until: str
    started_at: str
    finished_at: str | None = None
    calls_archived: int = 0
    messages_archived: int = 0
    recordings_archived: int = 0
    recording_bytes: int = 0
    recordings_not_enabled: int = 0
    recordings_pending: int = 0
    recordings_failed: int = 0
    calls_underway: int = 0
    calls_failed: int = 0
    records_quarantined: int = 0
    partitions_written: int = 0
    # Archived calls this run did not archive again (deleted at the source, or failing now): kept.
    calls_kept_from_archive: int = 0
    api_requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    fatal_error: str | None = None
    underway_call_ids: list[str] = field(default_factory=list)
    pending_recording_call_ids: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when everything in the window was archived or is legitimately pending."""
        return (
            self.fatal_error is None
            and self.calls_failed == 0
            and self.records_quarantined == 0
            and self.recordings_failed == 0
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["complete"] = self.complete
        return data


def days_between(since: date, until: date) -> list[date]:
    return [since + timedelta(days=offset) for offset in range((until - since).days + 1)]


class DayWriter:
    """Collects one day's rows into spool files and publishes them as that day's partition."""

    def __init__(self, day: date, spool_dir: Path) -> None:
        self.day = day
        self.spool_dir = spool_dir
        self.calls = ParquetSpool(load_table_schema("calls"), spool_dir)
        self.messages = ParquetSpool(load_table_schema("messages"), spool_dir)
        self.fresh_call_ids: set[str] = set()

    def add_call(self, row: Mapping[str, Any], message_rows: list[dict[str, Any]]) -> None:
        self.messages.add_many(message_rows)
        self.calls.add(row)
        self.fresh_call_ids.add(row["call_id"])

    def abort(self) -> None:
        self.calls.abort()
        self.messages.abort()

    def publish(self, storage: Storage) -> int:
        """Merge with the archived partition, then upload messages first and calls second, so a
        reader who sees a call also finds its transcript. Returns the number of calls carried over."""
        calls_key = partition_key("calls", self.day, PARTITION_FILE)
        messages_key = partition_key("messages", self.day, PARTITION_FILE)
        kept = self._carry_over(storage, calls_key, messages_key)
        messages_file = self.messages.close()
        calls_file = self.calls.close()
        try:
            if messages_file is not None:
                storage.put_file(messages_key, messages_file)
            if calls_file is not None:
                storage.put_file(calls_key, calls_file)
        finally:
            for path in (messages_file, calls_file):
                if path is not None:
                    path.unlink(missing_ok=True)
        return kept

    def _carry_over(self, storage: Storage, calls_key: str, messages_key: str) -> int:
        archived = self.spool_dir / f"archived-{uuid.uuid4().hex}.parquet"
        kept: set[str] = set()
        try:
            if not storage.get_file(calls_key, archived):
                return 0
            for rows in carried_over_rows(archived, lambda call_id: call_id not in self.fresh_call_ids):
                self.calls.add_many(rows)
                kept.update(row["call_id"] for row in rows)
            if kept and storage.get_file(messages_key, archived):
                for rows in carried_over_rows(archived, kept.__contains__):
                    self.messages.add_many(rows)
        finally:
            archived.unlink(missing_ok=True)
        return len(kept)


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
        self._progress = progress
        self._settings = settings
        self._client = client
        self._storage = storage
        self._clock = clock
        self._now = now

    async def backfill(self, since: date, until: date) -> RunSummary:
        started = self._now()
        summary = RunSummary(
            run_id=f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}",
            since=since.isoformat(),
            until=until.isoformat(),
            started_at=started.isoformat(),
        )
        with tempfile.TemporaryDirectory(prefix="ultravox-archiver-", dir=self._settings.spool_dir) as spool:
            run = _Run(
                self._settings, self._client, self._storage, summary, Path(spool), started, self._clock
            )
            try:
                # Fail fast on a missing bucket or missing permissions, before any API request.
                await asyncio.to_thread(_check_destination, self._storage)
                await run.archive_days(days_between(since, until))
            except* (AuthError, StorageError) as group:
                # A rejected key or an unusable destination: nothing else in the run could succeed.
                summary.fatal_error = str(_first_leaf(group))
                log.error("run stopped", extra={"error": summary.fatal_error})
        summary.api_requests = self._client.api_requests
        summary.rate_limited = self._client.throttled
        summary.retries = self._client.retries
        summary.finished_at = self._now().isoformat()
        await asyncio.to_thread(self._write_run_records, summary)
        return summary

    def _write_run_records(self, summary: RunSummary) -> None:
        try:
            self._publish_run_records(summary)
        except StorageError as exc:
            log.error("could not write the run record", extra={"error": str(exc)})

    def _publish_run_records(self, summary: RunSummary) -> None:
        if summary.problems:
            lines = "".join(
                json.dumps({"run_id": summary.run_id, **asdict(problem)}, ensure_ascii=False) + "\n"
                for problem in summary.problems
            )
            self._storage.put_bytes(
                f"_quarantine/{summary.run_id}.jsonl", lines.encode(), content_type="application/x-ndjson"
            )
        self._storage.put_bytes(
            f"_runs/{summary.run_id}.json",
            json.dumps(summary.to_json(), indent=2, ensure_ascii=False).encode(),
            content_type="application/json",
        )


class _Run:
    """The state of one run: shared slots, the fetcher, the summary it fills in."""

    def __init__(
        self,
        settings: Settings,
        client: ApiClient,
        storage: Storage,
        summary: RunSummary,
        spool_dir: Path,
        started: datetime,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.client = client
        self.storage = storage
        self.summary = summary
        self.spool_dir = spool_dir
        self.archived_at = started
        self.call_slots = asyncio.Semaphore(settings.concurrency)
        self.progress: Callable[[RunSummary], None] | None = None
        self.fetcher = RecordingFetcher(
            client,
            storage,
            RecordingPolicy(
                wait_s=settings.recording_wait_s,
                poll_initial_s=settings.recording_poll_initial_s,
                poll_max_s=settings.recording_poll_max_s,
                url_refreshes=settings.recording_url_refreshes,
            ),
            spool_dir=spool_dir,
            download_slots=asyncio.Semaphore(settings.download_concurrency),
            clock=clock,
        )

    async def archive_days(self, days: list[date]) -> None:
        day_slots = asyncio.Semaphore(_DAYS_IN_FLIGHT)

        async def one_day(day: date) -> None:
            async with day_slots:
                await self.archive_day(day)

        async with asyncio.TaskGroup() as group:
            for day in days:
                group.create_task(one_day(day))

    async def archive_day(self, day: date) -> None:
        writer = DayWriter(day, self.spool_dir)
        listed_all = False
        try:
            async with asyncio.TaskGroup() as calls:
                try:
                    await self._list_day(day, writer, calls)
                    listed_all = True
                except AuthError:
                    raise
                except ArchiverError as exc:
                    self._problem("listing_failed", f"listing the calls of {day} failed: {exc}", day)
            if not listed_all:
                # Publishing a partial listing would replace the day's partition with fewer calls.
                writer.abort()
                return
            kept = await asyncio.to_thread(writer.publish, self.storage)
            if writer.fresh_call_ids or kept:
                self.summary.partitions_written += 1
                self.summary.calls_kept_from_archive += kept
                log.info("partition written", extra={"call_date": day.isoformat(), "calls_kept": kept})
        except BaseException:
            writer.abort()
            raise

    async def _list_day(self, day: date, writer: DayWriter, calls: asyncio.TaskGroup) -> None:
        params: dict[str, str | int] = {
            "fromDate": day.isoformat(),
            "toDate": day.isoformat(),
            "pageSize": self.settings.page_size,
        }
        async for page in self.client.iter_pages("calls", params, description=f"calls of {day}"):
            for raw in page:
                call = self._admit(raw, day)
                if call is None:
                    continue
                await self.call_slots.acquire()
                task = calls.create_task(self._archive_call(call, day, writer))
                task.add_done_callback(lambda _: self.call_slots.release())

    def _admit(self, raw: object, day: date) -> Mapping[str, Any] | None:
        """Validate a listed call; quarantine what cannot be archived; skip what is still underway."""
        try:
            if not isinstance(raw, Mapping):
                raise BadRecord(f"a listed call is a {type(raw).__name__}, not a JSON object", record=raw)
            call_id = records.call_id_of(raw)
            if not _SAFE_CALL_ID.match(call_id):
                raise BadRecord(f"callId {call_id[:80]!r} has characters a call id cannot have", record=raw)
            if records.call_date_of(raw) != day:
                raise BadRecord(f"call {call_id} was listed for {day} but created on another day", record=raw)
            # Validate every column now, before spending requests on a call we could not store.
            records.call_row(raw, RecordingOutcome(RecordingStatus.PENDING), self.archived_at)
        except BadRecord as exc:
            self._problem("bad_record", exc.reason, day, call_id=_id_or_none(raw), raw=raw)
            return None
        if records.is_underway(raw):
            self.summary.calls_underway += 1
            self.summary.underway_call_ids.append(call_id)
            return None
        return raw

    async def _archive_call(self, call: Mapping[str, Any], day: date, writer: DayWriter) -> None:
        call_id = records.call_id_of(call)
        try:
            messages = await self._fetch_messages(call_id)
            message_rows = records.message_rows(call_id, messages)
            if call.get("recordingEnabled") is False:
                # The call object already says so: no request needed to learn it.
                outcome = RecordingOutcome(RecordingStatus.NOT_ENABLED)
            else:
                outcome = await self.fetcher.fetch(call_id, day, slot=self.call_slots)
            row = records.call_row(call, outcome, self.archived_at)
        except AuthError:
            raise
        except BadRecord as exc:
            self._problem("bad_record", f"call {call_id}: {exc.reason}", day, call_id=call_id, raw=exc.record)
            return
        except ArchiverError as exc:
            self._problem("call_failed", f"call {call_id}: {exc}", day, call_id=call_id)
            return
        except Exception as exc:  # a bug must cost one call, not the run; the reason is kept
            log.exception("internal error archiving a call", extra={"call_id": call_id})
            self._problem(
                "call_failed",
                f"call {call_id}: internal error {type(exc).__name__}: {exc}",
                day,
                call_id=call_id,
            )
            return
        writer.add_call(row, message_rows)
        self._count(outcome, call_id, len(message_rows))
        if self.progress is not None:
            self.progress(self.summary)

    async def _fetch_messages(self, call_id: str) -> list[Any]:
        messages: list[Any] = []
        params: dict[str, str | int] = {"mode": "in_call", "pageSize": self.settings.message_page_size}
        async for page in self.client.iter_pages(
            f"calls/{call_id}/messages", params, description=f"messages of call {call_id}"
        ):
            messages.extend(page)
        return messages

    def _count(self, outcome: RecordingOutcome, call_id: str, messages: int) -> None:
        summary = self.summary
        summary.calls_archived += 1
        summary.messages_archived += messages
        if outcome.status is RecordingStatus.ARCHIVED:
            summary.recordings_archived += 1
            summary.recording_bytes += outcome.size_bytes or 0
        elif outcome.status is RecordingStatus.NOT_ENABLED:
            summary.recordings_not_enabled += 1
        elif outcome.status is RecordingStatus.PENDING:
            summary.recordings_pending += 1
            summary.pending_recording_call_ids.append(call_id)
        else:
            summary.recordings_failed += 1
            self._problem("recording_failed", f"call {call_id}: {outcome.detail}", None, call_id=call_id)

    def _problem(
        self,
        kind: str,
        reason: str,
        day: date | None,
        *,
        call_id: str | None = None,
        raw: object = None,
    ) -> None:
        if kind == "bad_record":
            self.summary.records_quarantined += 1
        elif kind in ("call_failed", "listing_failed"):
            self.summary.calls_failed += 1
        raw_json = None
        if raw is not None:
            raw_json = json.dumps(raw, ensure_ascii=False, default=str)[:_RAW_QUARANTINE_LIMIT]
        self.summary.problems.append(
            Problem(kind, reason, day.isoformat() if day else None, call_id, raw_json)
        )
        log.warning(
            "call not archived" if kind != "recording_failed" else "recording not archived",
            extra={"kind": kind, "reason": reason, "call_id": call_id},
        )


def _check_destination(storage: Storage) -> None:
    next(iter(storage.list_keys("_runs/")), None)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _id_or_none(raw: object) -> str | None:
    if isinstance(raw, Mapping):
        value = raw.get("callId")
        return value if isinstance(value, str) else None
    return None
