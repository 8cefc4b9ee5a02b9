"""`ultravox-archiver status`: what the state in the destination says, for people and for monitors."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from etl.model import ProblemKind
from etl.reporting.health import Alert, Thresholds, alerts_for, status_exit_code
from etl.state import MANIFEST_PREFIX, OPEN_PREFIX, PartitionManifest, day_from_key, manifest_key
from etl.storage.base import Storage
from etl.storage.local import LocalStorage

_READERS = 16


@dataclass(frozen=True)
class ArchiveStatus:
    manifests: list[PartitionManifest]
    open_without_manifest: list[str]  # days a run started and did not finish
    last_run: dict[str, Any] | None
    now: datetime
    # False for a local destination whose directory does not exist (a typo in --dest, a lost mount).
    exists: bool = True

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

    @property
    def covered_through(self) -> datetime | None:
        """Up to when the archive holds every call the source had: when the newest day was last
        written, or that day's end if it was written later. Unlike the newest call's age, this does
        not grow on a quiet account that is synced every hour."""
        if not self.manifests:
            return None
        newest = self.manifests[-1]
        day_end = datetime.combine(newest.call_date + timedelta(days=1), time(), UTC)
        return min(newest.written_at, day_end)

    @property
    def sync_lag(self) -> timedelta | None:
        covered = self.covered_through
        return self.now - covered if covered else None

    def failures(self, manifest: PartitionManifest) -> int:
        """A partition's failed calls, recordings and listings; a day only cut short by a run's
        deadline is not a failure (the next run continues it)."""
        return len(manifest.failed_call_ids) + sum(
            kind != ProblemKind.UNFINISHED for kind in manifest.failed_kinds
        )


def read_status(
    storage: Storage, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> ArchiveStatus:
    if isinstance(storage, LocalStorage) and not storage.root.is_dir():
        return ArchiveStatus([], [], None, now(), exists=False)
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


def format_status(status: ArchiveStatus, dest: str, thresholds: Thresholds | None = None) -> str:
    alerts = alerts_for(status, thresholds or Thresholds())
    lines = [f"archive {dest}"]
    if not status.exists:
        lines.append("  the destination does not exist: check --dest / ARCHIVE_DEST")
        return "\n".join(lines + _alert_lines(alerts))
    if not status.manifests and not status.open_without_manifest:
        lines.append("  nothing archived yet: run `ultravox-archiver sync --since YYYY-MM-DD`")
        return "\n".join(lines + _alert_lines(alerts))
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
        lines.append(f"    {day}  started by a run that did not finish ({_who_finishes(status)})")
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
    if status.sync_lag is not None:
        hours = status.sync_lag.total_seconds() / 3600
        lines.append(f"  up to date through  {status.covered_through} ({hours:.1f} h ago)")
    return "\n".join(lines + _alert_lines(alerts))


def _who_finishes(status: ArchiveStatus) -> str:
    # A sync plans from the published partitions: with none, it cannot know where history starts.
    if status.manifests:
        return "the next sync completes it"
    return "nothing is published yet: the next sync needs --since (or ARCHIVER_SINCE) to complete it"


def _alert_lines(alerts: list[Alert]) -> list[str]:
    return [f"  ALERT {alert.kind:17} {alert.message}" for alert in alerts]


def status_json(status: ArchiveStatus, dest: str, thresholds: Thresholds | None = None) -> dict[str, Any]:
    """The same facts as `format_status`, as one JSON object for monitors (`status --format json`)."""
    limits = thresholds or Thresholds()
    alerts = alerts_for(status, limits)
    last_run = status.last_run or {}
    open_partitions = [
        {
            "call_date": m.call_date.isoformat(),
            "published": True,
            "calls": m.calls,
            "calls_underway": len(m.underway_call_ids),
            "recordings_pending": len(m.pending_recording_call_ids),
            "failed": status.failures(m),
            "failed_kinds": list(m.failed_kinds),
        }
        for m in status.open
    ] + [{"call_date": day, "published": False} for day in status.open_without_manifest]
    return {
        "dest": dest,
        "exists": status.exists,
        "exit_code": status_exit_code(alerts),
        "alerts": [{"kind": a.kind, "exit_code": a.code, "message": a.message} for a in alerts],
        "partitions": len(status.manifests),
        "first_day": status.manifests[0].call_date.isoformat() if status.manifests else None,
        "last_day": status.manifests[-1].call_date.isoformat() if status.manifests else None,
        "final": len(status.final),
        "open": len(status.open) + len(status.open_without_manifest),
        "open_partitions": open_partitions,
        "calls_archived": sum(m.calls for m in status.manifests),
        "calls_underway": sum(len(m.underway_call_ids) for m in status.manifests),
        "recordings_pending": sum(len(m.pending_recording_call_ids) for m in status.manifests),
        "failed": sum(status.failures(m) for m in status.manifests),
        "last_run": {
            key: last_run.get(key)
            for key in ("command", "run_id", "finished_at", "complete", "fatal_error", "fatal_error_kind")
        }
        if status.last_run
        else None,
        "newest_call_created": _iso(status.newest_call),
        "covered_through": _iso(status.covered_through),
        "lag_hours": _hours(status.sync_lag),
        "thresholds": {"max_lag_hours": limits.max_lag_hours, "max_open_days": limits.max_open_days},
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _hours(span: timedelta | None) -> float | None:
    return round(span.total_seconds() / 3600, 3) if span is not None else None
