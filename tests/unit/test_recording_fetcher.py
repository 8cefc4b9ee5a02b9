"""RecordingFetcher over httpx.MockTransport and LocalStorage, on a clock the test drives: the
signed-URL refresh cap, the polling deadline, and giving up its slot while it waits."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest
from support.api_objects import client_options

from etl.api.budget import BufferPool
from etl.api.client import ApiClient
from etl.api.recordings import RecordingFetcher, RecordingPolicy, recording_key
from etl.model import RecordingStatus
from etl.storage.local import LocalStorage

BASE = "https://api.test/api"
CALL_ID = "0b0e2d6c-5b8e-4a8f-9f0e-6f1f3c1d2a01"
CALL_DATE = date(2026, 11, 26)
AUDIO = b"RIFF" + b"\x00\x01" * 500 + b"WAVE"
JITTER = (0.75, 1.25)  # RecordingFetcher sleeps poll_delay x uniform(0.75, 1.25)


class Clock:
    """Monotonic time that moves only when the fetcher sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def policy(**overrides: float) -> RecordingPolicy:
    fields = {"wait_s": 10.0, "poll_initial_s": 1.0, "poll_max_s": 4.0, "url_refreshes": 3} | overrides
    return RecordingPolicy(
        wait_s=fields["wait_s"],
        poll_initial_s=fields["poll_initial_s"],
        poll_max_s=fields["poll_max_s"],
        url_refreshes=int(fields["url_refreshes"]),
    )


def make_fetcher(
    api: httpx.MockTransport,
    storage: httpx.MockTransport,
    root: Path,
    clock: Clock,
    recording_policy: RecordingPolicy,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    buffer_bytes: int = 16 * 1024 * 1024,
    buffer_count: int = 1,
    download_slots: int = 2,
    stop_polling: Callable[[], bool] = lambda: False,
) -> tuple[RecordingFetcher, ApiClient, LocalStorage]:
    async def no_sleep(seconds: float) -> None:
        return None

    options = client_options(
        base_url=BASE,
        retry_initial_s=0.5,
        retry_max_s=30.0,
        max_page_bytes=1024 * 1024,
        max_pages_per_listing=100,
        allowed_recording_hosts=frozenset({"storage.test"}),
    )
    client = ApiClient(options, transport=api, storage_transport=storage, sleep=no_sleep)
    local = LocalStorage(root / "archive")
    fetcher = RecordingFetcher(
        client,
        local,
        recording_policy,
        buffers=BufferPool(buffer_bytes * buffer_count, buffer_bytes),
        download_slots=asyncio.Semaphore(download_slots),
        clock=clock,
        sleep=sleep or clock.sleep,
        stop_polling=stop_polling,
    )
    return fetcher, client, local


# --- the signed-URL refresh cap --------------------------------------------------------------------


