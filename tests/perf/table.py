"""Render a benchmark report (tests/perf/bench.py's JSON) as the Markdown table in the README.

.venv/bin/python tests/perf/table.py tests/perf/results/bench-<time>.json [more reports ...]

With several reports (say, a full run and a later run of one case), a case in a later report
replaces the same case from an earlier one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if api := report.get("api"):
        out += [
            ("API-bound: calls / API requests", f"{api['calls']:,} / {api['api_requests']:,}"),
            (
                "API-bound: wall time vs bound (requests / 190)",
                f"{api['wall_s']:.1f} s vs {api['bound_s']:.1f} s = **{api['wall_over_bound']:.3f}x**",
            ),
            ("API-bound: achieved requests/s, 429s", f"{api['achieved_rps']}, {api['rate_limited_429']}"),
            ("API-bound: CPU s, peak RSS", f"{api['cpu_s']:.1f} s, {api['peak_rss_mib']:.0f} MiB"),
            (
                "API-bound: audio archived",
                f"{api['recordings']:,} recordings, {api['recording_bytes'] / 2**20:,.0f} MiB",
            ),
        ]  # fmt: skip
    if alt := report.get("alternatives"):
        for name in ("sequential", "dlt_default", "dlt_parallel", "ours"):
            if name in alt:
                result = alt[name]
                extra = "" if name == "ours" else f" (ours: {alt['ours_vs'][name]}x)"
                out.append((f"Same server, calls/s: {name}", f"{result['calls_per_s']}{extra}"))
    if transcripts := report.get("transcripts"):
        out.append(
            ("Same server, calls/s: ours, recording off (dlt's work)", f"{transcripts['calls_per_s']}")
        )
    if slow := report.get("slow_api"):
        out.append(
            (
                f"At {slow['latency_ms']:.0f} ms per API response, calls/s: sequential, ours",
                f"{slow['sequential']['calls_per_s']}, {slow['ours']['calls_per_s']} "
                f"(ours: **{slow['ours_vs_sequential']}x**)",
            )
        )
    if cpu := report.get("cpu"):
        for name in ("ours", "dlt_parallel"):
            result = cpu[name]
            out.append(
                (
                    f"CPU-bound, {name}: calls/s, CPU ms/call",
                    f"{result['calls_per_s']}, {result['cpu_ms_per_call']}",
                )
            )
        out.append(("CPU-bound: ours / dlt calls/s", f"**{cpu['ours_vs_dlt_calls_per_s']}x**"))
    if memory := report.get("memory"):
        for name, result in memory.items():
            if isinstance(result, dict):
                out.append(
                    (
                        f"Memory: peak RSS, {name.replace('_', ' ')}",
                        f"{result['peak_rss_mib']:.0f} MiB ({result['wall_s']:.0f} s)",
                    )
                )
    if growth := report.get("growth"):
        series = ", ".join(
            f"{p['calls']:,}: {p['wall_s']:.0f} s / {p['peak_rss_mib']:.0f} MiB" for p in growth["series"]
        )
        out.append(("Growth (calls: wall / peak RSS)", series))
    if http2 := report.get("http2"):
        for scenario, label in (("latency", "at 190 req/s, 50 ms"), ("cpu", "no latency, no limit")):
            result = http2[scenario]
            figures = ", ".join(
                f"{name} {run['req_per_s']:.0f} at {run['client_cpu_ms_per_req']:.2f}"
                for name in ("h1", "h2", "h2c")
                if (run := result.get(name))
            )
            out.append((f"HTTP/2 vs HTTP/1.1, {label}: req/s at CPU ms/req", figures))
    out += audio_rows(report)
    return out


def audio_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The real-sized recording cases: realistic audio, the small account, 32 recordings in flight."""
    out: list[tuple[str, str]] = []
    if audio := report.get("audio"):
        ours, seq, vs = audio["ours"], audio["sequential"], audio["ours_vs_sequential"]
        low, high = audio["duration_range_s"]
        khz = audio["sample_rate"] // 1000
        label = f"Realistic audio ({ours['calls']} calls of {low:.0f}-{high:.0f} s at {khz} kHz)"
        out += [
            (
                f"{label}: GiB archived (recordings), ours / sequential",
                f"{ours['audio_bytes'] / 2**30:.2f} ({ours['recordings']}) / "
                f"{seq['audio_bytes'] / 2**30:.2f} ({seq['recordings']})",
            ),
            (
                f"{label}: wall s, ours / sequential",
                f"{ours['wall_s']:.1f} / {seq['wall_s']:.1f} (ours: **{vs['wall']}x**)",
            ),
            (
                f"{label}: CPU s per GiB, ours / sequential",
                f"{ours['cpu_s_per_gib']} / {seq['cpu_s_per_gib']} (ours: **{vs['cpu_s_per_gib']}x**)",
            ),
            (
                f"{label}: peak RSS, ours / sequential",
                f"{ours['peak_rss_mib']:.0f} / {seq['peak_rss_mib']:.0f} MiB",
            ),
            (
                f"{label}: objects checked by SHA-256, mismatches, missing (ours; sequential)",
                f"{_exact(ours['archive'])}; {_exact(seq['archive'])}",
            ),
        ]  # fmt: skip
    if small := report.get("small_api"):
        ours, seq = small["ours"], small["sequential"]
        label = f"Small account ({ours['calls']:,} calls archived, ~0.5 MB recordings)"
        out += [
            (
                f"{label}: wall vs bound (requests / 190)",
                f"{ours['wall_s']:.1f} s vs {ours['bound_s']:.1f} s = **{ours['wall_over_bound']:.3f}x**",
            ),
            (
                f"{label}: API requests, 429s, CPU s, peak RSS",
                f"{ours['api_requests']:,}, {ours['rate_limited_429']}, {ours['cpu_s']:.1f} s, "
                f"{ours['peak_rss_mib']:.0f} MiB",
            ),
            (
                f"{label}: calls/s, ours / sequential ({seq['calls']} calls)",
                f"{ours['calls_per_s']} / {seq['calls_per_s']}",
            ),
        ]
    if inflight := report.get("inflight"):
        size_mb = inflight["recording_seconds"] * 32_000 / 1e6
        out.append(
            (
                f"{inflight['recordings']} recordings of {size_mb:.0f} MB, 32 downloads at once: peak RSS",
                f"{inflight['peak_rss_mib']:.0f} MiB ({inflight['wall_s']:.1f} s; at most "
                f"{inflight['max_recordings_streaming']} streaming at once; {_exact(inflight['archive'])})",
            )
        )
    return out


def _exact(archive: dict[str, Any]) -> str:
    objects, mismatched, missing = archive["objects"], archive["sha256_mismatches"], archive["missing"]
    return f"{objects} objects, {mismatched} mismatched, {missing} missing"


def main() -> int:
    report: dict[str, Any] = {}
    for path in sys.argv[1:]:
        report.update(json.loads(Path(path).read_text()))
    print("| measure | result |\n| --- | --- |")
    for name, value in rows(report):
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
