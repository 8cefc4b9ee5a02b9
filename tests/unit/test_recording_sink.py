"""RecordingSink and ByteBudget: one hash pass, one PUT for small recordings, overlapping parts for
large ones, every buffer within the budget, and a clean start after a reset."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from pathlib import Path

import pytest

from etl.api.budget import ByteBudget
from etl.api.recording_sink import AudioBuffers, RecordingSink
from etl.errors import RetriableError, StorageError
from etl.storage.base import PartedUpload
from etl.storage.local import LocalStorage

KEY = "recordings/call_date=2026-11-26/c1.wav"
KIB = 1024
BUFFERS = AudioBuffers(single_put_max_bytes=64 * KIB, part_bytes=64 * KIB)


class Recorded:
    """A PartedUpload over a LocalStorage upload that logs what it was asked to do."""

    def __init__(self, inner: PartedUpload, log: list[str], *, fail_part: int | None = None) -> None:
        self._inner = inner
        self._log = log
        self._fail_part = fail_part
        self.part_started = threading.Event()

    def put_part(self, number: int, offset: int, data: bytes | bytearray) -> None:
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

    def put_checked(
        self, key: str, data: bytes | bytearray, *, sha256: bytes, content_type: str | None = None
    ) -> str:
        self.log.append(f"put {len(data)} {sha256.hex()[:8]}")
        return super().put_checked(key, data, sha256=sha256, content_type=content_type)

    def start_upload(self, key: str, *, content_type: str | None = None) -> PartedUpload:
        self.log.append("start")
        self.uploads.append(Recorded(super().start_upload(key), self.log, fail_part=self._fail_part))
        return self.uploads[-1]


async def feed(sink: RecordingSink, body: bytes, *, declared: int | None, chunk: int = 10_000) -> None:
    await sink.reset()
    await sink.begin(declared)
    for start in range(0, len(body), chunk):
        await sink.write(body[start : start + chunk])


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.name.startswith(".tmp-")]


def test_a_small_recording_of_known_length_is_one_checked_put_from_memory(tmp_path: Path) -> None:
    storage = RecordingStorage(tmp_path)
    budget = ByteBudget(128 * KIB)
    body = os.urandom(50_000)

    async def run() -> None:
        async with RecordingSink(storage, KEY, budget, BUFFERS) as sink:
            await feed(sink, body, declared=len(body))
            assert budget.free == 0  # its allowance reserved: 128 KiB, two part buffers
            stored = await sink.finish()
        assert stored.sha256 == hashlib.sha256(body).hexdigest()
        assert stored.size_bytes == len(body)

    asyncio.run(run())
    assert storage.log == [f"put {len(body)} {hashlib.sha256(body).hexdigest()[:8]}"]
    assert storage.get_bytes(KEY) == body
    assert budget.free == budget.total


def test_a_large_recording_goes_up_in_parts_while_the_download_continues(tmp_path: Path) -> None:
    storage = RecordingStorage(tmp_path)
    budget = ByteBudget(256 * KIB)
    body = os.urandom(200_000)  # 3 full parts of 64 KiB and a short one

    async def run() -> str:
        async with RecordingSink(storage, KEY, budget, BUFFERS) as sink:
            await sink.reset()
            await sink.begin(len(body))
            await sink.write(body[: 70 * KIB])  # fills part 1 and starts part 2
            # The first part is on its way up before the rest of the body has arrived.
            assert await asyncio.to_thread(storage.uploads[0].part_started.wait, 10)
            await sink.write(body[70 * KIB :])
            stored = await sink.finish()
        return stored.sha256

    assert asyncio.run(run()) == hashlib.sha256(body).hexdigest()
    part = 64 * KIB
    assert storage.log[0] == "start" and storage.log[-1] == "complete"
    last = len(body) - 3 * part
    expected = [f"part 1 @0 {part}", f"part 2 @{part} {part}", f"part 3 @{2 * part} {part}"]
    assert sorted(storage.log[1:-1]) == sorted([*expected, f"part 4 @{3 * part} {last}"])
    assert storage.get_bytes(KEY) == body
    assert budget.free == budget.total
    assert temp_files(tmp_path) == []


def test_an_unknown_length_that_turns_out_small_is_still_one_put(tmp_path: Path) -> None:
    storage = RecordingStorage(tmp_path)
    budget = ByteBudget(128 * KIB)
    body = os.urandom(30_000)

    async def run() -> None:
        async with RecordingSink(storage, KEY, budget, BUFFERS) as sink:
            await feed(sink, body, declared=None)
            await sink.finish()

    asyncio.run(run())
    assert storage.log == [f"put {len(body)} {hashlib.sha256(body).hexdigest()[:8]}"]
    assert storage.get_bytes(KEY) == body


def test_a_reset_after_a_cut_download_aborts_the_parts_sent_and_starts_clean(tmp_path: Path) -> None:
    storage = RecordingStorage(tmp_path)
    budget = ByteBudget(256 * KIB)
    body = os.urandom(150_000)

    async def run() -> str:
        async with RecordingSink(storage, KEY, budget, BUFFERS) as sink:
            await feed(sink, os.urandom(140_000), declared=len(body))  # cut: other bytes, never finished
            await feed(sink, body, declared=len(body))  # the retry
            stored = await sink.finish()
        return stored.sha256

    assert asyncio.run(run()) == hashlib.sha256(body).hexdigest()
    first = storage.log.index("abort")
    assert storage.log[0] == "start" and "complete" not in storage.log[:first]
    assert storage.log[first + 1] == "start" and storage.log[-1] == "complete"
    assert storage.get_bytes(KEY) == body
    assert budget.free == budget.total
    assert temp_files(tmp_path) == []


def test_a_failed_part_fails_the_recording_and_the_upload_is_aborted(tmp_path: Path) -> None:
    storage = RecordingStorage(tmp_path, fail_part=2)
    budget = ByteBudget(256 * KIB)
    body = os.urandom(200_000)

    async def run() -> None:
        async with RecordingSink(storage, KEY, budget, BUFFERS) as sink:
            await feed(sink, body, declared=len(body))
            await sink.finish()

    with pytest.raises(StorageError, match="part 2"):
        asyncio.run(run())
    assert "complete" not in storage.log and storage.log[-1] == "abort"
    assert storage.head(KEY) is None
    assert temp_files(tmp_path) == []
    assert budget.free == budget.total


def test_leaving_without_finish_publishes_nothing(tmp_path: Path) -> None:
    storage = RecordingStorage(tmp_path)
    budget = ByteBudget(256 * KIB)

    async def run() -> None:
        async with RecordingSink(storage, KEY, budget, BUFFERS) as sink:
            await feed(sink, os.urandom(100_000), declared=None)

    asyncio.run(run())
    assert storage.log[-1] == "abort"
    assert storage.head(KEY) is None
    assert temp_files(tmp_path) == []
    assert budget.free == budget.total


def test_a_body_longer_than_its_declared_length_is_retriable(tmp_path: Path) -> None:
    storage = RecordingStorage(tmp_path)
    budget = ByteBudget(128 * KIB)

    async def run() -> None:
        async with RecordingSink(storage, KEY, budget, BUFFERS) as sink:
            await feed(sink, os.urandom(20_000), declared=10_000)

    with pytest.raises(RetriableError, match="longer than its Content-Length"):
        asyncio.run(run())
    assert budget.free == budget.total


def test_many_recordings_in_flight_never_hold_more_than_the_budget(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    budget = ByteBudget(400 * KIB)  # three recordings' allowances at a time
    bodies = {f"recordings/call_date=2026-11-26/c{n}.wav": os.urandom(30_000 + n * 9_000) for n in range(32)}
    lowest = budget.total

    async def one(key: str, body: bytes) -> str:
        nonlocal lowest
        async with RecordingSink(storage, key, budget, BUFFERS) as sink:
            await sink.reset()
            await sink.begin(len(body) if len(key) % 2 else None)
            for start in range(0, len(body), 8_000):
                await sink.write(body[start : start + 8_000])
                lowest = min(lowest, budget.free)
                await asyncio.sleep(0)
            return (await sink.finish()).sha256

    async def run() -> list[str]:
        return await asyncio.gather(*(one(key, body) for key, body in bodies.items()))

    digests = asyncio.run(run())
    assert digests == [hashlib.sha256(body).hexdigest() for body in bodies.values()]
    for key, body in bodies.items():
        assert storage.get_bytes(key) == body
    assert 0 <= lowest < 2 * BUFFERS.allowance  # the budget was the limit, and it held
    assert budget.free == budget.total


# --- ByteBudget -----------------------------------------------------------------------------------


def test_the_budget_serves_waiters_in_order_and_a_cancelled_waiter_gives_its_place_back() -> None:
    async def run() -> list[str]:
        budget = ByteBudget(100)
        order: list[str] = []
        await budget.acquire(90)

        async def take(name: str, n: int) -> None:
            await budget.acquire(n)
            order.append(name)

        big = asyncio.create_task(take("big", 60))
        await asyncio.sleep(0)
        small = asyncio.create_task(take("small", 5))  # fits now, but queues behind `big`
        doomed = asyncio.create_task(take("doomed", 40))
        await asyncio.sleep(0)
        assert order == []
        doomed.cancel()
        budget.release(90)
        await asyncio.gather(big, small)
        await asyncio.gather(doomed, return_exceptions=True)
        assert budget.free == 100 - 60 - 5
        return order

    assert asyncio.run(run()) == ["big", "small"]


def test_the_budget_refuses_a_reservation_it_could_never_grant() -> None:
    with pytest.raises(ValueError, match="cannot reserve"):
        asyncio.run(ByteBudget(10).acquire(11))
