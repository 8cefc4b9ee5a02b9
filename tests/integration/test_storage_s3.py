"""S3Storage against a real S3 server over HTTP (moto, or TEST_S3_ENDPOINT_URL).

Our code is never given the endpoint: it reaches the server only through AWS_ENDPOINT_URL, set by the
`s3_endpoint` fixture. Assertions read back through a separate boto3 client, the server's truth.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from support.contracts.conditional_writes import ConditionalWriteContract, ConditionalWriteRaces

from etl.errors import PreconditionFailed, StorageError
from etl.storage import ObjectInfo, S3Storage, Storage, open_storage
from etl.storage.s3 import default_s3_client

KEY = "recordings/call_date=2026-03-02/abc.wav"


@pytest.fixture
def storage(s3_bucket: str) -> Storage:
    return open_storage(f"s3://{s3_bucket}/archive/")


def test_put_bytes_sets_only_content_type(storage: Storage, s3_bucket: str, s3: Any) -> None:
    uri = storage.put_bytes("manifests/run.json", b'{"ok": true}', content_type="application/json")
    assert uri == f"s3://{s3_bucket}/archive/manifests/run.json"

    response = s3.head_object(Bucket=s3_bucket, Key="archive/manifests/run.json")
    assert response["ContentType"] == "application/json"
    assert response["Metadata"] == {}
    assert storage.get_bytes("manifests/run.json") == b'{"ok": true}'
    assert storage.head("manifests/run.json") == ObjectInfo(key="manifests/run.json", size=12)


def test_put_file_small(storage: Storage, s3_bucket: str, s3: Any, tmp_path: Path) -> None:
    source = tmp_path / "abc.wav"
    source.write_bytes(b"RIFF" + os.urandom(1000))
    uri = storage.put_file(KEY, source, content_type="audio/wav")
    assert uri == f"s3://{s3_bucket}/archive/{KEY}"

    response = s3.get_object(Bucket=s3_bucket, Key=f"archive/{KEY}")
    assert response["Body"].read() == source.read_bytes()
    assert response["ContentType"] == "audio/wav"
    assert response["Metadata"] == {}


def test_multipart_upload_is_byte_identical(
    storage: Storage, s3_bucket: str, s3: Any, tmp_path: Path
) -> None:
    source = tmp_path / "long-call.wav"
    source.write_bytes(os.urandom(40 * 1024 * 1024 + 123))
    storage.put_file(KEY, source, content_type="audio/wav")

    response = s3.head_object(Bucket=s3_bucket, Key=f"archive/{KEY}")
    # 16 MiB parts: 40 MiB is three parts, and S3 marks a multipart ETag with the part count.
    assert response["ETag"].strip('"').endswith("-3")
    assert response["Metadata"] == {}
    downloaded = storage.get_bytes(KEY)
    assert downloaded is not None
    assert hashlib.sha256(downloaded).digest() == hashlib.sha256(source.read_bytes()).digest()
    assert storage.head(KEY) == ObjectInfo(key=KEY, size=source.stat().st_size)


def test_missing_source_file_is_a_storage_error(storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"upload to s3://.*abc\.wav failed"):
        storage.put_file(KEY, tmp_path / "does-not-exist.wav")
    assert storage.head(KEY) is None


def test_missing_objects(storage: Storage) -> None:
    assert storage.get_bytes("nothing/here.json") is None
    assert storage.head("nothing/here.json") is None


def test_delete_is_idempotent(storage: Storage) -> None:
    storage.put_bytes("a/b.json", b"x")
    storage.delete("a/b.json")
    assert storage.get_bytes("a/b.json") is None
    storage.delete("a/b.json")


def test_list_keys_is_sorted_relative_and_paginated(s3_bucket: str, s3: Any) -> None:
    client = default_s3_client()
    pages: list[object] = []
    client.meta.events.register("after-call.s3.ListObjectsV2", lambda **_: pages.append(1))
    storage = S3Storage(s3_bucket, "archive", client=client, page_size=2)
    for key in ["b/2.json", "a/1.json", "a/x/3.json", "top.json", "ab.json"]:
        storage.put_bytes(key, b"x")
    # Outside the root: must never appear.
    s3.put_object(Bucket=s3_bucket, Key="elsewhere/z.json", Body=b"x")

    assert list(storage.list_keys()) == ["a/1.json", "a/x/3.json", "ab.json", "b/2.json", "top.json"]
    assert len(pages) == 3
    assert list(storage.list_keys("a/")) == ["a/1.json", "a/x/3.json"]
    assert list(storage.list_keys("a")) == ["a/1.json", "a/x/3.json", "ab.json"]
    assert list(storage.list_keys("missing/")) == []
    client.close()


def test_bucket_root_storage(s3_bucket: str) -> None:
    storage = open_storage(f"s3://{s3_bucket}")
    assert storage.put_bytes("x.json", b"1") == f"s3://{s3_bucket}/x.json"
    assert list(storage.list_keys()) == ["x.json"]


def test_concurrent_puts_from_threads(storage: Storage) -> None:
    keys = [f"calls/{i:03d}.json" for i in range(64)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(lambda key: storage.put_bytes(key, key.encode()), keys))
    assert list(storage.list_keys("calls/")) == keys
    assert storage.get_bytes("calls/007.json") == b"calls/007.json"


def test_escaping_keys_are_refused(storage: Storage) -> None:
    with pytest.raises(StorageError):
        storage.put_bytes("../outside.json", b"x")


@pytest.mark.usefixtures("s3_endpoint")
def test_missing_bucket_is_a_storage_error(tmp_path: Path) -> None:
    bucket = f"absent-{uuid.uuid4().hex[:12]}"
    storage = open_storage(f"s3://{bucket}/archive")
    source = tmp_path / "a.wav"
    source.write_bytes(b"x")

    with pytest.raises(StorageError, match=rf"put s3://{bucket}/archive/a\.json failed: NoSuchBucket"):
        storage.put_bytes("a.json", b"x")
    with pytest.raises(StorageError, match=bucket):
        storage.put_file("a.wav", source)
    with pytest.raises(StorageError, match="NoSuchBucket"):
        storage.get_bytes("a.json")
    # HEAD says only "404" for both a missing key and a missing bucket; the bucket must not pass
    # for an empty archive.
    with pytest.raises(StorageError, match=rf"head s3://{bucket}/archive/a\.json failed: NoSuchBucket"):
        storage.head("a.json")
    with pytest.raises(StorageError, match="NoSuchBucket"):
        list(storage.list_keys())


# --- conditional writes ---------------------------------------------------------------------------


class TestS3ConditionalWrites(ConditionalWriteContract):
    @pytest.fixture
    def storage(self, s3_bucket: str) -> Storage:
        return open_storage(f"s3://{s3_bucket}/archive/")

    def test_etag_and_content_type_are_the_servers(self, storage: Storage, s3_bucket: str, s3: Any) -> None:
        etag = storage.put_bytes_if(
            "_state/l.json", b"{}", if_none_match=True, content_type="application/json"
        )
        response = s3.head_object(Bucket=s3_bucket, Key="archive/_state/l.json")
        assert etag == response["ETag"]
        assert response["ContentType"] == "application/json"
        assert response["Metadata"] == {}
        # Unquoted works too: S3 compares ETags without the quotes.
        storage.put_bytes_if("_state/l.json", b"[]", if_match=etag.strip('"'))
        assert storage.get_bytes("_state/l.json") == b"[]"


# moto 5.2.5 checks the condition and then writes, without a lock around the two: truly simultaneous
# conditional writers can both succeed there, never on S3. The races run only against a real
# S3-compatible server named by TEST_S3_ENDPOINT_URL.
if os.environ.get("TEST_S3_ENDPOINT_URL"):

    class TestS3ConditionalWriteRaces(ConditionalWriteRaces, TestS3ConditionalWrites):
        pass


@pytest.mark.usefixtures("s3_endpoint")
def test_conditional_writes_to_a_missing_bucket_are_not_lost_races() -> None:
    storage = open_storage(f"s3://absent-{uuid.uuid4().hex[:12]}/archive")
    for attempt in (
        lambda: storage.put_bytes_if("l.json", b"x", if_none_match=True),
        lambda: storage.put_bytes_if("l.json", b"x", if_match="abc"),
        lambda: storage.delete_if("l.json", "abc"),
    ):
        with pytest.raises(StorageError, match="NoSuchBucket") as caught:
            attempt()
        assert not isinstance(caught.value, PreconditionFailed)


def test_failed_multipart_upload_is_aborted_and_leaves_nothing(
    s3_bucket: str, s3: Any, tmp_path: Path
) -> None:
    """A multipart upload that fails half-way is aborted: no object, no orphaned parts billed forever."""
    client = default_s3_client()
    parts_sent = 0

    def fail_second_part(**_: Any) -> None:
        nonlocal parts_sent
        parts_sent += 1
        if parts_sent == 2:
            raise ConnectionError("network dropped during part 2")

    client.meta.events.register("before-call.s3.UploadPart", fail_second_part)
    storage = S3Storage(s3_bucket, "archive", client=client)
    source = tmp_path / "big.wav"
    source.write_bytes(os.urandom(40 * 1024 * 1024))

    with pytest.raises(StorageError):
        storage.put_file("recordings/call_date=2026-03-02/big.wav", source)

    assert storage.head("recordings/call_date=2026-03-02/big.wav") is None
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_digest_returns_the_sha256_s3_verified_on_a_single_put(
    storage: Storage, s3_bucket: str, s3: Any
) -> None:
    data = os.urandom(3000)
    storage.put_checked(KEY, data, sha256=hashlib.sha256(data).digest())
    assert storage.digest(KEY) == ObjectInfo(KEY, 3000, sha256=hashlib.sha256(data).digest())
    # Written by another tool (botocore's default CRC checksum): no SHA-256, and not a multipart one.
    s3.put_object(Bucket=s3_bucket, Key=f"archive/{KEY}", Body=data)
    assert storage.digest(KEY) == ObjectInfo(KEY, 3000)
    assert storage.digest("recordings/missing.wav") is None


def test_digest_of_a_multipart_object_is_its_size_and_parted(storage: Storage) -> None:
    upload = storage.start_upload(KEY)
    upload.put_part(1, 0, b"a" * (5 * 1024 * 1024))
    upload.put_part(2, 5 * 1024 * 1024, b"b" * 10)
    upload.complete()
    assert storage.digest(KEY) == ObjectInfo(KEY, 5 * 1024 * 1024 + 10, sha256=None, parted=True)
