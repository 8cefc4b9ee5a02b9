"""The throughput and memory benchmark (issue 5). Not part of the default test run.

    .venv/bin/python tests/perf/bench.py                      # every case, JSON report + table
    .venv/bin/python tests/perf/bench.py --cases api,cpu      # a subset
    .venv/bin/python tests/perf/bench.py --cases audio,small_api,inflight   # real-sized recordings
    .venv/bin/python tests/perf/bench.py --quick              # small sizes, to try the harness

Every case runs against the simulator (its own process) and a moto S3 server (its own process), with
the archiver as a subprocess measured by os.wait4: wall time, CPU seconds, peak RSS. The report goes
to tests/perf/results/bench-<time>.json (or --report PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PERF_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(PERF_DIR), str(PERF_DIR.parent)]

import boto3  # noqa: E402
from alternatives import measure, run_dlt, run_sequential  # noqa: E402
from archive_check import check_recordings, empty_bucket, recording_truth  # noqa: E402
from http2_case import run_http2_case  # noqa: E402
from support.s3server import aws_test_env, start_moto_server  # noqa: E402

from etl.simulator.process import SimulatorHandle, running_simulator  # noqa: E402

MAX_RPS = 190
SERVER_LIMIT = 200
LATENCY_MS = 50
SLOW_LATENCY_MS = 150
# Realistic audio: 16 kHz mono calls of 160-900 s, recordings of 5.1-28.8 MB. Seed 7 gives 90 calls
# with no unjoined one (whose recording would hold only the 30 s join timeout).
AUDIO_SEED = 7
AUDIO_DURATIONS = (160.0, 900.0)
SAMPLE_RATE = 16_000
SMALL_API_RECORDING_BYTES = 500_000
INFLIGHT = 32  # recordings downloaded at once; seed 7 again: 32 calls, none unjoined


@dataclass(frozen=True)
class Sizes:
    api_calls: int = 5_000
    sequential_calls: int = 300
    cpu_calls: int = 20_000
    memory_calls: int = 50_000
    huge_recording: int = 2 * 1024**3
    growth: tuple[int, ...] = (1_000, 5_000, 20_000)
    slow_api_calls: int = 2_000
    slow_api_sequential_calls: int = 100
    audio_calls: int = 90
    small_api_calls: int = 1_000
    small_api_sequential_calls: int = 100
    inflight_seconds: float = 937.5  # 30 MB at 16 kHz mono
    quick: bool = False


QUICK = Sizes(
    api_calls=500,
    sequential_calls=50,
    cpu_calls=1_000,
    memory_calls=2_000,
    huge_recording=64 * 1024**2,
    growth=(200, 500),
    slow_api_calls=300,
    slow_api_sequential_calls=20,
    audio_calls=12,
    small_api_calls=200,
    small_api_sequential_calls=20,
    inflight_seconds=125.0,  # 4 MB
    quick=True,
)


@contextmanager
def s3_server() -> Iterator[dict[str, str]]:
    with start_moto_server() as endpoint:
        env = aws_test_env(endpoint)
        os.environ.update(env)
        yield env


def new_bucket(prefix: str) -> str:
    bucket = f"{prefix}-{uuid.uuid4().hex[:12]}"
    boto3.session.Session().client("s3").create_bucket(Bucket=bucket)
    return bucket


def archiver_env(sim: SimulatorHandle, s3_env: dict[str, str], bucket: str) -> dict[str, str]:
    """This process's environment without our own settings, pointed at the simulator and the bucket."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ULTRAVOX_", "ARCHIVE"))},
        **s3_env,
        "ULTRAVOX_API_KEY": sim.api_key,
        "ULTRAVOX_API_BASE_URL": sim.api_base_url,
        "ARCHIVE_DEST": f"s3://{bucket}/archive",
    }


def archiver_command(
    sim: SimulatorHandle, *, max_rps: float, concurrency: int = 64, extra: Sequence[str] = ()
) -> list[str]:
    """A backfill of the simulator's whole window, its summary and logs as JSON."""
    return [
        sys.executable, "-m", "etl", "backfill", "--since", sim.since, "--until", sim.until,
        "--max-rps", str(max_rps), "--concurrency", str(concurrency), "--recording-wait", "30",
        "--summary-format", "json", "--log-format", "json", "--log-level", "warning", *extra,
    ]  # fmt: skip


