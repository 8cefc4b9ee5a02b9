"""The live account: generated records plus the small per-call overrides that change over time.

The generated data never changes; what happens later (a call ends, its summary is filled in, its
recording finishes processing, it is deleted, new calls arrive) is kept in small sets and dicts keyed
by call id, so serving a call is always `build_call(record, <current overrides>)`.
"""

from __future__ import annotations

import bisect
import functools
import json
import random
from collections.abc import Mapping
from datetime import date
from typing import Any, Literal

from etl.simulator.account import (
    US_PER_DAY,
    AccountSpec,
    CallRecord,
    build_call,
    deterministic_uuid,
    format_time,
    fraction,
    generate_records,
    new_record,
    tombstone,
    us_to_datetime,
)
from etl.simulator.audio import wav_sha256
from etl.simulator.paging import BadRequest
from etl.simulator.transcript import Transcript, build_transcript, transcript_length

RecordingStatus = Literal["not_enabled", "processing", "ready"]

_ADVANCE_FLAGS = ("end_underway", "finish_processing", "fill_summaries", "delete_auto_delete")


# Caches sized for the hot set of a run; building a call or transcript costs tens of microseconds.
@functools.lru_cache(maxsize=8192)
def _call(record: CallRecord, ended: bool, summarised: bool) -> dict[str, Any]:
    return build_call(record, ended=ended, summarised=summarised)


@functools.lru_cache(maxsize=8192)
def _call_json(record: CallRecord, ended: bool, summarised: bool) -> str:
    return json.dumps(_call(record, ended, summarised), ensure_ascii=False)


@functools.lru_cache(maxsize=512)
def transcript(record: CallRecord) -> Transcript:
    return build_transcript(record)


def _key(record: CallRecord) -> tuple[int, str]:
    return record.key


