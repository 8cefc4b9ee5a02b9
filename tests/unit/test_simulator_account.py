"""The simulator's pure generator: determinism, shapes of calls and messages, recordings."""

from __future__ import annotations

import hashlib
import io
import re
import uuid
import wave
from dataclasses import replace
from datetime import UTC, date, datetime
from operator import attrgetter

import pytest

from etl.simulator.account import AccountSpec, CallRecord, build_call, generate_records
from etl.simulator.audio import WavFormat, wav_chunks, wav_sha256
from etl.simulator.transcript import Transcript, build_transcript

SPEC = AccountSpec(seed=3, calls=400, days=5, start_date=date(2026, 3, 2), recording_bytes=48_000)
REQUIRED_CALL_KEYS = {
    "callId", "clientVersion", "created", "joined", "ended", "endReason", "billedDuration",
    "billedSideInputTokens", "billedSideOutputTokens", "billingStatus", "model", "systemPrompt",
    "temperature", "voice", "languageHint", "maxDuration", "timeExceededMessage", "joinUrl",
    "recordingEnabled", "medium", "metadata", "shortSummary", "summary", "retentionPolicy", "agentId",
    "agent", "errorCount", "experimentalSettings", "initialState",
}  # fmt: skip
END_REASONS = {"unjoined", "hangup", "agent_hangup", "timeout", "connection_error", "system_error"}
DURATION = re.compile(r"\d+(\.\d+)?s")


@pytest.fixture(scope="module")
def records() -> list[CallRecord]:
    return generate_records(SPEC)


@pytest.fixture(scope="module")
def transcripts(records: list[CallRecord]) -> list[Transcript]:
    return [build_transcript(record) for record in records]


def served(record: CallRecord) -> dict[str, object]:
    return build_call(record, ended=not record.underway, summarised=False)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_same_seed_same_account_and_another_seed_differs(records: list[CallRecord]) -> None:
    again = generate_records(SPEC)
    assert again == records
    assert [served(r) for r in again[:50]] == [served(r) for r in records[:50]]
    assert [build_transcript(r) for r in again[:50]] == [build_transcript(r) for r in records[:50]]
    other = generate_records(AccountSpec(4, 400, 5, date(2026, 3, 2), 48_000))
    assert {r.call_id for r in other}.isdisjoint({r.call_id for r in records})


def test_calls_are_sorted_and_cover_the_days_including_midnight_edges(records: list[CallRecord]) -> None:
    assert [r.key for r in records] == sorted(r.key for r in records)
    assert len({r.call_id for r in records}) == len(records)
    days = {parse_time(r.created).astimezone(UTC).date() for r in records}
    assert days == {date(2026, 3, d) for d in range(2, 7)}
    created = {r.created.replace("+00:00", "Z") for r in records}
    assert "2026-03-02T00:00:00Z" in created
    assert "2026-03-02T23:59:59.900000Z" in created
    assert "2026-03-03T00:00:00Z" in created
    assert "2026-03-06T23:59:59.999999Z" in created
    same_instant = [r for r in records if r.created_us == records[0].created_us + 43_200_000_000]
    assert len(same_instant) == 2  # the callId tie-break is exercised
    assert any(r.created.endswith("Z") for r in records) and any(
        r.created.endswith("+00:00") for r in records
    )
    assert any("." in r.created for r in records) and any("." not in r.created for r in records)


def test_call_objects_have_the_openapi_shape(records: list[CallRecord]) -> None:
    for record in records:
        call = served(record)
        assert call.keys() >= REQUIRED_CALL_KEYS
        assert str(uuid.UUID(str(call["callId"]))) == call["callId"]
        assert parse_time(str(call["created"])).utcoffset() is not None
        assert 0.0 <= float(call["temperature"]) <= 1.0  # type: ignore[arg-type]
        assert DURATION.fullmatch(str(call["maxDuration"]))
        assert isinstance(call["metadata"], dict)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in call["metadata"].items())
        assert call["retentionPolicy"] in {"retain", "auto_delete"}
        if record.underway:
            assert call["ended"] is None and call["endReason"] is None and call["summary"] is None
        else:
            assert call["endReason"] in END_REASONS
            assert DURATION.fullmatch(str(call["billedDuration"]))
            assert parse_time(str(call["ended"])) > parse_time(str(call["created"]))
        if record.unjoined:
            assert call["joined"] is None and call["endReason"] == "unjoined"


