"""The pipeline over a local destination and a fake API (httpx.MockTransport): what lands where.

Each test runs whole backfills of one day against `FakeApi`, whose listings and recordings are the
ground truth, and reads back the Parquet files, the recording, the manifest and the run records.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from support.api_objects import last_page, listed_call

from etl.api.client import ApiClient, ClientOptions
from etl.config import Settings
from etl.parquet import partition_key
from etl.pipeline.run import Command, Run, backfill
from etl.reporting.summary import RunSummary
from etl.secrets import Secret
from etl.state import PartitionManifest, manifest_key, open_marker_key
from etl.storage import LocalStorage, ObjectInfo, Storage

DAY = date(2026, 3, 2)
# Inside the refresh window of DAY: nothing is final yet, whatever else is open.
SOON = datetime(2026, 3, 3, 12, tzinfo=UTC)
# Past the refresh window: final unless something is open.
LATER = datetime(2026, 3, 20, 12, tzinfo=UTC)
API_KEY = "abcdefgh." + "k" * 32
AUDIO = b"RIFF" + bytes(range(256)) * 40


def call(call_id: str, hour: int, **fields: Any) -> dict[str, Any]:
    return listed_call(call_id, datetime(2026, 3, 2, hour, tzinfo=UTC), **fields)


def messages(*texts: str) -> list[dict[str, Any]]:
    roles = ("MESSAGE_ROLE_AGENT", "MESSAGE_ROLE_USER")
    return [
        {"role": roles[i % 2], "text": text, "medium": "MESSAGE_MEDIUM_VOICE"} for i, text in enumerate(texts)
    ]


class FakeApi:
    """The API and the storage host, as plain data; counts the requests it answers."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.recordings: dict[str, bytes] = {}
        self.not_ready: set[str] = set()
        self.tombstones: list[Any] = []
        self.listing_status = 200
        self.requests: Counter[str] = Counter()
        self.storage_headers: list[httpx.Headers] = []

    def api(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["x-api-key"] == API_KEY
        path = request.url.path.removeprefix("/api/")
        if path in ("calls", "deleted_calls"):
            self.requests[path] += 1
            # The documented filters are date-times: the exact UTC day, with an explicit offset.
            assert (request.url.params["fromDate"], request.url.params["toDate"]) == (
                f"{DAY}T00:00:00.000000+00:00",
                f"{DAY}T23:59:59.999999+00:00",
            )
            if path == "calls" and self.listing_status != 200:
                return httpx.Response(self.listing_status, json={"detail": "listing refused"})
            return last_page(self.calls if path == "calls" else self.tombstones)
        match = re.fullmatch(r"calls/([\w-]+)/(messages|recording)", path)
        assert match is not None, path
        call_id, what = match.groups()
        self.requests[what] += 1
        if what == "messages":
            return last_page(self.messages.get(call_id, []))
        if call_id in self.not_ready:
            return httpx.Response(425)
        if call_id not in self.recordings:
            return httpx.Response(404, json={"detail": "no such recording"})
        return httpx.Response(302, headers={"location": f"https://storage.test/rec/{call_id}.wav?sig=s"})

    def storage(self, request: httpx.Request) -> httpx.Response:
        self.requests["download"] += 1
        self.storage_headers.append(request.headers)
        call_id = request.url.path.removeprefix("/rec/").removesuffix(".wav")
        return httpx.Response(200, content=self.recordings[call_id])


class Archive:
    """The destination directory, read back."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.storage = LocalStorage(root)

    def rows(self, table: str) -> list[dict[str, Any]]:
        path = self.root / partition_key(table, DAY, "data.parquet")
        if not path.exists():
            return []
        return sorted(
            pq.read_table(path).to_pylist(), key=lambda r: (r["call_id"], r.get("message_index", 0))
        )

    def calls(self) -> dict[str, dict[str, Any]]:
        return {row["call_id"]: row for row in self.rows("calls")}

    def manifest(self) -> PartitionManifest:
        body = self.storage.get_bytes(manifest_key(DAY))
        assert body is not None
        return PartitionManifest.from_json(body)

    def is_open(self) -> bool:
        return self.storage.get_bytes(open_marker_key(DAY)) is not None

    def quarantine(self, summary: RunSummary) -> list[dict[str, Any]]:
        body = self.storage.get_bytes(f"_quarantine/{summary.run_id}.jsonl")
        return [json.loads(line) for line in body.decode().splitlines()] if body else []


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    return Archive(tmp_path / "archive")


@pytest.fixture
def run_day(api: FakeApi, archive: Archive, tmp_path: Path) -> Iterator[Any]:
    """Backfill DAY once, as a run at `now` would; returns the run's summary."""
    settings = Settings(
        api_key=Secret(API_KEY),
        api_base_url="https://api.test/api",
        dest=str(archive.root),
        allowed_recording_hosts="storage.test",
        max_rps=10_000,
        recording_wait_s=0.0,
    )

    async def one_run(now: datetime, command: Command | None, storage: Storage | None) -> RunSummary:
        async with ApiClient(
            ClientOptions.from_settings(settings),
            transport=httpx.MockTransport(api.api),
            storage_transport=httpx.MockTransport(api.storage),
        ) as client:
            spool = tmp_path / "spool"
            spool.mkdir(exist_ok=True)
            store = storage or archive.storage
            run = Run(settings, client=client, storage=store, spool_dir=spool, now=lambda: now)
            return await run.execute(command or backfill(DAY, DAY))

    yield lambda now=SOON, command=None, storage=None: asyncio.run(one_run(now, command, storage))


def test_a_day_with_calls_messages_and_a_recording(api: FakeApi, archive: Archive, run_day: Any) -> None:
    api.calls = [call("call-a", 9, recordingEnabled=True), call("call-b", 14)]
    api.messages = {"call-a": messages("Hello", "Hi", "Bye"), "call-b": messages("Yes?", "No.")}
    api.recordings = {"call-a": AUDIO}

    summary = run_day()

    calls = archive.calls()
    assert set(calls) == {"call-a", "call-b"}
    a, b = calls["call-a"], calls["call-b"]
    assert (a["recording_status"], a["recording_bytes"], a["message_count"]) == ("archived", len(AUDIO), 3)
    assert a["recording_sha256"] == hashlib.sha256(AUDIO).hexdigest()
    assert a["recording_uri"].endswith("recordings/call_date=2026-03-02/call-a.wav")
    assert (b["recording_status"], b["recording_uri"], b["message_count"]) == ("not_enabled", None, 2)
    assert (a["archived_at"], a["source_deleted_at"]) == (SOON, None)
    texts = [(r["call_id"], r["message_index"], r["role"], r["text"]) for r in archive.rows("messages")]
    assert texts == [
        ("call-a", 0, "agent", "Hello"),
        ("call-a", 1, "user", "Hi"),
        ("call-a", 2, "agent", "Bye"),
        ("call-b", 0, "agent", "Yes?"),
        ("call-b", 1, "user", "No."),
    ]
    assert archive.storage.get_bytes("recordings/call_date=2026-03-02/call-a.wav") == AUDIO
    # The signed URL's host never sees the API key.
    assert [h.get("x-api-key") for h in api.storage_headers] == [None]

    manifest = archive.manifest()
    assert (manifest.calls, manifest.messages, manifest.final) == (2, 5, False)
    assert (manifest.recordings_archived, manifest.recording_bytes) == (1, len(AUDIO))
    assert manifest.open_items == 0
    assert manifest.newest_call_created == datetime(2026, 3, 2, 14, tzinfo=UTC)
    assert manifest.schema_versions == {"calls": 1, "messages": 1}
    assert archive.is_open()  # inside the refresh window
    assert (summary.calls_archived, summary.messages_archived, summary.recordings_archived) == (2, 5, 1)
    assert (summary.recordings_not_enabled, summary.partitions_written, summary.partitions_final) == (1, 1, 0)
    assert summary.complete and summary.problems == []
    assert archive.storage.get_bytes(f"_runs/{summary.run_id}.json") is not None
    assert archive.quarantine(summary) == []
    assert api.requests["deleted_calls"] == 0  # nothing archived before: no tombstone can matter


def test_a_quiet_day_past_the_refresh_window_is_final(api: FakeApi, archive: Archive, run_day: Any) -> None:
    api.calls = [call("call-a", 9)]

    summary = run_day(LATER)

    assert archive.manifest().final
    assert not archive.is_open()
    assert (summary.partitions_written, summary.partitions_final) == (1, 1)


def test_bad_records_are_quarantined_and_keep_the_day_open(
    api: FakeApi, archive: Archive, run_day: Any
) -> None:
    no_id = {"created": "2026-03-02T10:00:00Z", "ended": "2026-03-02T10:05:00Z"}
    api.calls = [call("call-a", 9), call("call-c", 11, temperature="hot"), no_id]

    summary = run_day(LATER)

    assert set(archive.calls()) == {"call-a"}
    lines = archive.quarantine(summary)
    assert [(p["kind"], p["call_id"], p["call_date"]) for p in lines] == [
        ("bad_record", "call-c", "2026-03-02"),
        ("bad_record", None, "2026-03-02"),
    ]
    assert lines[0]["reason"].startswith("temperature: expected a finite number")
    assert json.loads(lines[1]["raw_json"]) == no_id
    assert all(p["run_id"] == summary.run_id for p in lines)
    manifest = archive.manifest()
    # A call id where there is one; the kind, apart, where there is none.
    assert (manifest.failed_call_ids, manifest.failed_kinds) == (("call-c",), ("bad_record",))
    assert not manifest.final and archive.is_open()
    assert (summary.records_quarantined, summary.calls_failed, summary.complete) == (2, 0, False)


def test_a_failed_listing_publishes_nothing(api: FakeApi, archive: Archive, run_day: Any) -> None:
    api.calls = [call("call-a", 9)]
    run_day(LATER)
    published = {key: archive.storage.get_bytes(key) for key in archive.storage.list_keys("calls/")}
    manifest_before = archive.storage.get_bytes(manifest_key(DAY))
    assert not archive.is_open()

    api.calls.append(call("call-b", 10))
    api.listing_status = 400
    summary = run_day(LATER)

    assert {key: archive.storage.get_bytes(key) for key in archive.storage.list_keys("calls/")} == published
    assert archive.storage.get_bytes(manifest_key(DAY)) == manifest_before
    assert "listing_failed" not in archive.manifest().failed_call_ids
    assert archive.is_open()  # the next run visits the day again
    [problem] = archive.quarantine(summary)
    assert (problem["kind"], problem["call_id"]) == ("listing_failed", None)
    assert "listing refused" in problem["reason"]
    assert (summary.calls_failed, summary.partitions_written, summary.complete) == (1, 0, False)
    assert summary.fatal_error is None


def test_tombstones_mark_a_kept_call_deleted(api: FakeApi, archive: Archive, run_day: Any) -> None:
    api.calls = [call("call-a", 9), call("call-b", 10)]
    run_day()

    api.calls = [call("call-a", 9)]
    api.tombstones = [{"callId": "call-b", "deletionTime": "2026-03-03T08:00:00Z"}, {"deletionTime": "?"}]
    summary = run_day(SOON + timedelta(hours=1))

    calls = archive.calls()
    assert calls["call-b"]["source_deleted_at"] == datetime(2026, 3, 3, 8, tzinfo=UTC)
    assert calls["call-b"]["last_seen_at"] == SOON  # as the first run archived it
    assert calls["call-a"]["source_deleted_at"] is None
    manifest = archive.manifest()
    assert (manifest.calls, manifest.calls_kept_from_archive, manifest.calls_deleted_at_source) == (2, 1, 1)
    assert (summary.calls_kept_from_archive, summary.calls_deleted_at_source) == (1, 1)
    assert api.requests["deleted_calls"] == 1
    assert summary.complete


def test_a_call_underway_is_left_for_later(api: FakeApi, archive: Archive, run_day: Any) -> None:
    api.calls = [call("call-a", 9), call("call-u", 23, ended=None, endReason=None, recordingEnabled=True)]
    api.recordings = {"call-u": AUDIO}

    summary = run_day(LATER)

    assert set(archive.calls()) == {"call-a"}
    manifest = archive.manifest()
    assert (manifest.underway_call_ids, manifest.final) == (("call-u",), False)
    assert archive.is_open()
    assert (summary.calls_underway, summary.underway_call_ids, summary.complete) == (1, ["call-u"], True)
    assert (api.requests["messages"], api.requests["recording"]) == (1, 0)  # call-a's transcript only


def test_recordings_not_ready_or_failing_keep_the_day_open(
    api: FakeApi, archive: Archive, run_day: Any
) -> None:
    api.calls = [call("call-p", 9, recordingEnabled=True), call("call-f", 10, recordingEnabled=True)]
    api.not_ready = {"call-p"}

    summary = run_day(LATER)

    calls = archive.calls()
    assert (calls["call-p"]["recording_status"], calls["call-f"]["recording_status"]) == ("pending", "failed")
    manifest = archive.manifest()
    assert (manifest.pending_recording_call_ids, manifest.failed_call_ids) == (("call-p",), ("call-f",))
    assert (manifest.failed_kinds, manifest.recordings_archived, manifest.final) == ((), 0, False)
    [problem] = archive.quarantine(summary)
    assert (problem["kind"], problem["call_id"]) == ("recording_failed", "call-f")
    assert (summary.recordings_pending, summary.recordings_failed, summary.calls_failed) == (1, 1, 0)


def test_a_rerun_reuses_the_transcript_and_the_recording(
    api: FakeApi, archive: Archive, run_day: Any
) -> None:
    api.calls = [call("call-a", 9, recordingEnabled=True), call("call-b", 14)]
    api.messages = {"call-a": messages("Hello", "Hi", "Bye"), "call-b": messages("Yes?", "No.")}
    api.recordings = {"call-a": AUDIO}
    run_day()
    first_messages = archive.rows("messages")
    api.requests.clear()

    rerun = SOON + timedelta(hours=2)
    summary = run_day(rerun)

    assert (api.requests["messages"], api.requests["recording"], api.requests["download"]) == (0, 0, 0)
    assert archive.rows("messages") == first_messages
    calls = archive.calls()
    assert (calls["call-a"]["archived_at"], calls["call-a"]["last_seen_at"]) == (SOON, rerun)
    assert (calls["call-a"]["recording_status"], calls["call-a"]["message_count"]) == ("archived", 3)
    assert (summary.transcripts_reused, summary.recordings_reused, summary.messages_archived) == (2, 1, 5)
    manifest = archive.manifest()
    assert (manifest.calls, manifest.messages, manifest.recordings_archived) == (2, 5, 1)
    assert manifest.calls_kept_from_archive == 0


class CountingStorage:
    """Delegates to a storage and counts the lookups of recording objects."""

    def __init__(self, inner: Storage) -> None:
        self._inner = inner
        self.lookups: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def head(self, key: str) -> ObjectInfo | None:
        self.lookups["head"] += key.startswith("recordings/")
        return self._inner.head(key)

    def digest(self, key: str) -> ObjectInfo | None:
        self.lookups["digest"] += 1
        return self._inner.digest(key)


def test_a_sync_checks_a_reused_recordings_size_and_a_backfill_its_sha256(
    api: FakeApi, archive: Archive, run_day: Any
) -> None:
    api.calls = [call("call-a", 9, recordingEnabled=True)]
    api.messages = {"call-a": messages("Hello")}
    api.recordings = {"call-a": AUDIO}
    run_day()
    key = "recordings/call_date=2026-03-02/call-a.wav"
    other = bytes(b ^ 0xFF for b in AUDIO)  # same size, other bytes
    archive.storage.put_bytes(key, other)

    counting = CountingStorage(archive.storage)
    summary = run_day(SOON, Command("sync", lambda _storage, _today: [DAY]), counting)
    # A sync: one HEAD, the size agrees, re-used (it costs what it did; the checksum is backfill's).
    assert counting.lookups == Counter(head=1)
    assert (summary.recording_checks, summary.recordings_refetched, summary.recordings_reused) == (1, 0, 1)
    assert archive.storage.get_bytes(key) == other

    counting = CountingStorage(archive.storage)
    summary = run_day(SOON, None, counting)
    assert counting.lookups == Counter(digest=1)
    assert (summary.recording_checks, summary.recordings_refetched, summary.recordings_reused) == (1, 1, 0)
    assert archive.storage.get_bytes(key) == AUDIO


@pytest.mark.parametrize("bad_id", ["call-n\n", "call-n\r\n", "call/../n", "call n", ""])
def test_a_call_id_with_a_trailing_newline_or_a_separator_is_quarantined(
    api: FakeApi, archive: Archive, run_day: Any, bad_id: str
) -> None:
    api.calls = [call("call-a", 9), call(bad_id, 10)]

    summary = run_day(LATER)

    assert set(archive.calls()) == {"call-a"}
    [problem] = archive.quarantine(summary)
    assert problem["kind"] == "bad_record"
    assert api.requests["messages"] == 1  # no request was made with the bad id in its path