def signed_url_api(issued: list[str]) -> httpx.MockTransport:
    """The recording endpoint: a 302 to a fresh signed URL each time it is asked."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/api/calls/{CALL_ID}/recording"
        issued.append(f"https://storage.test/rec/{CALL_ID}.wav?sig={len(issued) + 1}")
        return httpx.Response(302, headers={"Location": issued[-1]})

    return httpx.MockTransport(handler)


def test_an_expired_signed_url_is_refreshed_at_most_url_refreshes_times_then_fails(tmp_path: Path) -> None:
    issued: list[str] = []
    tried: list[str] = []

    def storage(request: httpx.Request) -> httpx.Response:
        tried.append(str(request.url))
        return httpx.Response(403, text="<Error><Code>AccessDenied</Code>Request has expired</Error>")

    fetcher, client, local = make_fetcher(
        signed_url_api(issued), httpx.MockTransport(storage), tmp_path, Clock(), policy(url_refreshes=2)
    )
    outcome = asyncio.run(fetcher.fetch(CALL_ID, CALL_DATE))

    assert outcome.status is RecordingStatus.FAILED
    assert outcome.detail is not None and "HTTP 403" in outcome.detail
    assert "sig=" not in outcome.detail  # the signed query never reaches a message
    # The first URL and two fresh ones, each tried once (a 403 is not retried on the same URL).
    assert tried == issued == [f"https://storage.test/rec/{CALL_ID}.wav?sig={n}" for n in (1, 2, 3)]
    assert client.api_requests == 3
    assert list(local.list_keys()) == []
    # Nothing left behind, temp files included.
    assert [p for p in (tmp_path / "archive").rglob("*") if p.is_file()] == []


def test_a_fresh_signed_url_after_a_refusal_archives_the_recording(tmp_path: Path) -> None:
    issued: list[str] = []

    def storage(request: httpx.Request) -> httpx.Response:
        if request.url.params["sig"] == "1":
            return httpx.Response(403, text="expired")
        return httpx.Response(200, content=AUDIO)

    fetcher, _, local = make_fetcher(
        signed_url_api(issued), httpx.MockTransport(storage), tmp_path, Clock(), policy()
    )
    outcome = asyncio.run(fetcher.fetch(CALL_ID, CALL_DATE))

    assert outcome.status is RecordingStatus.ARCHIVED
    assert len(issued) == 2
    key = recording_key(CALL_DATE, CALL_ID)
    assert local.get_bytes(key) == AUDIO
    assert (outcome.uri, outcome.size_bytes) == (local.uri_for(key), len(AUDIO))
    assert outcome.sha256 == hashlib.sha256(AUDIO).hexdigest()


class CutStream(httpx.SyncByteStream):
    """A body that arrives in 10 kB chunks and, if `cut_at` is set, breaks off there."""

    def __init__(self, body: bytes, cut_at: int | None) -> None:
        self._body = body
        self._cut_at = cut_at

    def __iter__(self) -> Iterator[bytes]:
        end = len(self._body) if self._cut_at is None else self._cut_at
        for start in range(0, end, 10_000):
            yield self._body[start : min(start + 10_000, end)]
        if self._cut_at is not None:
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "unknown-length"])
def test_a_download_cut_half_way_through_a_parted_upload_is_retried_from_a_clean_start(
    tmp_path: Path, declared: bool
) -> None:
    issued: list[str] = []
    body = bytes(range(256)) * 1000 + b"tail"  # 256 kB: four 64 KiB parts (half the buffer each)
    gets = 0

    def storage(request: httpx.Request) -> httpx.Response:
        nonlocal gets
        gets += 1
        headers = {"content-length": str(len(body))} if declared else {}
        return httpx.Response(200, headers=headers, stream=CutStream(body, 150_000 if gets == 1 else None))

    storage_host = httpx.MockTransport(storage)
    fetcher, _, local = make_fetcher(
        signed_url_api(issued), storage_host, tmp_path, Clock(), policy(), buffer_bytes=128 * 1024
    )
    outcome = asyncio.run(fetcher.fetch(CALL_ID, CALL_DATE))

    assert outcome.status is RecordingStatus.ARCHIVED, outcome.detail
    assert gets == 2  # the same signed URL, retried once
    key = recording_key(CALL_DATE, CALL_ID)
    assert local.get_bytes(key) == body
    assert (outcome.size_bytes, outcome.sha256) == (len(body), hashlib.sha256(body).hexdigest())
    # The first attempt's parts were forgotten with its upload: only the object remains.
    assert [p for p in (tmp_path / "archive").rglob("*") if p.is_file()] == [local.root / key]


# --- the polling deadline --------------------------------------------------------------------------


def nominal_delays(recording_policy: RecordingPolicy, count: int) -> list[float]:
    """The poll schedule before jitter: doubling from poll_initial_s, capped at poll_max_s."""
    delays, delay = [], recording_policy.poll_initial_s
    for _ in range(count):
        delays.append(delay)
        delay = min(delay * 2, recording_policy.poll_max_s)
    return delays


def test_a_recording_never_ready_is_pending_after_wait_s_with_no_extra_polls(tmp_path: Path) -> None:
    clock = Clock()
    polled_at: list[float] = []

    def api(request: httpx.Request) -> httpx.Response:
        polled_at.append(clock.now)
        return httpx.Response(425, json={"detail": "Too early"})

    rules = policy(wait_s=10.0, poll_initial_s=1.0, poll_max_s=4.0)
    fetcher, _, local = make_fetcher(
        httpx.MockTransport(api), httpx.MockTransport(api), tmp_path, clock, rules
    )
    outcome = asyncio.run(fetcher.fetch(CALL_ID, CALL_DATE))

    assert outcome.status is RecordingStatus.PENDING
    assert outcome.detail == "not ready after polling for 10 s (HTTP 425)"
    assert list(local.list_keys()) == []
    delays = nominal_delays(rules, len(polled_at))
    # One sleep between consecutive polls, each the schedule's delay give or take the jitter.
    assert len(clock.sleeps) == len(polled_at) - 1
    for slept, nominal in zip(clock.sleeps, delays, strict=False):
        assert JITTER[0] * nominal <= slept <= JITTER[1] * nominal
    # Another poll only while the next one still falls inside wait_s of the first 425; and the
    # fetcher did not stop while one more would have.
    assert all(at + delay <= rules.wait_s for at, delay in zip(polled_at[:-1], delays, strict=False))
    assert polled_at[-1] + delays[-1] > rules.wait_s
    # Polls at about 0, 1, 3, 7 (and 11 > 10 is not sent): even the shortest sleeps the jitter
    # allows (0, 0.75, 2.25, 5.25, 8.25) leave room for only one more.
    assert 4 <= len(polled_at) <= 5


def test_polling_stops_at_once_when_wait_s_is_zero(tmp_path: Path) -> None:
    clock = Clock()
    api = httpx.MockTransport(lambda request: httpx.Response(425))
    fetcher, client, _ = make_fetcher(api, api, tmp_path, clock, policy(wait_s=0.0))
    outcome = asyncio.run(fetcher.fetch(CALL_ID, CALL_DATE))
    assert outcome.status is RecordingStatus.PENDING
    assert (client.api_requests, clock.sleeps) == (1, [])


def test_a_recording_known_pending_is_asked_for_once_not_waited_for_again(tmp_path: Path) -> None:
    clock = Clock()
    api = httpx.MockTransport(lambda request: httpx.Response(425))
    fetcher, client, _ = make_fetcher(api, api, tmp_path, clock, policy(wait_s=3600))
    outcome = asyncio.run(fetcher.fetch(CALL_ID, CALL_DATE, known_pending=True))
    assert outcome.status is RecordingStatus.PENDING
    # Worded as after the earlier run's wait: a pending row reads the same whichever run wrote it.
    assert outcome.detail == "not ready after polling for 3600 s (HTTP 425)"
    assert (client.api_requests, clock.sleeps) == (1, [])


def test_a_recording_known_pending_that_became_ready_is_archived(tmp_path: Path) -> None:
    api = httpx.MockTransport(lambda request: httpx.Response(200, content=AUDIO))
    fetcher, client, local = make_fetcher(api, api, tmp_path, Clock(), policy(wait_s=3600))
    outcome = asyncio.run(fetcher.fetch(CALL_ID, CALL_DATE, known_pending=True))
    assert outcome.status is RecordingStatus.ARCHIVED and client.api_requests == 1
    assert local.get_bytes(recording_key(CALL_DATE, CALL_ID)) == AUDIO


def test_waiting_counts_the_recordings_being_waited_for_and_the_longest_wait_left(tmp_path: Path) -> None:
    clock = Clock()
    seen: list[tuple[int, float]] = []

    async def sleep(seconds: float) -> None:
        seen.append(fetcher.waiting())
        await clock.sleep(seconds)

    api = httpx.MockTransport(lambda request: httpx.Response(425))
    fetcher, _, _ = make_fetcher(api, api, tmp_path, clock, policy(wait_s=10.0), sleep=sleep)
    assert fetcher.waiting() == (0, 0.0)
    asyncio.run(fetcher.fetch(CALL_ID, CALL_DATE))
    assert seen and seen[0] == (1, 10.0)
    assert all(count == 1 and 0 < left <= 10.0 for count, left in seen)
    assert fetcher.waiting() == (0, 0.0)  # a wait that ended is not counted any more


# --- giving up the slot while waiting ---------------------------------------------------------------


def test_polling_stops_at_once_when_the_run_s_deadline_has_passed(tmp_path: Path) -> None:
    api = httpx.MockTransport(lambda request: httpx.Response(425))
    clock = Clock()
    fetcher, _client, _local = make_fetcher(
        api, api, tmp_path, clock, policy(wait_s=3600), stop_polling=lambda: True
    )
    outcome = asyncio.run(fetcher.fetch(CALL_ID, CALL_DATE))
    assert outcome.status is RecordingStatus.PENDING
    assert outcome.detail is not None and "deadline" in outcome.detail
    assert clock.sleeps == []


def test_the_callers_slot_is_free_while_waiting_between_polls_and_held_again_after(tmp_path: Path) -> None:
    answers = iter([httpx.Response(425), httpx.Response(425), httpx.Response(200, content=AUDIO)])
    api = httpx.MockTransport(lambda request: next(answers))
    clock = Clock()
    slot = asyncio.Semaphore(1)
    others_ran: list[float] = []

    async def other_call() -> None:
        # Another call's task: it gets the only slot only if the waiting fetcher gave it up.
        async with slot:
            others_ran.append(clock.now)

    async def sleep_while_others_run(seconds: float) -> None:
        assert not slot.locked()
        await asyncio.wait_for(other_call(), timeout=1.0)
        await clock.sleep(seconds)

    fetcher, _, local = make_fetcher(api, api, tmp_path, clock, policy(), sleep=sleep_while_others_run)

    async def scenario() -> bool:
        async with slot:
            # A fetcher that kept its slot would wait for it forever: fail in seconds instead.
            outcome = await asyncio.wait_for(fetcher.fetch(CALL_ID, CALL_DATE, slot=slot), timeout=5.0)
            assert outcome.status is RecordingStatus.ARCHIVED
            return slot.locked()

    assert asyncio.run(scenario()) is True  # the caller holds its slot again when fetch returns
    assert len(others_ran) == 2  # once per wait between polls
    assert local.get_bytes(recording_key(CALL_DATE, CALL_ID)) == AUDIO


def test_a_refreshed_url_holding_budget_never_deadlocks_with_a_download_waiting_for_budget(
    tmp_path: Path,
) -> None:
    """One recording buffer, one download slot. A's first URL has expired: it keeps its buffer
    while it asks for a fresh URL, and B, given the slot meanwhile, must not sit on it waiting for
    the buffer A holds (A then waits for the slot for ever)."""
    other = "1c1f2e7d-6c9f-4b90-8a1f-7a2a4d2e3b02"
    issued: list[str] = []
    both_redirected = threading.Event()

    def api(request: httpx.Request) -> httpx.Response:
        call_id = request.url.path.split("/")[-2]
        issued.append(f"https://storage.test/rec/{call_id}.wav?sig={len(issued) + 1}")
        if len(issued) == 2:
            both_redirected.set()
        return httpx.Response(302, headers={"Location": issued[-1]})

    def storage(request: httpx.Request) -> httpx.Response:
        # In a download thread: the storage client is synchronous.
        if str(request.url) == issued[0]:
            # Refused only once B has its URL and waits for what A holds.
            assert both_redirected.wait(5)
            time.sleep(0.05)
            return httpx.Response(403, text="<Error><Code>AccessDenied</Code>Request has expired</Error>")
        return httpx.Response(200, content=AUDIO)

    fetcher, _client, local = make_fetcher(
        httpx.MockTransport(api),
        httpx.MockTransport(storage),
        tmp_path,
        Clock(),
        policy(),
        download_slots=1,
    )
    assert fetcher._buffers.total == fetcher._buffers.largest  # room for one recording of unknown length

    async def both() -> list[RecordingStatus]:
        fetches = [fetcher.fetch(call_id, CALL_DATE) for call_id in (CALL_ID, other)]
        outcomes = await asyncio.wait_for(asyncio.gather(*fetches), timeout=5)
        return [outcome.status for outcome in outcomes]

    assert asyncio.run(both()) == [RecordingStatus.ARCHIVED, RecordingStatus.ARCHIVED]
    assert all(local.head(recording_key(CALL_DATE, call_id)) for call_id in (CALL_ID, other))