def test_the_mix_of_call_states(records: list[CallRecord]) -> None:
    calls = [served(r) for r in records]
    assert 0 < sum(r.underway for r in records) < len(records) * 0.1
    assert any(r.unjoined for r in records)
    assert 0.65 < sum(r.recording_enabled for r in records) / len(records) < 0.95
    assert any(c["summary"] is None and c["ended"] is not None for c in calls)
    assert any(c["metadata"] == {} for c in calls) and any(c["metadata"] for c in calls)
    assert {next(iter(c["medium"])) for c in calls} == {"webRtc", "twilio"}  # type: ignore[call-overload]
    assert any(r.delivery == "direct" for r in records) and any(r.processing_polls for r in records)
    assert any(r.processing_polls is None for r in records)


def test_ending_a_call_or_filling_its_summary_changes_nothing_else(records: list[CallRecord]) -> None:
    record = next(r for r in records if r.underway)
    before, after = (
        build_call(record, ended=False, summarised=False),
        build_call(record, ended=True, summarised=True),
    )
    changed = {key for key in before if before[key] != after[key]}
    billing = {"billedDuration", "billedSideInputTokens", "billedSideOutputTokens", "billingStatus"}
    assert changed <= {"ended", "endReason", "summary", "shortSummary", *billing}
    assert after["ended"] is not None and after["summary"] is not None


def test_transcripts_current_revision(records: list[CallRecord], transcripts: list[Transcript]) -> None:
    current = [t for r, t in zip(records, transcripts, strict=True) if not r.seed_revision]
    roles = {m["role"] for t in current for m in t.messages}
    assert {
        "MESSAGE_ROLE_USER",
        "MESSAGE_ROLE_AGENT",
        "MESSAGE_ROLE_TOOL_CALL",
        "MESSAGE_ROLE_TOOL_RESULT",
    } <= roles
    for transcript in current:
        stage_ids = [s["callStageId"] for s in transcript.stages]
        for message in transcript.messages:
            assert message["callStageId"] in stage_ids
            assert DURATION.fullmatch(message["timespan"]["start"])
            assert DURATION.fullmatch(message["wallClockTimespan"]["end"])
            assert message["medium"] in {"MESSAGE_MEDIUM_VOICE", "MESSAGE_MEDIUM_TEXT"}
        calls = [m for m in transcript.messages if m["role"] == "MESSAGE_ROLE_TOOL_CALL"]
        results = {m["invocationId"] for m in transcript.messages if m["role"] == "MESSAGE_ROLE_TOOL_RESULT"}
        assert {m["invocationId"] for m in calls} == results
    assert any("errorDetails" in m for t in current for m in t.messages)


def test_some_calls_have_several_stages(transcripts: list[Transcript]) -> None:
    staged = [t for t in transcripts if len(t.stages) > 1]
    assert len(staged) > len(transcripts) * 0.08
    for transcript in staged:
        last = transcript.last_stage()
        assert 0 < len(last) < len(transcript.messages)
        assert list(last) == list(transcript.messages[-len(last) :])
        assert {m["callStageId"] for m in last} == {transcript.stages[-1]["callStageId"]}
        assert [m["callStageMessageIndex"] for m in last] == list(range(len(last)))
        first_stage = transcript.stage_messages(transcript.stages[0]["callStageId"])
        assert first_stage is not None and first_stage[0] is transcript.messages[0]


def test_older_revision_messages(records: list[CallRecord], transcripts: list[Transcript]) -> None:
    old = [t for r, t in zip(records, transcripts, strict=True) if r.seed_revision and t.messages]
    assert old
    for transcript in old:
        assert [m["ordinal"] for m in transcript.messages] == list(range(len(transcript.messages)))
        assert all(m.keys() == {"ordinal", "role", "text"} for m in transcript.messages)
        assert {m["role"] for m in transcript.messages} <= {"USER", "AGENT"}
        assert transcript.last_stage() == transcript.messages


def test_message_counts_and_unicode(transcripts: list[Transcript]) -> None:
    counts = [len(t.messages) for t in transcripts]
    assert 12 < sum(counts) / len(counts) < 35
    assert 0 in counts and max(counts) >= 150
    text = "".join(m["text"] for t in transcripts for m in t.messages)
    for sample in ("é", "预约", "👍🏽", "مرحبا", "שלום", "\n"):
        assert sample in text


def test_recording_is_a_valid_wav_of_the_exact_size() -> None:
    body = b"".join(wav_chunks(seed=9, total_bytes=200_044))
    assert len(body) == 200_044
    with wave.open(io.BytesIO(body)) as parsed:
        assert (parsed.getnchannels(), parsed.getsampwidth(), parsed.getframerate()) == (1, 2, 16_000)
        assert parsed.getnframes() == 100_000
    assert wav_sha256(9, 200_044) == hashlib.sha256(body).hexdigest()
    assert b"".join(wav_chunks(seed=10, total_bytes=200_044)) != body


