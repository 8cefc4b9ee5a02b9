"""How a run schedules its work (etl/pipeline/run.py, calls.py): the next day's listing does not wait
for the previous day's calls, the days open at once stay bounded, a call's recording is fetched
alongside its transcript, and a call that fails does not wait for its recording.

The fake API answers from an async handler, so a test can hold one request until another one has
been seen; a hold that is never released fails the test after `_HOLD_S` instead of hanging.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from support.api_objects import last_page, listed_call

from etl.api.client import ApiClient, ClientOptions
from etl.config import Settings
from etl.pipeline import run as run_module
from etl.pipeline.run import Run, backfill
from etl.reporting.summary import RunSummary
from etl.secrets import Secret
from etl.storage import LocalStorage

FIRST = date(2026, 3, 2)
NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
API_KEY = "abcdefgh." + "k" * 32
AUDIO = b"RIFF" + bytes(range(256)) * 8
_HOLD_S = 5.0


def day(offset: int) -> date:
    return FIRST + timedelta(days=offset)


def call_of(call_id: str, on: date, **fields: Any) -> dict[str, Any]:
    return listed_call(call_id, datetime(on.year, on.month, on.day, 9, tzinfo=UTC), **fields)


class GatedApi:
    """One call per day; `gate(what, call_id)` may hold that request until some event is set."""

    def __init__(self, days: int, **fields: Any) -> None:
        self.calls = {day(i): [call_of(f"call-{i}", day(i), **fields)] for i in range(days)}
        self.seen: list[str] = []
        self.counts: Counter[str] = Counter()
        self.events: dict[str, asyncio.Event] = {}
        self.gate: Callable[[str, str], Awaitable[None]] | None = None
        self.messages_status = 200
        self.recording_status = 302

    def event(self, name: str) -> asyncio.Event:
        return self.events.setdefault(name, asyncio.Event())

    async def api(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["x-api-key"] == API_KEY
        path = request.url.path.removeprefix("/api/")
        if path in ("calls", "deleted_calls"):
            listed = date.fromisoformat(request.url.params["fromDate"][:10])
            name = f"{path}:{listed}"
            self._saw(name)
            return last_page(self.calls.get(listed, []) if path == "calls" else [])
        _, call_id, what = path.split("/")
        self._saw(f"{what}:{call_id}")
        if self.gate is not None:
            await self.gate(what, call_id)
        if what == "messages":
            if self.messages_status != 200:
                return httpx.Response(self.messages_status, json={"detail": "no transcript for you"})
            return last_page([{"role": "MESSAGE_ROLE_AGENT", "text": "Hi", "medium": "MESSAGE_MEDIUM_VOICE"}])
        if self.recording_status == 425:
            return httpx.Response(425)
        return httpx.Response(302, headers={"location": f"https://storage.test/rec/{call_id}.wav?sig=s"})

    def storage(self, request: httpx.Request) -> httpx.Response:
        self._saw("download")
        return httpx.Response(200, content=AUDIO)

    def _saw(self, name: str) -> None:
        self.seen.append(name)
        self.counts[name.split(":")[0]] += 1
        self.event(name).set()

    async def wait_for(self, name: str) -> bool:
        """True once `name` has been requested; False if it was not within _HOLD_S."""
        try:
            await asyncio.wait_for(self.event(name).wait(), _HOLD_S)
        except TimeoutError:
            return False
        return True


class LoopTransport(httpx.MockTransport):
    """The async handler for both of the client's sides: recording requests come from worker threads
    through the synchronous client, and are answered on the event loop, where the gates live."""

    def __init__(self, handler: Callable[[httpx.Request], Awaitable[httpx.Response]]) -> None:
        super().__init__(handler)
        self._loop = asyncio.get_running_loop()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return asyncio.run_coroutine_threadsafe(self.handle_async_request(request), self._loop).result()


def run_days(api: GatedApi, root: Path, days: int, **overrides: Any) -> tuple[RunSummary, float]:
    settings = Settings(
        api_key=Secret(API_KEY),
        api_base_url="https://api.test/api",
        dest=str(root / "archive"),
        allowed_recording_hosts="storage.test",
        **{"max_rps": 10_000, "recording_wait_s": 0.0, **overrides},
    )

    async def one_run() -> RunSummary:
        async with ApiClient(
            ClientOptions.from_settings(settings),
            transport=LoopTransport(api.api),
            storage_transport=httpx.MockTransport(api.storage),
        ) as client:
            spool = root / "spool"
            spool.mkdir(exist_ok=True)
            storage = LocalStorage(root / "archive")
            run = Run(settings, client=client, storage=storage, spool_dir=spool, now=lambda: NOW)
            return await run.execute(backfill(day(0), day(days - 1)))

    started = time.monotonic()
    summary = asyncio.run(one_run())
    return summary, time.monotonic() - started


def test_the_next_days_listing_does_not_wait_for_the_previous_days_calls(tmp_path: Path) -> None:
    # Days worked two at a time behind a day slot (before) never listed the third day while the
    # first two had calls in flight: the rate budget drained at the end of every pair of days.
    api = GatedApi(days=3)
    listed_in_time: dict[str, bool] = {}

    async def gate(what: str, call_id: str) -> None:
        if what == "messages" and call_id in ("call-0", "call-1"):
            listed_in_time[call_id] = await api.wait_for(f"calls:{day(2)}")

    api.gate = gate
    summary, _ = run_days(api, tmp_path, days=3)

    assert listed_in_time == {"call-0": True, "call-1": True}
    assert summary.complete and summary.calls_archived == 3 and summary.partitions_written == 3


def test_days_are_listed_one_at_a_time_and_few_are_open_at_once(tmp_path: Path) -> None:
    days = run_module._DAYS_OPEN + 2
    api = GatedApi(days=days)
    release = asyncio.Event()
    listed_while_held: list[str] = []

    async def gate(what: str, call_id: str) -> None:
        if what == "messages" and call_id == "call-0":
            # Every other day lists, and its call is held too, until the first call ends: days
            # past the bound must not be listed meanwhile.
            await asyncio.sleep(0.3)
            listed_while_held.extend(name for name in api.seen if name.startswith("calls:"))
            release.set()
        elif what == "messages":
            await asyncio.wait_for(release.wait(), _HOLD_S)

    api.gate = gate
    summary, _ = run_days(api, tmp_path, days=days)

    # Open days ask for their first page early, in whatever order they are ready; no day past the
    # bound is even listed while the first call is held.
    assert sorted(listed_while_held) == [f"calls:{day(i)}" for i in range(run_module._DAYS_OPEN)]
    listings = [name for name in api.seen if name.startswith("calls:")]
    assert sorted(listings) == [f"calls:{day(i)}" for i in range(days)]  # each once
    # Calls are admitted one day after the other, in date order.
    assert [name for name in api.seen if name.startswith("messages:")] == [
        f"messages:call-{i}" for i in range(days)
    ]
    assert summary.complete and summary.calls_archived == days and summary.partitions_written == days


def test_the_recording_is_fetched_alongside_the_transcript(tmp_path: Path) -> None:
    # Before, a call asked for its recording only once its transcript was in: the last calls of a
    # run left the rate budget idle while their audio moved.
    api = GatedApi(days=1, recordingEnabled=True)
    recording_first: list[bool] = []

    async def gate(what: str, call_id: str) -> None:
        if what == "messages":
            recording_first.append(await api.wait_for(f"recording:{call_id}"))

    api.gate = gate
    summary, _ = run_days(api, tmp_path, days=1)

    assert recording_first == [True]
    assert (summary.calls_archived, summary.recordings_archived, summary.messages_archived) == (1, 1, 1)
    stored = LocalStorage(tmp_path / "archive").get_bytes(f"recordings/call_date={day(0)}/call-0.wav")
    assert stored == AUDIO


def test_a_call_whose_transcript_fails_does_not_wait_for_its_recording(tmp_path: Path) -> None:
    api = GatedApi(days=1, recordingEnabled=True)
    api.messages_status = 400
    api.recording_status = 425

    summary, elapsed = run_days(
        api, tmp_path, days=1, recording_wait_s=30.0, recording_poll_initial_s=0.05, recording_poll_max_s=0.05
    )

    assert elapsed < 10  # not the 30 s the recording would have been polled for
    assert (summary.calls_archived, summary.calls_failed, summary.recordings_pending) == (0, 1, 0)
    assert "no transcript for you" in summary.problems[0].reason
    assert api.counts["download"] == 0
