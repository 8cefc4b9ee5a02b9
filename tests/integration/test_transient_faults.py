"""Transient faults are healed by the run that meets them: every kind at once, over real HTTP.

The simulator injects 5xx, resets, answers cut off right after their headers (API pages and storage
audio), audio cut mid-body, expired signed URLs, and 429s carrying every kind of Retry-After (a day,
inf, nan, negative, garbage, a past and a future HTTP-date, none). One run must archive everything,
without sleeping longer than the configured cap anywhere.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from support.archive_truth import Expected, assert_matches_truth, read_archive
from support.archiver_process import run, write_config
from support.simulator_helpers import StartSimulator, api_client

# Every kind of Retry-After a server (or a broken proxy) may send.
EVERY_RETRY_AFTER = ("86400", "inf", "nan", "-5", "soon", "date-3600", "date+1", "none", "0", "1")


def test_every_transient_fault_at_once_is_healed_in_one_run(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    sim = start_simulator(
        calls=120,
        seed=13,
        days=3,
        error_rate_5xx=0.05,
        reset_rate=0.03,
        throttle_rate=0.04,
        retry_after=EVERY_RETRY_AFTER,
        cut_after_headers_rate=0.05,
        storage_error_rate=0.05,
        storage_reset_rate=0.03,
        storage_cut_after_headers_rate=0.1,
        expired_url_rate=0.2,
        # Every recording becomes ready after at most two 425s, so none may be left pending: the
        # wait below is long enough for two polls between retried faults on a loaded machine (the
        # default 4 s of the tests' config was not, once in CI-like load), and never waited out.
        stuck_recording_rate=0.0,
    )
    sim.configure(storage_truncate_rate=0.1)
    # Retry-After obeyed up to 1 s here (60 s by default): a run that obeyed 86400, inf or nan, or
    # slept on them at all, would not finish within the timeout.
    config = write_config(tmp_path / "c.toml", retry_after_max_s=1, recording_wait_s=20)
    dest = tmp_path / "archive"
    started = time.monotonic()
    finished = run(
        sim, str(dest), config, "backfill", "--since", sim.since, "--until", sim.until, timeout_s=90
    )
    elapsed = time.monotonic() - started
    truth, stats = sim.truth(), sim.stats()

    assert finished.code == 0, finished.output
    assert_matches_truth(read_archive(str(dest)), Expected(truth))
    # Every kind of fault was met (and healed) in this one run.
    assert stats["rate_limited"] > 0 and stats["resets"] > 0 and stats["injected_errors"] > 0
    assert stats["cut_bodies"] > 0
    assert any(int(status) >= 500 for status in stats["storage_responses"])
    assert elapsed < 60


def test_the_simulator_sends_every_kind_of_retry_after(start_simulator: StartSimulator) -> None:
    sim = start_simulator(calls=3, seed=2)
    sim.configure(throttle_rate=1.0, retry_after=["86400", "nan", "none", "date-3600", "date+30"])
    with api_client(sim) as client:
        answers = [client.get("/calls") for _ in range(40)]
    assert {a.status_code for a in answers} == {429}
    sent = {a.headers.get("retry-after", "none") for a in answers}
    assert {"86400", "nan", "none"} <= sent
    dates = sent - {"86400", "nan", "none"}
    assert len(dates) == 2 and all(d.endswith(" GMT") for d in dates)
    assert all("date" in a.headers for a in answers)
    with pytest.raises(httpx.HTTPStatusError):
        sim.configure(retry_after=["date+soon"])


def test_the_simulator_cuts_answers_right_after_their_headers(start_simulator: StartSimulator) -> None:
    sim = start_simulator(calls=3, seed=2)
    sim.configure(cut_after_headers_rate=1.0)
    with api_client(sim) as client, pytest.raises(httpx.RemoteProtocolError, match="received 0 bytes"):
        client.get("/calls")
    assert sim.stats()["cut_bodies"] == 1


def test_max_run_time_stops_new_work_publishes_what_finished_and_the_next_run_completes(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    # 300 ms per API answer and two calls at a time: the account takes far longer than 2 s.
    sim = start_simulator(calls=60, seed=17, days=3, latency_ms=300)
    config = write_config(tmp_path / "c.toml", concurrency=2)
    dest = tmp_path / "archive"
    window = ("backfill", "--since", sim.since, "--until", sim.until)

    started = time.monotonic()
    first = run(sim, str(dest), config, *window, "--max-run-time", "2", timeout_s=60)
    elapsed = time.monotonic() - started

    assert first.code == 1, first.output  # the documented "partial" code
    # Work in flight at the deadline finishes (a request, a transcript page); nothing new starts.
    assert elapsed < 2 + 8, first.output
    (record_file,) = (dest / "_runs").iterdir()
    record = json.loads(record_file.read_text())
    assert record["deadline_reached"] is True and record["complete"] is False
    assert record["days_unfinished"] and record["finished_at"]
    assert "deadline" in first.output
    # What it published is exact, once each, and the days it did not finish are open.
    truth = {t["call_id"]: t for t in sim.truth()}
    archive = read_archive(str(dest))
    ids = [row["call_id"] for row in archive.calls]
    assert 0 < len(set(ids)) == len(ids) < len([t for t in truth.values() if not t["underway"]])
    assert all(json.loads(row["raw_json"]) == truth[row["call_id"]]["call"] for row in archive.calls)
    open_days = {p.name.split("=")[1] for p in (dest / "_state" / "open").iterdir()}
    for day in record["days_unfinished"]:
        if (dest / "calls" / f"call_date={day}").exists():
            assert day in open_days

    # Leases are 10 minutes here and the next run does not wait for locks: exit 0 (not 4) also
    # proves the first run released its leases.
    sim.configure(latency_ms=0)
    second = run(sim, str(dest), config, *window, "--concurrency", "16", timeout_s=120)
    assert second.code == 0, second.output
    assert_matches_truth(read_archive(str(dest)), Expected(sim.truth()))


def test_a_spent_retry_budget_costs_calls_never_the_run_and_the_next_run_heals_them(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    sim = start_simulator(calls=40, seed=23, days=2, error_rate_5xx=0.15)
    config = write_config(tmp_path / "c.toml")
    dest = tmp_path / "archive"
    window = ("backfill", "--since", sim.since, "--until", sim.until)

    first = run(sim, str(dest), config, *window, "--retry-budget", "0", timeout_s=60)
    assert first.code == 1, first.output
    (record_file,) = (dest / "_runs").iterdir()
    record = json.loads(record_file.read_text())
    assert record["retries"] == 0 and record["retries_refused"] > 0 and record["problems"]
    truth = {t["call_id"]: t for t in sim.truth()}
    archived = read_archive(str(dest)).calls
    failed = {p["call_id"] for p in record["problems"] if p["kind"] == "call_failed"}
    assert failed and not failed & {row["call_id"] for row in archived}
    assert all(json.loads(row["raw_json"]) == truth[row["call_id"]]["call"] for row in archived)

    second = run(sim, str(dest), config, *window, timeout_s=60)
    assert second.code == 0, second.output
    assert_matches_truth(read_archive(str(dest)), Expected(sim.truth()))
