"""The baseline a user would write by hand: one request at a time, then Parquet and audio to S3.

Deliberately naive (it is what the benchmark compares the archiver against): httpx.Client, follow
`next` page by page, for each call fetch its in_call messages and its recording, keep every row in
memory, write `calls.parquet` and `messages.parquet` once at the end. Audio goes up per call. The only
robustness is a retry on 429/5xx honouring Retry-After, as any user hitting a rate limit would add.

    python tests/perf/sequential_client.py --api-base-url http://127.0.0.1:8765/api \\
        --api-key KEY --since 2026-03-02 --until 2026-03-06 --dest s3://bench/sequential \\
        --limit-calls 300

Prints one JSON line: {"calls": n, "messages": m, "recordings": r, ..., "wall_s": s}.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pyarrow as pa
import pyarrow.parquet as pq

_PAGE_SIZE = 100
_MAX_ATTEMPTS = 6


def get_with_retry(client: httpx.Client, url: str, **kwargs: Any) -> httpx.Response:
    for attempt in range(_MAX_ATTEMPTS):
        response = client.get(url, **kwargs)
        if response.status_code != 429 and response.status_code < 500:
            return response
        if attempt == _MAX_ATTEMPTS - 1:
            break
        time.sleep(float(response.headers.get("Retry-After", 2**attempt)))
    response.raise_for_status()
    return response


def paginate(client: httpx.Client, url: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    next_url: str | None = url
    query: dict[str, Any] | None = params
    while next_url:
        response = get_with_retry(client, next_url, params=query)
        response.raise_for_status()
        body = response.json()
        yield from body["results"]
        # `next` is absolute and already carries the filters: send it as given.
        next_url, query = body.get("next"), None


def fetch_recording(api: httpx.Client, storage: httpx.Client, base_url: str, call_id: str) -> bytes | None:
    response = get_with_retry(api, f"{base_url}/calls/{call_id}/recording")
    if response.status_code == 200:
        return response.content
    if response.status_code != 302:
        return None  # 425 not ready yet, 4xx recording disabled: nothing to archive now
    # The signed URL is on another host: fetch it with a client that never sends the API key.
    audio = get_with_retry(storage, response.headers["Location"])
    audio.raise_for_status()
    return audio.content


def flatten(row: dict[str, Any]) -> dict[str, Any]:
    # Nested objects (medium, metadata, timespan...) as JSON text: Parquet cannot hold `{"webRtc": {}}`.
    return {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}


def to_parquet(rows: list[dict[str, Any]]) -> bytes:
    flat = [flatten(row) for row in rows]
    # Columns from every row, not just the first: optional fields appear only on some calls.
    columns = sorted({key for row in flat for key in row})
    table = pa.table({name: [row.get(name) for row in flat] for name in columns})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def split_s3_url(dest: str) -> tuple[str, str]:
    parts = urlsplit(dest)
    if parts.scheme != "s3" or not parts.netloc:
        raise SystemExit(f"--dest must look like s3://bucket/prefix, got {dest!r}")
    return parts.netloc, parts.path.strip("/")


def run(args: argparse.Namespace) -> dict[str, Any]:
    bucket, prefix = split_s3_url(args.dest)
    s3 = boto3.client("s3")
    base_url = args.api_base_url.rstrip("/")
    calls: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    recordings = 0
    audio_bytes = 0
    with (
        httpx.Client(headers={"X-API-Key": args.api_key}, timeout=60.0) as api,
        httpx.Client(timeout=60.0) as storage,
    ):
        # Explicit UTC offsets: the zone of a bare date is undocumented (the simulator's is not UTC).
        since, until = f"{args.since}T00:00:00Z", f"{args.until}T23:59:59.999999Z"
        listing = {"fromDate": since, "toDate": until, "pageSize": _PAGE_SIZE}
        for call in paginate(api, f"{base_url}/calls", listing):
            if args.limit_calls is not None and len(calls) >= args.limit_calls:
                break
            call_id = call["callId"]
            calls.append(call)
            message_params = {"mode": "in_call", "pageSize": _PAGE_SIZE}
            for message in paginate(api, f"{base_url}/calls/{call_id}/messages", message_params):
                messages.append({"callId": call_id, **message})
            audio = fetch_recording(api, storage, base_url, call_id)
            if audio is not None:
                s3.put_object(Bucket=bucket, Key=f"{prefix}/recordings/{call_id}.wav", Body=audio)
                recordings += 1
                audio_bytes += len(audio)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/calls.parquet", Body=to_parquet(calls))
    s3.put_object(Bucket=bucket, Key=f"{prefix}/messages.parquet", Body=to_parquet(messages))
    return {
        "calls": len(calls),
        "messages": len(messages),
        "recordings": recordings,
        "audio_bytes": audio_bytes,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--api-base-url", required=True, help="e.g. http://127.0.0.1:8765/api")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--since", required=True, help="fromDate, e.g. 2026-03-02")
    parser.add_argument("--until", required=True, help="toDate, e.g. 2026-03-06")
    parser.add_argument("--dest", required=True, help="s3://bucket/prefix")
    parser.add_argument("--limit-calls", type=int, default=None, help="stop after this many calls")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    summary = run(args)
    summary["wall_s"] = round(time.monotonic() - started, 3)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
