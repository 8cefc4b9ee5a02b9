"""One day's partition during a run: what the archive already holds, what this run adds, and how
the two are merged and published.

Publishing order matters for readers and for crash safety: recordings first (as each call is done),
then the messages file, then the calls file, then the manifest. Every object appears whole (an S3
PUT or completed multipart upload, a rename on disk), so a reader sees the old partition or the new
one, and a run killed between two writes leaves the partition open for the next run to finish.
Each of those writes is fenced: `fence` (the lease's `confirm`) runs right before it and raises
`LeaseLost` when another run took the partition over, so a writer that lost it writes nothing more.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from etl.merge import (
    ArchivedCall,
    carried_over_rows,
    count_messages,
    mark_deleted,
    read_archived_calls,
)
from etl.model import PublishResult
from etl.parquet import ParquetSpool, partition_directory, partition_key
from etl.schema import load_table_schema, table_names
from etl.state import PartitionManifest, manifest_key
from etl.storage.base import Storage

PARTITION_FILE = "data.parquet"


class Partition:
    """The data of one partition; what stays open in it is the ledger's (see PartitionBook)."""

    def __init__(self, day: date, spool_dir: Path) -> None:
        self.day = day
        self._spool_dir = spool_dir
        self.calls_key = partition_key("calls", day, PARTITION_FILE)
        self.messages_key = partition_key("messages", day, PARTITION_FILE)
        self._calls = ParquetSpool(load_table_schema("calls"), spool_dir)
        self._messages = ParquetSpool(load_table_schema("messages"), spool_dir)
        self._archived_calls_files: list[Path] = []
        self._archived_messages_files: list[Path] = []
        # A backfill repairs (see `load_archived(repair=True)`): it also reads part files beside
        # `data.parquet` (which readers see, but no run writes) and removes them once the merged
        # partition is published, and it checks each re-used recording's SHA-256.
        self.check_recordings = False
        self._stray_keys: list[str] = []
        self.archived: dict[str, ArchivedCall] = {}
        self.archived_message_counts: Counter[str] = Counter()
        self.fresh_call_ids: set[str] = set()
        self._reused_transcripts: set[str] = set()
        self.newest_created: datetime | None = None
        # When the archive first found each call it last left underway (from the manifest).
        self.underway_since: dict[str, datetime] = {}
        # Calls whose recording the last run of this day left pending (from the manifest): already
        # waited for once, so polled without waiting again.
        self.pending_recordings: frozenset[str] = frozenset()

    # -- before the run's work ------------------------------------------------------------------------

    def load_archived(self, storage: Storage, *, repair: bool = False) -> None:
        """Fetch local copies of the archived partition files (if any) and index what they hold.

        `repair` (a backfill): every Parquet file of the partition's directories, not only
        `data.parquet`, costing a listing request per table; the others are removed on publishing.
        """
        self.check_recordings = repair
        # Without a readable manifest its calls count as first found by this run: underway ones
        # given up on later, never sooner; pending recordings waited for again.
        manifest = PartitionManifest.read(storage.get_bytes(manifest_key(self.day)))
        if manifest is not None:
            self.underway_since = _underway_since(manifest)
            self.pending_recordings = frozenset(manifest.pending_recording_call_ids)
        calls_keys, messages_keys = [self.calls_key], [self.messages_key]
        if repair:
            calls_keys += self._strays(storage, "calls", self.calls_key)
            messages_keys += self._strays(storage, "messages", self.messages_key)
        self._archived_calls_files = self._fetch(storage, calls_keys, "calls")
        if not self._archived_calls_files:
            return
        self._archived_messages_files = self._fetch(storage, messages_keys, "messages")
        for path in self._archived_calls_files:
            # A call in several files (a duplicated part file) is indexed once; any copy will do, as
            # the call is archived again or carried over once.
            self.archived.update(read_archived_calls(path))
        for path in self._archived_messages_files:
            # Duplicated message rows count twice: the count then disagrees with the call's
            # message_count and the transcript is fetched again.
            self.archived_message_counts.update(count_messages(path))

    def _strays(self, storage: Storage, table: str, data_key: str) -> list[str]:
        strays = [key for key in storage.list_keys(partition_directory(table, self.day)) if key != data_key]
        self._stray_keys += strays
        return strays

    def _fetch(self, storage: Storage, keys: list[str], table: str) -> list[Path]:
        paths = []
        for key in keys:
            path = self._spool_dir / f"archived-{table}-{uuid.uuid4().hex}.parquet"
            if storage.get_file(key, path):
                paths.append(path)
        return paths

    # -- during the run -------------------------------------------------------------------------------

    def add_call(self, row: Mapping[str, Any], message_rows: Iterable[Mapping[str, Any]] | None) -> None:
        """Add a call archived by this run; `message_rows` None means its archived transcript is
        re-used as it is."""
        call_id = row["call_id"]
        if message_rows is None:
            self._reused_transcripts.add(call_id)
        else:
            self._messages.add_many(message_rows)
        self._calls.add(row)
        self.fresh_call_ids.add(call_id)
        self._track_newest([row])

    def kept_call_ids(self) -> set[str]:
        """Archived calls this run did not archive again: they stay, as archived."""
        return set(self.archived) - self.fresh_call_ids

    # -- publishing -----------------------------------------------------------------------------------

    def publish(
        self, storage: Storage, tombstones: Mapping[str, datetime], fence: Callable[[], None]
    ) -> PublishResult:
        kept = self.kept_call_ids()
        deleted = self._carry_over(kept, tombstones)
        messages_file = self._messages.close()
        calls_file = self._calls.close()
        try:
            if messages_file is not None:
                fence()
                storage.put_file(self.messages_key, messages_file)
            if calls_file is not None:
                fence()
                storage.put_file(self.calls_key, calls_file)
            # Only once data.parquet holds their rows: a run killed before this leaves them for the
            # next backfill, never a row lost.
            for key in self._stray_keys:
                fence()
                storage.delete(key)
        finally:
            for path in (messages_file, calls_file):
                if path is not None:
                    path.unlink(missing_ok=True)
        return PublishResult(
            calls=self._calls.rows_written,
            messages=self._messages.rows_written,
            kept_from_archive=len(kept),
            deleted_at_source=deleted,
            newest_call_created=self.newest_created,
            schema_versions={name: load_table_schema(name).version for name in table_names()},
        )

    def _carry_over(self, kept: set[str], tombstones: Mapping[str, datetime]) -> int:
        deleted = 0
        # Each row once, by the contract's key (calls: call_id; messages: call_id, message_index),
        # however many times the archived files hold it.
        seen_calls: set[str] = set()
        for path in self._archived_calls_files if kept else []:
            for rows in carried_over_rows(path, kept.__contains__):
                rows = [row for row in rows if _first(seen_calls, row["call_id"])]
                deleted += mark_deleted(rows, tombstones)
                self._calls.add_many(rows)
                self._track_newest(rows)
        transcripts = kept | self._reused_transcripts
        seen_messages: set[tuple[str, int]] = set()
        for path in self._archived_messages_files if transcripts else []:
            for rows in carried_over_rows(path, transcripts.__contains__):
                fresh = [row for row in rows if _first(seen_messages, (row["call_id"], row["message_index"]))]
                self._messages.add_many(fresh)
        return deleted

    def _track_newest(self, rows: list[Mapping[str, Any]] | list[dict[str, Any]]) -> None:
        for row in rows:
            if self.newest_created is None or row["created"] > self.newest_created:
                self.newest_created = row["created"]

    def discard(self) -> None:
        """Drop every local file of this partition (spools and archived copies)."""
        self._calls.abort()
        self._messages.abort()
        for path in self._archived_calls_files + self._archived_messages_files:
            path.unlink(missing_ok=True)


def _first(seen: set[Any], key: Any) -> bool:
    """True the first time `key` is seen (and remembers it)."""
    if key in seen:
        return False
    seen.add(key)
    return True


def _underway_since(manifest: PartitionManifest) -> dict[str, datetime]:
    """The manifest's first-found-underway times; none if they cannot be read."""
    try:
        return {call_id: datetime.fromisoformat(when) for call_id, when in manifest.underway_since.items()}
    except (ValueError, TypeError):
        return {}
