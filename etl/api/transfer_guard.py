"""Limits on one recording transfer: a size cap and a minimum rate, fed byte counts and a clock.

httpx's read timeout only catches a server that stops sending; one that trickles a byte every few
seconds, or sends without end, would hold a download slot (and the run) for as long as it likes.
`TransferGuard` is pure (no I/O, the clock injected); `GuardedSink` puts it in front of any
`BlockingSink`, so the sink itself does not change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from etl.api.responses import BlockingSink
from etl.errors import FatalError, RetriableError


class TransferTooLarge(FatalError):
    """Larger than the cap: it will be as large next time, so it is not retried."""


class TransferTooSlow(RetriableError):
    """Slower than the minimum rate over a whole window: dropped, and retried like a reset."""


@dataclass(frozen=True)
class TransferLimits:
    """Every field required: the defaults live in `Settings` (max_recording_mib, min_transfer_kib_s,
    transfer_window_s)."""

    max_bytes: int | None  # None: no cap
    min_bytes_per_s: float  # 0: no minimum
    window_s: float

    @classmethod
    def of(cls, *, max_recording_mib: float, min_transfer_kib_s: float, window_s: float) -> TransferLimits:
        cap = int(max_recording_mib * 1024 * 1024) if max_recording_mib > 0 else None
        return cls(max_bytes=cap, min_bytes_per_s=min_transfer_kib_s * 1024, window_s=window_s)


class TransferGuard:
    """Watches one transfer at a time: `start` before it (and before each retry), `feed` each chunk."""

    def __init__(self, limits: TransferLimits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self.start()

    def start(self, declared_bytes: int | None = None) -> None:
        """A transfer begins; `declared_bytes` (Content-Length), if known, is checked at once."""
        self.received = 0
        self._window_start = self._clock()
        self._window_bytes = 0
        self._check_size(declared_bytes or 0, "declared")

    def feed(self, count: int) -> None:
        self.received += count
        self._check_size(self.received, "received")
        minimum = self._limits.min_bytes_per_s
        if minimum <= 0:
            return
        self._window_bytes += count
        now = self._clock()
        elapsed = now - self._window_start
        if elapsed < self._limits.window_s:
            return
        rate = self._window_bytes / elapsed
        if rate < minimum:
            raise TransferTooSlow(
                f"transfer too slow: {rate / 1024:.1f} KiB/s over the last {elapsed:.0f} s "
                f"(minimum {minimum / 1024:g} KiB/s, min_transfer_kib_s)"
            )
        self._window_start, self._window_bytes = now, 0

    def _check_size(self, size: int, how: str) -> None:
        cap = self._limits.max_bytes
        if cap is not None and size > cap:
            raise TransferTooLarge(
                f"recording larger than the cap: {size} bytes {how}, "
                f"cap {cap / (1024 * 1024):g} MiB (max_recording_mib)"
            )


class GuardedSink:
    """A `BlockingSink` that passes everything on to `inner` after `guard` has seen it."""

    def __init__(self, inner: BlockingSink, guard: TransferGuard) -> None:
        self._inner = inner
        self._guard = guard

    def reset(self) -> None:
        self._inner.reset()

    def begin(self, length: int | None) -> None:
        # Each attempt (and each download after a redirect) is a transfer of its own.
        self._guard.start(length)
        self._inner.begin(length)

    def write(self, chunk: bytes | memoryview) -> None:
        self._guard.feed(len(chunk))
        self._inner.write(chunk)
