"""Deterministic generator of a simulated Ultravox account: pure functions, no I/O.

Benchmarks use 50,000 calls, so the account holds one small `CallRecord` per call (the facts the
server needs to route and fault requests) and builds the full call object on demand from the record's
own seed. Every value is a function of (seed, index): two simulators with the same options serve
byte-identical data, which is what lets tests compare an archive against `/_sim/truth`.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from etl.simulator import texts
from etl.simulator.audio import WavFormat, pick_format

US_PER_S = 1_000_000
US_PER_DAY = 86_400 * US_PER_S
JOIN_TIMEOUT_S = 30  # the default joinTimeout: how long an unjoined call lasts
DEFAULT_DURATION_RANGE = (4.0, 900.0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Delivery = Literal["redirect", "direct"]


@dataclass(frozen=True, slots=True)
class AccountSpec:
    seed: int
    calls: int
    days: int
    start_date: date
    # None: each recording's real size, from its call's duration and format; else the mean size of
    # every recording (+-50%), for tests that need small ones.
    recording_bytes: int | None
    huge_recording_bytes: int | None = None
    duration_range: tuple[float, float] = DEFAULT_DURATION_RANGE  # seconds, of joined calls
    sample_rate: int | None = None  # every recording mono at this rate; None: varied per call
    recording_rate: float = 0.8
    # Recordings that never finish processing (the API answers 425 for ever).
    stuck_recording_rate: float = 0.03
    # Calls with recording off whose object leaves `recordingEnabled` out, as proto3 JSON leaves out a
    # field at its default (the OpenAPI's default is false): a client that asks anyway must read the
    # answer by its status. Drawn from the call id, not the account's random stream, so every other
    # field of every call stays what it was.
    recording_enabled_omitted_rate: float = 0.0
    # Calls underway that never end: /_sim/advance end_underway leaves them underway for ever.
    never_ending_rate: float = 0.0

    @property
    def start_us(self) -> int:
        return date_to_us(self.start_date)

    @property
    def end_us(self) -> int:
        """First microsecond after the account's last day."""
        return self.start_us + self.days * US_PER_DAY


@dataclass(frozen=True, slots=True)
class CallRecord:
    """The routing facts about one call; everything else is rebuilt from `seed` when served."""

    index: int
    call_id: str
    created_us: int
    created: str
    seed: int
    zulu: bool  # timestamps end in "Z" rather than "+00:00": real clients see both
    underway: bool
    unjoined: bool
    recording_enabled: bool
    processing_polls: int | None  # 425 answers before the recording is ready; None = never ready
    delivery: Delivery
    medium: str
    duration_s: float  # joined to ended; the recording holds these seconds
    wav: WavFormat
    recording_bytes: int
    seed_revision: bool  # transcript in the older {ordinal, role, text} shape
    summary_missing: bool  # ended, but the summary is only filled in later (see /_sim/advance)
    retention_policy: str
    recording_enabled_omitted: bool = False  # the object has no `recordingEnabled`

    @property
    def key(self) -> tuple[int, str]:
        """Keyset position: list order is by `created`, ties broken by callId."""
        return (self.created_us, self.call_id)


