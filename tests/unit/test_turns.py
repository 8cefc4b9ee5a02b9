"""etl/pipeline/turns.py: one turn at a time, in order, and a turn ended early never blocks the rest."""

from __future__ import annotations

import asyncio

from etl.pipeline.turns import Turns


def test_turns_start_in_order_once_every_earlier_one_has_ended() -> None:
    async def scenario() -> list[str]:
        turns, log = Turns(4), []

        async def take(index: int) -> None:
            await turns.wait(index)
            log.append(f"start {index}")
            await asyncio.sleep(0.01)
            log.append(f"end {index}")
            turns.end(index)

        # Turn 2 never starts (its day was locked): ended before turn 1 has even started.
        turns.end(2)
        await asyncio.gather(take(3), take(1), take(0))
        turns.end(2)  # idempotent
        return log

    assert asyncio.run(scenario()) == ["start 0", "end 0", "start 1", "end 1", "start 3", "end 3"]


def test_no_turns() -> None:
    Turns(0)
