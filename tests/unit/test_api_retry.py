"""Retry policy of the HTTP edge: Retry-After in both forms and clamped, bounded waits, the run's
retry budget. Against httpx.MockTransport and a fake clock; the real-server runs are in
integration/test_transient_faults.py."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from support.api_objects import client_options

from etl.api.client import ApiClient
from etl.api.ratelimit import RateLimiter
from etl.api.responses import parse_retry_after, retry_after
from etl.api.retry_budget import RetryBudget
from etl.config import DEFAULT_RETRY_AFTER_MAX_S, load_settings
from etl.errors import ConfigError, RetriableError
from etl.secrets import Secret

KEY = "abcdefgh." + "k" * 32
BASE = "https://api.test/api"
NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


def make_client(
    handler: Callable[[httpx.Request], httpx.Response],
    sleeps: list[float],
    *,
    max_attempts: int = 4,
    budget: RetryBudget | None = None,
) -> ApiClient:
    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    options = client_options(
        base_url=BASE,
        api_key=Secret(KEY),
        timeout_s=60.0,
        max_attempts=max_attempts,
        retry_initial_s=0.5,
        retry_max_s=30.0,
    )
    transport = httpx.MockTransport(handler)
    return ApiClient(
        options, transport=transport, storage_transport=transport, retry_budget=budget, sleep=fake_sleep
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        ("0", 0.0),
        (" 2.5 ", 2.5),
        ("86400", 86400.0),  # cut to the cap by retry_after(), below
        ("9" * 400, math.inf),  # so long that float() says inf: still just "long"
        ("Wed, 02 Dec 2026 12:00:30 GMT", 30.0),  # an HTTP-date 30 s ahead
        ("Wed, 02 Dec 2026 13:00:00 GMT", 3600.0),
        ("Wed, 02 Dec 2026 11:00:00 GMT", None),  # in the past: fall back to backoff
        ("inf", None),
        ("nan", None),
        ("-5", None),
        ("1e3", None),
        ("soon", None),
        ("", None),
        ("Wed, 32 Dec 2026 12:00:30 GMT", None),
    ],
)
def test_retry_after_both_forms_clamped_and_garbage_ignored(header: str, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected


def test_an_http_date_is_measured_against_the_server_s_own_clock() -> None:
    response = httpx.Response(
        429, headers={"Retry-After": "Wed, 02 Dec 2026 08:00:10 GMT", "Date": "Wed, 02 Dec 2026 08:00:00 GMT"}
    )
    # Our clock is 4 hours ahead of the server's: the date is still 10 s after the server's now.
    assert retry_after(response, cap=60, now=NOW) == 10.0
    assert retry_after(response, cap=4, now=NOW) == 4.0
    assert retry_after(httpx.Response(429), cap=60, now=NOW) is None
    for huge in ("86400", "9" * 400, "Wed, 02 Dec 2099 12:00:30 GMT"):
        assert retry_after(httpx.Response(429, headers={"Retry-After": huge}), cap=60, now=NOW) == 60


@pytest.mark.parametrize("header", ["86400", "inf", "nan", "-1", "garbage", "Wed, 02 Dec 2020 11:00:00 GMT"])
def test_no_retry_after_makes_a_wait_longer_than_the_cap_or_nan(header: str) -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": header}), httpx.Response(200, json=[])])
    sleeps: list[float] = []
    client = make_client(lambda request: next(answers), sleeps)
    assert asyncio.run(client.get_json(f"{BASE}/calls")) == []
    assert sleeps, "a 429 is waited for"
    assert all(math.isfinite(s) and 0 <= s <= DEFAULT_RETRY_AFTER_MAX_S for s in sleeps), sleeps


@pytest.mark.parametrize("seconds", [math.nan, math.inf, -3.0, 1e12])
def test_the_rate_limiter_pause_is_capped_and_never_nan(seconds: float) -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    limiter = RateLimiter(1000, clock=lambda: now[0], sleep=sleep)
    limiter.pause(seconds)
    asyncio.run(limiter.acquire())
    assert all(math.isfinite(s) and 0 <= s <= RateLimiter.MAX_PAUSE_S for s in slept), slept


def test_backoff_without_retry_after_stays_under_its_maximum() -> None:
    sleeps: list[float] = []
    client = make_client(lambda request: httpx.Response(503), sleeps, max_attempts=80)
    with pytest.raises(RetriableError):
        asyncio.run(client.get_json(f"{BASE}/calls"))
    assert len(sleeps) == 79
    assert max(sleeps) <= 30.0 * 1.0  # retry_max_s, jitter included (0.5..1.0 of it)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", ["ARCHIVER_MAX_RPS", "ARCHIVER_RECORDING_WAIT_S", "ARCHIVER_LOCK_WAIT_S"])
def test_a_setting_that_is_not_a_finite_number_is_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match="finite"):
        load_settings({}, {"ULTRAVOX_API_KEY": KEY, name: value})


def test_the_run_s_retry_budget_bounds_retries_across_requests() -> None:
    seen: list[httpx.Request] = []

    def down(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503)

    sleeps: list[float] = []
    client = make_client(down, sleeps, budget=RetryBudget(3))

    async def two_requests() -> None:
        for _ in range(2):
            with pytest.raises(RetriableError):
                await client.get_json(f"{BASE}/calls")

    asyncio.run(two_requests())
    # The first request spends the whole budget (3 retries, 4 attempts); the second is tried once.
    assert len(seen) == 4 + 1
    assert client.retries == 3 and client.retry_budget.refused == 1


def test_a_closed_budget_retries_nothing() -> None:
    answers = iter([httpx.Response(503), httpx.Response(200, json=[])])
    budget = RetryBudget(None)
    budget.close()
    client = make_client(lambda request: next(answers), [], budget=budget)
    with pytest.raises(RetriableError):
        asyncio.run(client.get_json(f"{BASE}/calls"))


def test_the_retry_budget_is_a_setting() -> None:
    assert load_settings({}, {"ULTRAVOX_API_KEY": KEY}).retry_budget == 10_000
    assert load_settings({}, {"ULTRAVOX_API_KEY": KEY, "ARCHIVER_RETRY_BUDGET": "0"}).retry_budget == 0
    with pytest.raises(ConfigError, match="retry-budget"):
        load_settings({"retry_budget": -1}, {"ULTRAVOX_API_KEY": KEY})