def date_to_us(day: date) -> int:
    return (datetime(day.year, day.month, day.day, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)


def us_to_datetime(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def format_time(value_us: int, zulu: bool) -> str:
    """ISO 8601 in UTC; fraction only when non-zero, like the real API's serializer."""
    text = us_to_datetime(value_us).isoformat()
    return text.replace("+00:00", "Z") if zulu else text


def call_seed(seed: int, index: int) -> int:
    # A hash rather than `seed * k + index`, so neighbouring seeds do not produce shifted accounts.
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def deterministic_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def generate_records(spec: AccountSpec) -> list[CallRecord]:
    """All calls of the account, sorted in list order."""
    last_day_us = spec.end_us - US_PER_DAY
    records = [
        new_record(spec, index, created_us, last_day_us)
        for index, created_us in enumerate(_created_times(spec))
    ]
    records.sort(key=lambda record: record.key)
    if spec.huge_recording_bytes is not None:
        records = _with_huge_recording(records, spec.huge_recording_bytes)
    return records


def _created_times(spec: AccountSpec) -> list[int]:
    start, end = spec.start_us, spec.end_us
    # Edge instants first, so even a small account has calls where date filters and UTC day
    # partitioning go wrong: the first and last microsecond, 0.1 s either side of each midnight, and
    # two calls created in the same microsecond (the callId tie-break).
    specials = [start, end - 1]
    for day in range(1, spec.days):
        midnight = start + day * US_PER_DAY
        specials += [midnight - 100_000, midnight]
    noon = start + US_PER_DAY // 2
    specials += [noon, noon]
    times = specials[: spec.calls]
    rng = random.Random(f"created:{spec.seed}")
    while len(times) < spec.calls:
        value = rng.randrange(start, end)
        if rng.random() < 0.5:
            value -= value % US_PER_S  # microseconds only sometimes
        times.append(value)
    return times


def new_record(spec: AccountSpec, index: int, created_us: int, last_day_us: int) -> CallRecord:
    rng = random.Random(call_seed(spec.seed, index))
    call_id = deterministic_uuid(rng)
    zulu = rng.random() < 0.6
    # Calls still underway are recent ones; ~3% of an account spread over `days` days.
    underway = created_us >= last_day_us and rng.random() < min(0.5, 0.03 * spec.days)
    unjoined = not underway and rng.random() < 0.05
    recording_enabled = rng.random() < spec.recording_rate
    roll = rng.random()
    stuck = spec.stuck_recording_rate
    polls: int | None = None if roll < stuck else rng.choice((1, 2)) if roll < stuck + 0.10 else 0
    delivery: Delivery = "direct" if rng.random() < 0.15 else "redirect"
    size_factor = rng.uniform(0.5, 1.5)
    seed, seed_revision = rng.getrandbits(64), rng.random() < 0.10
    summary_missing, auto_delete = rng.random() < 0.08, rng.random() < 0.2
    # Drawn last, so every field above stays what it was before recordings had real sizes: accounts
    # chosen by seed for their mix of calls keep it.
    media = _media(rng, spec, unjoined, size_factor)
    return CallRecord(
        index=index,
        call_id=call_id,
        created_us=created_us,
        created=format_time(created_us, zulu),
        seed=seed,
        zulu=zulu,
        underway=underway,
        unjoined=unjoined,
        recording_enabled=recording_enabled,
        processing_polls=polls,
        delivery=delivery,
        medium=media.medium,
        duration_s=media.duration_s,
        wav=media.wav,
        recording_bytes=media.recording_bytes,
        seed_revision=seed_revision,
        summary_missing=summary_missing,
        retention_policy="auto_delete" if auto_delete else "retain",
        recording_enabled_omitted=not recording_enabled
        and fraction(call_id, "omit-recording-enabled") < spec.recording_enabled_omitted_rate,
    )


def fraction(call_id: str, salt: str) -> float:
    """A stable number in [0, 1) per call, for faults that must hit the same calls every run."""
    digest = hashlib.blake2b(f"{salt}:{call_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True, slots=True)
class _Media:
    medium: str
    duration_s: float
    wav: WavFormat
    recording_bytes: int


def _media(rng: random.Random, spec: AccountSpec, unjoined: bool, size_factor: float) -> _Media:
    """How the call was carried and recorded: medium, duration, WAV format and the recording's size."""
    medium = rng.choice(("webRtc", "webRtc", "twilio"))
    low, high = spec.duration_range
    duration_s = round(rng.uniform(low, high), rng.choice((0, 1)))
    wav = pick_format(rng, telephony=medium == "twilio")
    if spec.sample_rate is not None:
        wav = WavFormat(spec.sample_rate, 1)
    if spec.recording_bytes is not None:
        size = wav.whole_frames(max(64, int(spec.recording_bytes * size_factor)))
    else:
        # An unjoined call's recording holds the join timeout it waited through.
        size = wav.size_for(JOIN_TIMEOUT_S if unjoined else duration_s)
    return _Media(medium, duration_s, wav, size)


def _with_huge_recording(records: list[CallRecord], size: int) -> list[CallRecord]:
    # The memory benchmark needs one recording that is ready at once and served via the redirect.
    for position, record in enumerate(records):
        ready = record.recording_enabled and not record.underway and record.processing_polls == 0
        if ready and record.delivery == "redirect":
            records[position] = replace(record, recording_bytes=record.wav.whole_frames(size))
            break
    return records


def build_call(record: CallRecord, *, ended: bool, summarised: bool) -> dict[str, Any]:
    """The call object as the API serves it.

    `ended` and `summarised` come from the mutable account state (a call can end, or get its summary,
    after the account was generated); the random draws never depend on them, so the other fields do
    not change when they flip.
    """
    rng = random.Random(record.seed)
    at = record.zulu
    has_agent = rng.random() < 0.6
    agent_id = deterministic_uuid(rng)
    joined_us = record.created_us + int(rng.uniform(0.4, 8.0) * US_PER_S)
    duration_s = record.duration_s
    ended_us = joined_us + int(duration_s * US_PER_S)
    if record.unjoined:
        ended_us = record.created_us + JOIN_TIMEOUT_S * US_PER_S
    end_reason = "unjoined" if record.unjoined else texts.weighted_end_reason(rng)
    medium: dict[str, dict[str, Any]] = {record.medium: {}}
    input_tokens, output_tokens = rng.randrange(200, 90_000), rng.randrange(50, 20_000)
    short_summary, summary = texts.summaries(rng)
    billing = texts.billing_status(rng, end_reason)
    with_summary = ended and (summarised or not record.summary_missing)
    call: dict[str, Any] = {
        "callId": record.call_id,
        "clientVersion": rng.choice(("web-sdk 0.5.1", "python-sdk 0.2.0", None)),
        "created": record.created,
        "joined": None if record.unjoined else format_time(joined_us, at),
        "ended": format_time(ended_us, at) if ended else None,
        "endReason": end_reason if ended else None,
        "billedDuration": ("0s" if record.unjoined else texts.seconds(duration_s)) if ended else None,
        "billedSideInputTokens": input_tokens if ended else None,
        "billedSideOutputTokens": output_tokens if ended else None,
        "billingStatus": billing if ended else "BILLING_STATUS_PENDING",
        "firstSpeaker": "FIRST_SPEAKER_AGENT",
        "firstSpeakerSettings": {"agent": {}},
        "initialOutputMedium": "MESSAGE_MEDIUM_VOICE",
        "joinTimeout": "30s",
        "joinUrl": f"wss://voice.sim.invalid/calls/{record.call_id}/join",
        "languageHint": rng.choice(texts.LANGUAGE_HINTS),
        "maxDuration": rng.choice(("300s", "3600s", "245.5s", "600s")),
        "medium": medium,
        "model": rng.choice(("fixie-ai/ultravox", "ultravox-v0.7", "fixie-ai/ultravox-70B")),
        "recordingEnabled": record.recording_enabled,
        "retentionPolicy": record.retention_policy,
        "systemPrompt": texts.system_prompt(rng),
        "temperature": rng.choice((0.0, 1.0, round(rng.random(), 2), round(rng.random(), 3))),
        "timeExceededMessage": rng.choice((None, "Sorry, we're out of time. Au revoir !", "時間です。")),
        "voice": rng.choice(("Mark", "Jessica", "lily", "terrence", "Émilie-FR")),
        "transcriptOptional": True,
        "vadSettings": None,
        "inactivityMessages": texts.inactivity_messages(rng),
        "shortSummary": short_summary if with_summary else None,
        "summary": summary if with_summary else None,
        "agent": {"agentId": agent_id, "name": texts.agent_name(rng)} if has_agent else None,
        "agentId": agent_id if has_agent else None,
        "errorCount": rng.choice((0, 0, 0, 0, 1, 2)),
        "metadata": texts.metadata(rng),
        # Fields the archiver does not model: they must survive in its raw JSON column.
        "experimentalSettings": {"enableBargeInProbe": rng.random() < 0.5, "turnDetector": "v2"},
        "initialState": {"cart": [{"sku": "A-1", "qty": rng.randrange(1, 4)}], "locale": "fr-CA"},
        "requestContext": {},
        "sipDetails": None,
    }
    if record.recording_enabled_omitted:
        del call["recordingEnabled"]
    return call


def tombstone(call: dict[str, Any], account_id: str, deletion_time: str) -> dict[str, Any]:
    """The `CallTombstone` left in /api/deleted_calls by a deleted call."""
    return {
        "callId": call["callId"],
        "accountId": account_id,
        "created": call["created"],
        "deletionTime": deletion_time,
        "joined": call["joined"],
        "ended": call["ended"],
        "maxDuration": call["maxDuration"],
        "endReason": call["endReason"],
        "recordingEnabled": call.get("recordingEnabled", False),
        "hadSummary": call["summary"] is not None,
    }
