"""Sharded backfill: which days a worker takes, from nothing but its shard and the day itself. Pure.

A backfill split across N workers (`--shard I/N`, or a scheduler's array index with `--shard-count N`)
gives each day to exactly one shard: the one whose index is the day's proleptic ordinal modulo N.
The rule needs no coordinator and not even the same window: a day belongs to the same shard in
every window that holds it, so workers started with slightly different `--since`/`--until` still
never take the same day, and a dead worker re-run with its own shard takes exactly its days again.
Consecutive days go round the shards in turn, so any window of at least N days is split evenly (to
within a day). Every object a backfill writes is either one day's (its data, manifest, open marker
and lease) or one run's (`_runs/`, `_quarantine/`, under a run id of its own), so workers that
never share a day never write the same object.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from etl.errors import ConfigError

# The array index a scheduler hands each worker, in the order they are looked for: a Kubernetes
# Indexed Job's pod, then an AWS Batch array job's child. The count is ours to give (--shard-count).
INDEX_VARS = ("JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX")
_SHARD = re.compile(r"([0-9]{1,9})/([0-9]{1,9})")


@dataclass(frozen=True)
class Shard:
    """Shard `index` (from 0) of `count`; not checked here (see `check_shard`)."""

    index: int
    count: int

    def takes(self, day: date) -> bool:
        return day.toordinal() % self.count == self.index

    def days(self, days: Iterable[date]) -> list[date]:
        return [day for day in days if self.takes(day)]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(value: object) -> Shard:
    """`I/N` (as `--shard` and a config file give it) as a Shard; ValueError when it is not that shape."""
    if isinstance(value, Shard):
        return value
    match = _SHARD.fullmatch(str(value).strip())
    if match is None:
        raise ValueError(f"not I/N: {value!r}")
    return Shard(int(match[1]), int(match[2]))


def check_shard(shard: Shard | None, count: int | None) -> None:
    """Refuse a shard that cannot be one, a count without an index, and a shard and count that disagree."""
    if count is not None and count < 1:
        raise ConfigError(f"--shard-count must be at least 1, got {count}")
    if shard is None:
        if count is not None:
            raise ConfigError(
                f"--shard-count {count} needs this worker's index: --shard I/{count}, or "
                f"{' or '.join(INDEX_VARS)} as the scheduler sets it (sharding is for backfill only)"
            )
        return
    if shard.count < 1:
        raise ConfigError(f"--shard {shard}: the count N of I/N must be at least 1")
    if shard.index >= shard.count:
        raise ConfigError(
            f"shard {shard}: the index must be below the count (0 to {shard.count - 1}); from --shard, "
            f"or {' or '.join(INDEX_VARS)} with --shard-count"
        )
    if count is not None and count != shard.count:
        raise ConfigError(f"--shard {shard} disagrees with --shard-count {count}")


def index_from_env(env: Mapping[str, str]) -> tuple[int, str] | None:
    """The scheduler's array index for this worker and the variable it came from, or None."""
    for name in INDEX_VARS:
        text = env.get(name, "").strip()
        if text:
            if not text.isascii() or not text.isdigit():
                raise ConfigError(f"{name} must be a whole number from 0, got {text!r}")
            return int(text), name
    return None


def worker_identity(worker_id: str | None, shard: Shard | None) -> str | None:
    """The identity a sharded worker's leases carry: one `--worker-id` given to every shard (the Job's
    name, say) would otherwise name N live runs at once, breaking the id's promise of one live run,
    and a worker could take over another shard's leases at once. A re-run of the same shard keeps its
    identity, so it still takes over its dead predecessor's days without waiting."""
    if worker_id is None or shard is None:
        return worker_id
    return f"{worker_id}#shard-{shard.index}-of-{shard.count}"
