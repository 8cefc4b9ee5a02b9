"""The shared request budget: every API request, retries included, takes a slot here first."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from etl.config import DEFAULT_RETRY_AFTER_MAX_S


class RateLimiter:
    """Spaces requests at most `rate` per second across all tasks; a 429 pauses everyone and lowers
    the rate, which then climbs back towards the configured maximum.

    Each caller reserves the next free slot and sleeps until it, so the rate holds however many
    tasks share the limiter, without a lock (reservation happens without awaiting). Adapting is
    AIMD, as in TCP: one multiplicative cut per second of 429s (a burst of 429 answers to requests
    already in flight is one signal, not many), then an additive climb of 5% of the maximum per
    second without one.
    """

    CUT = 0.75
    RECOVERY_PER_S = 0.05
    # Slots missed while the event loop was busy may be used late, up to this much time's worth:
    # without it every scheduling delay is throughput lost for good; with it a one-second window
    # still never sees more than rate x (1 + CATCH_UP_S) requests.
    CATCH_UP_S = 0.05
    # The longest a 429 may hold every request back, whatever the caller asks (the default cap of a
    # single Retry-After wait).
    MAX_PAUSE_S = DEFAULT_RETRY_AFTER_MAX_S

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.max_rate = rate
        self._clock = clock
        self._sleep = sleep
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._rate_at_cut = rate
        self._last_cut = float("-inf")
        self.requests = 0

    @property
    def rate(self) -> float:
        climbed = (self._clock() - self._last_cut) * self.RECOVERY_PER_S * self.max_rate
        return min(self.max_rate, self._rate_at_cut + climbed)

    async def acquire(self) -> None:
        now = self._clock()
        slot = max(now - self.CATCH_UP_S, self._next_slot, self._paused_until)
        self._next_slot = slot + 1.0 / self.rate
        self.requests += 1
        if slot > now:
            await self._sleep(slot - now)

    def pause(self, seconds: float) -> None:
        """The server said slow down: nobody sends before `seconds` (at most MAX_PAUSE_S) from now, and
        the rate drops."""
        # `not >=` is also true for nan, which would otherwise poison every slot after it (and
        # asyncio.sleep(nan) never returns); inf is cut to the cap like any long wait.
        seconds = min(seconds, self.MAX_PAUSE_S) if seconds >= 0 else 0.0
        now = self._clock()
        self._paused_until = max(self._paused_until, now + seconds)
        if now - self._last_cut >= 1.0:
            self._rate_at_cut = max(self.rate * self.CUT, self.max_rate * 0.05, 0.1)
            self._last_cut = now
