"""The API's documented contract, end to end over real HTTP against the simulator (issue 11, item 6).

Each test switches on one way the simulator, like the real API, departs from what a client might
guess, and checks the archive against the simulator's ground truth.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.archive_truth import Expected, assert_matches_truth, read_archive
from support.simulator_helpers import StartSimulator

from etl.cli import main
from etl.simulator.process import SimulatorHandle


def config_file(tmp_path: Path, *lines: str) -> Path:
    """Short polls and retries, so a test takes seconds."""
    config = tmp_path / "archiver.toml"
    config.write_text(
        "\n".join(
            [
                "[archiver]",
                "recording_wait_s = 2",
                "recording_poll_initial_s = 0.05",
                "recording_poll_max_s = 0.2",
                "retry_initial_s = 0.01",
                "retry_max_s = 0.05",
                "max_rps = 2000",
                *lines,
            ]
        )
        + "\n"
    )
    return config


def backfill(sim: SimulatorHandle, dest: Path, config: Path, *extra: str) -> tuple[int, str]:
    env = {
        "ULTRAVOX_API_KEY": sim.api_key,
        "ULTRAVOX_API_BASE_URL": sim.api_base_url,
        "ARCHIVE_DEST": str(dest),
        "ARCHIVER_CONFIG": str(config),
    }
    args = ["backfill", "--since", sim.since, "--until", sim.until, "--log-format", "json", *extra]
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_each_day_is_listed_exactly_whatever_zone_the_api_reads_a_bare_date_in(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    # The simulator reads a bare date at UTC-5 (undocumented, like the real API's zone): a client
    # sending bare dates would miss each day's first five hours and quarantine the next day's calls.
    sim = start_simulator(calls=80, seed=23, days=3, naive_date_offset_h=-5)
    code, output = backfill(sim, tmp_path / "archive", config_file(tmp_path))
    assert code == 0, output
    assert_matches_truth(read_archive(str(tmp_path / "archive")), Expected(sim.truth()))


@pytest.mark.parametrize("broken_status", [410, 503])
def test_recording_answers_are_read_by_status_and_recording_enabled_and_failing_ones_are_given_up(
    start_simulator: StartSimulator, tmp_path: Path, broken_status: int
) -> None:
    # Half the call objects leave `recordingEnabled` out, so the archiver must ask; "not enabled" comes
    # back with varied statuses and wordings; a fifth of recordings never become ready, and every one
    # of those answers `broken_status` for ever instead of 425.
    sim = start_simulator(
        calls=60,
        seed=29,
        days=2,
        recording_enabled_omitted_rate=0.5,
        not_enabled_wordings=True,
        stuck_recording_rate=0.2,
        broken_recording_rate=1.0,
        broken_recording_status=broken_status,
    )
    dest, config = tmp_path / "archive", config_file(tmp_path, "max_attempts = 2")
    truth = sim.truth()
    ended = [t for t in truth if not t["underway"]]
    omitted_off = [
        t for t in ended if "recordingEnabled" not in t["call"] and t["recording"]["status"] == "not_enabled"
    ]
    broken = {t["call_id"] for t in ended if t["recording"]["status"] == "pending"}
    assert omitted_off and broken, "the account must have both kinds of call"

    code, output = backfill(sim, dest, config)
    assert code == 1, output  # the broken recordings failed: the run says so, their days stay open
    rows = {row["call_id"]: row for row in read_archive(str(dest)).calls}
    assert {rows[t["call_id"]]["recording_status"] for t in omitted_off} == {"not_enabled"}
    assert {rows[call_id]["recording_status"] for call_id in broken} == {"failed"}
    assert list(dest.glob("_state/open/*"))

    # The next visit past recording_give_up_days gives up on them like on recordings that stay pending.
    code, output = backfill(sim, dest, config, "--recording-give-up-days", "0")
    assert code == 0, output
    archive = read_archive(str(dest))
    assert_matches_truth(archive, Expected(truth, recordings_given_up=broken))
    details = {row["recording_detail"] for row in archive.calls if row["call_id"] in broken}
    assert all(d.startswith("still failing") and str(broken_status) in d for d in details), details
    underway_days = {t["call_date"] for t in truth if t["underway"]}
    assert {p.name.removeprefix("call_date=") for p in dest.glob("_state/open/*")} == underway_days


def test_calls_that_never_end_are_archived_as_they_are_after_the_give_up_time(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    sim = start_simulator(calls=80, seed=31, days=2, never_ending_rate=1.0, stuck_recording_rate=0.0)
    dest, config = tmp_path / "archive", config_file(tmp_path)
    truth = sim.truth()
    underway = {t["call_id"] for t in truth if t["underway"]}
    assert underway, "the account must have calls underway"

    code, output = backfill(sim, dest, config)
    assert code == 0, output
    assert f"{len(underway)} calls underway" in output
    assert list(dest.glob("_state/open/*"))

    assert sim.advance(end_underway=True) is not None
    assert {t["call_id"] for t in sim.truth() if t["underway"]} == underway  # they never end
    # Not yet given up: the time counts from when the archive first found them underway.
    code, output = backfill(sim, dest, config, "--underway-give-up-hours", "1")
    assert f"{len(underway)} calls underway" in output

    code, output = backfill(sim, dest, config, "--underway-give-up-hours", "0")
    assert code == 0, output
    archive = read_archive(str(dest))
    assert_matches_truth(archive, Expected(sim.truth(), underway_given_up=underway))
    given_up = [row for row in archive.calls if row["call_id"] in underway]
    assert {row["ended"] for row in given_up} == {None}
    unavailable = [row for row in given_up if row["recording_status"] == "unavailable"]
    assert unavailable and all("still underway" in row["recording_detail"] for row in unavailable)
    assert not list(dest.glob("_state/open/*")), "every day closes"

    # A later visit of the day does not count the wait from zero again: with a give-up time of ~1 s,
    # counted from the first run (seconds ago), the calls stay archived as they were, the days closed.
    time.sleep(1.2)
    code, output = backfill(sim, dest, config, "--underway-give-up-hours", "0.0003")
    assert code == 0, output
    assert "calls underway" not in output or "0 calls underway" in output
    assert_matches_truth(read_archive(str(dest)), Expected(sim.truth(), underway_given_up=underway))
    assert not list(dest.glob("_state/open/*"))


CERT = Path(__file__).parent.parent / "data" / "localhost-cert.pem"  # self-signed for 127.0.0.1
KEY = CERT.with_name("localhost-key.pem")


def test_next_links_that_drop_to_http_are_followed_over_https(
    start_simulator: StartSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Over TLS the simulator's `next` links still say http://127.0.0.1:<port>: the archiver must
    # follow them over https, never in clear (the port speaks TLS only, so a clear request fails).
    sim = start_simulator(calls=150, seed=37, days=1, tls_cert=str(CERT), tls_key=str(KEY))
    assert sim.api_base_url.startswith("https://")
    monkeypatch.setenv("SSL_CERT_FILE", str(CERT))
    sim.reset_stats()
    code, output = backfill(sim, tmp_path / "archive", config_file(tmp_path, "page_size = 20"))
    assert code == 0, output
    assert_matches_truth(read_archive(str(tmp_path / "archive")), Expected(sim.truth()))
    assert sim.stats()["requests"]["list_calls"] >= 150 // 20


def test_a_recording_redirect_to_the_metadata_service_is_never_followed(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    sim = start_simulator(calls=40, seed=41, days=1, unsafe_redirect_rate=0.3, stuck_recording_rate=0.0)
    code, output = backfill(sim, tmp_path / "archive", config_file(tmp_path, "request_timeout_s = 2"))
    assert code == 1, output  # those recordings failed, and the run says so
    rows = read_archive(str(tmp_path / "archive")).calls
    refused = [row for row in rows if row["recording_status"] == "failed"]
    assert refused, "the switch must hit some recordings"
    for row in refused:
        assert "refusing to download a recording from http://169.254.169.254" in row["recording_detail"]
        assert row["recording_uri"] is None
    assert any(row["recording_status"] == "archived" for row in rows)
