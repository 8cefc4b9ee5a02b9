"""What the archive holds for one day, as a reader sees it: every Parquet file of the day's
partition directories (not only `data.parquet`), read for the few columns `verify` compares."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from etl.parquet import partition_directory
from etl.state import PartitionManifest, manifest_key, open_marker_key
from etl.storage.base import Storage

_CALL_COLUMNS = ["call_id", "message_count", "recording_status", "recording_bytes", "recording_sha256"]
# The messages table's key, per the contract (schemas/messages.json).
_MESSAGE_COLUMNS = ["call_id", "message_index"]


@dataclass(frozen=True)
class ArchivedCallRow:
    message_count: int | None
    recording_status: str
    recording_bytes: int | None
    recording_sha256: str | None


@dataclass
class ArchivedDay:
    day: date
    # Rows per call id, over every file of the calls partition.
    call_rows: Counter[str] = field(default_factory=Counter)
    calls: dict[str, ArchivedCallRow] = field(default_factory=dict)
    # Rows per (call id, message_index), over every file of the messages partition.
    message_keys: Counter[tuple[str, int]] = field(default_factory=Counter)
    manifest: PartitionManifest | None = None
    manifest_unreadable: bool = False
    open_marker: bool = False

    def distinct_messages(self) -> Counter[str]:
        """Distinct message indexes per call id."""
        return Counter(call_id for call_id, _ in self.message_keys)


def read_archived_day(storage: Storage, day: date, spool_dir: Path) -> ArchivedDay:
    archived = ArchivedDay(day)
    for rows in _rows(storage, partition_directory("calls", day), _CALL_COLUMNS, spool_dir):
        for row in rows:
            archived.call_rows[row["call_id"]] += 1
            archived.calls[row["call_id"]] = ArchivedCallRow(
                message_count=row.get("message_count"),
                recording_status=row["recording_status"],
                recording_bytes=row.get("recording_bytes"),
                recording_sha256=row.get("recording_sha256"),
            )
    for rows in _rows(storage, partition_directory("messages", day), _MESSAGE_COLUMNS, spool_dir):
        archived.message_keys.update((row["call_id"], row["message_index"]) for row in rows)
    raw = storage.get_bytes(manifest_key(day))
    archived.manifest = PartitionManifest.read(raw)
    archived.manifest_unreadable = raw is not None and archived.manifest is None
    archived.open_marker = storage.head(open_marker_key(day)) is not None
    return archived


def _rows(
    storage: Storage, directory: str, columns: list[str], spool_dir: Path
) -> Iterator[list[dict[str, Any]]]:
    """Batches of rows of every file under `directory`, each file copied to `spool_dir` and removed."""
    for key in list(storage.list_keys(directory)):
        path = spool_dir / f"verify-{uuid.uuid4().hex}.parquet"
        try:
            if not storage.get_file(key, path):
                continue  # removed since it was listed
            parquet = pq.ParquetFile(path)
            try:
                present = [c for c in columns if c in parquet.schema_arrow.names]
                for batch in parquet.iter_batches(batch_size=10_000, columns=present):
                    yield batch.to_pylist()
            finally:
                parquet.close()
        finally:
            path.unlink(missing_ok=True)
