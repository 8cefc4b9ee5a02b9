"""Recordings over real HTTP: 425 polling, redirects to the storage origin, signed URL expiry."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from support.simulator_helpers import StartSimulator, api_client, api_session

from etl.simulator.process import SimulatorHandle

DEFAULT_FAULTS: dict[str, Any] = {
    "rules": [],
    "storage_error_rate": 0,
    "storage_reset_rate": 0,
    "storage_truncate_rate": 0,
    "signed_url_ttl_s": 300,
}


@pytest.fixture(scope="module")
def sim(start_shared_simulator: StartSimulator) -> SimulatorHandle:
    return start_shared_simulator(calls=120, seed=21)


@pytest.fixture(scope="module")
def truth(sim: SimulatorHandle) -> list[dict[str, Any]]:
    return sim.truth()


@pytest.fixture
def api(sim: SimulatorHandle) -> Iterator[httpx.Client]:
    yield from api_session(sim, restore=DEFAULT_FAULTS)


@pytest.fixture
def storage() -> Iterator[httpx.Client]:
    # A separate client without the API key, as the archiver must use for the storage host.
    with httpx.Client(trust_env=False) as client:
        yield client


def calls_with(truth: list[dict[str, Any]], status: str, delivery: str | None = None) -> list[dict[str, Any]]:
    return [t for t in truth if t["recording"]["status"] == status and t["recording"]["delivery"] == delivery]


def poll(api: httpx.Client, call_id: str) -> list[httpx.Response]:
    answers = [api.get(f"/calls/{call_id}/recording")]
    while answers[-1].status_code == 425 and len(answers) < 5:
        answers.append(api.get(f"/calls/{call_id}/recording"))
    return answers


def test_redirect_to_a_signed_url_on_the_storage_origin(
    sim: SimulatorHandle, api: httpx.Client, storage: httpx.Client, truth: list[dict[str, Any]]
) -> None:
    sim.reset_stats()
    downloaded = 0
    for call in calls_with(truth, "ready", "redirect")[:6]:
        answer = poll(api, call["call_id"])[-1]
        assert answer.status_code == 302 and answer.content == b""
        location = answer.headers["Location"]
        assert location.startswith(sim.storage_url + f"/recordings/{call['call_id']}.wav?expires=")
        assert "signature=" in location
        audio = storage.get(location)
        assert audio.status_code == 200 and audio.headers["Content-Type"] == "audio/wav"
        assert int(audio.headers["Content-Length"]) == call["recording"]["bytes"]
        assert hashlib.sha256(audio.content).hexdigest() == call["recording"]["sha256"]
        downloaded += 1
    stats = sim.stats()
    assert stats["requests"]["storage"] == downloaded == 6
    assert stats["storage_requests_with_api_key"] == 0
    assert "host" in stats["storage_header_names"] and "x-api-key" not in stats["storage_header_names"]


def test_some_recordings_answer_425_first(api: httpx.Client, truth: list[dict[str, Any]]) -> None:
    histories = [
        [r.status_code for r in poll(api, t["call_id"])] for t in calls_with(truth, "ready", "redirect")
    ]
    delayed = [h for h in histories if h[0] == 425]
    assert delayed, "the account should hold recordings that are still processing"
    assert all(h[-1] == 302 and 2 <= len(h) <= 3 for h in delayed)
    assert api.get("/calls/00000000-0000-4000-8000-000000000000/recording").status_code == 404


def test_the_200_variant_serves_audio_directly(api: httpx.Client, truth: list[dict[str, Any]]) -> None:
    call = calls_with(truth, "ready", "direct")[0]
    answer = poll(api, call["call_id"])[-1]
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "audio/wav"
    assert hashlib.sha256(answer.content).hexdigest() == call["recording"]["sha256"]


def test_not_enabled_and_pending(api: httpx.Client, truth: list[dict[str, Any]]) -> None:
    disabled = api.get(f"/calls/{calls_with(truth, 'not_enabled')[0]['call_id']}/recording")
    assert disabled.status_code == 400 and "not enabled" in disabled.json()["detail"]
    for pending in calls_with(truth, "pending"):
        answers = [api.get(f"/calls/{pending['call_id']}/recording") for _ in range(3)]
        assert [a.status_code for a in answers] == [425, 425, 425]
        assert answers[0].json() == {"detail": "Recording not yet available."}


def test_signed_urls_expire_and_a_fresh_one_works(
    sim: SimulatorHandle, api: httpx.Client, storage: httpx.Client, truth: list[dict[str, Any]]
) -> None:
    call_id = calls_with(truth, "ready", "redirect")[-1]["call_id"]
    sim.configure(signed_url_ttl_s=-10)
    expired = storage.get(poll(api, call_id)[-1].headers["Location"])
    assert expired.status_code == 403
    assert "<Code>AccessDenied</Code><Message>Request has expired</Message>" in expired.text
    sim.configure(signed_url_ttl_s=300)
    assert storage.get(api.get(f"/calls/{call_id}/recording").headers["Location"]).status_code == 200


def test_tampered_signatures_are_refused(
    api: httpx.Client, storage: httpx.Client, truth: list[dict[str, Any]]
) -> None:
    location = poll(api, calls_with(truth, "ready", "redirect")[0]["call_id"])[-1].headers["Location"]
    other = calls_with(truth, "ready", "redirect")[1]["call_id"]
    forged = location.replace(urlsplit(location).path, f"/recordings/{other}.wav")
    assert storage.get(forged).status_code == 403
    assert storage.get(location.split("?")[0]).status_code == 403


def test_storage_faults(
    sim: SimulatorHandle, api: httpx.Client, storage: httpx.Client, truth: list[dict[str, Any]]
) -> None:
    location = poll(api, calls_with(truth, "ready", "redirect")[0]["call_id"])[-1].headers["Location"]
    sim.configure(storage_error_rate=1.0)
    assert storage.get(location).status_code == 500
    sim.configure(storage_error_rate=0, storage_truncate_rate=1.0)
    with pytest.raises(httpx.TransportError):
        storage.get(location)
    sim.configure(storage_truncate_rate=0, storage_reset_rate=1.0)
    with pytest.raises(httpx.TransportError):
        storage.get(location)


def test_a_leaked_api_key_is_counted(sim: SimulatorHandle, api: httpx.Client, storage: httpx.Client) -> None:
    sim.reset_stats()
    storage.get(f"{sim.storage_url}/recordings/x.wav", headers={"Authorization": f"Bearer {sim.api_key}"})
    assert sim.stats()["storage_requests_with_api_key"] == 1


def test_first_urls_born_expired(start_simulator: StartSimulator) -> None:
    sim = start_simulator(calls=30, seed=4, expired_url_rate=1.0)
    ready = calls_with(sim.truth(), "ready", "redirect")[0]["call_id"]
    with api_client(sim) as api, httpx.Client(trust_env=False) as raw:
        first = raw.get(poll(api, ready)[-1].headers["Location"])
        second = raw.get(api.get(f"/calls/{ready}/recording").headers["Location"])
    assert first.status_code == 403 and "Request has expired" in first.text
    assert second.status_code == 200


def peak_rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024


def open_recording(
    api: httpx.Client, storage: httpx.Client, call_id: str, opened: ExitStack
) -> httpx.Response:
    """The recording's response, its body not read yet (via the signed URL when redirected)."""
    answer = api.get(f"/calls/{call_id}/recording")
    client, url = (
        (storage, answer.headers["Location"]) if answer.status_code == 302 else (api, str(answer.url))
    )
    return opened.enter_context(client.stream("GET", url))


