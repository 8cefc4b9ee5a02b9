"""Plain data types that cross module borders."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class RecordingStatus(StrEnum):
    ARCHIVED = "archived"
    NOT_ENABLED = "not_enabled"
    PENDING = "pending"
    FAILED = "failed"
    # Still not ready (425) `recording_give_up_days` after the archive first found it pending: the
    # partition no longer stays open for it. A later visit of the day (backfill) asks again.
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class RecordingOutcome:
    """What happened to one call's recording in this run."""

    status: RecordingStatus
    uri: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    detail: str | None = None
    # FAILED because the API (or its storage host) would not deliver the recording, not because our
    # destination failed: such a failure counts toward `recording_give_up_days` like a pending one.
    source_failure: bool = False


class ProblemKind(StrEnum):
    """Why something was not archived; the values appear in `_quarantine/` lines and run records."""

    BAD_RECORD = "bad_record"  # quarantined: the API sent something the tables cannot hold
    CALL_FAILED = "call_failed"
    RECORDING_FAILED = "recording_failed"
    LISTING_FAILED = "listing_failed"  # a day's listing broke off: nothing of the day was published
    LEASE_LOST = "lease_lost"  # another run took the day over: nothing of the day was published
    UNFINISHED = "unfinished"  # the run reached --max-run-time before listing the whole day
    DAY_FAILED = "day_failed"  # an unexpected error while archiving a day: the day stays open


@dataclass(frozen=True)
class PublishResult:
    """What a published partition holds."""

    calls: int
    messages: int
    kept_from_archive: int
    deleted_at_source: int
    newest_call_created: datetime | None = None
    schema_versions: dict[str, int] = field(default_factory=dict)
