"""A log line every few seconds while recordings are being waited for.

A recording that answers 425 is polled for up to `recording_wait_s` (two minutes by default); a run
whose last calls wait for theirs writes nothing else meanwhile, and looks hung to whoever watches
its log. The line says how many recordings are still being waited for and how long the longest
wait may still last.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


async def recording_heartbeat(waiting: Callable[[], tuple[int, float]], every_s: float) -> None:
    """Until cancelled: every `every_s`, log `waiting()` (recordings waited for, longest wait left
    in seconds) when any recording is being waited for."""
    while True:
        await asyncio.sleep(every_s)
        count, left_s = waiting()
        if count:
            log.info(
                "waiting for recordings that are not ready yet",
                extra={"recordings_waiting": count, "longest_wait_left_s": round(left_s)},
            )
