"""The simulator's /api over real HTTP: auth, pagination, filters, transcripts, faults, stats."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.simulator_helpers import StartSimulator, api_session

from etl.simulator.process import SimulatorHandle

DEFAULT_FAULTS: dict[str, Any] = {
    "latency_ms": 0,
    "rate_limit_rps": None,
    "error_rate_5xx": 0,
    "reset_rate": 0,
    "rules": [],
    "strip_call_id": [],
}


@pytest.fixture(scope="module")
def sim(start_shared_simulator: StartSimulator) -> SimulatorHandle:
    return start_shared_simulator(calls=150, seed=7, days=3)


@pytest.fixture(scope="module")
def truth(sim: SimulatorHandle) -> list[dict[str, Any]]:
    return sim.truth()


@pytest.fixture
def api(sim: SimulatorHandle) -> Iterator[httpx.Client]:
    yield from api_session(sim, restore=DEFAULT_FAULTS)


def walk(api: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    """Follow `next` links as given until null, like the archiver does."""
    response = api.get(path, params=params)
    results: list[dict[str, Any]] = []
    for _ in range(1000):
        assert response.status_code == 200, response.text
        page = response.json()
        results += page["results"]
        if page["next"] is None:
            return results
        response = api.get(page["next"])
    raise AssertionError("pagination did not end")


def test_ready_line_facts(sim: SimulatorHandle, truth: list[dict[str, Any]]) -> None:
    assert sim.api_base_url.startswith("http://127.0.0.1:") and sim.api_base_url.endswith("/api")
    assert sim.control_url == sim.api_base_url.removesuffix("/api") + "/_sim"
    assert (sim.since, sim.until) == ("2026-03-02", "2026-03-04")
    assert {t["call_date"] for t in truth} == {"2026-03-02", "2026-03-03", "2026-03-04"}


def test_truth_without_messages(sim: SimulatorHandle, truth: list[dict[str, Any]]) -> None:
    light = sim.truth(messages=False)
    assert [t["call_id"] for t in light] == [t["call_id"] for t in truth]
    assert [t["message_count"] for t in light] == [len(t["messages"]) for t in truth]
    assert all("messages" not in t for t in light)


def test_missing_and_wrong_keys(sim: SimulatorHandle) -> None:
    with httpx.Client(base_url=sim.api_base_url, trust_env=False) as anonymous:
        sim.reset_stats()
        missing = anonymous.get("/calls")
        wrong = anonymous.get("/calls", headers={"X-API-Key": "wrongkey." + "0" * 32})
    assert missing.status_code == 401
    assert missing.json() == {"detail": "Authentication credentials were not provided."}
    assert wrong.status_code == 403 and wrong.json() == {"detail": "Invalid API key."}
    assert sim.stats()["api_requests_without_valid_key"] == 2


def test_walking_all_pages_returns_each_call_once_in_order(
    api: httpx.Client, truth: list[dict[str, Any]]
) -> None:
    calls = walk(api, "/calls", pageSize=7)
    assert [c["callId"] for c in calls] == [t["call_id"] for t in truth]
    assert calls == [t["call"] for t in truth]
    first = api.get("/calls", params={"pageSize": 7}).json()
    assert first["total"] == len(truth) and first["previous"] is None
    assert first["next"].startswith(
        api.base_url.scheme + "://" + api.base_url.netloc.decode() + "/api/calls?cursor="
    )


def test_previous_link_goes_back(api: httpx.Client) -> None:
    page1 = api.get("/calls", params={"pageSize": 5}).json()
    page2 = api.get(page1["next"]).json()
    back = api.get(page2["previous"]).json()
    assert back["results"] == page1["results"]


def test_default_and_maximum_page_sizes(api: httpx.Client) -> None:
    assert len(api.get("/calls").json()["results"]) == 100
    assert len(api.get("/calls", params={"pageSize": 5000}).json()["results"]) == 100


def test_next_links_carry_the_filters(api: httpx.Client, truth: list[dict[str, Any]]) -> None:
    calls = walk(
        api, "/calls", pageSize=4, fromDate="2026-03-03T00:00:00Z", toDate="2026-03-03T23:59:59.999999+00:00"
    )
    assert [c["callId"] for c in calls] == [t["call_id"] for t in truth if t["call_date"] == "2026-03-03"]


def test_date_filters_are_inclusive_at_both_ends(api: httpx.Client, truth: list[dict[str, Any]]) -> None:
    first, second = truth[10]["call"]["created"], truth[20]["call"]["created"]
    calls = walk(api, "/calls", fromDate=first, toDate=second)
    assert [c["callId"] for c in calls] == [t["call_id"] for t in truth[10:21]]
    midnight = walk(api, "/calls", fromDate="2026-03-03T00:00:00Z", toDate="2026-03-03T00:00:00.000000+00:00")
    assert [c["created"].replace("+00:00", "Z") for c in midnight] == ["2026-03-03T00:00:00Z"]
    last_of_day = walk(api, "/calls", fromDate="2026-03-02T23:59:59.9Z", toDate="2026-03-02T23:59:59.999999Z")
    assert [c["created"].replace("+00:00", "Z") for c in last_of_day] == ["2026-03-02T23:59:59.900000Z"]


def test_a_date_without_an_offset_is_not_read_as_utc(api: httpx.Client, truth: list[dict[str, Any]]) -> None:
    # The zone of a bare date is undocumented: the simulator reads it at UTC-5 (its default), so a
    # client that sends bare dates gets a day shifted by five hours, as it may against the real API.
    bare = walk(api, "/calls", fromDate="2026-03-03", toDate="2026-03-03")
    shifted = walk(api, "/calls", fromDate="2026-03-03T05:00:00Z", toDate="2026-03-04T04:59:59.999999Z")
    assert [c["callId"] for c in bare] == [c["callId"] for c in shifted]
    utc_day = [t["call_id"] for t in truth if t["call_date"] == "2026-03-03"]
    assert [c["callId"] for c in bare] != utc_day


@pytest.mark.parametrize(
    "params", [{"fromDate": "not-a-date"}, {"toDate": "2026-13-01"}, {"cursor": "garbage"}, {"cursor": "e30"}]
)
def test_bad_query_parameters_are_400(api: httpx.Client, params: dict[str, str]) -> None:
    response = api.get("/calls", params=params)
    assert response.status_code == 400 and "detail" in response.json()


def test_get_call_and_unknown_ids(api: httpx.Client, truth: list[dict[str, Any]]) -> None:
    assert api.get(f"/calls/{truth[0]['call_id']}").json() == truth[0]["call"]
    missing = api.get("/calls/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not found."}
    assert api.get("/calls/00000000-0000-4000-8000-000000000000/messages").status_code == 404
    assert api.get("/nothing-here").status_code == 404


def test_messages_in_call_and_last_stage(api: httpx.Client, truth: list[dict[str, Any]]) -> None:
    staged = next(t for t in truth if len({m.get("callStageId") for m in t["messages"]}) > 1)
    path = f"/calls/{staged['call_id']}/messages"
    assert walk(api, path, mode="in_call", pageSize=3) == staged["messages"]
    last_stage = staged["messages"][-1]["callStageId"]
    assert walk(api, path) == [m for m in staged["messages"] if m["callStageId"] == last_stage]
    assert api.get(path, params={"mode": "everything"}).status_code == 400
    stages = api.get(f"/calls/{staged['call_id']}/stages").json()["results"]
    assert [s["callStageId"] for s in stages][-1] == last_stage


def test_long_transcripts_span_pages_of_twenty(api: httpx.Client, truth: list[dict[str, Any]]) -> None:
    longest = max(truth, key=lambda t: len(t["messages"]))
    first = api.get(f"/calls/{longest['call_id']}/messages", params={"mode": "in_call"}).json()
    assert len(first["results"]) == 20 and first["total"] == len(longest["messages"])
    assert walk(api, f"/calls/{longest['call_id']}/messages", mode="in_call") == longest["messages"]


def test_stats_count_requests_by_kind(
    sim: SimulatorHandle, api: httpx.Client, truth: list[dict[str, Any]]
) -> None:
    sim.reset_stats()
    api.get("/calls", params={"pageSize": 1})
    api.get(f"/calls/{truth[0]['call_id']}")
    api.get(f"/calls/{truth[0]['call_id']}/messages")
    api.get("/deleted_calls")
    stats = sim.stats()
    assert {k: v for k, v in stats["requests"].items() if v} == {
        "list_calls": 1,
        "call": 1,
        "messages": 1,
        "deleted_calls": 1,
    }
    assert stats["responses"] == {"200": 4}
    assert stats["max_concurrent_connections"] >= 1


def test_rate_limit_answers_429_with_retry_after(sim: SimulatorHandle, api: httpx.Client) -> None:
    sim.configure(rate_limit_rps=3)
    sim.reset_stats()
    statuses = [api.get("/deleted_calls") for _ in range(8)]
    throttled = [r for r in statuses if r.status_code == 429]
    assert throttled and throttled[0].headers["Retry-After"] == "1"
    assert throttled[0].json() == {"detail": "Request was throttled."}
    assert sim.stats()["rate_limited"] == len(throttled)


def test_targeted_rules(sim: SimulatorHandle, api: httpx.Client, truth: list[dict[str, Any]]) -> None:
    call_id = truth[1]["call_id"]
    sim.configure(
        rules=[
            {"path": f"/calls/{call_id}$", "action": "status", "status": 404, "times": 1},
            {"path": f"/calls/{call_id}/messages", "action": "not_json"},
            {"path": "/stages", "action": "reset"},
        ]
    )
    assert api.get(f"/calls/{call_id}").status_code == 404
    assert api.get(f"/calls/{call_id}").status_code == 200  # `times` used up
    html = api.get(f"/calls/{call_id}/messages")
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    with pytest.raises(httpx.TransportError):
        api.get(f"/calls/{call_id}/stages")
    assert api.get(f"/calls/{truth[2]['call_id']}/messages").status_code == 200


def test_random_faults(sim: SimulatorHandle, api: httpx.Client) -> None:
    sim.configure(error_rate_5xx=1.0)
    assert {api.get("/deleted_calls").status_code for _ in range(20)} <= {500, 502, 503}
    sim.configure(error_rate_5xx=0, reset_rate=1.0)
    with pytest.raises(httpx.TransportError):
        api.get("/deleted_calls")


def test_strip_call_id_only_in_list_pages(
    sim: SimulatorHandle, api: httpx.Client, truth: list[dict[str, Any]]
) -> None:
    call_id = truth[0]["call_id"]
    sim.configure(strip_call_id=[call_id])
    listed = api.get("/calls", params={"pageSize": 2}).json()["results"]
    assert "callId" not in listed[0] and listed[0]["created"] == truth[0]["call"]["created"]
    assert "callId" in listed[1]
    assert api.get(f"/calls/{call_id}").json()["callId"] == call_id


def test_latency_is_added_to_api_responses_only(sim: SimulatorHandle, api: httpx.Client) -> None:
    # Far apart, so that a loaded machine's slow answer cannot pass for the latency (0.15 s did not).
    sim.configure(latency_ms=800)
    started = time.monotonic()
    api.get("/deleted_calls")
    assert time.monotonic() - started >= 0.8
    started = time.monotonic()
    sim.stats()
    assert time.monotonic() - started < 0.4


def test_control_config_rejects_bad_values(sim: SimulatorHandle) -> None:
    with httpx.Client(trust_env=False) as client:
        response = client.post(f"{sim.control_url}/config", json={"error_rate_5xx": 7})
    assert response.status_code == 400
    assert sim.configure()["error_rate_5xx"] == 0
