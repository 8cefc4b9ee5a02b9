"""What `status` tells a monitor: alerts over the archive's state, and the exit code they add up to.

The codes are stable and documented in the README and in `status --help`; a monitor alerts on any
code but 0. When several hold, the most urgent one is the exit code (the order of `_URGENCY`), and
`status --format json` lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from etl.reporting.report import EXIT_OK

if TYPE_CHECKING:
    from etl.reporting.status import ArchiveStatus

# 2 (usage) and 3 (the destination could not be read) keep the meanings they have for every command.
STATUS_FAILURES = 1  # calls, recordings or listings failed, or the last run stopped on a fatal error
STATUS_EMPTY = 5  # the destination does not exist or holds no published partition
STATUS_LAGGING = 6  # not up to date for longer than --max-lag-hours
STATUS_STUCK_OPEN = 7  # a partition still open more than --max-open-days after its day

_URGENCY = (STATUS_EMPTY, STATUS_FAILURES, STATUS_STUCK_OPEN, STATUS_LAGGING)


@dataclass(frozen=True)
class Thresholds:
    """The monitor's limits; None turns that check off."""

    max_lag_hours: float | None = None
    max_open_days: float | None = None


@dataclass(frozen=True)
class Alert:
    kind: str
    code: int
    message: str


def alerts_for(status: ArchiveStatus, thresholds: Thresholds) -> list[Alert]:
    if not status.exists:
        return [Alert("missing", STATUS_EMPTY, "the destination does not exist")]
    found: list[Alert] = []
    if not status.manifests:
        started = len(status.open_without_manifest)
        detail = f" ({started} days started by a run that did not finish)" if started else ""
        found.append(Alert("empty", STATUS_EMPTY, f"no partition is published yet{detail}"))
    failed_days = [m.call_date.isoformat() for m in status.manifests if status.failures(m)]
    if failed_days:
        failed = sum(status.failures(m) for m in status.manifests)
        found.append(
            Alert(
                "failures",
                STATUS_FAILURES,
                f"{failed} failures in {len(failed_days)} partitions ({_few(failed_days)}); "
                "see _quarantine/, the next sync retries them",
            )
        )
    fatal = (status.last_run or {}).get("fatal_error")
    if fatal:
        found.append(Alert("last_run_fatal", STATUS_FAILURES, f"the last run stopped: {fatal}"))
    if thresholds.max_open_days is not None:
        found.extend(_stuck_open(status, thresholds.max_open_days))
    lag, limit = status.sync_lag, thresholds.max_lag_hours
    if limit is not None and lag is not None and lag > timedelta(hours=limit):
        found.append(
            Alert(
                "lag",
                STATUS_LAGGING,
                f"up to date through {status.covered_through}, "
                f"{lag.total_seconds() / 3600:.1f} h ago (over {limit:g} h)",
            )
        )
    return found


def _stuck_open(status: ArchiveStatus, max_open_days: float) -> list[Alert]:
    today = status.now.date()
    days = [m.call_date.isoformat() for m in status.open] + status.open_without_manifest
    stuck = sorted(day for day in days if (today - _date(day)).days > max_open_days)
    if not stuck:
        return []
    return [
        Alert(
            "stuck_open",
            STATUS_STUCK_OPEN,
            f"{len(stuck)} partitions open more than {max_open_days:g} days after their day ({_few(stuck)})",
        )
    ]


def status_exit_code(alerts: list[Alert]) -> int:
    codes = {alert.code for alert in alerts}
    return next((code for code in _URGENCY if code in codes), EXIT_OK)


def _date(day: str) -> date:
    return date.fromisoformat(day)


def _few(days: list[str]) -> str:
    return ", ".join(days[:5]) + (f", ... {len(days) - 5} more" if len(days) > 5 else "")
