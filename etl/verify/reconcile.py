"""Wires `verify`: per day, the source's listing and each archived call's messages (through the API
client, under the same rate limiter and retry policy as a run), the archive's files and recording
objects (HEADs, never the audio), then the pure comparison."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from etl import records
from etl.api.client import ApiClient, ClientOptions
from etl.api.listing import calls_of_day, messages_of_call
from etl.api.recordings import recording_key
from etl.api.retry_budget import RetryBudget
from etl.config import Settings
from etl.errors import ArchiverError, AuthError, BadRecord
from etl.model import RecordingStatus
from etl.pipeline.preflight import check_usable, check_window
from etl.pipeline.run import days_between
from etl.storage.base import ObjectInfo, Storage
from etl.verify.archived_day import ArchivedDay, read_archived_day
from etl.verify.compare import SourceDay, compare_day
from etl.verify.findings import Finding, FindingKind, VerifyReport

log = logging.getLogger(__name__)


async def verify(
    settings: Settings, storage: Storage, since: date, until: date, *, today: date
) -> VerifyReport:
    """Check the window (a ConfigError for days in the future, a bad key or URL), then compare it."""
    check_window(since, until, today)
    await check_usable(settings, storage)
    report = VerifyReport(storage.uri, since, until)
    budget = RetryBudget(settings.retry_budget)
    async with ApiClient(ClientOptions.from_settings(settings), retry_budget=budget) as client:
        with tempfile.TemporaryDirectory(prefix="ultravox-verify-", dir=settings.spool_dir) as spool:
            checker = _DayChecker(settings, client, storage, Path(spool), report)
            # One day at a time: memory stays that of a day, and the calls of a day run concurrently.
            for day in days_between(since, until):
                await checker.check(day)
        report.api_requests = client.api_requests
    return report


class _DayChecker:
    def __init__(
        self, settings: Settings, client: ApiClient, storage: Storage, spool: Path, report: VerifyReport
    ) -> None:
        self._settings = settings
        self._client = client
        self._storage = storage
        self._spool = spool
        self._report = report
        self._slots = asyncio.Semaphore(settings.concurrency)

    async def check(self, day: date) -> None:
        report = self._report
        try:
            source = await self._list_day(day)
        except AuthError:
            raise
        except ArchiverError as exc:
            report.findings.append(
                Finding(FindingKind.NOT_CHECKED, day, None, f"listing the day failed: {exc}")
            )
            return
        archived = await asyncio.to_thread(read_archived_day, self._storage, day, self._spool)
        report.calls_listed += len(source.ended) + len(source.underway)
        report.calls_archived += len(archived.calls)
        compared = sorted(source.ended & set(archived.calls))
        counts, recordings = await asyncio.gather(
            self._message_counts(day, compared), self._recordings(archived)
        )
        report.findings += compare_day(source, archived, message_counts=counts, recordings=recordings)

    async def _list_day(self, day: date) -> SourceDay:
        source = SourceDay()
        async for page in calls_of_day(self._client, day, page_size=self._settings.page_size):
            for raw in page:
                try:
                    call_id = records.call_id_of(raw)
                except BadRecord:
                    continue  # the archiver quarantines it; nothing of it is archived to compare
                (source.underway if records.is_underway(raw) else source.ended).add(call_id)
        return source

    async def _message_counts(self, day: date, call_ids: list[str]) -> dict[str, int]:
        counts: dict[str, int] = {}

        async def count(call_id: str) -> None:
            async with self._slots:
                try:
                    listed = 0
                    pages = messages_of_call(
                        self._client, call_id, page_size=self._settings.message_page_size
                    )
                    async for page in pages:
                        listed += len(page)
                    counts[call_id] = listed
                except AuthError:
                    raise
                except ArchiverError as exc:
                    detail = f"listing the call's messages failed: {exc}"
                    self._report.findings.append(Finding(FindingKind.NOT_CHECKED, day, call_id, detail))
            self._report.transcripts_listed += 1

        async with asyncio.TaskGroup() as group:
            for call_id in call_ids:
                group.create_task(count(call_id))
        return counts

    async def _recordings(self, archived: ArchivedDay) -> Mapping[str, ObjectInfo | None]:
        stored: dict[str, ObjectInfo | None] = {}

        async def head(call_id: str) -> None:
            async with self._slots:
                key = recording_key(archived.day, call_id)
                stored[call_id] = await asyncio.to_thread(self._storage.digest, key)
            self._report.recordings_checked += 1

        async with asyncio.TaskGroup() as group:
            for call_id, row in archived.calls.items():
                if row.recording_status == RecordingStatus.ARCHIVED:
                    group.create_task(head(call_id))
        return stored