def size_and_sha256(response: httpx.Response) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    for chunk in response.iter_bytes():
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def test_real_sized_recordings_are_streamed_whole_and_true(start_simulator: StartSimulator) -> None:
    # Quarter-hour calls at 48 kHz: ~86 MB recordings (seed 1: one redirected, one served directly),
    # both streaming at once without the simulator ever holding one in memory.
    big = start_simulator(
        calls=2, seed=1, days=1, recording_bytes=None, duration_range=(900, 900), sample_rate=48_000,
        recording_rate=1.0, stuck_recording_rate=0.0,
    )  # fmt: skip
    truth = big.truth()
    assert {t["recording"]["delivery"] for t in truth} == {"redirect", "direct"}
    assert all(t["recording"]["bytes"] == 44 + 900 * 48_000 * 2 for t in truth)
    assert all((t["recording"]["sample_rate"], t["recording"]["channels"]) == (48_000, 1) for t in truth)
    before = peak_rss_bytes(big.pid)
    with api_client(big) as api, httpx.Client(trust_env=False) as storage, ExitStack() as opened:
        responses = [open_recording(api, storage, t["call_id"], opened) for t in truth]
        got = [size_and_sha256(response) for response in responses]
    assert got == [(t["recording"]["bytes"], t["recording"]["sha256"]) for t in truth]
    assert peak_rss_bytes(big.pid) - before < 16 * 2**20
    assert big.stats()["max_recordings_streaming"] == 2
