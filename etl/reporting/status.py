"""`ultravox-archiver status`: what the state in the destination says."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from etl.state import MANIFEST_PREFIX, OPEN_PREFIX, PartitionManifest, day_from_key, manifest_key
from etl.storage.base import Storage

_READERS = 16


@dataclass(frozen=True)
class ArchiveStatus:
    manifests: list[PartitionManifest]
    open_without_manifest: list[str]  # days a run started and did not finish
    last_run: dict[str, Any] | None
    now: datetime

    @property
    def final(self) -> list[PartitionManifest]:
        return [m for m in self.manifests if m.final]

    @property
    def open(self) -> list[PartitionManifest]:
        return [m for m in self.manifests if not m.final]

    @property
    def newest_call(self) -> datetime | None:
        created = [m.newest_call_created for m in self.manifests if m.newest_call_created]
        return max(created) if created else None

    @property
    def lag(self) -> timedelta | None:
        newest = self.newest_call
        return self.now - newest if newest else None


def read_status(
    storage: Storage, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> ArchiveStatus:
    manifest_keys = [k for k in storage.list_keys(MANIFEST_PREFIX) if day_from_key(k)]
    with ThreadPoolExecutor(_READERS) as pool:
        raw = list(pool.map(storage.get_bytes, manifest_keys))
    manifests = sorted(
        (PartitionManifest.from_json(body) for body in raw if body is not None), key=lambda m: m.call_date
    )
    with_manifest = {manifest_key(m.call_date) for m in manifests}
    open_days = [d for d in map(day_from_key, storage.list_keys(OPEN_PREFIX)) if d]
    unfinished = [d.isoformat() for d in open_days if manifest_key(d) not in with_manifest]
    runs = sorted(storage.list_keys("_runs/"))
    last_run_body = storage.get_bytes(runs[-1]) if runs else None
    last_run = json.loads(last_run_body) if last_run_body else None
    return ArchiveStatus(manifests, unfinished, last_run, now())


def format_status(status: ArchiveStatus, dest: str) -> str:
    lines = [f"archive {dest}"]
    if not status.manifests and not status.open_without_manifest:
        lines.append("  nothing archived yet: run `ultravox-archiver sync --since YYYY-MM-DD`")
        return "\n".join(lines)
    if status.manifests:
        first, last = status.manifests[0].call_date, status.manifests[-1].call_date
        lines.append(f"  partitions          {len(status.manifests)} ({first} .. {last})")
    lines.append(f"  final               {len(status.final)}")
    lines.append(f"  open                {len(status.open) + len(status.open_without_manifest)}")
    calls = sum(m.calls for m in status.manifests)
    lines.append(f"  calls archived      {calls}")
    for manifest in status.open:
        lines.append(
            f"    {manifest.call_date}  {manifest.calls} calls; underway {len(manifest.underway_call_ids)}, "
            f"recordings pending {len(manifest.pending_recording_call_ids)}, "
            f"failed {manifest.failed}"
        )
    for day in status.open_without_manifest:
        lines.append(f"    {day}  started by a run that did not finish (the next sync completes it)")
    pending = sum(len(m.pending_recording_call_ids) for m in status.manifests)
    underway = sum(len(m.underway_call_ids) for m in status.manifests)
    lines.append(f"  pending             {underway} calls underway, {pending} recordings not ready")
    if status.last_run:
        run = status.last_run
        outcome = "complete" if run.get("complete") else "incomplete"
        lines.append(
            f"  last run            {run.get('command', '?')} {run.get('run_id')} "
            f"finished {run.get('finished_at')} ({outcome})"
        )
    if status.lag is not None:
        hours = status.lag.total_seconds() / 3600
        lines.append(
            f"  lag                 newest archived call created {hours:.1f} h ago ({status.newest_call})"
        )
    return "\n".join(lines)
