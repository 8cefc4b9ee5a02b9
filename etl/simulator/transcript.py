"""Transcripts (stages and messages) generated on demand from a call's seed; pure functions.

Holding every message of a 50,000-call account would cost gigabytes, so a transcript exists only while
it is served (the server keeps a small LRU of recent ones).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from etl.simulator import texts
from etl.simulator.account import US_PER_S, CallRecord, deterministic_uuid, format_time

Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Transcript:
    stages: tuple[dict[str, Any], ...]
    messages: tuple[Message, ...]  # all stages, conversation order (mode=in_call)
    stage_starts: tuple[int, ...]  # index into `messages` where each stage begins

    def last_stage(self) -> Sequence[Message]:
        """mode=last_stage, the API default."""
        return self.messages[self.stage_starts[-1] :]

    def stage_messages(self, call_stage_id: str) -> Sequence[Message] | None:
        for position, stage in enumerate(self.stages):
            if stage["callStageId"] == call_stage_id:
                bounds = (*self.stage_starts, len(self.messages))
                return self.messages[bounds[position] : bounds[position + 1]]
        return None


def message_count(rng: random.Random, record: CallRecord) -> int:
    if record.unjoined:
        return 0
    roll = rng.random()
    if roll < 0.03:
        return 0
    if roll < 0.05:
        return rng.randint(150, 220)  # spans many pages of 20
    return rng.randint(1, 40)


def _transcript_rng(record: CallRecord) -> random.Random:
    return random.Random(record.seed ^ 0x7A5C_11E5)


def transcript_length(record: CallRecord) -> int:
    """Number of in_call messages, without generating them (the count is the first draw)."""
    return message_count(_transcript_rng(record), record)


def build_transcript(record: CallRecord) -> Transcript:
    rng = _transcript_rng(record)
    count = message_count(rng, record)
    if record.seed_revision:
        messages = tuple(_old_revision_message(rng, ordinal) for ordinal in range(count))
        return Transcript((_stage(rng, record, record.created_us),), messages, (0,))
    stage_count = rng.randint(2, 3) if rng.random() < 0.2 and count >= 3 else 1
    starts = (0, *sorted(rng.sample(range(1, count), stage_count - 1))) if count else (0,)
    raw = _conversation(rng, count)
    stages: list[dict[str, Any]] = []
    for position, start in enumerate(starts):
        offset_s = float(raw[start]["timespan"]["start"][:-1]) if position and raw else 0.0
        stages.append(_stage(rng, record, record.created_us + int(offset_s * US_PER_S)))
    for position, start in enumerate(starts):
        end = starts[position + 1] if position + 1 < len(starts) else count
        for index, message in enumerate(raw[start:end]):
            message["callStageMessageIndex"] = index
            message["callStageId"] = stages[position]["callStageId"]
    return Transcript(tuple(stages), tuple(raw), starts)


def _old_revision_message(rng: random.Random, ordinal: int) -> Message:
    role = "AGENT" if ordinal % 2 == 0 else "USER"
    return {"ordinal": ordinal, "role": role, "text": texts.utterance(rng, texts.OLD_REVISION_PHRASES)}


def _stage(rng: random.Random, record: CallRecord, created_us: int) -> dict[str, Any]:
    tokens = rng.randrange(300, 4000)
    return {
        "callId": record.call_id,
        "callStageId": deterministic_uuid(rng),
        "created": format_time(created_us, record.zulu),
        "errorCount": 0,
        "experimentalSettings": None,
        "initialState": {},
        "initialTokenCount": tokens,
        "latestTokenCount": tokens + rng.randrange(0, 9000),
        "languageHint": rng.choice(texts.LANGUAGE_HINTS),
        "model": "ultravox-v0.7",
        "systemPrompt": texts.system_prompt(rng),
        "temperature": round(rng.random(), 2),
        "timeExceededMessage": None,
        "voice": rng.choice(("Mark", "Jessica", "Émilie-FR")),
        "inactivityMessages": [],
    }


def _conversation(rng: random.Random, count: int) -> list[Message]:
    """`count` messages without stage fields: alternating turns with a few tool call/result pairs."""
    messages: list[Message] = []
    clock = rng.uniform(0.2, 2.0)
    lag = rng.uniform(0.05, 0.6)  # wall clock runs a little behind the audio stream
    agent_turn = True
    while len(messages) < count:
        if count - len(messages) >= 2 and rng.random() < 0.08:
            pair = _tool_pair(rng)
            for message in pair:
                message["timespan"] = _span(clock, clock + 0.2)
                message["wallClockTimespan"] = _span(clock + lag, clock + lag + 0.2)
                clock += 0.25
            messages += pair
            continue
        role = "MESSAGE_ROLE_AGENT" if agent_turn else "MESSAGE_ROLE_USER"
        if rng.random() < 0.005:
            role = "MESSAGE_ROLE_UNSPECIFIED"
        phrases = texts.AGENT_PHRASES if agent_turn else texts.USER_PHRASES
        duration = rng.uniform(0.3, 6.0)
        message = {
            "role": role,
            "text": texts.utterance(rng, phrases),
            "medium": "MESSAGE_MEDIUM_VOICE" if rng.random() < 0.85 else "MESSAGE_MEDIUM_TEXT",
            "timespan": _span(clock, clock + duration),
            "wallClockTimespan": _span(clock + lag, clock + lag + duration),
        }
        if rng.random() < 0.03:
            message["metadata"] = {"source": "sim", "note": "ünïcode"}
        messages.append(message)
        clock += duration + rng.uniform(0.05, 1.5)
        agent_turn = not agent_turn
    return messages


def _tool_pair(rng: random.Random) -> list[Message]:
    tool = rng.choice(texts.TOOL_NAMES)
    invocation = f"inv-{rng.getrandbits(48):012x}"
    args = {"orderId": f"A-{rng.randrange(1000, 9999)}", "note": "née à Zürich 🇨🇭"}
    call: Message = {
        "role": "MESSAGE_ROLE_TOOL_CALL",
        "text": json.dumps(args, ensure_ascii=False),
        "invocationId": invocation,
        "toolName": tool,
        "medium": "MESSAGE_MEDIUM_VOICE",
    }
    result: Message = {
        "role": "MESSAGE_ROLE_TOOL_RESULT",
        "text": json.dumps({"status": "shipped", "eta": "2026-03-05"}),
        "invocationId": invocation,
        "toolName": tool,
        "medium": "MESSAGE_MEDIUM_VOICE",
    }
    if rng.random() < 0.25:
        result["text"] = "The tool failed; apologise and offer a call back."
        result["errorDetails"] = (
            "Traceback (most recent call last):\n  ...\nTimeoutError: upstream took 10.2s"
        )
    elif rng.random() < 0.3:
        result["callState"] = {"orderStatus": "shipped"}
    return [call, result]


def _span(start: float, end: float) -> dict[str, str]:
    return {"start": texts.seconds(start), "end": texts.seconds(end)}
