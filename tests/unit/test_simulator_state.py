"""The simulator's mutable parts without a server: account state, fault config, rate limit, options."""

from __future__ import annotations

from datetime import date

import pytest

from etl.simulator.account import AccountSpec, CallRecord
from etl.simulator.faults import ConfigError, FaultConfig, TokenBucket
from etl.simulator.options import DEFAULT_API_KEY, SimulatorOptions, option_argv, parse_options
from etl.simulator.paging import BadRequest
from etl.simulator.state import Account

SPEC = AccountSpec(seed=5, calls=200, days=3, start_date=date(2026, 3, 2), recording_bytes=4_000)
NOW_US = 1_800_000_000_000_000


@pytest.fixture
def account() -> Account:
    return Account(SPEC)


def first(account: Account, **facts: object) -> CallRecord:
    return next(r for r in account.live if all(getattr(r, k) == v for k, v in facts.items()))


def test_recording_becomes_ready_after_its_polls(account: Account) -> None:
    record = first(account, recording_enabled=True, underway=False, processing_polls=2)
    assert [account.poll_recording(record) for _ in range(3)] == ["processing", "processing", "ready"]
    assert account.truth_line(record)["recording"]["status"] == "ready"


def test_recording_states_in_truth(account: Account) -> None:
    never = first(account, recording_enabled=True, underway=False, processing_polls=None)
    assert account.poll_recording(never) == "processing"
    assert account.truth_line(never)["recording"] == {"status": "pending", "bytes": None, "sha256": None,
                                                       "delivery": None}  # fmt: skip
    disabled = first(account, recording_enabled=False)
    assert account.truth_line(disabled)["recording"]["status"] == "not_enabled"
    ready = first(account, recording_enabled=True, underway=False, processing_polls=0)
    line = account.truth_line(ready)["recording"]
    assert line["bytes"] == ready.recording_bytes and len(line["sha256"]) == 64
    assert line["delivery"] == ready.delivery


def test_truth_counts_messages_without_building_them(account: Account) -> None:
    for record in account.live[:60]:
        full, light = account.truth_line(record), account.truth_line(record, with_messages=False)
        assert full["message_count"] == len(full["messages"]) and "messages" not in light
        assert {k: v for k, v in full.items() if k != "messages"} == light


def test_only_the_first_signed_url_is_born_expired(account: Account) -> None:
    record = account.live[0]
    assert [account.issue_signed_url(record, 1.0) for _ in range(3)] == [True, False, False]
    assert not account.issue_signed_url(account.live[1], 0.0)


def test_advance_ends_underway_calls_and_finishes_processing(account: Account) -> None:
    underway = first(account, underway=True, recording_enabled=True)
    stuck = first(account, recording_enabled=True, underway=False, processing_polls=None)
    result = account.advance(
        {"end_underway": True, "finish_processing": True, "fill_summaries": True}, NOW_US
    )
    assert underway.call_id in result["ended"] and stuck.call_id in result["finished_processing"]
    assert account.call_object(underway)["ended"] is not None
    assert account.recording_status(stuck) == "ready"
    assert all(account.call_object(r)["summary"] is not None for r in account.live)


def test_advance_adds_calls_on_the_last_day_and_deletes(account: Account) -> None:
    victim = account.live[3]
    result = account.advance({"new_calls": 4, "delete_calls": [victim.call_id]}, NOW_US)
    assert len(result["new_calls"]) == 4 and result["deleted"] == [victim.call_id]
    assert len(account.live) == 200 + 4 - 1
    assert [r.key for r in account.live] == sorted(r.key for r in account.live)
    new = [account.find(call_id) for call_id in result["new_calls"]]
    assert all(r is not None and r.created.startswith("2026-03-04") for r in new)
    assert account.find(victim.call_id) is None and account.deleted == [victim]
    assert account.tombstone(victim)["callId"] == victim.call_id
    assert account.truth_line(victim)["deleted"] is True


