"""Start several attempts at the same instant, for race tests."""

from __future__ import annotations

import threading
from collections.abc import Callable


def race(n: int, attempt: Callable[[int], object], *, lost: type[BaseException] | None = None) -> list[int]:
    """Run `attempt(0..n-1)` in n threads released together; the indices that won: those whose
    attempt returned something other than None without raising `lost`."""
    start = threading.Barrier(n)
    won: list[int] = []

    def run(i: int) -> None:
        start.wait()
        try:
            outcome = attempt(i)
        except BaseException as exc:
            if lost is not None and isinstance(exc, lost):
                return
            raise
        if outcome is not None:
            won.append(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won
