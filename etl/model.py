"""Plain data types that cross module borders."""

from __future__ import annotations

from dataclasses import dataclass
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
