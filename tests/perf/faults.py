"""Every fault the simulator knows, at once, on a 1,000-call account: each seed archived in ONE run.

    .venv/bin/python tests/perf/faults.py                    # seeds 1,2,3; ~1-2 min each
    .venv/bin/python tests/perf/faults.py --seeds 4 --calls 300 --report R.json

For each seed: a simulator with every transient fault and every kind of misbehaving answer switched
on (the switches below), one `backfill` into a local directory, then the archive compared with the
simulator's ground truth (every call row, every message, every recording's SHA-256) by the same
assertion the end-to-end tests use. Recordings that are legitimately still pending (the simulator's
stuck recordings) count as pending, not missing. Prints and writes per seed: exit code, wall time,
faults injected (the simulator's counters), retries and 429s (the run's summary), and the verdict.

Left off on purpose: the switches whose answers must cost a call or a day (`broken_recording_rate`,
`unsafe_redirect_rate`, and the `deep_json`/`huge_json`/`gzip_bomb`/`endless_next`/`bad_next`/
`trickle` rules), since an archive "equal to the truth" cannot hold with them; each has its own
end-to-end test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for `support`

from support.archive_truth import Expected, assert_matches_truth, read_archive
from support.archiver_process import run, write_config

from etl.simulator.process import running_simulator

DATA = Path(__file__).resolve().parents[1] / "data"
TLS_CERT, TLS_KEY = DATA / "localhost-cert.pem", DATA / "localhost-key.pem"

# Every kind of Retry-After a server (or a broken proxy) may send.
EVERY_RETRY_AFTER = ("86400", "inf", "nan", "-5", "soon", "date-3600", "date+1", "none", "0", "1")

# Start options of the simulator: every fault that a correct client heals within one run.
EVERY_FAULT: dict[str, Any] = {
    # transient: 5xx, resets, 429s with every Retry-After, answers cut after their headers
    "error_rate_5xx": 0.03,
    "reset_rate": 0.02,
    "throttle_rate": 0.03,
    "retry_after": EVERY_RETRY_AFTER,
    "cut_after_headers_rate": 0.03,
    "storage_error_rate": 0.03,
    "storage_reset_rate": 0.02,
    "storage_cut_after_headers_rate": 0.05,
    "expired_url_rate": 0.1,
    # misbehaving pages: a call listed twice, gzip, short pages, reordered `next` queries
    "duplicate_listing_rate": 0.2,
    "gzip_rate": 0.5,
    "short_page_rate": 0.2,
    "next_query_shuffle_rate": 0.3,
    # audio sent chunked, without Content-Length
    "chunked_audio_rate": 0.3,
    # the contract: bare dates read at UTC-5, "not enabled" in varied statuses and words, calls that
    # leave `recordingEnabled` out, calls that never end (left underway), https with `next` links
    # that say http
    "naive_date_offset_h": -5.0,
    "not_enabled_wordings": True,
    "recording_enabled_omitted_rate": 0.5,
    "never_ending_rate": 0.05,
    "tls_cert": str(TLS_CERT),
    "tls_key": str(TLS_KEY),
    # the server's own rate limit, below what the archiver is allowed to send
    "rate_limit_rps": 150.0,
}
# Switches only settable at run time (POST /_sim/config).
EVERY_RUNTIME_FAULT: dict[str, Any] = {"storage_truncate_rate": 0.05}


def one_seed(seed: int, calls: int, workdir: Path) -> dict[str, Any]:
    with running_simulator(calls=calls, seed=seed, days=5, ready_timeout_s=120, **EVERY_FAULT) as sim:
        sim.configure(**EVERY_RUNTIME_FAULT)
        # Retry-After obeyed up to 1 s (60 s by default): the run must not sleep on 86400, inf or nan.
        # Recordings are polled for 30 s as in the benchmark (120 s by default), not the tests' 4 s:
        # under this many faults a recording's few 425s can be spread over more than 4 s of retries.
        config = write_config(
            workdir / f"seed-{seed}.toml", retry_after_max_s=1, max_rps=190, recording_wait_s=30
        )
        dest = workdir / f"archive-{seed}"
        started = time.monotonic()
        finished = run(
            sim, str(dest), config, "backfill", "--since", sim.since, "--until", sim.until,
            "--summary-format", "json", timeout_s=900,
        )  # fmt: skip
        wall_s = time.monotonic() - started
        truth, stats = sim.truth(), sim.stats()
        verdict = "exact"
        try:
            assert_matches_truth(read_archive(str(dest)), Expected(truth))
        except AssertionError as exc:
            verdict = f"MISMATCH: {str(exc)[:300]}"
    summary = _summary(finished.output)
    pending = sum(1 for t in truth if not t["underway"] and t["recording"]["status"] == "pending")
    return {
        "seed": seed,
        "calls": calls,
        "exit_code": finished.code,
        "wall_s": round(wall_s, 1),
        "verdict": verdict,
        "recordings_pending_in_truth": pending,
        "run": {key: summary.get(key) for key in _RUN_FIGURES},
        "faults_injected": {key: stats.get(key) for key in _FAULT_COUNTERS},
        "api_responses": stats.get("responses"),
        "storage_responses": stats.get("storage_responses"),
        "api_requests": sum(count for kind, count in stats["requests"].items() if kind != "storage"),
    }


_RUN_FIGURES = ("calls_archived", "retries", "rate_limited", "calls_listed_twice", "recordings_pending")
_FAULT_COUNTERS = ("injected_errors", "resets", "rate_limited", "cut_bodies", "signed_urls_issued")


def _summary(output: str) -> dict[str, Any]:
    """The JSON summary: the last line of stdout that parses as an object with `run_id`."""
    for line in reversed(output.splitlines()):
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and "run_id" in data:
            return data
    return {}


def main() -> int:
    # The simulator serves https with a self-signed certificate: the archiver trusts it through the
    # standard variable, as a user with a private CA would.
    os.environ["SSL_CERT_FILE"] = str(TLS_CERT)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--report", type=Path)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="faults-") as workdir:
        for seed in (int(s) for s in args.seeds.split(",")):
            result = one_seed(seed, args.calls, Path(workdir))
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.report:
        args.report.write_text(
            json.dumps({"switches": EVERY_FAULT | EVERY_RUNTIME_FAULT, "runs": results}, indent=1)
        )
    return 0 if all(r["exit_code"] == 0 and r["verdict"] == "exact" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
