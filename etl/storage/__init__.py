"""Where archived objects go: an S3 bucket or a local directory, behind one small interface.

This is the only package that imports boto3/botocore (`s3`). Every library or OS exception is
converted to `StorageError` in the backends, with a message naming the operation and the object URI,
so the pipeline never has to know which backend did the work.

Both backends publish atomically: a reader sees a whole object or none at all, never a prefix of
one. The pipeline calls storage from worker threads, so every method is safe to call concurrently.

Conditional writes (`put_bytes_if`, `delete_if`) are what leases are built on: S3 evaluates
`If-None-Match: *` and `If-Match: <etag>` on the server, so of two racing writers exactly one wins
across any number of machines; the local backend gives the same guarantee on one machine only.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from etl.errors import StorageError
from etl.storage.base import ObjectInfo, Storage, check_key
from etl.storage.local import LocalStorage
from etl.storage.s3 import S3Options, S3Storage

__all__ = ["LocalStorage", "ObjectInfo", "S3Options", "S3Storage", "Storage", "open_storage"]


def open_storage(dest: str, *, s3_options: S3Options | None = None) -> Storage:
    """Open the destination named by `dest`: `s3://bucket[/prefix]`, `file:///abs/path` or a path.
    `s3_options` apply to an S3 destination only."""
    if not dest.strip():
        raise StorageError("storage destination is empty")
    if "://" not in dest:
        return LocalStorage(Path(dest))
    parts = urlsplit(dest)
    if parts.scheme == "s3":
        return _open_s3(dest, parts.netloc, parts.path, s3_options)
    if parts.scheme == "file":
        # `file://host/path` names another machine's file; only the local host is meaningful here.
        if parts.netloc not in ("", "localhost"):
            raise StorageError(f"file destination must be file:///absolute/path, got {dest!r}")
        return LocalStorage(Path(unquote(parts.path)))
    raise StorageError(
        f"unsupported storage destination {dest!r}: use s3://bucket/prefix, file:///path or a directory path"
    )


def _open_s3(dest: str, bucket: str, path: str, options: S3Options | None) -> S3Storage:
    if not bucket:
        raise StorageError(f"S3 destination has no bucket: {dest!r}")
    prefix = path.strip("/")
    if prefix:
        check_key(prefix, what="S3 prefix")
    return S3Storage(bucket, prefix, options=options)
