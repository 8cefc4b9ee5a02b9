"""The simulator's switches for pages that misbehave (issue 11): each one does what it says, over real
HTTP, deterministically for a seed and a request, and all of them at once still list every call."""

from __future__ import annotations

from datetime import date
from itertools import pairwise
from typing import Any

import httpx
from support.simulator_helpers import StartSimulator, api_client

from etl.api.listing import day_filters
from etl.simulator.process import SimulatorHandle


def walk(client: httpx.Client, day: str, page_size: int) -> list[dict[str, Any]]:
    """Every page of a day's listing, following `next` as given."""
    pages: list[dict[str, Any]] = []
    # The UTC day with explicit offsets, as the archiver asks: a bare date is read in another zone.
    params: dict[str, str | int] | None = {**day_filters(date.fromisoformat(day)), "pageSize": page_size}
    url: str | None = "/calls"
    while url is not None:
        answer = client.get(url, params=params)
        params = None  # `next` carries the query
        assert answer.status_code == 200
        pages.append({"json": answer.json(), "encoding": answer.headers.get("content-encoding")})
        url = pages[-1]["json"]["next"]
    return pages


def ids(page: dict[str, Any]) -> list[str]:
    return [call["callId"] for call in page["json"]["results"]]


def day_truth(sim: SimulatorHandle) -> list[str]:
    return [t["call_id"] for t in sim.truth() if t["call_date"] == sim.since]


def test_every_switch_at_once_still_lists_every_call_and_does_so_the_same_way_twice(
    start_simulator: StartSimulator,
) -> None:
    sim = start_simulator(
        calls=120,
        seed=4,
        days=1,
        duplicate_listing_rate=0.5,
        gzip_rate=0.5,
        short_page_rate=0.5,
        next_query_shuffle_rate=0.5,
    )
    with api_client(sim) as client:
        first, second = walk(client, sim.since, 20), walk(client, sim.since, 20)

    assert [ids(p) for p in first] == [ids(p) for p in second]
    listed = [call_id for page in first for call_id in ids(page)]
    assert set(listed) == set(day_truth(sim))
    repeats = len(listed) - len(set(listed))
    assert repeats > 0
    for before, after in pairwise(first):
        # A repeat is always the previous page's last call, first on the next page.
        if ids(after) and ids(after)[0] in ids(before):
            assert ids(after)[0] == ids(before)[-1]
    assert any(len(ids(p)) <= 2 for p in first[:-1])  # short pages, though 20 were asked for
    assert {p["encoding"] for p in first} == {"gzip", None}
    links = [p["json"]["next"] for p in first if p["json"]["next"]]
    assert any("format=json" in link and link.index("toDate") < link.index("fromDate") for link in links)