@pytest.mark.parametrize(
    "changes", [{"new_calls": -1}, {"delete_calls": ["nope"]}, {"end_underway": "yes"}, {"bogus": 1}]
)
def test_bad_advance_changes_nothing(account: Account, changes: dict[str, object]) -> None:
    with pytest.raises(BadRequest):
        account.advance(changes, NOW_US)
    assert len(account.live) == 200 and not account.deleted


def test_fault_config_validates_everything_before_applying() -> None:
    config = FaultConfig()
    config.apply({"error_rate_5xx": 0.5, "rules": [{"path": "/messages", "action": "not_json", "times": 1}]})
    assert config.error_rate_5xx == 0.5 and config.to_json()["rules"][0]["action"] == "not_json"
    for bad in ({"reset_rate": 2}, {"latency_ms": True}, {"rules": [{"path": "("}]}, {"nope": 1},
                {"rules": [{"path": "x", "action": "explode"}]}, {"strip_call_id": "abc"}):  # fmt: skip
        with pytest.raises(ConfigError):
            config.apply({"error_rate_5xx": 0.1, **bad})
    assert config.error_rate_5xx == 0.5


def test_rules_fire_the_given_number_of_times() -> None:
    config = FaultConfig()
    config.apply(
        {"rules": [{"path": r"/calls/abc", "status": 404, "times": 2}, {"path": "/calls", "status": 503}]}
    )
    fired = [config.take_rule("/api/calls/abc/messages") for _ in range(3)]
    assert [rule.status if rule else None for rule in fired] == [404, 404, 503]
    assert config.take_rule("/api/deleted_calls") is None


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(5, clock=lambda: now[0])
    assert [bucket.allow() for _ in range(6)] == [True] * 5 + [False]
    now[0] += 0.2
    assert [bucket.allow(), bucket.allow()] == [True, False]
    assert TokenBucket(None).allow()


def test_options_defaults_and_flag_round_trip() -> None:
    defaults = parse_options([])
    assert defaults == SimulatorOptions()
    assert (defaults.calls, defaults.seed, defaults.days, defaults.start_date) == (
        300,
        1,
        5,
        date(2026, 3, 2),
    )
    assert len(DEFAULT_API_KEY) == 41 and DEFAULT_API_KEY[8] == "."
    options = SimulatorOptions(
        calls=7, start_date=date(2026, 1, 31), rate_limit_rps=2.5, expired_url_rate=0.5
    )
    argv = option_argv(calls=7, start_date=date(2026, 1, 31), rate_limit_rps=2.5, expired_url_rate=0.5)
    assert parse_options(argv) == options
    with pytest.raises(TypeError):
        option_argv(colour="blue")
    with pytest.raises(SystemExit):
        parse_options(["--days", "0"])


def test_recording_options_default_to_real_sizes_and_round_trip() -> None:
    defaults = parse_options([])
    assert (defaults.recording_bytes, defaults.duration_range, defaults.sample_rate) == (
        None,
        (4.0, 900.0),
        None,
    )
    media = {"recording_bytes": 5_000, "duration_range": (160.0, 900.0), "sample_rate": 16_000}
    assert parse_options(option_argv(**media)) == SimulatorOptions(**media)
    assert parse_options(["--duration-range", "160,900"]).duration_range == (160.0, 900.0)
    for bad in (["--duration-range", "900,160"], ["--duration-range", "160"], ["--sample-rate", "7"]):
        with pytest.raises(SystemExit):
            parse_options(bad)


def test_truth_gives_the_format_and_hashes_real_sizes_only_when_asked() -> None:
    account = Account(AccountSpec(5, 200, 3, date(2026, 3, 2), recording_bytes=None))
    assert account._sha256 == {}  # nothing hashed at start-up
    ready = first(account, recording_enabled=True, underway=False, processing_polls=0, delivery="direct")
    line = account.truth_line(ready)["recording"]
    assert line["bytes"] == ready.recording_bytes > 100_000
    assert (line["sample_rate"], line["channels"]) == (ready.wav.sample_rate, ready.wav.channels)
    assert list(account._sha256) == [ready.call_id]
