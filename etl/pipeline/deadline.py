"""The run's deadline (`--max-run-time`): when it passes, the run takes no new work.

No new day is leased, a day's listing stops at the next call, no recording is asked for or polled
again, and failed requests are no longer retried; what is in flight (a request, a transcript's next
page, a download) finishes, then the run publishes what it archived, releases its leases, writes its
run record and exits with the "partial" code. Days it did not finish stay open for the next run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Deadline:
    def __init__(self, seconds: float | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._at = math.inf if seconds is None else clock() + seconds

    def passed(self) -> bool:
        return self._clock() >= self._at

    def remaining(self) -> float:
        """Seconds left (inf without a deadline, 0 once passed)."""
        return max(0.0, self._at - self._clock())
