"""The recording size cap and minimum transfer rate, on a fake clock."""

from __future__ import annotations

import pytest

from etl.api.transfer_guard import (
    GuardedSink,
    TransferGuard,
    TransferLimits,
    TransferTooLarge,
    TransferTooSlow,
)
from etl.errors import FatalError, RetriableError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def guard(clock: Clock, *, max_mib: float = 1, min_kib_s: float = 16, window_s: float = 60) -> TransferGuard:
    limits = TransferLimits.of(max_recording_mib=max_mib, min_transfer_kib_s=min_kib_s, window_s=window_s)
    return TransferGuard(limits, clock=clock)


def test_a_transfer_within_the_limits_passes() -> None:
    clock = Clock()
    g = guard(clock)
    for _ in range(16):
        clock.now += 1
        g.feed(64 * 1024)
    assert g.received == 1024 * 1024


def test_more_than_the_cap_is_refused_and_not_retried() -> None:
    g = guard(Clock(), max_mib=1)
    g.feed(1024 * 1024)
    with pytest.raises(TransferTooLarge, match="max_recording_mib") as raised:
        g.feed(1)
    assert isinstance(raised.value, FatalError)


def test_a_declared_length_over_the_cap_is_refused_before_any_byte() -> None:
    g = guard(Clock(), max_mib=1)
    with pytest.raises(TransferTooLarge, match="declared"):
        g.start(1024 * 1024 + 1)


def test_a_trickle_below_the_minimum_rate_over_a_window_is_dropped_for_a_retry() -> None:
    clock = Clock()
    g = guard(clock, min_kib_s=16, window_s=60)
    g.start()
    with pytest.raises(TransferTooSlow, match="min_transfer_kib_s") as raised:
        for _ in range(100):
            clock.now += 5  # within any read timeout, but 1 KiB every 5 s
            g.feed(1024)
    assert isinstance(raised.value, RetriableError)
    assert clock.now - 100 == pytest.approx(60)


def test_a_slow_start_is_judged_over_the_whole_window_only() -> None:
    clock = Clock()
    g = guard(clock, max_mib=0, min_kib_s=16, window_s=60)
    clock.now += 30
    g.feed(10)  # 30 s with nearly nothing: not yet a whole window
    clock.now += 30
    g.feed(2 * 1024 * 1024 - 10 - 1024 * 1024)  # then fast enough to make up for it
    clock.now += 60
    g.feed(1024 * 1024 - 1)


def test_zero_means_no_cap_and_no_minimum() -> None:
    clock = Clock()
    g = guard(clock, max_mib=0, min_kib_s=0)
    for _ in range(10):
        clock.now += 1000
        g.feed(1024 * 1024 * 1024)


def test_start_begins_a_new_transfer() -> None:
    g = guard(Clock(), max_mib=1)
    g.feed(1024 * 1024)
    g.start()
    g.feed(1024 * 1024)


class ListSink:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.began: list[int | None] = []

    def reset(self) -> None:
        self.chunks.clear()

    def begin(self, length: int | None) -> None:
        self.began.append(length)

    def write(self, chunk: bytes | memoryview) -> None:
        self.chunks.append(bytes(chunk))


def test_guarded_sink_passes_bytes_on_until_the_cap() -> None:
    inner = ListSink()
    sink = GuardedSink(inner, guard(Clock(), max_mib=1))
    sink.reset()
    sink.begin(None)
    sink.write(b"x" * 1024 * 1024)
    with pytest.raises(TransferTooLarge):
        sink.write(b"y")
    assert inner.began == [None]
    assert b"".join(inner.chunks) == b"x" * 1024 * 1024
