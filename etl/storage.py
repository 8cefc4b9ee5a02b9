"""Where archived objects go: an S3 bucket or a local directory, behind one small interface.

This is the only module that imports boto3/botocore. Every library or OS exception is converted to
`StorageError` here, with a message naming the operation and the object URI, so the pipeline never
has to know which backend did the work.

Both backends publish atomically: a reader sees a whole object or none at all, never a prefix of
one. The pipeline calls storage from worker threads, so every method is safe to call concurrently.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeAlias
from urllib.parse import quote, unquote, urlsplit

import boto3
import boto3.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from etl.errors import StorageError

# boto3 ships without type information; this alias only documents what the value is.
S3Client: TypeAlias = Any

_MIB = 1024 * 1024
# The pipeline runs up to ~32 worker threads; most objects go up in one PUT (one connection each),
# and the headroom covers the parts of the few recordings large enough for multipart.
_MAX_POOL_CONNECTIONS = 64
_MULTIPART_CHUNK = 16 * _MIB
_UPLOAD_CONCURRENCY = 4
_LIST_PAGE_SIZE = 1000
_COPY_BUFFER = _MIB
_TEMP_PREFIX = ".tmp-"
# A temp file this old cannot belong to a write still in progress.
_STALE_TEMP_AGE_S = 3600.0


@dataclass(frozen=True)
class ObjectInfo:
    """What `head` knows about a stored object."""

    key: str
    size: int


class Storage(Protocol):
    """A destination for archived objects; keys are relative, slash-separated paths."""

    @property
    def uri(self) -> str:
        """The root URI: `s3://bucket/prefix` or `file:///abs/path`."""
        ...

    def uri_for(self, key: str) -> str: ...

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> str: ...

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str: ...

    def get_bytes(self, key: str) -> bytes | None: ...

    def get_file(self, key: str, path: Path) -> bool:
        """Stream an object into a local file; False when there is no such object."""
        ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def list_keys(self, prefix: str = "") -> Iterator[str]: ...

    def delete(self, key: str) -> None: ...


def open_storage(dest: str) -> Storage:
    """Open the destination named by `dest`: `s3://bucket[/prefix]`, `file:///abs/path` or a path."""
    if not dest.strip():
        raise StorageError("storage destination is empty")
    if "://" not in dest:
        return LocalStorage(Path(dest))
    parts = urlsplit(dest)
    if parts.scheme == "s3":
        return _open_s3(dest, parts.netloc, parts.path)
    if parts.scheme == "file":
        # `file://host/path` names another machine's file; only the local host is meaningful here.
        if parts.netloc not in ("", "localhost"):
            raise StorageError(f"file destination must be file:///absolute/path, got {dest!r}")
        return LocalStorage(Path(unquote(parts.path)))
    raise StorageError(
        f"unsupported storage destination {dest!r}: use s3://bucket/prefix, file:///path or a directory path"
    )


def _open_s3(dest: str, bucket: str, path: str) -> S3Storage:
    if not bucket:
        raise StorageError(f"S3 destination has no bucket: {dest!r}")
    prefix = path.strip("/")
    if prefix:
        _check_key(prefix, what="S3 prefix")
    return S3Storage(bucket, prefix)


def default_s3_client() -> S3Client:
    """An S3 client configured only by the standard AWS chain (profile, region, endpoint, keys).

    Endpoints come from AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, which botocore honours itself, so
    a test server or an S3-compatible store needs no flag of ours.
    """
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=_MAX_POOL_CONNECTIONS,
    )
    try:
        return boto3.session.Session().client("s3", config=config)
    except (BotoCoreError, boto3.exceptions.Boto3Error) as exc:
        # e.g. AWS_PROFILE names a profile that does not exist.
        raise StorageError(f"creating the S3 client failed: {_error_detail(exc)}") from exc


# --- keys ---------------------------------------------------------------------------------------


def _check_key(key: str, *, what: str = "key") -> None:
    """Refuse keys that would escape the root or mean different things on S3 and on disk."""
    if not key:
        raise StorageError(f"{what} is empty")
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise StorageError(f"{what} must be a relative, slash-separated path: {key!r}")
    for part in key.split("/"):
        # S3 would keep `a//b` and `a/./b` as distinct keys while a filesystem collapses them.
        if part in ("", ".", ".."):
            raise StorageError(f"{what} has an empty, '.' or '..' segment: {key!r}")
        # Local listings hide in-flight temp files; a real object with that name would vanish.
        if part.startswith(_TEMP_PREFIX):
            raise StorageError(f"{what} segment may not start with {_TEMP_PREFIX!r}: {key!r}")


def _check_prefix(prefix: str) -> None:
    """A listing prefix may be empty and may end in a slash; otherwise it follows the key rules."""
    body = prefix.removesuffix("/")
    if body:
        _check_key(body, what="prefix")
    elif prefix:
        raise StorageError(f"prefix must not start with '/': {prefix!r}")


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


def _is_not_found(exc: ClientError) -> bool:
    # GetObject says NoSuchKey; HeadObject has no body, so only the bare status survives.
    return str(exc.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404", "NotFound")


class S3Storage:
    """Objects under `s3://bucket/prefix`, through one thread-safe boto3 client."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: S3Client | None = None,
        page_size: int = _LIST_PAGE_SIZE,
    ) -> None:
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._client = client if client is not None else default_s3_client()
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
        _check_key(key)
        return f"{self._prefix}/{key}" if self._prefix else key

    def _extra_args(self, content_type: str | None) -> dict[str, str]:
        # Content type is the only metadata we ever set; anything else would leak into the bucket.
        return {"ContentType": content_type} if content_type else {}

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> str:
        uri = self.uri_for(key)
        with _s3_errors("upload to", uri):
            self._client.upload_file(
                Filename=str(path),
                Bucket=self._bucket,
                Key=self._object_key(key),
                ExtraArgs=self._extra_args(content_type),
                Config=self._transfer,
            )
        return uri

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str:
        uri = self.uri_for(key)
        with _s3_errors("put", uri):
            # A single PUT replaces the object in one step: readers get the old or the new bytes.
            self._client.put_object(
                Bucket=self._bucket, Key=self._object_key(key), Body=data, **self._extra_args(content_type)
            )
        return uri

    def get_bytes(self, key: str) -> bytes | None:
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
            return data

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
        uri = self.uri_for(key)
        with _s3_errors("head", uri):
            try:
                response = self._client.head_object(Bucket=self._bucket, Key=self._object_key(key))
            except ClientError as exc:
                if not _is_not_found(exc):
                    raise
                self._confirm_bucket(uri)
                return None
            return ObjectInfo(key=key, size=int(response["ContentLength"]))

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
        _check_prefix(prefix)
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


