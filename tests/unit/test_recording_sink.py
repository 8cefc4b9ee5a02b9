"""RecordingSink and BufferPool: one hash pass, one PUT for recordings that fit the buffer,
overlapping parts (half a buffer each) for longer ones, a clean start after a reset, and pooled buffers
that are reused, never resized, and lent no more than the pool holds."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from pathlib import Path

import pytest

from etl.api.budget import BufferPool, recording_buffers
from etl.api.recording_sink import RecordingSink, TransferCancelled
from etl.errors import RetriableError, StorageError
from etl.storage.base import ByteData, PartedUpload
from etl.storage.local import LocalStorage

KEY = "recordings/call_date=2026-11-26/c1.wav"
KIB = 1024
MIB = 1024 * KIB
BUFFER = 128 * KIB  # parts of 64 KiB


class Recorded:
    """A PartedUpload over a LocalStorage upload that logs what it was asked to do."""

    def __init__(self, inner: PartedUpload, log: list[str], *, fail_part: int | None = None) -> None:
        self._inner = inner
        self._log = log
        self._fail_part = fail_part
        self.part_started = threading.Event()

    def put_part(self, number: int, offset: int, data: ByteData) -> None:
        self._log.append(f"part {number} @{offset} {len(data)}")
        self.part_started.set()
        if number == self._fail_part:
            raise StorageError(f"upload part {number} failed: network dropped")
        self._inner.put_part(number, offset, data)

    def complete(self) -> str:
        self._log.append("complete")
        return self._inner.complete()

    def abort(self) -> None:
        self._log.append("abort")
        self._inner.abort()


class RecordingStorage(LocalStorage):
    """LocalStorage that logs the audio-path calls (the rest is inherited untouched)."""

    def __init__(self, root: Path, *, fail_part: int | None = None) -> None:
        super().__init__(root)
        self.log: list[str] = []
        self.uploads: list[Recorded] = []
        self._fail_part = fail_part

    def put_checked(self, key: str, data: ByteData, *, sha256: bytes, content_type: str | None = None) -> str:
        self.log.append(f"put {len(data)} {sha256.hex()[:8]}")
        return super().put_checked(key, data, sha256=sha256, content_type=content_type)

    def start_upload(self, key: str, *, content_type: str | None = None) -> PartedUpload:
        self.log.append("start")
        self.uploads.append(Recorded(super().start_upload(key), self.log, fail_part=self._fail_part))
        return self.uploads[-1]


def new_sink(storage: LocalStorage, key: str = KEY, size: int = BUFFER) -> RecordingSink:
    sink = RecordingSink(storage, key)
    sink.attach(bytearray(size))
    return sink


def feed(sink: RecordingSink, body: bytes, *, declared: int | None, chunk: int = 10_000) -> None:
    sink.reset()
    sink.begin(declared)
    for start in range(0, len(body), chunk):
        sink.write(body[start : start + chunk])


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.name.startswith(".tmp-")]


def test_a_recording_of_known_length_that_fits_is_one_checked_put_from_the_buffer(tmp_path: Path) -> None:
    storage = RecordingStorage(tmp_path)
    body = os.urandom(100_000)  # more than a part, less than the buffer
    sink = new_sink(storage)
    feed(sink, body, declared=len(body))
    stored = sink.finish()
    sink.close()

    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    assert stored.size_bytes == len(body)
    assert storage.log == [f"put {len(body)} {hashlib.sha256(body).hexdigest()[:8]}"]
    assert storage.get_bytes(KEY) == body
    assert len(sink.detach() or b"") == BUFFER  # the buffer comes back whole, for the next recording


def test_a_longer_recording_goes_up_in_parts_while_the_download_continues(tmp_path: Path) -> None:
    storage = RecordingStorage(tmp_path)
    body = os.urandom(200_000)  # 3 full parts of 64 KiB and a short one
    sink = new_sink(storage)
    sink.reset()
    sink.begin(len(body))
    sink.write(body[: 70 * KIB])  # fills part 1 and starts part 2
    # The first part is on its way up before the rest of the body has arrived.
    assert storage.uploads[0].part_started.wait(10)
    sink.write(body[70 * KIB :])
    stored = sink.finish()
    sink.close()

    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    part = 64 * KIB
    assert storage.log[0] == "start" and storage.log[-1] == "complete"
    last = len(body) - 3 * part
    expected = [f"part 1 @0 {part}", f"part 2 @{part} {part}", f"part 3 @{2 * part} {part}"]
    assert sorted(storage.log[1:-1]) == sorted([*expected, f"part 4 @{3 * part} {last}"])
    assert storage.get_bytes(KEY) == body
    assert temp_files(tmp_path) == []


def test_an_unknown_length_that_turns_out_small_is_still_one_put(tmp_path: Path) -> None:
    storage = RecordingStorage(tmp_path)
    body = os.urandom(30_000)
    sink = new_sink(storage)
    feed(sink, body, declared=None)
    sink.finish()
    sink.close()

    assert storage.log == [f"put {len(body)} {hashlib.sha256(body).hexdigest()[:8]}"]
    assert storage.get_bytes(KEY) == body


def test_a_reset_after_a_cut_download_aborts_the_parts_sent_and_starts_clean(tmp_path: Path) -> None:
    storage = RecordingStorage(tmp_path)
    body = os.urandom(150_000)
    sink = new_sink(storage)
    feed(sink, os.urandom(140_000), declared=None)  # cut: other bytes, never finished
    feed(sink, body, declared=None)  # the retry
    stored = sink.finish()
    sink.close()

    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    first = storage.log.index("abort")
    assert storage.log[0] == "start" and "complete" not in storage.log[:first]
    assert storage.log[first + 1] == "start" and storage.log[-1] == "complete"
    assert storage.get_bytes(KEY) == body
    assert temp_files(tmp_path) == []


def test_a_failed_part_fails_the_recording_and_the_upload_is_aborted(tmp_path: Path) -> None:
    storage = RecordingStorage(tmp_path, fail_part=2)
    body = os.urandom(200_000)
    sink = new_sink(storage)
    with pytest.raises(StorageError, match="part 2"):
        feed(sink, body, declared=len(body))
        sink.finish()
    sink.close()

    assert "complete" not in storage.log and storage.log[-1] == "abort"
    assert storage.head(KEY) is None
    assert temp_files(tmp_path) == []


def test_closing_without_finish_publishes_nothing(tmp_path: Path) -> None:
    storage = RecordingStorage(tmp_path)
    sink = new_sink(storage)
    feed(sink, os.urandom(100_000), declared=None)
    sink.close()

    assert storage.log[-1] == "abort"
    assert storage.head(KEY) is None
    assert temp_files(tmp_path) == []


def test_a_body_longer_than_its_declared_length_is_retriable(tmp_path: Path) -> None:
    sink = new_sink(RecordingStorage(tmp_path))
    with pytest.raises(RetriableError, match="longer than its Content-Length"):
        feed(sink, os.urandom(BUFFER + 1), declared=10_000)
    sink.close()


def test_a_cancelled_sink_refuses_the_next_chunk(tmp_path: Path) -> None:
    sink = new_sink(RecordingStorage(tmp_path))
    feed(sink, os.urandom(20_000), declared=None)
    sink.cancel()
    with pytest.raises(TransferCancelled):
        sink.write(b"more")
    sink.close()


# --- BufferPool -----------------------------------------------------------------------------------


def test_buffers_are_powers_of_two_up_to_the_largest_which_unknown_lengths_get() -> None:
    pool = BufferPool(64 * MIB, 32 * MIB)
    assert pool.size_for(100) == 256 * KIB
    assert pool.size_for(300 * KIB) == 512 * KIB
    assert pool.size_for(14 * MIB) == 16 * MIB
    assert pool.size_for(17 * MIB) == 32 * MIB
    assert pool.size_for(40 * MIB) == pool.size_for(None) == 32 * MIB


def test_the_pool_lends_within_its_total_and_serves_waiters_in_order() -> None:
    async def run() -> None:
        pool = BufferPool(1 * MIB, 1 * MIB)
        held = [await pool.acquire(200 * KIB) for _ in range(4)]  # four 256 KiB buffers: all of it
        order: list[str] = []

        async def take(name: str, length: int) -> bytearray:
            buffer = await pool.acquire(length)
            order.append(name)
            return buffer

        big = asyncio.create_task(take("big", 500 * KIB))
        await asyncio.sleep(0)
        small = asyncio.create_task(take("small", 1))  # fits once one is back, but queues behind `big`
        doomed = asyncio.create_task(take("doomed", 1))
        await asyncio.sleep(0)
        assert order == [] and pool.lent_bytes == 1 * MIB
        doomed.cancel()
        pool.release(held[0])
        await asyncio.sleep(0)
        assert order == []  # 256 KiB free is not the 512 KiB `big` waits for
        pool.release(held[1])
        pool.release(held[2])
        got = await asyncio.gather(big, small)
        await asyncio.gather(doomed, return_exceptions=True)
        assert order == ["big", "small"]
        # `small` got a buffer given back, not a new one; the pool never stood for more than its total.
        assert any(got[1] is buffer for buffer in held)
        assert pool.held_bytes <= pool.total

    asyncio.run(run())


def test_a_buffer_given_back_is_lent_again_and_idle_ones_make_room_for_other_sizes() -> None:
    async def run() -> None:
        pool = BufferPool(1 * MIB, 1 * MIB)
        first = await pool.acquire(100 * KIB)
        pool.release(first)
        assert await pool.acquire(200 * KIB) is first  # the same allocation: no page faulted in again
        pool.release(first)
        whole = await pool.acquire(None)  # 1 MiB: the idle 256 KiB one is dropped for it
        assert len(whole) == 1 * MIB and pool.held_bytes == 1 * MIB

    asyncio.run(run())


def test_the_pool_refuses_a_size_it_cannot_hold() -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        BufferPool(10, 11)


def test_the_run_pool_uses_32_mib_buffers_at_most_or_the_whole_budget() -> None:
    assert (recording_buffers(96 * MIB).total, recording_buffers(96 * MIB).largest) == (96 * MIB, 32 * MIB)
    assert recording_buffers(16 * MIB).largest == 16 * MIB


def test_a_bigger_idle_buffer_is_lent_rather_than_a_new_one_allocated() -> None:
    async def run() -> None:
        pool = BufferPool(1 * MIB, 1 * MIB)
        whole = await pool.acquire(None)
        pool.release(whole)
        small = await pool.acquire(10)  # 256 KiB asked; the idle 1 MiB one is already faulted in
        assert small is whole and pool.lent_bytes == 1 * MIB  # and it counts at its real size
        pool.release(small)
        assert pool.held_bytes == 1 * MIB

    asyncio.run(run())
