"""The run's retry budget: how many retries all requests of one run may spend together.

Per-request attempts (`max_attempts`) bound one request; this bounds the run. Against an API that
fails everything for an hour, a run of 50,000 calls would otherwise spend up to seven backed-off
retries on each. Once the budget is spent (or closed, at the run's deadline), a retriable failure
costs its call or its day's listing as any other failure does, never the run, and the next run
tries again.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class RetryBudget:
    def __init__(self, retries: int | None) -> None:
        """`retries` None: no limit but the deadline."""
        self.limit = retries
        self.spent = 0
        self.refused = 0
        self._closed = False

    @property
    def exhausted(self) -> bool:
        return self._closed or (self.limit is not None and self.spent >= self.limit)

    def take(self) -> bool:
        """Spend one retry; False (and nothing spent) when none is left."""
        if self.exhausted:
            if self.refused == 0 and not self._closed:
                log.warning(
                    "retry budget spent: failures are no longer retried", extra={"retries": self.spent}
                )
            self.refused += 1
            return False
        self.spent += 1
        return True

    def close(self) -> None:
        """No more retries from now on (the run's deadline has passed)."""
        self._closed = True
