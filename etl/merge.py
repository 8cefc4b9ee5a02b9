"""Merge-never-shrink: what an archived partition contributes when the partition is written again.

A partition file is replaced whole on every write. Rows for calls this run did not archive again
(deleted at the source since, or failing in this run) are carried over from the archived file, so
the archive only ever gains calls; calls archived before are re-used where nothing can have changed
(an ended call's transcript, a recording whose checksum is on file). Everything here reads local
copies of the archived files batch by batch: memory stays flat whatever the partition's size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from etl.model import RecordingOutcome, RecordingStatus

_BATCH_ROWS = 10_000
_ARCHIVED_CALL_COLUMNS = [
    "call_id",
    "archived_at",
    "ended",
    "message_count",
    "recording_status",
    "recording_uri",
    "recording_bytes",
    "recording_sha256",
    "recording_detail",
]


@dataclass(frozen=True)
class ArchivedCall:
    """What a re-run needs to know about a call that is already archived."""

    archived_at: datetime
    ended: datetime | None
    message_count: int | None
    recording: RecordingOutcome


def _batches(path: Path, columns: list[str] | None = None) -> Iterator[list[dict[str, Any]]]:
    parquet = pq.ParquetFile(path)
    try:
        present = None if columns is None else [c for c in columns if c in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=present):
            yield batch.to_pylist()
    finally:
        parquet.close()


def carried_over_rows(path: Path, keep: Callable[[str], bool]) -> Iterator[list[dict[str, Any]]]:
    """Batches of the rows in the Parquet file at `path` whose `call_id` satisfies `keep`."""
    for rows in _batches(path):
        kept = [row for row in rows if keep(row["call_id"])]
        if kept:
            yield kept


def read_archived_calls(path: Path) -> dict[str, ArchivedCall]:
    archived: dict[str, ArchivedCall] = {}
    for rows in _batches(path, _ARCHIVED_CALL_COLUMNS):
        for row in rows:
            archived[row["call_id"]] = ArchivedCall(
                archived_at=row["archived_at"],
                ended=row.get("ended"),
                message_count=row.get("message_count"),
                recording=RecordingOutcome(
                    RecordingStatus(row["recording_status"]),
                    uri=row.get("recording_uri"),
                    size_bytes=row.get("recording_bytes"),
                    sha256=row.get("recording_sha256"),
                    detail=row.get("recording_detail"),
                ),
            )
    return archived


def count_messages(path: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for rows in _batches(path, ["call_id"]):
        counts.update(row["call_id"] for row in rows)
    return counts


def transcript_is_reusable(archived: ArchivedCall | None, archived_message_rows: int) -> bool:
    """An ended call's transcript does not change; re-use it when the archive holds all of it."""
    return (
        archived is not None
        and archived.ended is not None
        and archived.message_count is not None
        and archived.message_count == archived_message_rows
    )


def mark_deleted(rows: list[dict[str, Any]], tombstones: Mapping[str, datetime]) -> int:
    """Stamp `source_deleted_at` on carried-over rows the source lists as deleted. Returns how many."""
    marked = 0
    for row in rows:
        deleted_at = tombstones.get(row["call_id"])
        if deleted_at is not None and row.get("source_deleted_at") is None:
            row["source_deleted_at"] = deleted_at
            marked += 1
    return marked
