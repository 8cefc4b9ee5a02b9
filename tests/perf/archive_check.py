"""Read recordings back from S3 and compare them with the simulator's ground truth (benchmarks only).

The benchmark's audio cases must show that what was archived is exact, not just fast: every recording
object is read back and its SHA-256 compared with what the simulator served, streamed in 1 MiB chunks
so that checking a GiB of audio costs no more memory than one chunk.
"""

from __future__ import annotations

import hashlib
from typing import Any

import boto3


def recording_truth(sim: Any) -> dict[str, dict[str, Any]]:
    """call_id -> the simulator's recording facts (status, bytes, sha256); hashes are computed here,
    before any measured run, so the simulator's hashing never competes with a client's CPU."""
    return {line["call_id"]: line["recording"] for line in sim.iter_truth(messages=False)}


def check_recordings(bucket: str, prefix: str, truth: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Objects under `prefix` (keys ending in <call_id>.wav) against `truth`."""
    s3 = boto3.session.Session().client("s3")
    objects = archived_bytes = mismatched = 0
    seen: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            call_id = item["Key"].rsplit("/", 1)[-1].removesuffix(".wav")
            digest = hashlib.sha256()
            for chunk in s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].iter_chunks(1 << 20):
                digest.update(chunk)
            objects += 1
            archived_bytes += item["Size"]
            seen.add(call_id)
            if truth.get(call_id, {}).get("sha256") != digest.hexdigest():
                mismatched += 1
    ready = {call_id for call_id, recording in truth.items() if recording["status"] == "ready"}
    return {
        "objects": objects,
        "bytes": archived_bytes,
        "sha256_mismatches": mismatched,
        "ready_in_truth": len(ready),
        "missing": len(ready - seen),
    }


def empty_bucket(bucket: str) -> None:
    """Delete every object: the moto server holds them in memory, and the audio cases write GiBs."""
    s3 = boto3.session.Session().client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