# --- local directory ----------------------------------------------------------------------------


@contextmanager
def _os_errors(operation: str, uri: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise StorageError(f"{operation} {uri} failed: {type(exc).__name__}: {exc.strerror or exc}") from exc


def _file_uri(path: Path) -> str:
    # Path.as_uri() escapes "=", which would turn Hive partitions (call_date=...) into
    # call_date%3D...; RFC 3986 allows sub-delims in a path, so only what must be escaped is.
    return "file://" + quote(path.as_posix(), safe="/:@!$&'()*+,;=")


def _fsync_dir(directory: Path) -> None:
    # The rename lives in the directory entry; without this a crash can forget a "published" file.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage:
    """Objects as files under a root directory, published by write-temp-then-rename."""

    def __init__(self, root: Path) -> None:
        # Resolved once, so every URI we hand out is absolute and free of `..`.
        self._root = root.expanduser().resolve()

    @property
    def root(self) -> Path:
        return self._root

    @property
    def uri(self) -> str:
        return _file_uri(self._root)

    def uri_for(self, key: str) -> str:
        return _file_uri(self._path_for(key))

    def _path_for(self, key: str) -> Path:
        _check_key(key)
        return self._root.joinpath(*key.split("/"))

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> str:
        # A filesystem has nowhere to keep content_type; S3 is where it matters.
        uri = self.uri_for(key)
        with _os_errors("copy to", uri), path.open("rb") as source:
            self._publish(self._path_for(key), lambda out: shutil.copyfileobj(source, out, _COPY_BUFFER))
        return uri

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str:
        uri = self.uri_for(key)
        with _os_errors("write", uri):
            self._publish(self._path_for(key), lambda out: out.write(data))
        return uri

    def _publish(self, target: Path, write: Callable[[BinaryIO], object]) -> None:
        """Write to a temp file beside `target`, then rename: same filesystem, so the swap is atomic."""
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f"{_TEMP_PREFIX}{uuid.uuid4().hex}")
        # O_EXCL: never write into someone else's file; mode 0o666 lets the umask decide, as for
        # any other file the user creates (mkstemp would force 0o600).
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)

    def get_bytes(self, key: str) -> bytes | None:
        path = self._path_for(key)
        with _os_errors("read", _file_uri(path)):
            try:
                return path.read_bytes()
            # A "directory" key or a file in place of a parent is simply no object, as on S3.
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return None

    def get_file(self, key: str, path: Path) -> bool:
        source = self._path_for(key)
        with _os_errors("read", _file_uri(source)):
            try:
                shutil.copyfile(source, path)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return False
            return True

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path_for(key)
        with _os_errors("stat", _file_uri(path)):
            try:
                info = path.stat()
            except (FileNotFoundError, NotADirectoryError):
                return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return ObjectInfo(key=key, size=info.st_size)

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        _check_prefix(prefix)
        # S3 prefixes are plain string prefixes, so walk the deepest directory the prefix names in
        # full and filter the rest by string.
        directory = prefix.rpartition("/")[0]
        base = self._root.joinpath(*directory.split("/")) if directory else self._root
        with _os_errors("list", _file_uri(base)):
            keys = [key for key in self._walk(base) if key.startswith(prefix)]
        yield from sorted(keys)

    def _walk(self, base: Path) -> Iterator[str]:
        if not base.is_dir():
            return

        def fail(exc: OSError) -> None:
            raise exc

        for dirpath, _dirnames, filenames in os.walk(base, onerror=fail):
            relative = Path(dirpath).relative_to(self._root).as_posix()
            for name in filenames:
                if not name.startswith(_TEMP_PREFIX):
                    yield name if relative == "." else f"{relative}/{name}"

    def delete(self, key: str) -> None:
        path = self._path_for(key)
        with _os_errors("delete", _file_uri(path)):
            # Deleting a missing object succeeds, as on S3, so retried cleanups are harmless.
            path.unlink(missing_ok=True)


def cleanup_stale_temp_files(
    storage: LocalStorage, *, older_than_s: float = _STALE_TEMP_AGE_S, now: float | None = None
) -> int:
    """Remove temp files left by crashed writes; returns how many were removed.

    Only files older than `older_than_s` go: a younger one may belong to a concurrent run.
    """
    cutoff = (time.time() if now is None else now) - older_than_s
    removed = 0
    with _os_errors("clean temp files in", storage.uri):
        if not storage.root.is_dir():
            return 0
        for temp in storage.root.rglob(f"{_TEMP_PREFIX}*"):
            if temp.is_file() and temp.stat().st_mtime < cutoff:
                temp.unlink(missing_ok=True)
                removed += 1
    return removed