def test_recording_chunks_stay_small_for_a_huge_file() -> None:
    chunks = wav_chunks(seed=1, total_bytes=2**31)
    sizes = [len(next(chunks)) for _ in range(100)]
    assert max(sizes) <= 64 * 1024


def test_one_huge_recording_when_asked(records: list[CallRecord]) -> None:
    spec = AccountSpec(3, 400, 5, date(2026, 3, 2), 48_000, huge_recording_bytes=2**31)
    huge = [r for r in generate_records(spec) if r.recording_bytes == 2**31]
    assert len(huge) == 1
    assert huge[0].delivery == "redirect" and huge[0].processing_polls == 0 and not huge[0].underway
    assert max(r.recording_bytes for r in records) < 2**20


# --- real-sized recordings --------------------------------------------------------------------------

REAL = AccountSpec(seed=3, calls=400, days=5, start_date=date(2026, 3, 2), recording_bytes=None)


def billed_seconds(call: dict[str, object]) -> float:
    return float(str(call["billedDuration"]).removesuffix("s"))


def test_real_recordings_last_as_long_as_their_call_at_their_formats_byte_rate() -> None:
    records = generate_records(REAL)
    for record in records:
        ended = build_call(record, ended=True, summarised=False)
        seconds = 30 if record.unjoined else billed_seconds(ended)
        frames = round(seconds * record.wav.sample_rate)
        assert record.recording_bytes == 44 + frames * record.wav.channels * 2, record
    sizes = sorted(r.recording_bytes for r in records if not r.unjoined)
    assert sizes[0] < 1_000_000 and sizes[-1] > 50_000_000  # seconds to a quarter hour, 8-48 kHz
    assert 10e6 < sum(sizes) / len(sizes) < 25e6


def test_the_format_varies_per_call_and_phone_calls_are_8_khz_mono() -> None:
    records = generate_records(REAL)
    formats = {(r.medium, r.wav.sample_rate, r.wav.channels) for r in records}
    assert {f for f in formats if f[0] == "twilio"} == {("twilio", 8_000, 1)}
    web = {f[1:] for f in formats if f[0] == "webRtc"}
    assert {(16_000, 1), (48_000, 1), (24_000, 1)} <= web and any(channels == 2 for _, channels in web)
    assert {next(iter(served(r)["medium"])) for r in records} == {"webRtc", "twilio"}  # type: ignore[call-overload]
    assert all(next(iter(served(r)["medium"])) == r.medium for r in records)  # type: ignore[call-overload]


def test_the_wav_header_tells_the_truth() -> None:
    # Short calls, so whole files are cheap to parse.
    spec = replace(REAL, calls=200, duration_range=(1.0, 3.0))
    seen = set()
    for record in generate_records(spec):
        body = b"".join(wav_chunks(record.seed, record.recording_bytes, record.wav))
        assert len(body) == record.recording_bytes
        with wave.open(io.BytesIO(body)) as parsed:
            fmt = (parsed.getnchannels(), parsed.getsampwidth(), parsed.getframerate())
            assert fmt == (record.wav.channels, 2, record.wav.sample_rate)
            assert 44 + parsed.getnframes() * record.wav.block_align == len(body)
        seen.add(fmt)
    assert len(seen) >= 4


def test_duration_range_and_sample_rate_bound_the_sizes() -> None:
    spec = replace(REAL, duration_range=(160.0, 900.0), sample_rate=16_000)
    records = generate_records(spec)
    joined = [r for r in records if not r.unjoined]
    assert all(160.0 <= r.duration_s <= 900.0 for r in joined)
    assert all(r.wav == WavFormat(16_000, 1) for r in records)
    assert all(5_000_000 < r.recording_bytes < 29_000_000 for r in joined)
    # The other fields do not move with the media options: accounts picked by seed keep their mix.
    before = generate_records(replace(REAL, recording_bytes=48_000))
    key = attrgetter("call_id", "created", "underway", "unjoined", "processing_polls", "delivery", "seed")
    assert [key(r) for r in records] == [key(r) for r in before]


def test_recording_bytes_overrides_the_mean_size_in_whole_frames() -> None:
    records = generate_records(SPEC)
    assert all(24_000 <= r.recording_bytes <= 72_000 for r in records)
    assert all((r.recording_bytes - 44) % r.wav.block_align == 0 for r in records)
    assert len({r.wav for r in records}) > 3  # the override keeps the formats' variety
