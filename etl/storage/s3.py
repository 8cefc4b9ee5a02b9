"""The S3 backend: objects under `s3://bucket/prefix`, through one thread-safe boto3 client.

The only module that imports boto3/botocore; their exceptions become `StorageError` here.
"""

from __future__ import annotations

import base64
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import boto3
import boto3.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from etl.errors import PreconditionFailed, StorageError
from etl.storage.base import ByteData, ObjectInfo, PartedUpload, check_condition, check_key, check_prefix

# boto3 ships without type information; this alias only documents what the value is.
S3Client: TypeAlias = Any

_MIB = 1024 * 1024
# The pipeline runs up to ~32 worker threads; most objects go up in one PUT (one connection each),
# and the headroom covers the parts of the few recordings large enough for multipart.
_MAX_POOL_CONNECTIONS = 64
_MULTIPART_CHUNK = 16 * _MIB
_UPLOAD_CONCURRENCY = 4
_LIST_PAGE_SIZE = 1000


def default_s3_client() -> S3Client:
    """An S3 client configured only by the standard AWS chain (profile, region, endpoint, keys).

    Endpoints come from AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, which botocore honours itself, so
    a test server or an S3-compatible store needs no flag of ours.
    """
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=_MAX_POOL_CONNECTIONS,
        # botocore signs a body by hashing it with SHA-256 whenever it finds no checksum header *it*
        # chose: over plain HTTP always, and over HTTPS too when we send our own ChecksumSHA256
        # (botocore >= 1.36 then skips its CRC32 but signs the payload instead). That is a second
        # SHA-256 pass over every recording. Every body we send carries a checksum S3 verifies
        # (ours for recordings, botocore's default CRC32 for the rest): over HTTPS this is what
        # botocore itself does for a body with a checksum it chose; over plain HTTP (test servers,
        # a local MinIO) it also spares the hash, the checksum header still being signed.
        s3={"payload_signing_enabled": False},
        # Recordings go up as memoryviews of a pooled buffer (one PUT of its first N bytes, or one
        # part per half), which the parameter validator refuses although the HTTP layer sends them
        # like bytes; the alternative, a copy of each recording into a bytes object, costs a memory
        # pass per byte. Every parameter we pass is built by this module.
        parameter_validation=False,
    )
    try:
        return boto3.session.Session().client("s3", config=config)
    except (BotoCoreError, boto3.exceptions.Boto3Error) as exc:
        # e.g. AWS_PROFILE names a profile that does not exist.
        raise StorageError(f"creating the S3 client failed: {_error_detail(exc)}") from exc


# --- S3 -----------------------------------------------------------------------------------------


def _error_detail(exc: BaseException) -> str:
    # ClientError's own str() is fine too, but code + message is shorter and never carries headers.
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "unknown")
        message = error.get("Message", "")
        return f"{code}: {message}" if message else str(code)
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def _s3_errors(operation: str, uri: str) -> Iterator[None]:
    try:
        yield
    except (BotoCoreError, ClientError, boto3.exceptions.Boto3Error, OSError) as exc:
        raise StorageError(f"{operation} {uri} failed: {_error_detail(exc)}") from exc


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code"))


def _is_not_found(exc: ClientError) -> bool:
    # GetObject says NoSuchKey; HeadObject has no body, so only the bare status survives.
    return _error_code(exc) in ("NoSuchKey", "404", "NotFound")


def _lost_race(exc: ClientError) -> bool:
    # 412: the condition did not hold. 409 ConditionalRequestConflict: another conditional write
    # to the same key was in flight; S3 suggests retrying, and for a lease that is a re-read.
    return _error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict")


