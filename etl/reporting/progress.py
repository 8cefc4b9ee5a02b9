"""A one-line progress display for people at a terminal; silent otherwise."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from etl.reporting.summary import RunSummary

REDRAW_EVERY_S = 0.25


class ProgressLine:
    def __init__(self, stream: TextIO, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._clock = clock
        self._last = 0.0
        self._drawn = False

    def __call__(self, summary: RunSummary) -> None:
        now = self._clock()
        if now - self._last < REDRAW_EVERY_S:
            return
        self._last = now
        self._drawn = True
        line = (
            f"archived {summary.calls_archived} calls, {summary.messages_archived} messages, "
            f"{summary.recordings_archived} recordings ({summary.recording_bytes / 2**20:.1f} MiB); "
            f"pending {summary.calls_underway + summary.recordings_pending}, "
            f"failed {summary.calls_failed + summary.recordings_failed + summary.records_quarantined}"
        )
        self._stream.write(f"\r\x1b[K{line}")
        self._stream.flush()

    def finish(self) -> None:
        if self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()


def progress_for(stream: TextIO) -> ProgressLine | None:
    return ProgressLine(stream) if stream.isatty() else None
