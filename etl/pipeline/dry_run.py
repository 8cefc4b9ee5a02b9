"""`--dry-run`: what a run would do, found by listing the days it would visit, writing nothing.

The plan is the run's own (`Command.plan`, from the destination's state), and the same checks run
before it (`preflight`). Each planned day's calls are then listed, which is the only way to know how
much work a day holds: listing requests only, no transcript, recording or storage write. From the
listing comes an estimate of the run's API requests (one transcript page and one recording request
per ended call with recording on) and of its time at `--max-rps`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from etl.api.client import ApiClient, ClientOptions
from etl.api.listing import calls_of_day
from etl.api.retry_budget import RetryBudget
from etl.config import Settings
from etl.errors import ArchiverError, AuthError
from etl.pipeline.preflight import check_usable
from etl.pipeline.run import Command, check_before_run
from etl.state import MANIFEST_PREFIX, day_from_key
from etl.storage.base import Storage

_LISTINGS_AT_ONCE = 8


@dataclass(frozen=True)
class DayPlan:
    day: date
    archived: bool  # a partition is on file: it is rewritten, merged with what it holds
    listing_pages: int
    calls: int
    ended: int  # calls with a transcript to fetch (underway ones wait for a later run)
    recordings: int  # ended calls with recording on: one recording request each, at least
    error: str | None = None  # the listing failed: the run would fail this day the same way


@dataclass(frozen=True)
class Plan:
    command: str
    dest: str
    max_rps: float
    days: list[DayPlan]
    shard: str | None = None  # a sharded backfill's shard: `days` are the ones it takes

    @property
    def estimated_requests(self) -> int:
        # The archive re-uses transcripts and recordings it already holds, so a rewritten day may
        # cost fewer; a long transcript (over one page) or a recording polled while it is not ready
        # costs more. The deleted-calls listing is asked for only for a day with calls on file.
        return sum(d.listing_pages + d.ended + d.recordings + d.archived for d in self.days)

    @property
    def failed_days(self) -> list[date]:
        return [d.day for d in self.days if d.error]

    @property
    def estimated_seconds(self) -> float:
        return self.estimated_requests / self.max_rps

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": True,
            "command": self.command,
            "dest": self.dest,
            "days": [{**asdict(d), "day": d.day.isoformat()} for d in self.days],
            "calls": sum(d.calls for d in self.days),
            "estimated_api_requests": self.estimated_requests,
            "estimated_seconds": round(self.estimated_seconds, 1),
            "max_rps": self.max_rps,
            "shard": self.shard,
        }


async def dry_run(settings: Settings, storage: Storage, command: Command) -> Plan:
    """Plan `command` as a run would, check what a run checks, list each day; write nothing."""
    check_before_run(settings, command)
    days = await asyncio.to_thread(command.plan, storage, datetime.now(UTC).date())
    await check_usable(settings, storage)
    archived = {d for d in map(day_from_key, await asyncio.to_thread(_manifest_keys, storage)) if d}
    budget = RetryBudget(settings.retry_budget)
    # A few days list at once, as in a run, all paced by the client's rate limiter: a first sync's
    # months of days must not take one round trip after another.
    slots = asyncio.Semaphore(_LISTINGS_AT_ONCE)
    async with ApiClient(ClientOptions.from_settings(settings), retry_budget=budget) as client:

        async def listed(day: date) -> DayPlan:
            async with slots:
                return await _list_day(client, day, day in archived, settings.page_size)

        planned = await asyncio.gather(*(listed(day) for day in days))
    shard = None if command.shard is None else str(command.shard)
    return Plan(command.name, settings.dest, settings.max_rps, list(planned), shard)


def _manifest_keys(storage: Storage) -> list[str]:
    return list(storage.list_keys(MANIFEST_PREFIX))


async def _list_day(client: ApiClient, day: date, archived: bool, page_size: int) -> DayPlan:
    pages = calls = ended = recordings = 0
    try:
        async for page in calls_of_day(client, day, page_size=page_size):
            pages += 1
            for raw in page:
                calls += 1
                if isinstance(raw, dict) and raw.get("ended"):
                    ended += 1
                    recordings += raw.get("recordingEnabled") is True
    except AuthError:
        raise
    except ArchiverError as exc:
        return DayPlan(day, archived, pages, calls, ended, recordings, error=str(exc))
    return DayPlan(day, archived, pages, calls, ended, recordings)


def format_plan(plan: Plan, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(plan.to_json())
    span = f"{plan.days[0].day} .. {plan.days[-1].day}" if plan.days else "no days"
    name = plan.command if plan.shard is None else f"{plan.command}, shard {plan.shard}"
    lines = [f"dry run of {name}: {len(plan.days)} days, {span} -> {plan.dest} (nothing written)"]
    for d in plan.days:
        state = "on file, rewritten" if d.archived else "new"
        lines.append(
            f"  {d.day}  {state:<18}  {d.calls} calls ({d.ended} ended, {d.recordings} with recording), "
            f"{d.listing_pages} listing {'page' if d.listing_pages == 1 else 'pages'}"
            + (f"; LISTING FAILED: {d.error}" if d.error else "")
        )
    lines.append(
        f"  about {plan.estimated_requests} API requests, ~{plan.estimated_seconds:.0f} s at "
        f"--max-rps {plan.max_rps:g} (fewer where the archive already holds transcripts and recordings)"
    )
    return "\n".join(lines)