def run_ours(
    sim: SimulatorHandle,
    s3_env: dict[str, str],
    *,
    max_rps: float,
    extra: list[str] = (),
    concurrency: int = 64,
    env_extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The archiver as a user runs it: backfill of the simulator's window into S3, audio included."""
    bucket = new_bucket("ours")
    env = {**archiver_env(sim, s3_env, bucket), **(env_extra or {})}
    cmd = archiver_command(sim, max_rps=max_rps, concurrency=concurrency, extra=extra)
    sim.reset_stats()
    result = measure(cmd, env)
    stats = sim.stats()
    api_requests = sum(count for kind, count in stats["requests"].items() if kind != "storage")
    calls = result["calls_archived"]
    return {
        "calls": calls,
        "messages": result["messages_archived"],
        "recordings": result["recordings_archived"],
        "recording_bytes": result["recording_bytes"],
        "complete": result["complete"],
        "wall_s": result["wall_s"],
        "cpu_s": result["cpu_s"],
        "peak_rss_mib": result["peak_rss_mib"],
        "api_requests": api_requests,
        "storage_requests": stats["requests"].get("storage", 0),
        "achieved_rps": round(api_requests / result["wall_s"], 1),
        "rate_limited_429": stats["rate_limited"],
        "calls_per_s": round(calls / result["wall_s"], 1),
        "cpu_ms_per_call": round(1000 * result["cpu_s"] / max(calls, 1), 2),
        "max_recordings_streaming": stats.get("max_recordings_streaming"),
        "bucket": bucket,
    }


def api_bound_sim(
    calls: int, *, latency_ms: float = LATENCY_MS, recording_bytes: int = 200_000, **extra: Any
) -> Any:
    return running_simulator(
        calls=calls, seed=5, days=5, latency_ms=latency_ms, rate_limit_rps=SERVER_LIMIT,
        recording_bytes=recording_bytes, stuck_recording_rate=0.0, ready_timeout_s=120, **extra,
    )  # fmt: skip


def case_api(sizes: Sizes, s3_env: dict[str, str]) -> dict[str, Any]:
    with api_bound_sim(sizes.api_calls) as sim:
        ours = run_ours(sim, s3_env, max_rps=MAX_RPS)
    bound_s = ours["api_requests"] / MAX_RPS
    return {**ours, "bound_s": round(bound_s, 2), "wall_over_bound": round(ours["wall_s"] / bound_s, 3)}


def case_alternatives(sizes: Sizes, s3_env: dict[str, str]) -> dict[str, Any]:
    """Same server, same data: a sequential script (subset), dlt default and parallel, and ours."""
    report: dict[str, Any] = {}
    with api_bound_sim(sizes.api_calls) as sim:
        report["sequential"] = run_sequential(sim, s3_env, new_bucket("seq"), sizes.sequential_calls)
        for config in ("default", "parallel"):
            report[f"dlt_{config}"] = run_dlt(sim, s3_env, new_bucket(f"dlt-{config}"), config)
        report["ours"] = run_ours(sim, s3_env, max_rps=MAX_RPS)
    ours = report["ours"]["calls_per_s"]
    report["ours_vs"] = {
        name: round(ours / report[name]["calls_per_s"], 2) for name in report if name != "ours"
    }
    return report


def case_slow_api(sizes: Sizes, s3_env: dict[str, str]) -> dict[str, Any]:
    """The sequential script and ours again, at 150 ms per API response (the middle of the 50-300 ms
    the API notes give) instead of 50: how the gap moves with latency, the same 200 req/s limit."""
    report: dict[str, Any] = {"latency_ms": SLOW_LATENCY_MS}
    with api_bound_sim(sizes.slow_api_calls, latency_ms=SLOW_LATENCY_MS) as sim:
        report["sequential"] = run_sequential(
            sim, s3_env, new_bucket("seq-slow"), sizes.slow_api_sequential_calls
        )
        report["ours"] = run_ours(sim, s3_env, max_rps=MAX_RPS)
    report["ours_vs_sequential"] = round(
        report["ours"]["calls_per_s"] / report["sequential"]["calls_per_s"], 2
    )
    return report


def case_transcripts(sizes: Sizes, s3_env: dict[str, str]) -> dict[str, Any]:
    """Ours on the same account with recording turned off: the work dlt does (calls and messages,
    about one request per call), for a like-for-like calls/s under the same 200 req/s server limit."""
    with api_bound_sim(sizes.api_calls, recording_rate=0.0) as sim:
        ours = run_ours(sim, s3_env, max_rps=MAX_RPS)
    bound_s = ours["api_requests"] / MAX_RPS
    return {**ours, "bound_s": round(bound_s, 2), "wall_over_bound": round(ours["wall_s"] / bound_s, 3)}


def case_cpu(sizes: Sizes, s3_env: dict[str, str]) -> dict[str, Any]:
    """No latency, no limit, no audio: what each costs in CPU per call."""
    report: dict[str, Any] = {}
    with running_simulator(
        calls=sizes.cpu_calls, seed=6, days=5, recording_rate=0.0, ready_timeout_s=120
    ) as sim:
        report["ours"] = run_ours(sim, s3_env, max_rps=100_000)
        report["dlt_parallel"] = run_dlt(sim, s3_env, new_bucket("dlt-cpu"), "parallel")
    for result in report.values():
        result.setdefault("cpu_ms_per_call", round(1000 * result["cpu_s"] / max(result["calls"], 1), 2))
    report["ours_vs_dlt_calls_per_s"] = round(
        report["ours"]["calls_per_s"] / report["dlt_parallel"]["calls_per_s"], 2
    )
    return report


def case_memory(sizes: Sizes, s3_env: dict[str, str]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    with running_simulator(
        calls=sizes.memory_calls, seed=7, days=5, recording_bytes=20_000, stuck_recording_rate=0.0,
        ready_timeout_s=300,
    ) as sim:  # fmt: skip
        report[f"{sizes.memory_calls}_calls"] = run_ours(sim, s3_env, max_rps=100_000)
    with running_simulator(
        calls=20, seed=8, days=1, recording_bytes=20_000, huge_recording_bytes=sizes.huge_recording,
        stuck_recording_rate=0.0,
    ) as sim:  # fmt: skip
        result = run_ours(sim, s3_env, max_rps=100_000)
        result["huge_recording_bytes"] = sizes.huge_recording
        report["huge_recording"] = result
    return report


def case_growth(sizes: Sizes, s3_env: dict[str, str]) -> dict[str, Any]:
    series = []
    for calls in sizes.growth:
        with api_bound_sim(calls) as sim:
            result = run_ours(sim, s3_env, max_rps=MAX_RPS)
        series.append(
            {"calls": calls, **{k: result[k] for k in ("wall_s", "peak_rss_mib", "api_requests", "cpu_s")}}
        )
    return {"series": series}


def audio_sim(calls: int, duration_range: tuple[float, float]) -> Any:
    """Real-sized recordings on every call, no latency, no limit: the API is not the bottleneck."""
    return running_simulator(
        calls=calls, seed=AUDIO_SEED, days=1, recording_rate=1.0, stuck_recording_rate=0.0,
        recording_bytes=None, duration_range=duration_range, sample_rate=SAMPLE_RATE, ready_timeout_s=120,
    )  # fmt: skip


def all_recordings_ready(sim: SimulatorHandle) -> dict[str, dict[str, Any]]:
    """End the calls still underway and finish every recording's processing (no 425 for either
    client, so both archive the same recordings); then the truth, hashed before any measured run."""
    sim.advance(end_underway=True, finish_processing=True)
    return recording_truth(sim)


def audio_figures(result: dict[str, Any], audio_bytes: int) -> dict[str, Any]:
    gib = audio_bytes / 2**30
    return {
        **result,
        "audio_bytes": audio_bytes,
        "cpu_s_per_gib": round(result["cpu_s"] / gib, 2) if gib else None,
    }


def case_audio(sizes: Sizes, s3_env: dict[str, str]) -> dict[str, Any]:
    """Realistic audio side by side with the sequential script (httpx + boto3 put_object, one call at
    a time): wall, CPU-seconds per GiB archived, peak RSS, and every object checked against the truth."""
    report: dict[str, Any] = {"duration_range_s": AUDIO_DURATIONS, "sample_rate": SAMPLE_RATE}
    with audio_sim(sizes.audio_calls, AUDIO_DURATIONS) as sim:
        truth = all_recordings_ready(sim)
        ours = run_ours(sim, s3_env, max_rps=MAX_RPS)
        ours["archive"] = check_recordings(ours["bucket"], "archive/recordings/", truth)
        empty_bucket(ours["bucket"])
        seq_bucket = new_bucket("seq-audio")
        sequential = run_sequential(sim, s3_env, seq_bucket, sizes.audio_calls)
        sequential["archive"] = check_recordings(seq_bucket, "sequential/recordings/", truth)
        empty_bucket(seq_bucket)
    report["ours"] = audio_figures(ours, ours["recording_bytes"])
    report["sequential"] = audio_figures(sequential, sequential["audio_bytes"])
    report["ours_vs_sequential"] = {
        "wall": round(ours["wall_s"] / sequential["wall_s"], 3),
        "cpu_s_per_gib": round(report["ours"]["cpu_s_per_gib"] / report["sequential"]["cpu_s_per_gib"], 3),
    }
    return report


def case_small_api(sizes: Sizes, s3_env: dict[str, str]) -> dict[str, Any]:
    """A small account's first sync, bound by the API: wall time from start-up to exit against the
    floor set by the rate limit; the sequential script on a subset of the same account."""
    with api_bound_sim(sizes.small_api_calls, recording_bytes=SMALL_API_RECORDING_BYTES) as sim:
        ours = run_ours(sim, s3_env, max_rps=MAX_RPS)
        sequential = run_sequential(sim, s3_env, new_bucket("seq-small"), sizes.small_api_sequential_calls)
    bound_s = ours["api_requests"] / MAX_RPS
    ours = {**ours, "bound_s": round(bound_s, 2), "wall_over_bound": round(ours["wall_s"] / bound_s, 3)}
    return {"ours": ours, "sequential": sequential}


def case_inflight(sizes: Sizes, s3_env: dict[str, str]) -> dict[str, Any]:
    """32 recordings of 30 MB downloading at once (concurrency and download concurrency 32): peak RSS."""
    seconds = sizes.inflight_seconds
    with audio_sim(INFLIGHT, (seconds, seconds)) as sim:
        truth = all_recordings_ready(sim)
        ours = run_ours(
            sim, s3_env, max_rps=MAX_RPS, concurrency=INFLIGHT,
            env_extra={"ARCHIVER_DOWNLOAD_CONCURRENCY": str(INFLIGHT)},
        )  # fmt: skip
        ours["archive"] = check_recordings(ours["bucket"], "archive/recordings/", truth)
        empty_bucket(ours["bucket"])
    return {"recording_seconds": seconds, **ours}


def case_http2(sizes: Sizes, s3_env: dict[str, str]) -> dict[str, Any]:
    """HTTP/1.1 (httpx's default transport, and ours) against HTTP/2 for the archiver's requests."""
    return run_http2_case(quick=sizes.quick)


CASES: dict[str, Callable[[Sizes, dict[str, str]], dict[str, Any]]] = {
    "api": case_api,
    "alternatives": case_alternatives,
    "transcripts": case_transcripts,
    "slow_api": case_slow_api,
    "cpu": case_cpu,
    "memory": case_memory,
    "growth": case_growth,
    "http2": case_http2,
    "audio": case_audio,
    "small_api": case_small_api,
    "inflight": case_inflight,
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, to try the harness")
    parser.add_argument("--report", type=Path, help="where to write the JSON report")
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "sizes": sizes.__dict__,
    }
    path = args.report or PERF_DIR / "results" / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with s3_server() as s3_env:
        for name in args.cases.split(","):
            started = time.monotonic()
            print(f"== {name}", flush=True)
            report[name] = CASES[name](sizes, s3_env)
            report[name]["case_seconds"] = round(time.monotonic() - started, 1)
            print(json.dumps(report[name], indent=2), flush=True)
            path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