class Account:
    def __init__(self, spec: AccountSpec) -> None:
        self.spec = spec
        self.account_id = deterministic_uuid(random.Random(f"account:{spec.seed}"))
        self.live: list[CallRecord] = generate_records(spec)  # sorted by key
        self.deleted: list[CallRecord] = []  # sorted by key
        self._by_id = {record.call_id: record for record in self.live}
        self._tombstones: dict[str, dict[str, Any]] = {}
        self._ended: set[str] = set()
        self._summarised: set[str] = set()
        self._processed: set[str] = set()
        self._polls: dict[str, int] = {}
        self._urls_issued: dict[str, int] = {}
        self._sha256: dict[str, str] = {}
        self._next_index = spec.calls

    # -- reading -------------------------------------------------------------------------------------
    def find(self, call_id: str) -> CallRecord | None:
        """A call that is still listed (not deleted)."""
        record = self._by_id.get(call_id)
        return None if record is None or call_id in self._tombstones else record

    def find_any(self, call_id: str) -> CallRecord | None:
        return self._by_id.get(call_id)

    def tombstone(self, record: CallRecord) -> dict[str, Any]:
        return self._tombstones[record.call_id]

    def is_ended(self, record: CallRecord) -> bool:
        return not record.underway or record.call_id in self._ended

    def call_object(self, record: CallRecord) -> dict[str, Any]:
        """The served call; shared with a cache, so callers must copy before changing it."""
        return _call(record, self.is_ended(record), record.call_id in self._summarised)

    def call_json(self, record: CallRecord) -> str:
        return _call_json(record, self.is_ended(record), record.call_id in self._summarised)

    def window(self, from_us: int | None, to_us: int | None, *, deleted: bool = False) -> tuple[int, int]:
        """Slice bounds of the (live or deleted) calls created within [from_us, to_us]."""
        items = self.deleted if deleted else self.live
        lo = 0 if from_us is None else bisect.bisect_left(items, (from_us, ""), key=_key)
        hi = len(items) if to_us is None else bisect.bisect_left(items, (to_us + 1, ""), key=_key)
        return lo, max(lo, hi)

    def recording_status(self, record: CallRecord) -> RecordingStatus:
        if not record.recording_enabled:
            return "not_enabled"
        if not self.is_ended(record):
            return "processing"
        if record.call_id in self._processed:
            return "ready"
        polls = record.processing_polls
        return "ready" if polls is not None and self._polls.get(record.call_id, 0) >= polls else "processing"

    def poll_recording(self, record: CallRecord) -> RecordingStatus:
        """Like `recording_status`, but a 425 answered to an ended call counts toward readiness."""
        status = self.recording_status(record)
        if status == "processing" and self.is_ended(record):
            self._polls[record.call_id] = self._polls.get(record.call_id, 0) + 1
        return status

    def issue_signed_url(self, record: CallRecord, expired_url_rate: float) -> bool:
        """Count an issued URL; True when it must be born expired (the call's first URL only)."""
        issued = self._urls_issued.get(record.call_id, 0)
        self._urls_issued[record.call_id] = issued + 1
        return issued == 0 and fraction(record.call_id, "expired-url") < expired_url_rate

    def date_range(self) -> tuple[date, date]:
        if not self.live:
            first = self.spec.start_date
            return first, us_to_datetime(self.spec.end_us - 1).date()
        return us_to_datetime(self.live[0].created_us).date(), us_to_datetime(self.live[-1].created_us).date()

    def all_records(self) -> list[CallRecord]:
        return sorted([*self.live, *self.deleted], key=_key)

    def truth_line(self, record: CallRecord, *, with_messages: bool = True) -> dict[str, Any]:
        """Ground truth of one call: what a complete archive must contain.

        Without messages the line is ~20x cheaper to build, which matters for 50,000-call benchmarks.
        """
        status = self.recording_status(record)
        ever_ready = status == "ready" or (
            status == "processing" and self.is_ended(record) and record.processing_polls is not None
        )
        recording: dict[str, Any] = {"status": "pending", "bytes": None, "sha256": None, "delivery": None}
        if status == "not_enabled":
            recording["status"] = "not_enabled"
        elif ever_ready:
            sha = self._sha256.get(record.call_id)
            if sha is None:
                # Hashed on first ask, never at start-up: a real-sized account holds hundreds of GiB.
                sha = wav_sha256(record.seed, record.recording_bytes, record.wav)
                self._sha256[record.call_id] = sha
            recording = {"status": "ready", "bytes": record.recording_bytes, "sha256": sha}
            recording["delivery"] = record.delivery
            recording["sample_rate"], recording["channels"] = record.wav.sample_rate, record.wav.channels
        line = {
            "call_id": record.call_id,
            "call_date": us_to_datetime(record.created_us).date().isoformat(),
            "underway": not self.is_ended(record),
            "deleted": record.call_id in self._tombstones,
            "call": self.call_object(record),
            "message_count": transcript_length(record),
            "recording": recording,
        }
        if with_messages:
            line["messages"] = list(transcript(record).messages)
        return line

    # -- changing ------------------------------------------------------------------------------------
    def advance(self, changes: Mapping[str, Any], now_us: int) -> dict[str, list[str]]:
        """Apply POST /_sim/advance; everything is validated before anything changes."""
        unknown = set(changes) - {"new_calls", "delete_calls", *_ADVANCE_FLAGS}
        new_calls, delete_ids = changes.get("new_calls", 0), changes.get("delete_calls", [])
        if unknown or type(new_calls) is not int or new_calls < 0:
            raise BadRequest(f"bad advance request; unknown keys: {sorted(unknown)}")
        if not isinstance(delete_ids, list) or any(self.find(str(item)) is None for item in delete_ids):
            raise BadRequest("delete_calls must list call ids that exist and are not deleted")
        if any(not isinstance(changes.get(flag, False), bool) for flag in _ADVANCE_FLAGS):
            raise BadRequest(f"{', '.join(_ADVANCE_FLAGS)} must be booleans")
        result: dict[str, list[str]] = {"ended": [], "finished_processing": [], "summarised": []}
        for record in self.live:
            never_ends = fraction(record.call_id, "never-ends") < self.spec.never_ending_rate
            if changes.get("end_underway") and not self.is_ended(record) and not never_ends:
                self._ended.add(record.call_id)
                result["ended"].append(record.call_id)
            if changes.get("finish_processing") and self._stuck(record):
                self._processed.add(record.call_id)
                result["finished_processing"].append(record.call_id)
            if changes.get("fill_summaries") and self.is_ended(record) and record.summary_missing:
                self._summarised.add(record.call_id)
                result["summarised"].append(record.call_id)
        result["new_calls"] = [self._add_call().call_id for _ in range(new_calls)]
        if changes.get("delete_auto_delete"):
            delete_ids = [*delete_ids, *(r.call_id for r in self.live if r.retention_policy == "auto_delete")]
        result["deleted"] = [self._delete(call_id, now_us) for call_id in dict.fromkeys(map(str, delete_ids))]
        return result

    def _stuck(self, record: CallRecord) -> bool:
        return self.is_ended(record) and self.recording_status(record) == "processing"

    def _add_call(self) -> CallRecord:
        # New calls arrive within the last day: a re-run over that day must pick them up.
        last_day_us = self.spec.end_us - US_PER_DAY
        rng = random.Random(f"advance:{self.spec.seed}:{self._next_index}")
        record = new_record(
            self.spec, self._next_index, rng.randrange(last_day_us, self.spec.end_us), last_day_us
        )
        self._next_index += 1
        bisect.insort(self.live, record, key=_key)
        self._by_id[record.call_id] = record
        return record

    def _delete(self, call_id: str, now_us: int) -> str:
        record = self._by_id[call_id]
        if call_id in self._tombstones:
            return call_id
        self._tombstones[call_id] = tombstone(
            self.call_object(record), self.account_id, format_time(now_us, True)
        )
        self.live.remove(record)
        bisect.insort(self.deleted, record, key=_key)
        return call_id
