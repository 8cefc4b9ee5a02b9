"""S3 hardening against the test S3 server: a SHA-256 on every single PUT, server-side encryption,
and the expected bucket owner on every request (issue 11, item 7)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from etl.storage import S3Options, S3Storage, open_storage

KEY = "calls/call_date=2026-03-02/data.parquet"


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_every_single_put_carries_a_sha256_the_server_checked(
    s3_bucket: str, s3: Any, tmp_path: Path
) -> None:
    storage = open_storage(f"s3://{s3_bucket}/a")
    parquet = tmp_path / "data.parquet"
    parquet.write_bytes(b"PAR1" + bytes(range(256)) * 64 + b"PAR1")
    storage.put_file(KEY, parquet)
    storage.put_bytes("_state/partitions/call_date=2026-03-02.json", b'{"final": true}')
    storage.put_bytes_if("_state/leases/call_date=2026-03-02.json", b"{}", if_none_match=True)
    for key, body in [
        (KEY, parquet.read_bytes()),
        ("_state/partitions/call_date=2026-03-02.json", b'{"final": true}'),
        ("_state/leases/call_date=2026-03-02.json", b"{}"),
    ]:
        head = s3.head_object(Bucket=s3_bucket, Key=f"a/{key}", ChecksumMode="ENABLED")
        assert head.get("ChecksumSHA256") == sha256_b64(body), key


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (S3Options(sse="AES256"), {"ServerSideEncryption": "AES256"}),
        (
            S3Options(sse="aws:kms", sse_kms_key_id="alias/archive"),
            {"ServerSideEncryption": "aws:kms"},
        ),
    ],
)
def test_objects_are_encrypted_as_asked(
    s3_bucket: str, s3: Any, tmp_path: Path, options: S3Options, expected: dict[str, str]
) -> None:
    storage = open_storage(f"s3://{s3_bucket}/enc", s3_options=options)
    storage.put_bytes("_runs/r.json", b"{}")
    upload = storage.start_upload("recordings/call_date=2026-03-02/c.wav")
    upload.put_part(1, 0, b"RIFF" * 1000)
    upload.complete()
    for key in ("enc/_runs/r.json", "enc/recordings/call_date=2026-03-02/c.wav"):
        head = s3.head_object(Bucket=s3_bucket, Key=key)
        assert {name: head.get(name) for name in expected} == expected, key
        if options.sse_kms_key_id:
            assert options.sse_kms_key_id in str(head.get("SSEKMSKeyId")), key


def test_every_request_names_the_expected_bucket_owner(s3_bucket: str) -> None:
    # moto does not enforce ExpectedBucketOwner (its account, 123456789012, is used here); S3 answers
    # 403 AccessDenied to a request naming another owner. So the test checks what is sent.
    storage = S3Storage(s3_bucket, "own", options=S3Options(expected_bucket_owner="123456789012"))
    sent: list[tuple[str, str | None]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        sent.append((model.name, params["headers"].get("x-amz-expected-bucket-owner")))

    storage._client.meta.events.register("before-call.s3", record)
    storage.put_bytes("_runs/r.json", b"{}")
    assert storage.get_bytes("_runs/r.json") == b"{}"
    storage.head("_runs/r.json")
    list(storage.list_keys("_runs/"))
    storage.delete("_runs/r.json")
    assert {name for name, _ in sent} >= {
        "PutObject",
        "GetObject",
        "HeadObject",
        "ListObjectsV2",
        "DeleteObject",
    }
    assert {owner for _, owner in sent} == {"123456789012"}
