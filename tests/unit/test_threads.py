"""in_thread: a cancelled caller waits for its thread, and what the thread returned is not lost."""

from __future__ import annotations

import asyncio
import threading

from etl.api.threads import in_thread


class Opened:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_what_a_thread_returns_to_a_cancelled_caller_is_discarded() -> None:
    # An open response returned by a thread whose caller was cancelled meanwhile held its connection
    # until garbage collection (an "unclosed socket" warning, once, in CI).
    started, release = threading.Event(), threading.Event()
    opened = Opened()

    def open_slowly() -> Opened:
        started.set()
        release.wait(5)
        return opened

    async def main() -> None:
        task = asyncio.create_task(in_thread(open_slowly, discard=Opened.close))
        await asyncio.to_thread(started.wait, 5)
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done()  # the caller waits for its thread
        release.set()
        await asyncio.wait([task])
        assert task.cancelled()

    asyncio.run(main())
    assert opened.closed
