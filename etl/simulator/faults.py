"""Fault switches: the runtime configuration changed through POST /_sim/config, and the rate limiter.

Changes are validated as a whole before any is applied, so a bad request leaves the previous
configuration intact.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

Action = Literal[
    "status",
    "not_json",
    "reset",
    "delay",
    "deep_json",
    "huge_json",
    "gzip_bomb",
    "endless_next",
    "bad_next",
    "trickle",
]
# deep_json: a page nested deeper than any decoder's recursion limit; huge_json: a valid page of
# `bytes` bytes; gzip_bomb: `bytes` of JSON whitespace gzip-encoded (~1/1000 the size on the wire);
# endless_next: an empty page whose `next` is new every time; bad_next: a `next` with a control char;
# trickle: a 200 of `bytes` bytes of audio sent 512 bytes every 0.25 s (within any read timeout).
ACTIONS: tuple[Action, ...] = get_args(Action)

_FRACTIONS = (
    "error_rate_5xx",
    "reset_rate",
    "storage_error_rate",
    "storage_reset_rate",
    "storage_truncate_rate",
    "expired_url_rate",
    "throttle_rate",
    "cut_after_headers_rate",
    "storage_cut_after_headers_rate",
    # Deterministic per seed and request (the same page always misbehaves the same way, retries too):
    "duplicate_listing_rate",  # a calls page starts with the previous page's last call again
    "gzip_rate",  # a JSON answer is gzip-encoded (when the client accepts gzip)
    "short_page_rate",  # a list page holds far fewer items than the pageSize asked for
    "next_query_shuffle_rate",  # a `next` link's query comes back reordered, with a parameter added
    "chunked_audio_rate",  # a recording's audio is sent chunked, without Content-Length (per call)
    "broken_recording_rate",
    "unsafe_redirect_rate",
)
_NON_NEGATIVE = ("latency_ms", "latency_jitter_ms")


class ConfigError(ValueError):
    """A /_sim/config change that cannot be applied."""


@dataclass
class Rule:
    """A targeted fault: requests whose target (path with query) matches `path` get `action`."""

    path: str
    action: Action
    status: int = 500
    times: int | None = None  # None: forever
    delay_ms: float = 0.0
    bytes: int = 20 * 1024 * 1024  # huge_json, gzip_bomb: decoded size of the answer
    hits: int = 0
    pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.pattern = re.compile(self.path)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "action": self.action,
            "status": self.status,
            "times": self.times,
            "delay_ms": self.delay_ms,
            "bytes": self.bytes,
            "hits": self.hits,
        }


@dataclass
class FaultConfig:
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    rate_limit_rps: float | None = None
    error_rate_5xx: float = 0.0
    reset_rate: float = 0.0
    storage_error_rate: float = 0.0
    storage_reset_rate: float = 0.0
    storage_truncate_rate: float = 0.0  # storage answers 200 then drops the connection mid-body
    expired_url_rate: float = 0.0
    duplicate_listing_rate: float = 0.0
    gzip_rate: float = 0.0
    chunked_audio_rate: float = 0.0
    short_page_rate: float = 0.0
    next_query_shuffle_rate: float = 0.0
    signed_url_ttl_s: float = 300.0
    # Injected 429s (besides the rate limiter's), each carrying one of `retry_after`, chosen by the
    # seeded fault stream: a value sent as it is, "none" for no header, or "date+N"/"date-N" for an
    # HTTP-date N seconds after/before now (with a Date header, as real servers send).
    throttle_rate: float = 0.0
    retry_after: tuple[str, ...] = ("1",)
    # The status line and headers (Content-Length included) are sent, then the connection is closed
    # before the first byte of the body: API answers, and storage audio.
    cut_after_headers_rate: float = 0.0
    storage_cut_after_headers_rate: float = 0.0
    rules: list[Rule] = field(default_factory=list)
    strip_call_id: frozenset[str] = frozenset()
    # The zone (hours from UTC) in which fromDate/toDate without an offset are read: undocumented by
    # the API, so not UTC by default (a client must send explicit offsets). -14..14.
    naive_date_offset_h: float = -5.0
    # "Recording not enabled" answered with a status and wording chosen per call among several (most
    # without the words "not enabled"): the API documents only "an error status with a detail".
    not_enabled_wordings: bool = False
    # Never-ready recordings (stuck_recording_rate) of ended calls answered with this error for ever
    # instead of 425: a recording that keeps failing.
    broken_recording_rate: float = 0.0
    broken_recording_status: int = 410
    # Recordings whose 302 points at the cloud metadata service (a compromised or confused API):
    # the client must refuse to follow it.
    unsafe_redirect_rate: float = 0.0

    def to_json(self) -> dict[str, Any]:
        plain = {name: getattr(self, name) for name in (*_NON_NEGATIVE, *_FRACTIONS)}
        return {
            **plain,
            "rate_limit_rps": self.rate_limit_rps,
            "signed_url_ttl_s": self.signed_url_ttl_s,
            "retry_after": list(self.retry_after),
            "rules": [rule.to_json() for rule in self.rules],
            "strip_call_id": sorted(self.strip_call_id),
            "naive_date_offset_h": self.naive_date_offset_h,
            "not_enabled_wordings": self.not_enabled_wordings,
            "broken_recording_status": self.broken_recording_status,
        }

    def apply(self, changes: Mapping[str, Any]) -> None:
        parsed = {name: _parse(name, value) for name, value in changes.items()}
        for name, value in parsed.items():
            setattr(self, name, value)

    def take_rule(self, target: str) -> Rule | None:
        """The first live rule matching `target`, with one of its `times` used up."""
        for rule in self.rules:
            if (rule.times is None or rule.hits < rule.times) and rule.pattern.search(target):
                rule.hits += 1
                return rule
        return None


def _parse(name: str, value: Any) -> Any:
    if name in _FRACTIONS:
        number = _number(name, value)
        if not 0.0 <= number <= 1.0:
            raise ConfigError(f"{name} must be between 0 and 1")
        return number
    if name in _NON_NEGATIVE:
        number = _number(name, value)
        if number < 0:
            raise ConfigError(f"{name} must be >= 0")
        return number
    if name == "signed_url_ttl_s":
        return _number(name, value)
    if name == "not_enabled_wordings":
        if not isinstance(value, bool):
            raise ConfigError("not_enabled_wordings must be true or false")
        return value
    if name == "broken_recording_status":
        if type(value) is not int or not (400 <= value <= 599 and value not in (401, 403, 425, 429)):
            raise ConfigError("broken_recording_status must be a 4xx or 5xx other than 401, 403, 425, 429")
        return value
    if name == "naive_date_offset_h":
        number = _number(name, value)
        if not -14 <= number <= 14:
            raise ConfigError("naive_date_offset_h must be between -14 and 14 (hours from UTC)")
        return number
    if name == "rate_limit_rps":
        if value is None:
            return None
        number = _number(name, value)
        if number <= 0:
            raise ConfigError("rate_limit_rps must be > 0 or null")
        return number
    if name == "retry_after":
        return retry_after_values(value)
    if name == "rules":
        if not isinstance(value, list):
            raise ConfigError("rules must be a list")
        return [_rule(item) for item in value]
    if name == "strip_call_id":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError("strip_call_id must be a list of call ids")
        return frozenset(value)
    raise ConfigError(f"unknown setting: {name}")


def retry_after_values(value: Any) -> tuple[str, ...]:
    """A non-empty list of Retry-After values; no line breaks (they would split the header)."""
    values = value if isinstance(value, list | tuple) else None
    if not values or not all(isinstance(v, str) and len(v) <= 100 and v.isprintable() for v in values):
        raise ConfigError("retry_after must be a non-empty list of printable strings")
    for text in values:
        if text.startswith(("date+", "date-")) and not _is_number(text[4:]):
            raise ConfigError(f"retry_after {text!r}: date+N or date-N needs a number of seconds")
    return tuple(values)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _number(name: str, value: Any) -> float:
    # bool is an int in Python but never a meaningful number here.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number")
    return float(value)


def _rule(item: Any) -> Rule:
    if not isinstance(item, dict) or not isinstance(item.get("path"), str):
        raise ConfigError("a rule needs a 'path' regex")
    unknown = set(item) - {"path", "action", "status", "times", "delay_ms", "bytes"}
    action = item.get("action", "status")
    status, times = item.get("status", 500), item.get("times")
    if unknown or action not in ACTIONS:
        raise ConfigError(f"bad rule: {item!r}; actions are {', '.join(ACTIONS)}")
    if type(status) is not int or not 100 <= status <= 599:
        raise ConfigError("rule status must be an HTTP status code")
    if times is not None and (type(times) is not int or times < 0):
        raise ConfigError("rule times must be a non-negative integer or null")
    size = item.get("bytes", Rule.bytes)
    if type(size) is not int or not 0 <= size <= 2**32:
        raise ConfigError("rule bytes must be a whole number of bytes up to 4 GiB")
    try:
        return Rule(
            item["path"],
            cast(Action, action),
            status,
            times,
            _number("delay_ms", item.get("delay_ms", 0)),
            size,
        )
    except re.error as exc:
        raise ConfigError(f"bad rule path regex: {exc}") from exc


class TokenBucket:
    """Server-side rate limit over all /api requests; a burst of one second's worth is allowed."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.rate = rate
        self._tokens = max(rate, 1.0) if rate else 0.0
        self._stamp = clock()

    def allow(self) -> bool:
        if self.rate is None:
            return True
        now = self._clock()
        capacity = max(self.rate, 1.0)
        self._tokens = min(capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
