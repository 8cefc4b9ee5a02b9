"""End to end over real HTTP: the simulator in a server process, a moto S3 server, the real CLI.

Every assertion is against the simulator's ground truth: the calls, messages and recording checksums
it generated, never what our code wrote earlier.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import httpx
import pyarrow as pa
import pytest
from click.testing import CliRunner
from support.archive_truth import Expected, assert_matches_truth, read_archive, s3_filesystem
from support.simulator_helpers import StartSimulator, api_client

from etl.cli import main
from etl.simulator.process import SimulatorHandle


def fast_config(tmp_path: Path) -> Path:
    """Short polling so recordings that become ready after a poll or two land within the test."""
    config = tmp_path / "archiver.toml"
    config.write_text(
        "[archiver]\n"
        "recording_wait_s = 4\n"
        "recording_poll_initial_s = 0.1\n"
        "recording_poll_max_s = 0.5\n"
        "retry_initial_s = 0.02\n"
        "retry_max_s = 0.2\n"
        "max_rps = 2000\n"
    )
    return config


def backfill(
    sim: SimulatorHandle, dest: str, config: Path, *extra: str, key: str | None = None
) -> tuple[int, str]:
    env = {
        "ULTRAVOX_API_KEY": key or sim.api_key,
        "ULTRAVOX_API_BASE_URL": sim.api_base_url,
        "ARCHIVE_DEST": dest,
        "ARCHIVER_CONFIG": str(config),
    }
    args = ["backfill", "--since", sim.since, "--until", sim.until, "--log-format", "json", *extra]
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def big_account(start_shared_simulator: StartSimulator) -> SimulatorHandle:
    return start_shared_simulator(calls=320, seed=11, expired_url_rate=0.1)


def test_archives_a_simulated_account_to_s3_exactly(
    big_account: SimulatorHandle, s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    sim = big_account
    sim.reset_stats()
    code, output = backfill(sim, f"s3://{s3_bucket}/ultravox", fast_config(tmp_path))
    truth = sim.truth()
    assert code == 0, output

    archive = read_archive(f"{s3_bucket}/ultravox", s3_filesystem(s3_endpoint))
    expected = Expected(truth)
    assert len(expected.archived) >= 300
    assert_matches_truth(archive, expected)

    statuses = {row["recording_status"] for row in archive.calls}
    assert statuses == {"archived", "not_enabled", "pending"}
    underway = [t for t in truth if t["underway"]]
    assert underway, "the account must have calls still underway"
    assert f"{len(underway)} calls underway" in output

    stats = sim.stats()
    assert stats["storage_requests_with_api_key"] == 0
    assert "x-api-key" not in {name.lower() for name in stats["storage_header_names"]}
    assert stats["requests"]["storage"] > 0
    # in_call, never the default last_stage: multi-stage calls must be complete (checked above too).
    assert stats["requests"]["messages"] >= len(expected.archived)

    # Nothing the run stored mentions the key: objects, metadata, run records.
    s3 = boto3.session.Session().client("s3")
    for item in s3.list_objects_v2(Bucket=s3_bucket, Prefix="ultravox/_")["Contents"]:
        body = s3.get_object(Bucket=s3_bucket, Key=item["Key"])["Body"].read()
        assert sim.api_key.encode() not in body
    head = (
        s3.head_object(Bucket=s3_bucket, Key=archive.calls[0]["recording_uri"].split("/", 3)[3])
        if any(r["recording_uri"] for r in archive.calls[:1])
        else None
    )
    if head is not None:
        assert head["Metadata"] == {}


def test_parquet_on_s3_has_the_contract_types(
    big_account: SimulatorHandle, s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    sim = big_account
    code, output = backfill(sim, f"s3://{s3_bucket}/a", fast_config(tmp_path), "--until", sim.since)
    assert code == 0, output
    archive = read_archive(f"{s3_bucket}/a", s3_filesystem(s3_endpoint))
    calls, messages = archive.calls_schema, archive.messages_schema
    utc_us = pa.timestamp("us", tz="UTC")
    assert calls.field("created").type == utc_us
    assert calls.field("ended").type == utc_us
    assert calls.field("archived_at").type == utc_us
    assert calls.field("metadata").type == pa.map_(pa.string(), pa.string())
    assert calls.field("temperature").type == pa.float64()
    assert calls.field("recording_bytes").type == pa.int64()
    assert calls.field("call_date").type == pa.date32()
    assert messages.field("message_index").type == pa.int32()
    assert messages.field("start_s").type == pa.float64()
    assert {row["call_date"].isoformat() for row in archive.calls} == {sim.since}


def test_rerun_of_a_window_does_not_duplicate(
    big_account: SimulatorHandle, s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    sim = big_account
    config = fast_config(tmp_path)
    for _ in range(2):
        code, output = backfill(sim, f"s3://{s3_bucket}/twice", config, "--until", sim.since)
        assert code == 0, output
    archive = read_archive(f"{s3_bucket}/twice", s3_filesystem(s3_endpoint))
    truth = [t for t in sim.truth() if t["call_date"] == sim.since]
    assert_matches_truth(archive, Expected(truth), check_audio=False)


def test_bad_answers_fail_one_call_each_and_the_run_completes(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    sim = start_simulator(calls=60, seed=5)
    ended = [t for t in sim.truth() if not t["underway"]]
    missing_messages, html_messages, no_id = (t["call_id"] for t in ended[:3])
    sim.configure(
        rules=[
            {"path": f"/api/calls/{missing_messages}/messages", "action": "status", "status": 404},
            {"path": f"/api/calls/{html_messages}/messages", "action": "not_json"},
        ],
        strip_call_id=[no_id],
    )
    dest = tmp_path / "archive"
    code, output = backfill(sim, str(dest), fast_config(tmp_path))
    truth = sim.truth()

    assert code == 1, output
    archive = read_archive(str(dest))
    assert_matches_truth(archive, Expected(truth, excluded={missing_messages, html_messages, no_id}))

    (quarantine_file,) = (dest / "_quarantine").iterdir()
    problems = [json.loads(line) for line in quarantine_file.read_text().splitlines()]
    reasons = {p.get("call_id"): p["reason"] for p in problems}
    assert "404" in reasons[missing_messages]
    assert "not JSON" in reasons[html_messages]
    no_id_problem = next(p for p in problems if p["kind"] == "bad_record")
    assert "callId" in no_id_problem["reason"]
    assert json.loads(no_id_problem["raw_json"])["created"] == next(
        t["call"]["created"] for t in truth if t["call_id"] == no_id
    )
    assert "3 calls" not in output or "failed" in output


def test_transient_faults_and_rate_limits_are_retried(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    sim = start_simulator(
        calls=80,
        seed=9,
        error_rate_5xx=0.05,
        reset_rate=0.03,
        storage_error_rate=0.05,
        storage_reset_rate=0.03,
        expired_url_rate=0.3,
        rate_limit_rps=40,
    )
    dest = tmp_path / "archive"
    code, output = backfill(sim, str(dest), fast_config(tmp_path))
    truth = sim.truth()
    stats = sim.stats()
    assert code == 0, output
    assert_matches_truth(read_archive(str(dest)), Expected(truth))
    assert stats["rate_limited"] > 0
    assert (
        stats["responses"].get("500", 0) + stats["responses"].get("502", 0) + stats["responses"].get("503", 0)
        > 0
    )


def test_a_key_rejected_during_the_run_stops_it_with_exit_3(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    # A key rejected from the start is a configuration error (exit 2, tests/integration/
    # test_preflight_e2e.py); one revoked once the run is going stops it as fatal.
    sim = start_simulator(calls=5, seed=2)
    sim.configure(rules=[{"path": "/messages", "action": "status", "status": 401}])
    code, output = backfill(sim, str(tmp_path / "a"), fast_config(tmp_path))
    assert code == 3, output
    assert "the API key was rejected" in output
    assert sim.api_key not in output


def test_a_rewrite_never_drops_archived_calls(start_simulator: StartSimulator, tmp_path: Path) -> None:
    """A call deleted at the source, or failing in a later run, stays archived with its transcript."""
    sim = start_simulator(calls=40, seed=21, days=1)
    dest, config = tmp_path / "archive", fast_config(tmp_path)
    assert backfill(sim, str(dest), config)[0] == 0
    first_truth = sim.truth()
    ended = [t for t in first_truth if not t["underway"]]
    deleted, failing = ended[0]["call_id"], ended[1]["call_id"]
    sim.advance(delete_calls=[deleted])
    sim.configure(strip_call_id=[failing])
    code, output = backfill(sim, str(dest), config)
    assert code == 1, output  # the failing call is reported ...
    assert "kept from archive   2 calls" in output
    assert "(1 deleted at the source)" in output
    # ... and the archive still equals the first run's truth: nothing lost, nothing doubled.
    assert_matches_truth(read_archive(str(dest)), Expected(first_truth))


def test_a_day_whose_listing_is_not_json_fails_alone(start_simulator: StartSimulator, tmp_path: Path) -> None:
    sim = start_simulator(calls=30, seed=4, days=3)
    bad_day = sim.until
    sim.configure(rules=[{"path": f"^/api/calls\\?.*fromDate={bad_day}", "action": "not_json"}])
    dest = tmp_path / "archive"
    code, output = backfill(sim, str(dest), fast_config(tmp_path))
    truth = sim.truth()
    assert code == 1, output
    assert f"listing the calls of {bad_day} failed" in output and "not JSON" in output
    others = [t for t in truth if t["call_date"] != bad_day]
    assert_matches_truth(read_archive(str(dest)), Expected(others))
    assert not (dest / "calls" / f"call_date={bad_day}").exists()


def test_audio_sent_chunked_without_a_length_is_archived_exactly(
    start_simulator: StartSimulator, s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    # Every recording's audio, from the storage host and from the API itself, comes with chunked
    # transfer encoding and no Content-Length: the archiver cannot size its buffer up front.
    sim = start_simulator(calls=60, seed=21, days=2, chunked_audio_rate=1.0, recording_bytes=300_000)
    with api_client(sim) as api, httpx.Client(trust_env=False) as storage:
        ready = next(t for t in sim.truth() if t["recording"]["status"] == "ready")
        answer = api.get(f"/calls/{ready['call_id']}/recording")
        audio = storage.get(answer.headers["location"]) if answer.status_code == 302 else answer
        assert audio.status_code == 200
        assert "content-length" not in audio.headers and audio.headers["transfer-encoding"] == "chunked"

    code, output = backfill(sim, f"s3://{s3_bucket}/ultravox", fast_config(tmp_path))

    assert code == 0, output
    archive = read_archive(f"{s3_bucket}/ultravox", s3_filesystem(s3_endpoint))
    assert_matches_truth(archive, Expected(sim.truth()))
