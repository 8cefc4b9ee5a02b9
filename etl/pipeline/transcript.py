"""One call's transcript while it is fetched: its message rows, made page by page as the pages
arrive, held in memory up to a bound and spooled to a local Parquet file beyond it.

A call holds one page of raw messages at a time, never its whole transcript: 32 calls in flight with
huge transcripts must not add up (issue 11). Most transcripts are a page or two and never touch the
disk; only a long one pays for the round trip through the spool file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from etl import records
from etl.parquet import ParquetSpool
from etl.schema import load_table_schema

# Rows held in memory per call before the transcript goes to its spool file: ~1-2 MB of rows.
MEMORY_ROWS = 2_000
_READ_BATCH_ROWS = 1_000


class Transcript:
    def __init__(self, call_id: str, spool_dir: Path, *, memory_rows: int = MEMORY_ROWS) -> None:
        self.call_id = call_id
        self.count = 0
        self._spool_dir = spool_dir
        self._memory_rows = memory_rows
        self._rows: list[dict[str, Any]] = []
        self._spool: ParquetSpool | None = None
        self._file: Path | None = None

    @property
    def rows_in_memory(self) -> int:
        """Rows held as Python objects here; a spooled transcript's spool holds at most a batch
        more (ParquetSpool converts every 1,000 rows and writes every 4 MiB)."""
        return len(self._rows)

    @property
    def spooled(self) -> bool:
        return self._spool is not None

    def add_page(self, messages: list[Any]) -> None:
        """The next page's messages, in order; BadRecord (naming the message) if one cannot be stored."""
        rows = records.message_rows(self.call_id, messages, first_index=self.count)
        self.count += len(rows)
        if self._spool is None and len(self._rows) + len(rows) <= self._memory_rows:
            self._rows.extend(rows)
            return
        if self._spool is None:
            self._spool = ParquetSpool(load_table_schema("messages"), self._spool_dir)
            self._spool.add_many(self._rows)
            self._rows = []
        self._spool.add_many(rows)

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every row in order, from memory or read back from the spool file a batch at a time."""
        if self._spool is None:
            yield from self._rows
            return
        self._file = self._spool.close()
        if self._file is None:
            return
        for batch in pq.ParquetFile(self._file).iter_batches(batch_size=_READ_BATCH_ROWS):
            yield from batch.to_pylist()

    def discard(self) -> None:
        """Drop the rows and the spool file, if any (after the partition took them, or on failure)."""
        self._rows = []
        if self._spool is not None:
            self._spool.abort()
        if self._file is not None:
            self._file.unlink(missing_ok=True)
