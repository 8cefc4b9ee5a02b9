"""What the API and storage origins share: what they serve from, injected faults, request counting."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import ClassVar

from etl.simulator import responses
from etl.simulator.faults import FaultConfig
from etl.simulator.signing import UrlSigner
from etl.simulator.state import Account
from etl.simulator.stats import Stats
from etl.simulator.wire import Response


@dataclass(eq=False)
class Origin:
    account: Account
    config: FaultConfig
    stats: Stats
    signer: UrlSigner
    _: KW_ONLY
    api_key: str
    seed: int
    clock: Callable[[], float] = time.time
    rng: random.Random = field(init=False, repr=False)

    # Each origin rolls its faults from its own stream, so traffic on one never shifts the other's.
    rng_label: ClassVar[str]

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.rng_label}:{self.seed}")

    def roll(self, switch: str, target: str) -> float:
        """A number in [0, 1) fixed by the seed, the switch and the request target: the same request
        (a retry included) always gets the same answer, whatever the order requests come in."""
        return random.Random(f"{self.rng_label}:{self.seed}:{switch}:{target}").random()

    async def _counted(self, answer: Awaitable[Response], statuses: Counter[int]) -> Response:
        """Await `answer` as one in-flight request, then count it as a reset or under its status."""
        self.stats.request_started()
        try:
            response = await answer
        finally:
            self.stats.request_finished()
        if response.abort:
            self.stats.resets += 1
        else:
            statuses[response.status] += 1
        return response

    async def _injected_fault(
        self,
        target: str,
        *,
        reset_rate: float,
        error_rate: float,
        error: Callable[[], Response],
        link_base: str = "http://127.0.0.1",
    ) -> Response | None:
        """A matching rule's answer, else a reset or `error()` at the given rates; None: no fault."""
        rule = self.config.take_rule(target)
        if rule is not None:
            self.stats.injected_errors += 1
            forced = await responses.rule_response(rule, link_base, target)
            if forced is not None:
                return forced
        if self.rng.random() < reset_rate:
            return responses.reset()
        if self.rng.random() < error_rate:
            self.stats.injected_errors += 1
            return error()
        return None
