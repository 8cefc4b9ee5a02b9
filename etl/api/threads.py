"""Blocking work run from the event loop without ever leaving a thread behind."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

T = TypeVar("T")


async def in_thread(
    fn: Callable[..., T],
    *args: object,
    executor: Executor | None = None,
    on_cancel: Callable[[], None] | None = None,
    discard: Callable[[T], object] | None = None,
) -> T:
    """`fn(*args)` in a worker thread. Unlike `asyncio.to_thread`, a cancelled caller stops waiting
    only once the thread is done (after `on_cancel`, which should make it stop soon): the thread may
    be writing into a buffer the caller gives back to its pool on the way out. What the thread
    returned to a caller cancelled meanwhile goes to `discard` (an open response must be closed, or
    its connection is lost until garbage collection)."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    future = loop.run_in_executor(executor, functools.partial(context.run, fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        await asyncio.wait([future])
        if discard is not None and not future.cancelled() and future.exception() is None:
            discard(future.result())
        raise