@dataclass(frozen=True)
class S3Options:
    """Bucket-wide request options (Settings s3_*): every default leaves the request as boto3 makes it."""

    # Server-side encryption of every object written: "AES256" (SSE-S3) or "aws:kms" (SSE-KMS, with
    # `sse_kms_key_id` or the account's default key). None: the bucket's default encryption.
    sse: str | None = None
    sse_kms_key_id: str | None = None
    # The account that must own the bucket: S3 refuses every request (403) to a bucket another
    # account owns, so a mistyped or re-created bucket name never receives the archive.
    expected_bucket_owner: str | None = None


_WRITES = frozenset({"PutObject", "CreateMultipartUpload"})


def apply_options(client: S3Client, options: S3Options) -> None:
    """Add `options` to every request of `client`, and a SHA-256 checksum to every single PUT.

    Through botocore's own parameter hook, so each request boto3 makes (the transfer manager's
    included, and any upload path added later) carries them without every call site repeating them.
    """

    def add(params: dict[str, Any], model: Any, **_: Any) -> None:
        if options.expected_bucket_owner:
            params.setdefault("ExpectedBucketOwner", options.expected_bucket_owner)
        if model.name in _WRITES and options.sse:
            params.setdefault("ServerSideEncryption", options.sse)
            if options.sse_kms_key_id:
                params.setdefault("SSEKMSKeyId", options.sse_kms_key_id)
        if model.name == "PutObject" and "ChecksumSHA256" not in params:
            # botocore computes it and S3 refuses the PUT (BadDigest) if the bytes it got differ;
            # recordings bring their own (`put_checked`), hashed once as they arrive.
            params.setdefault("ChecksumAlgorithm", "SHA256")

    client.meta.events.register("provide-client-params.s3", add)


