"""Merge-never-shrink: what an archived partition keeps when it is written again.

A partition file is replaced whole on every write. Rows for calls this run did not archive (deleted
at the source since, or failing in this run) are carried over from the archived file, so the archive
only ever gains calls. Works batch by batch: memory stays flat whatever the partition's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

_BATCH_ROWS = 10_000


def carried_over_rows(path: Path, keep: Callable[[str], bool]) -> Iterator[list[dict[str, Any]]]:
    """Batches of the rows in the Parquet file at `path` whose `call_id` satisfies `keep`."""
    parquet = pq.ParquetFile(path)
    try:
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
            rows = [row for row in batch.to_pylist() if keep(row["call_id"])]
            if rows:
                yield rows
    finally:
        parquet.close()
