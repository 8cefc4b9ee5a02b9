"""A progress bar for people at a terminal (calls done of the run's total, calls/s, ETA); silent
otherwise, and never written into logs.

tqdm draws it; log lines that the `etl` logger writes to the same terminal meanwhile go through
`tqdm.write`, so they print above the bar instead of through it. A run's total number of calls is
known only once every day is listed, and listing runs just ahead of the calls in flight: until then
the total is estimated from the days listed so far (their calls per day, times the run's days).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from tqdm import tqdm

from etl.reporting.summary import RunSummary

REDRAW_EVERY_S = 0.25
_FALLBACK_COLUMNS, _FALLBACK_ROWS = 120, 24


class Progress(Protocol):
    """What a run tells a progress display, as it happens."""

    def planned(self, days: int) -> None: ...

    def listed(self, calls: int) -> None: ...

    def day_listed(self) -> None: ...

    def day_done(self) -> None: ...

    def update(self, summary: RunSummary) -> None: ...


class _Bar(tqdm):  # type: ignore[type-arg]
    # No monitor thread: the bar is redrawn from the run's own updates.
    monitor_interval = 0


class ProgressBar:
    def __init__(self, stream: TextIO) -> None:
        self._days = self._days_listed = self._days_done = self._listed = self._listed_in_listed_days = 0
        sized = _has_size(stream)
        self._bar = _Bar(
            total=None,
            desc="calls",
            unit=" calls",
            file=stream,
            mininterval=REDRAW_EVERY_S,
            miniters=0,
            # Follows the terminal's size; a terminal that reports none (a bare pty says 0x0) would
            # get no bar at all from tqdm.
            dynamic_ncols=sized,
            ncols=None if sized else _FALLBACK_COLUMNS,
            nrows=None if sized else _FALLBACK_ROWS,
            bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {rate_fmt}{postfix} [{elapsed}<{remaining}]",
        )
        self._bar.set_postfix_str("listing", refresh=False)
        self._restore = _print_logs_above(self._bar, stream)

    def planned(self, days: int) -> None:
        self._days = days
        self._bar.set_postfix_str(f"days 0/{days}", refresh=False)

    def listed(self, calls: int) -> None:
        self._listed += calls
        self._estimate()

    def day_listed(self) -> None:
        # Days list one at a time: every call listed so far belongs to a day whose listing ended.
        self._days_listed += 1
        self._listed_in_listed_days = self._listed
        self._estimate()

    def day_done(self) -> None:
        self._days_done += 1
        self._estimate()

    def _estimate(self) -> None:
        if not self._days_listed:
            return
        # The day being listed counts as unlisted: its calls so far say nothing of its size.
        unlisted = max(0, self._days - max(self._days_listed, self._days_done))
        per_day = self._listed_in_listed_days / self._days_listed
        estimate = round(self._listed_in_listed_days + per_day * unlisted)
        self._bar.total = max(self._bar.n, self._listed, estimate)

    def update(self, summary: RunSummary) -> None:
        done = summary.calls_archived + summary.calls_underway + summary.calls_failed
        pending = summary.calls_underway + summary.recordings_pending
        failed = summary.calls_failed + summary.recordings_failed + summary.records_quarantined
        self._bar.set_postfix_str(
            f"days {self._days_done}/{self._days}, {summary.recordings_archived} recordings "
            f"({summary.recording_bytes / 2**20:.1f} MiB), pending {pending}, failed {failed}",
            refresh=False,
        )
        if self._bar.total is not None and done > self._bar.total:
            self._bar.total = done
        self._bar.update(done - self._bar.n)  # redraws at most every REDRAW_EVERY_S

    def finish(self) -> None:
        self._bar.close()
        self._restore()


class _AboveBar:
    """A stream for a log handler that writes each line above the bar."""

    def __init__(self, bar: tqdm[Any], stream: TextIO) -> None:
        self._bar, self._stream = bar, stream

    def write(self, text: str) -> None:
        self._bar.write(text, file=self._stream, end="")

    def flush(self) -> None:
        self._stream.flush()


def _print_logs_above(bar: tqdm[Any], stream: TextIO) -> Callable[[], None]:
    """Point the `etl` handlers that write to `stream` at the bar; returns what undoes it."""
    handlers = [
        h
        for h in logging.getLogger("etl").handlers
        if isinstance(h, logging.StreamHandler) and h.stream is stream
    ]
    for handler in handlers:
        handler.setStream(_AboveBar(bar, stream))

    def restore() -> None:
        for handler in handlers:
            handler.setStream(stream)

    return restore


def _has_size(stream: TextIO) -> bool:
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return False
    return size.columns > 0 and size.lines > 0


def progress_for(stream: TextIO) -> ProgressBar | None:
    return ProgressBar(stream) if stream.isatty() else None