class S3Storage:
    """Objects under `s3://bucket/prefix`, through one thread-safe boto3 client."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: S3Client | None = None,
        page_size: int = _LIST_PAGE_SIZE,
        options: S3Options | None = None,
    ) -> None:
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._client = client if client is not None else default_s3_client()
        apply_options(self._client, options or S3Options())
        self._page_size = page_size
        # Multipart uploads stay invisible until CompleteMultipartUpload, and boto3 aborts the
        # upload when a part fails, so both paths publish atomically.
        self._transfer = TransferConfig(
            multipart_threshold=_MULTIPART_CHUNK,
            multipart_chunksize=_MULTIPART_CHUNK,
            max_concurrency=_UPLOAD_CONCURRENCY,
        )
        self._bucket_confirmed = False

    @property
    def uri(self) -> str:
        return f"s3://{self._bucket}/{self._prefix}" if self._prefix else f"s3://{self._bucket}"

    def uri_for(self, key: str) -> str:
        return f"s3://{self._bucket}/{self._object_key(key)}"

    def _object_key(self, key: str) -> str:
        check_key(key)
        return f"{self._prefix}/{key}" if self._prefix else key

    def _extra_args(self, content_type: str | None) -> dict[str, str]:
        # Content type is the only metadata we ever set; anything else would leak into the bucket.
        return {"ContentType": content_type} if content_type else {}

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> str:
        uri = self.uri_for(key)
        with _s3_errors("upload to", uri):
            if path.stat().st_size < _MULTIPART_CHUNK:
                # One PUT: boto3's transfer manager would start a thread pool for every object.
                with path.open("rb") as body:
                    self._client.put_object(
                        Bucket=self._bucket,
                        Key=self._object_key(key),
                        Body=body,
                        **self._extra_args(content_type),
                    )
                return uri
            self._client.upload_file(
                Filename=str(path),
                Bucket=self._bucket,
                Key=self._object_key(key),
                ExtraArgs=self._extra_args(content_type),
                Config=self._transfer,
            )
        return uri

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str:
        return self._put(key, data, self._extra_args(content_type))

    def put_checked(self, key: str, data: ByteData, *, sha256: bytes, content_type: str | None = None) -> str:
        # Given a checksum header, botocore computes none of its own; S3 checks this one against
        # the bytes it received and refuses the PUT (BadDigest) if they differ.
        checksum = {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": base64.b64encode(sha256).decode("ascii")}
        return self._put(key, data, {**checksum, **self._extra_args(content_type)})

    def _put(self, key: str, data: ByteData, extra: dict[str, str]) -> str:
        uri = self.uri_for(key)
        with _s3_errors("put", uri):
            # A single PUT replaces the object in one step: readers get the old or the new bytes.
            self._client.put_object(Bucket=self._bucket, Key=self._object_key(key), Body=data, **extra)
        return uri

    def start_upload(self, key: str, *, content_type: str | None = None) -> PartedUpload:
        uri = self.uri_for(key)
        object_key = self._object_key(key)
        with _s3_errors("start upload to", uri):
            # CRC32 per part: S3 verifies each part, and no byte is hashed twice with SHA-256
            # (a multipart SHA-256 would be a hash of per-part hashes, not the recording's digest,
            # which the caller computes once and records in the row).
            response = self._client.create_multipart_upload(
                Bucket=self._bucket,
                Key=object_key,
                ChecksumAlgorithm="CRC32",
                **self._extra_args(content_type),
            )
        return _S3Upload(self._client, self._bucket, object_key, uri, str(response["UploadId"]))

    def get_bytes(self, key: str) -> bytes | None:
        found = self.get_with_etag(key)
        return None if found is None else found[0]

    def get_file(self, key: str, path: Path) -> bool:
        uri = self.uri_for(key)
        with _s3_errors("download", uri):
            try:
                self._client.download_file(self._bucket, self._object_key(key), str(path))
            except ClientError as exc:
                if _is_not_found(exc):
                    return False
                raise
            return True

    def head(self, key: str) -> ObjectInfo | None:
        response = self._head_object(key)
        return None if response is None else ObjectInfo(key=key, size=int(response["ContentLength"]))

    def digest(self, key: str) -> ObjectInfo | None:
        # The same HEAD, asking for the checksum S3 verified when the object was written. Not asked
        # for by `head`: with SSE-KMS it needs kms:Decrypt, which a sync never needed.
        response = self._head_object(key, ChecksumMode="ENABLED")
        if response is None:
            return None
        # A multipart object's ETag ends in -<parts>, and its checksums are of its parts.
        parted = "-" in str(response.get("ETag", "")).strip('"')
        checksum = response.get("ChecksumSHA256")
        sha256 = None
        if checksum is not None and "-" not in checksum and response.get("ChecksumType") != "COMPOSITE":
            sha256 = base64.b64decode(checksum)  # the whole object's, not a checksum of its parts
        return ObjectInfo(key=key, size=int(response["ContentLength"]), sha256=sha256, parted=parted)

    def _head_object(self, key: str, **extra: str) -> dict[str, Any] | None:
        """The HEAD response for `key`; None when the object is absent (and the bucket is there)."""
        uri = self.uri_for(key)
        with _s3_errors("head", uri):
            try:
                response: dict[str, Any] = self._client.head_object(
                    Bucket=self._bucket, Key=self._object_key(key), **extra
                )
            except ClientError as exc:
                if not _is_not_found(exc):
                    raise
                self._confirm_bucket(uri)
                return None
            return response

    def _confirm_bucket(self, uri: str) -> None:
        """Tell a missing object from a missing bucket, which HEAD reports with the same bare 404."""
        # Checked once per storage: a typo'd bucket must fail loudly, not look like an empty archive.
        # A race between threads only costs a duplicate HeadBucket.
        if self._bucket_confirmed:
            return
        try:
            self._client.head_bucket(Bucket=self._bucket)
        except ClientError as exc:
            if _is_not_found(exc):
                raise StorageError(
                    f"head {uri} failed: NoSuchBucket: bucket {self._bucket} does not exist"
                ) from exc
            raise
        self._bucket_confirmed = True

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        check_prefix(prefix)
        root = f"{self._prefix}/" if self._prefix else ""
        with _s3_errors("list", f"{self.uri.rstrip('/')}/{prefix}"):
            paginator = self._client.get_paginator("list_objects_v2")
            pages = paginator.paginate(
                Bucket=self._bucket, Prefix=root + prefix, PaginationConfig={"PageSize": self._page_size}
            )
            # S3 returns keys in UTF-8 byte order, which is Python's str order: already sorted.
            for page in pages:
                for item in page.get("Contents", []):
                    key = str(item["Key"])[len(root) :]
                    # Console-made "folder" placeholders end in a slash and are not objects of ours.
                    if key and not key.endswith("/"):
                        yield key

    def delete(self, key: str) -> None:
        uri = self.uri_for(key)
        with _s3_errors("delete", uri):
            self._client.delete_object(Bucket=self._bucket, Key=self._object_key(key))

    def get_with_etag(self, key: str) -> tuple[bytes, str] | None:
        uri = self.uri_for(key)
        with _s3_errors("get", uri):
            try:
                response = self._client.get_object(Bucket=self._bucket, Key=self._object_key(key))
            except ClientError as exc:
                if _is_not_found(exc):
                    return None
                raise
            body = response["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
            # Body and ETag come from one response, so they describe the same version.
            return data, str(response["ETag"])

    def put_bytes_if(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_type: str | None = None,
    ) -> str:
        check_condition(if_none_match, if_match)
        uri = self.uri_for(key)
        condition = {"IfNoneMatch": "*"} if if_match is None else {"IfMatch": if_match}
        with _s3_errors("conditional put", uri):
            try:
                # One PUT, never multipart: S3 checks the condition and writes in one step.
                response = self._client.put_object(
                    Bucket=self._bucket,
                    Key=self._object_key(key),
                    Body=data,
                    **condition,
                    **self._extra_args(content_type),
                )
            except ClientError as exc:
                # If-Match on a missing key answers 404 NoSuchKey: the object we expected is gone.
                if _lost_race(exc) or (if_match is not None and _error_code(exc) == "NoSuchKey"):
                    raise PreconditionFailed(f"conditional put {uri} failed: {_error_detail(exc)}") from exc
                raise
            return str(response["ETag"])

    def delete_if(self, key: str, etag: str) -> None:
        uri = self.uri_for(key)
        with _s3_errors("conditional delete", uri):
            try:
                self._client.delete_object(Bucket=self._bucket, Key=self._object_key(key), IfMatch=etag)
            except ClientError as exc:
                if _error_code(exc) == "NoSuchKey":
                    return
                if _lost_race(exc):
                    raise PreconditionFailed(
                        f"conditional delete {uri} failed: {_error_detail(exc)}"
                    ) from exc
                raise


class _S3Upload:
    """A multipart upload; `put_part` is safe to call from several threads at once."""

    def __init__(self, client: S3Client, bucket: str, object_key: str, uri: str, upload_id: str) -> None:
        self._client = client
        self._where = {"Bucket": bucket, "Key": object_key, "UploadId": upload_id}
        self._uri = uri
        self._parts: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def put_part(self, number: int, offset: int, data: ByteData) -> None:
        # zlib.crc32 runs at several GB/s and releases the GIL on large buffers.
        checksum = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode("ascii")
        with _s3_errors(f"upload part {number} of", self._uri):
            response = self._client.upload_part(
                **self._where, PartNumber=number, Body=data, ChecksumCRC32=checksum
            )
        with self._lock:
            self._parts[number] = {"PartNumber": number, "ETag": response["ETag"], "ChecksumCRC32": checksum}

    def complete(self) -> str:
        with self._lock:
            parts = [self._parts[number] for number in sorted(self._parts)]
        with _s3_errors("complete upload to", self._uri):
            self._client.complete_multipart_upload(**self._where, MultipartUpload={"Parts": parts})
        return self._uri

    def abort(self) -> None:
        with _s3_errors("abort upload to", self._uri):
            self._client.abort_multipart_upload(**self._where)
