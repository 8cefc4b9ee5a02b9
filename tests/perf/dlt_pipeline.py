"""What a dlt user would run instead of the archiver: `rest_api` source -> `filesystem` on S3, Parquet.

Runs only inside the benchmark's own venv (tests/perf/.venv-dlt, see alternatives.ensure_dlt_venv):
dlt is not a dependency of the project.

    tests/perf/.venv-dlt/bin/python tests/perf/dlt_pipeline.py --api-base-url http://127.0.0.1:8765/api \\
        --api-key KEY --since 2026-03-02 --until 2026-03-06 --dest s3://bench/dlt --config parallel

S3 credentials and endpoint come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION and
AWS_ENDPOINT_URL, copied into dlt's own DESTINATION__FILESYSTEM__CREDENTIALS__* variables.
dlt's rest_api source has no notion of a 302 to signed storage: recordings are NOT archived.

Prints one JSON line: {"calls": n, "messages": m, "wall_s": s, "config": ..., "recordings": null, ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

_PAGE_SIZE = 100

# `--config parallel`: dlt's documented knobs for a faster pipeline.
# - Extract: `parallelized=True` on the dependent resource runs each parent's child fetch as a callable
#   in dlt's thread pool (docs: verified-sources/rest_api/advanced, "Per-resource parallelization for
#   dependent resources"); the pool size is `[extract] workers` (default 5) and `max_parallel_items`
#   (default 20) caps queued callables (docs: reference/performance, "Parallelism within a pipeline").
# - Normalize: a process pool of `[normalize] workers`, fed by extract file rotation
#   (`[data_writer] file_max_items`), same page.
# - Load: `[load] workers` threads (default 20), one per file, same page.
# Env names follow dlt's config provider: SECTION__KEY in upper case.
# 16 extract workers: a sweep (5/10/16/20) on 2,000 calls at 50 ms and 200 req/s peaked there; more
# threads only earn 429s. Normalize workers 1 vs 2 measured the same on a 2-core machine.
PARALLEL_ENV = {
    "EXTRACT__WORKERS": "16",
    "EXTRACT__MAX_PARALLEL_ITEMS": "20",
    "NORMALIZE__WORKERS": "2",
    "DATA_WRITER__FILE_MAX_ITEMS": "5000",
    "LOAD__WORKERS": "20",
}


def configure_environment(config: str, workdir: str) -> None:
    """Everything dlt reads is set here, before `import dlt`, so nothing comes from ~/.dlt."""
    env = os.environ
    # Keep dlt's state, config lookup and telemetry out of the user's home and off the network.
    env["DLT_DATA_DIR"] = workdir
    env["DLT_PROJECT_DIR"] = workdir
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    env.setdefault("NO_PROXY", "127.0.0.1,localhost")
    prefix = "DESTINATION__FILESYSTEM__CREDENTIALS__"
    env[prefix + "AWS_ACCESS_KEY_ID"] = env["AWS_ACCESS_KEY_ID"]
    env[prefix + "AWS_SECRET_ACCESS_KEY"] = env["AWS_SECRET_ACCESS_KEY"]
    env[prefix + "REGION_NAME"] = env.get("AWS_DEFAULT_REGION", "us-east-1")
    if env.get("AWS_ENDPOINT_URL"):
        env[prefix + "ENDPOINT_URL"] = env["AWS_ENDPOINT_URL"]
    if config == "parallel":
        # setdefault: a benchmark can still sweep one knob from outside.
        for name, value in PARALLEL_ENV.items():
            env.setdefault(name, value)


def rest_api_config(args: argparse.Namespace, *, parallel: bool) -> dict[str, Any]:
    paginator = {"type": "json_link", "next_url_path": "next"}
    messages: dict[str, Any] = {
        "name": "messages",
        "endpoint": {
            "path": "calls/{resources.calls.callId}/messages",
            "params": {"mode": "in_call", "pageSize": _PAGE_SIZE},
            "paginator": paginator,
            "data_selector": "results",
        },
        "include_from_parent": ["callId"],
    }
    if parallel:
        messages["parallelized"] = True
    return {
        "client": {
            "base_url": args.api_base_url.rstrip("/") + "/",
            "auth": {"type": "api_key", "name": "X-API-Key", "api_key": args.api_key, "location": "header"},
        },
        "resource_defaults": {"write_disposition": "append"},
        "resources": [
            {
                "name": "calls",
                "endpoint": {
                    "path": "calls",
                    # Explicit UTC offsets: the zone of a bare date is undocumented.
                    "params": {
                        "fromDate": f"{args.since}T00:00:00Z",
                        "toDate": f"{args.until}T23:59:59.999999Z",
                        "pageSize": _PAGE_SIZE,
                    },
                    "paginator": paginator,
                    "data_selector": "results",
                },
            },
            messages,
        ],
    }


def run(args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(rest_api_config(args, parallel=args.config == "parallel"), name="ultravox")
    pipeline = dlt.pipeline(
        pipeline_name=f"ultravox_{args.config}",
        pipelines_dir=os.path.join(workdir, "pipelines"),
        destination=dlt.destinations.filesystem(bucket_url=args.dest),
        dataset_name=args.dataset,
    )
    pipeline.run(source, loader_file_format="parquet")
    row_counts = dict(pipeline.last_trace.last_normalize_info.row_counts)
    return {
        "calls": row_counts.get("calls", 0),
        "messages": row_counts.get("messages", 0),
        "recordings": None,
        "note": "dlt rest_api does not archive audio (302 to signed storage URL is out of its scope)",
        "row_counts": row_counts,
        "dlt_version": dlt.__version__,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--api-base-url", required=True, help="e.g. http://127.0.0.1:8765/api")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--since", required=True, help="fromDate, e.g. 2026-03-02")
    parser.add_argument("--until", required=True, help="toDate, e.g. 2026-03-06")
    parser.add_argument("--dest", required=True, help="bucket_url, s3://bucket/prefix")
    parser.add_argument("--config", choices=["default", "parallel"], default="default")
    parser.add_argument("--dataset", default="ultravox", help="dlt dataset name (folder under --dest)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dlt-bench-") as workdir:
        configure_environment(args.config, workdir)
        started = time.monotonic()
        summary = run(args, workdir)
        summary["wall_s"] = round(time.monotonic() - started, 3)
    summary["config"] = args.config
    if args.config == "parallel":
        summary["settings"] = {"messages.parallelized": True, **{k: os.environ[k] for k in PARALLEL_ENV}}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
