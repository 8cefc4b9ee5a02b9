"""Partition manifests for unit tests: a plausible one for a day, with any field overridden."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from etl.state import PartitionManifest


def manifest_for(day: date, **fields: Any) -> PartitionManifest:
    """A final manifest of `day` with 3 calls and 40 messages, written 30 hours after the day began."""
    defaults: dict[str, Any] = {
        "call_date": day,
        "run_id": "r0",
        "written_at": datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=30),
        "final": True,
        "calls": 3,
        "messages": 40,
        "recordings_archived": 0,
        "recording_bytes": 0,
        "calls_kept_from_archive": 0,
        "calls_deleted_at_source": 0,
    }
    return PartitionManifest(**{**defaults, **fields})
