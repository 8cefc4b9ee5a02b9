"""Sharded backfill: parsing `--shard`, the index from a scheduler's environment, the split rule, each
shard's share of the rate limit, and the refusals (exit 2) of what cannot be a shard."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from etl.cli import main
from etl.config import load_settings, load_settings_with_sources
from etl.errors import ConfigError
from etl.pipeline.dry_run import DayPlan, Plan, format_plan
from etl.pipeline.run import backfill, days_between
from etl.reporting.report import format_summary
from etl.reporting.summary import RunSummary
from etl.shard import Shard, check_shard, index_from_env, parse_shard, worker_identity

KEY = "abcdefgh." + "x" * 32
ENV = {"ULTRAVOX_API_KEY": KEY}


# -- the split rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 8, 16])
def test_every_day_is_in_exactly_one_shard(count: int) -> None:
    window = days_between(date(2024, 12, 20), date(2026, 1, 10))
    takers = {day: [i for i in range(count) if Shard(i, count).takes(day)] for day in window}
    assert all(len(shards) == 1 for shards in takers.values())
    union = sorted(day for i in range(count) for day in Shard(i, count).days(window))
    assert union == window


@pytest.mark.parametrize("count", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("length", [1, 4, 9, 31, 365])
def test_consecutive_days_are_split_evenly(count: int, length: int) -> None:
    window = days_between(date(2026, 1, 1), date(2026, 1, 1) + timedelta(days=length - 1))
    sizes = Counter(index for day in window for index in range(count) if Shard(index, count).takes(day))
    assert max(sizes.values()) - min(sizes.get(i, 0) for i in range(count)) <= 1


def test_a_day_stays_with_its_shard_whatever_the_window() -> None:
    # Workers given slightly different windows still agree on every day they share.
    shard = Shard(1, 4)
    narrow = shard.days(days_between(date(2026, 3, 3), date(2026, 3, 20)))
    wide = shard.days(days_between(date(2026, 2, 27), date(2026, 3, 31)))
    assert narrow and set(narrow) <= set(wide)
    assert all(day.toordinal() % 4 == 1 for day in wide)


def test_backfill_plans_only_its_shards_days() -> None:
    first, last = date(2026, 3, 1), date(2026, 3, 10)
    shard = Shard(2, 4)
    command = backfill(first, last, shard)
    planned = command.plan(None, date(2026, 12, 1))  # type: ignore[arg-type]  # a backfill reads no state
    assert planned == [d for d in days_between(first, last) if d.toordinal() % 4 == 2]
    assert len(planned) in (2, 3)
    assert command.shard == shard and (command.since, command.until) == (first, last)
    unsharded = backfill(first, last).plan(None, date(2026, 12, 1))  # type: ignore[arg-type]
    assert unsharded == days_between(first, last)


# -- parsing and checking ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shard"), [("0/1", Shard(0, 1)), ("2/4", Shard(2, 4)), (" 3/16 ", Shard(3, 16))]
)
def test_parse_shard(text: str, shard: Shard) -> None:
    assert parse_shard(text) == shard
    assert str(shard) == text.strip()


@pytest.mark.parametrize(
    "text", ["", "2", "2/", "/4", "-1/4", "2/-4", "2.0/4", "2 / 4", "a/b", "2/4/8", "٢/٤"]
)
def test_malformed_shards_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_shard(text)


@pytest.mark.parametrize(
    ("shard", "count", "message"),
    [
        (Shard(4, 4), None, "the index must be below the count"),
        (Shard(0, 0), None, "must be at least 1"),
        (None, 4, "needs this worker's index"),
        (None, 0, "--shard-count must be at least 1"),
        (Shard(1, 4), 3, "disagrees with --shard-count 3"),
    ],
)
def test_what_cannot_be_a_shard_is_refused(shard: Shard | None, count: int | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_shard(shard, count)


def test_a_shard_that_agrees_with_its_count_is_accepted() -> None:
    check_shard(Shard(3, 4), 4)
    check_shard(Shard(0, 1), None)
    check_shard(None, None)


def test_the_kubernetes_index_comes_before_the_aws_batch_one() -> None:
    assert index_from_env({"JOB_COMPLETION_INDEX": "2", "AWS_BATCH_JOB_ARRAY_INDEX": "5"}) == (
        2,
        "JOB_COMPLETION_INDEX",
    )
    assert index_from_env({"AWS_BATCH_JOB_ARRAY_INDEX": "5"}) == (5, "AWS_BATCH_JOB_ARRAY_INDEX")
    assert index_from_env({"JOB_COMPLETION_INDEX": ""}) is None
    with pytest.raises(ConfigError, match="JOB_COMPLETION_INDEX must be a whole number"):
        index_from_env({"JOB_COMPLETION_INDEX": "two"})


def test_each_shard_has_a_worker_identity_of_its_own() -> None:
    assert worker_identity("backfill-2025", Shard(2, 4)) == "backfill-2025#shard-2-of-4"
    assert worker_identity("backfill-2025", None) == "backfill-2025"
    assert worker_identity(None, Shard(2, 4)) is None


# -- settings: flags, environment, file, and the rate --------------------------------------------------


def test_the_index_comes_from_the_environment_with_the_count() -> None:
    env = {**ENV, "ARCHIVER_SHARD_COUNT": "4", "JOB_COMPLETION_INDEX": "3"}
    settings, sources = load_settings_with_sources({}, env)
    assert settings.shard == Shard(3, 4)
    assert sources["shard"] == "env JOB_COMPLETION_INDEX, count from env ARCHIVER_SHARD_COUNT"
    batch = load_settings({"shard_count": 5}, {**ENV, "AWS_BATCH_JOB_ARRAY_INDEX": "4"})
    assert batch.shard == Shard(4, 5)


def test_the_count_may_come_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[archiver]\nshard-count = 3\n")
    settings = load_settings({"config_file": config}, {**ENV, "AWS_BATCH_JOB_ARRAY_INDEX": "1"})
    assert settings.shard == Shard(1, 3)


def test_a_shard_flag_wins_over_the_schedulers_index() -> None:
    env = {**ENV, "ARCHIVER_SHARD_COUNT": "4", "JOB_COMPLETION_INDEX": "3"}
    assert load_settings({"shard": "1/4"}, env).shard == Shard(1, 4)


def test_an_index_without_a_count_is_not_a_shard() -> None:
    # JOB_COMPLETION_INDEX is set in every Indexed Job's pod, sharded or not.
    settings = load_settings({}, {**ENV, "JOB_COMPLETION_INDEX": "2"})
    assert settings.shard is None and settings.max_rps == 100.0


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({}, {"ARCHIVER_SHARD_COUNT": "4"}, "needs this worker's index"),
        ({"shard_count": 4}, {"JOB_COMPLETION_INDEX": "4"}, "the index must be below the count"),
        ({"shard": "2/4", "shard_count": 3}, {}, "disagrees"),
        ({"shard": "2/4"}, {"ARCHIVER_SHARD_COUNT": "8"}, "disagrees"),
        ({"shard": "4"}, {}, "shard must be I/N"),
        ({}, {"ARCHIVER_SHARD_COUNT": "0", "JOB_COMPLETION_INDEX": "0"}, "at least 1"),
    ],
)
def test_settings_refuse_what_cannot_be_a_shard(
    flags: dict[str, object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(flags, {**ENV, **env})


def test_a_shard_takes_its_share_of_the_default_rate() -> None:
    settings, sources = load_settings_with_sources({"shard": "0/4"}, ENV)
    assert settings.max_rps == 25.0
    assert sources["max_rps"] == "default 100 / 4 shards"
    assert load_settings({"shard": "0/1"}, ENV).max_rps == 100.0


def test_a_rate_given_anywhere_is_the_workers_own(tmp_path: Path) -> None:
    assert load_settings({"shard": "0/4", "max_rps": 40.0}, ENV).max_rps == 40.0
    assert load_settings({"shard": "0/4"}, {**ENV, "ARCHIVER_MAX_RPS": "30"}).max_rps == 30.0
    config = tmp_path / "c.toml"
    config.write_text("max-rps = 20\n")
    assert load_settings({"shard": "0/4", "config_file": config}, ENV).max_rps == 20.0


# -- the command line ---------------------------------------------------------------------------------


def _invoke(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    clean = {
        name: None for name in ("JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX", "ARCHIVER_SHARD_COUNT")
    }
    result = CliRunner().invoke(main, [*args, "--log-format", "text"], env={**clean, **ENV, **env})
    return result.exit_code, result.output


WINDOW = ["--since", "2026-01-01", "--until", "2026-01-08", "--dest", "/nonexistent/never-used"]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([*WINDOW, "--shard-count", "4"], {}, "needs this worker's index"),
        ([*WINDOW], {"ARCHIVER_SHARD_COUNT": "4"}, "needs this worker's index"),
        ([*WINDOW, "--shard", "4/4"], {}, "the index must be below the count"),
        ([*WINDOW, "--shard", "0/0"], {}, "must be at least 1"),
        ([*WINDOW, "--shard", "two/4"], {}, "shard must be I/N"),
        ([*WINDOW, "--shard", "1/4", "--shard-count", "3"], {}, "disagrees with --shard-count 3"),
        ([*WINDOW, "--shard-count", "4"], {"AWS_BATCH_JOB_ARRAY_INDEX": "9"}, "below the count"),
    ],
)
def test_backfill_refuses_what_cannot_be_a_shard(args: list[str], env: dict[str, str], message: str) -> None:
    code, output = _invoke(["backfill", *args], env)
    assert code == 2, output
    assert message in output


def test_sync_is_not_sharded() -> None:
    code, output = _invoke(["sync", "--shard", "1/4"], {})
    assert code == 2 and "No such option '--shard'" in output
    code, output = _invoke(["sync"], {"ARCHIVER_SHARD_COUNT": "4", "JOB_COMPLETION_INDEX": "1"})
    assert code == 2 and "sync is not sharded" in output, output


def test_config_show_shows_the_shard_and_its_rate() -> None:
    code, output = _invoke(["config", "show"], {"ARCHIVER_SHARD_COUNT": "4", "JOB_COMPLETION_INDEX": "2"})
    assert code == 0, output
    rows = {line.split()[0]: line for line in output.splitlines()}
    assert "2/4" in rows["shard"] and "env JOB_COMPLETION_INDEX" in rows["shard"]
    assert "25.0" in rows["max-rps"] and "default 100 / 4 shards" in rows["max-rps"]


def test_the_summary_says_which_shard_ran() -> None:
    summary = RunSummary(
        run_id="r", command="backfill", since="2026-01-03", until="2026-01-07", started_at="t"
    )
    assert "shard" not in format_summary(summary, "./archive")
    summary.shard, summary.max_rps = "2/4", 25.0
    assert "  shard               2/4, at most 25 API requests/s" in format_summary(summary, "./archive")
    assert summary.to_json()["shard"] == "2/4" and summary.to_json()["max_rps"] == 25.0


def test_the_dry_run_says_which_shard_it_plans() -> None:
    days = [DayPlan(date(2026, 1, 3), False, 1, 12, 11, 9)]
    text = format_plan(Plan("backfill", "./archive", 25.0, days, shard="2/4"), "text")
    assert text.startswith("dry run of backfill, shard 2/4: 1 days, 2026-01-03 .. 2026-01-03")
    assert "--max-rps 25" in text
    assert format_plan(Plan("backfill", "./archive", 100.0, days), "text").startswith("dry run of backfill: ")
