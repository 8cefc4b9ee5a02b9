"""Progress state, kept in the destination next to the data it describes. Pure: no I/O here.

Each partition (one UTC day) has a manifest, written after its data, saying what the partition holds
and whether it is final. While a partition is being worked on, or is not final, an "open" marker
object exists for it; a marker is written before any data and removed only once a final manifest is
in place, so a run killed at any moment leaves its partitions open for the next run to finish.
Nothing lives on local disk: a brand-new container continues where the last one stopped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from etl.errors import ConfigError
from etl.model import ProblemKind

MANIFEST_PREFIX = "_state/partitions/"
OPEN_PREFIX = "_state/open/"
MANIFEST_FORMAT = 1
_PROBLEM_KINDS = frozenset(ProblemKind)


def manifest_key(day: date) -> str:
    return f"{MANIFEST_PREFIX}call_date={day.isoformat()}.json"


def open_marker_key(day: date) -> str:
    return f"{OPEN_PREFIX}call_date={day.isoformat()}"


def lease_name(day: date) -> str:
    return f"call_date={day.isoformat()}"


def day_from_key(key: str) -> date | None:
    """The partition day in a manifest or marker key, or None for a key that is not one."""
    name = key.rsplit("/", 1)[-1].removesuffix(".json")
    if not name.startswith("call_date="):
        return None
    try:
        return date.fromisoformat(name.removeprefix("call_date="))
    except ValueError:
        return None


@dataclass(frozen=True)
class PartitionManifest:
    call_date: date
    run_id: str
    written_at: datetime
    final: bool
    calls: int
    messages: int
    recordings_archived: int
    recording_bytes: int
    calls_kept_from_archive: int
    calls_deleted_at_source: int
    schema_versions: dict[str, int] = field(default_factory=dict)
    underway_call_ids: tuple[str, ...] = ()
    pending_recording_call_ids: tuple[str, ...] = ()
    failed_call_ids: tuple[str, ...] = ()
    newest_call_created: datetime | None = None
    # The kind (a ProblemKind value) of each failure that has no call id to list above: the day's
    # listing failed, the lease was lost before publishing, or a listed item had no usable callId.
    # Each keeps the partition open, like a failed call.
    failed_kinds: tuple[str, ...] = ()
    # When the archive first found each call of `underway_call_ids` underway (ISO 8601): a call
    # underway `underway_give_up_hours` after that is archived as it is.
    underway_since: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return len(self.failed_call_ids) + len(self.failed_kinds)

    @property
    def open_items(self) -> int:
        return len(self.underway_call_ids) + len(self.pending_recording_call_ids) + self.failed

    def to_json(self) -> bytes:
        data: dict[str, Any] = asdict(self)
        data["format"] = MANIFEST_FORMAT
        data["call_date"] = self.call_date.isoformat()
        data["written_at"] = self.written_at.isoformat()
        data["newest_call_created"] = (
            self.newest_call_created.isoformat() if self.newest_call_created else None
        )
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def read(cls, raw: bytes | None) -> PartitionManifest | None:
        """The manifest in `raw`; None without one (`raw` None) or from one that cannot be read."""
        if raw is None:
            return None
        try:
            return cls.from_json(raw)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    @classmethod
    def from_json(cls, raw: bytes) -> PartitionManifest:
        data = json.loads(raw)
        newest = data.get("newest_call_created")
        failed_call_ids, failed_kinds = _failures(data)
        return cls(
            call_date=date.fromisoformat(data["call_date"]),
            run_id=str(data["run_id"]),
            written_at=datetime.fromisoformat(data["written_at"]),
            final=bool(data["final"]),
            calls=int(data["calls"]),
            messages=int(data["messages"]),
            recordings_archived=int(data["recordings_archived"]),
            recording_bytes=int(data["recording_bytes"]),
            calls_kept_from_archive=int(data.get("calls_kept_from_archive", 0)),
            calls_deleted_at_source=int(data.get("calls_deleted_at_source", 0)),
            schema_versions={str(k): int(v) for k, v in data.get("schema_versions", {}).items()},
            underway_call_ids=tuple(data.get("underway_call_ids", ())),
            pending_recording_call_ids=tuple(data.get("pending_recording_call_ids", ())),
            failed_call_ids=failed_call_ids,
            newest_call_created=datetime.fromisoformat(newest) if newest else None,
            failed_kinds=failed_kinds,
            underway_since={str(k): str(v) for k, v in data.get("underway_since", {}).items()},
        )


def _failures(data: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(failed call ids, failed kinds) of a manifest document."""
    failed = tuple(str(item) for item in data.get("failed_call_ids", ()))
    if "failed_kinds" in data:
        return failed, tuple(str(kind) for kind in data["failed_kinds"])
    # Written before the kinds had a field of their own: a failure without a call id put its kind
    # among the call ids ("bad_record"). Read it as what it is; it still counts as a failure.
    return (
        tuple(item for item in failed if item not in _PROBLEM_KINDS),
        tuple(item for item in failed if item in _PROBLEM_KINDS),
    )


def end_of_day(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def is_final(
    day: date,
    *,
    underway: int,
    pending_recordings: int,
    failed: int,
    now: datetime,
    refresh_window: timedelta,
) -> bool:
    """A partition is final when nothing in it is open and late field changes (summaries, billing)
    have had the refresh window to arrive since the day ended."""
    if underway or pending_recordings or failed:
        return False
    return now >= end_of_day(day) + refresh_window


def plan_sync(
    *,
    archived_days: Iterable[date],
    open_days: Iterable[date],
    today: date,
    since: date | None,
) -> list[date]:
    """The days a sync must (re)visit: every open partition, and every day from the newest archived
    one (or `since`, on a first run) through today.

    Once something is archived, `since` only adds the days from it on that have never been archived
    (no manifest): extending the history backwards, or filling a day a run left unstarted. It never
    reopens a final partition, so `ARCHIVER_SINCE` can stay set on an hourly sync (issue 13): the
    sync then costs what is new, like one without it. Rewriting archived days on purpose is what
    `backfill` is for.
    """
    archived = set(archived_days)
    if not archived and since is None:
        raise ConfigError(
            "nothing is archived at this destination yet: the first sync needs --since YYYY-MM-DD "
            "(or `since` in the config file) to know where the history starts"
        )
    start = max(archived) if archived else since
    assert start is not None
    days = set(open_days) | set(_days_from(start, today))
    if since is not None:
        days |= {day for day in _days_from(since, start) if day not in archived}
    return sorted(day for day in days if day <= today)


def _days_from(first: date, last: date) -> list[date]:
    """Every day from `first` through `last` (none when `last` is earlier)."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
