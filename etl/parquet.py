"""Rows -> local Parquet files (zstd, the contract's schema), and Hive partition keys.

A spool writes one local file per (table, partition) batch of work; the storage layer uploads the
finished file. Rows are buffered and written a row group at a time, so memory stays flat however
many rows go through.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pyarrow as pa
import pyarrow.parquet as pq

from etl.schema import TableSchema, load_table_schema

COMPRESSION = "zstd"
# Rows held as Python dicts before they become an Arrow batch.
_CONVERT_ROWS = 1_000
# A row group is written at `batch_rows` rows or this many bytes of Arrow data, whichever comes first.
_ROW_GROUP_BYTES = 4 * 1024 * 1024


class ParquetSpool:
    """Accumulates rows of one table and writes them to one Parquet file in `directory`.

    The file is written under a hidden temporary name and renamed by close(), so a crash never leaves
    a file that looks finished. Use as a context manager to abort on error and close otherwise.
    """

    def __init__(
        self,
        table: TableSchema,
        directory: Path,
        *,
        batch_rows: int = 100_000,
        file_name: str | None = None,
    ) -> None:
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        self._table = table
        self._schema = table.arrow_schema
        self._batch_rows = batch_rows
        self._names = frozenset(self._schema.names)
        self._required = tuple(f.name for f in self._schema if not f.nullable)
        self._maps = tuple(f.name for f in self._schema if pa.types.is_map(f.type))
        name = file_name or f"{table.name}-{uuid.uuid4().hex}.parquet"
        self._final_path = directory / name
        self._temp_path = directory / f".{name}.tmp"
        self._buffer: list[Mapping[str, Any]] = []
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._rows = 0
        self._closed = False
        self._result: Path | None = None

    @property
    def rows_written(self) -> int:
        """Rows accepted so far; all of them are in the file once close() has returned."""
        return self._rows

    def add(self, row: Mapping[str, Any]) -> None:
        """Queue one row (a dict keyed by column name; absent nullable columns are null).

        The spool may keep `row` itself, not a copy, until it becomes part of an Arrow batch (up to
        a thousand rows later): the caller must not change it after adding it.
        """
        if self._closed:
            raise ValueError("spool is closed")
        self._buffer.append(self._checked(row))
        self._rows += 1
        if len(self._buffer) >= _CONVERT_ROWS:
            self._convert()
        if (
            len(self._buffer) + self._pending_rows >= self._batch_rows
            or self._pending_bytes >= _ROW_GROUP_BYTES
        ):
            self._flush()

    def add_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.add(row)

    def close(self) -> Path | None:
        """Finish the file and return its path, or None if no row was ever added. Idempotent."""
        if self._closed:
            return self._result
        self._flush()
        self._closed = True
        if self._writer is None:
            return None
        self._writer.close()
        self._writer = None
        self._temp_path.replace(self._final_path)
        self._result = self._final_path
        return self._result

    def abort(self) -> None:
        """Drop everything: close the writer and delete the unfinished file."""
        self._closed = True
        self._buffer.clear()
        self._pending.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._temp_path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        elif not self._closed:
            self.abort()

    def _checked(self, row: Mapping[str, Any]) -> Mapping[str, Any]:
        # pyarrow silently drops unknown keys and accepts None in a non-nullable field, so a
        # misspelled key or a missing id would otherwise reach the file as a null. Rows from
        # etl.records have exactly the contract's columns, and comparing key sets costs half what
        # their difference does.
        if row.keys() != self._names:
            unknown = row.keys() - self._names
            if unknown:
                raise ValueError(f"{self._table.name}: columns not in the contract: {sorted(unknown)}")
        for required in self._required:
            if row.get(required) is None:
                missing = [name for name in self._required if row.get(name) is None]
                raise ValueError(f"{self._table.name}: required columns are null: {missing}")
        if not self._maps:
            # Nothing to convert, so the row itself is buffered (see add()): copying it cost close
            # to a tenth of the spool's time per row.
            return row
        converted = dict(row)
        for name in self._maps:
            value = converted.get(name)
            if isinstance(value, Mapping):
                # Arrow builds map<> values from (key, value) pairs; older pyarrow rejects dicts.
                converted[name] = list(value.items())
        return converted

    def _convert(self) -> None:
        # Python dicts cost about three times what the same rows cost as Arrow columns: convert
        # small batches early, and write a row group once enough of them have gathered.
        if not self._buffer:
            return
        batch = pa.RecordBatch.from_pylist(self._buffer, schema=self._schema)
        self._buffer = []
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self._pending_bytes += batch.nbytes

    def _flush(self) -> None:
        self._convert()
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, schema=self._schema)
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        if self._writer is None:
            self._temp_path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(
                self._temp_path,
                self._schema,
                compression=COMPRESSION,
                write_statistics=True,
            )
        self._writer.write_table(table, row_group_size=table.num_rows)


def release_memory_promptly() -> None:
    """Have Arrow allocate from the system allocator, which hands large freed blocks back at once.
    Arrow's default (mimalloc) keeps freed pages for reuse, which across a long run shows up as
    resident memory that grows with partition sizes although nothing holds it."""
    pa.set_memory_pool(pa.system_memory_pool())


def partition_directory(table_name: str, partition_value: date) -> str:
    """Where every file of a table's partition lies below the root: `calls/call_date=2026-03-02/`."""
    if isinstance(partition_value, datetime):
        # A datetime is a date too, but its isoformat() has a time part and its date may not be UTC.
        raise TypeError("partition_value must be a date, not a datetime")
    column = load_table_schema(table_name).partition_column
    return f"{table_name}/{column}={partition_value.isoformat()}/"


def partition_key(table_name: str, partition_value: date, file_name: str) -> str:
    """Object key of a file below the archive root: `calls/call_date=2026-03-02/<file_name>`."""
    directory = partition_directory(table_name, partition_value)
    if not file_name or "/" in file_name or file_name in {".", ".."}:
        raise ValueError(f"not a plain file name: {file_name!r}")
    return directory + file_name
