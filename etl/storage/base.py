"""The small interface both storage backends implement, and the key rules they share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from etl.errors import StorageError

# Names the local backend uses for its own files beside the objects; no key segment may take them.
TEMP_PREFIX = ".tmp-"
# Lock files are never removed (see `LocalStorage._key_lock`), and never cleaned up as stale temp files.
LOCK_PREFIX = ".lock-"
RESERVED_PREFIXES = (TEMP_PREFIX, LOCK_PREFIX)


# What the audio path hands to storage: a pooled buffer is sent as a memoryview of its filled part.
ByteData = bytes | bytearray | memoryview


@dataclass(frozen=True)
class ObjectInfo:
    """What `head` knows about a stored object."""

    key: str
    size: int
    # The whole object's SHA-256 as the store keeps it, without reading the bytes again (`digest`
    # only): S3's checksum of a single PUT, or the local file hashed. None when the store has none.
    sha256: bytes | None = None
    # Written in parts (an S3 multipart upload): S3 keeps no whole-object SHA-256 for it, so only
    # its size can be checked without downloading it.
    parted: bool = False


# --- keys (shared with the S3 backend) ----------------------------------------------------------


def check_key(key: str, *, what: str = "key") -> None:
    """Refuse keys that would escape the root or mean different things on S3 and on disk."""
    if not key:
        raise StorageError(f"{what} is empty")
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise StorageError(f"{what} must be a relative, slash-separated path: {key!r}")
    for part in key.split("/"):
        # S3 would keep `a//b` and `a/./b` as distinct keys while a filesystem collapses them.
        if part in ("", ".", ".."):
            raise StorageError(f"{what} has an empty, '.' or '..' segment: {key!r}")
        # Local listings hide temp and lock files; a real object with such a name would vanish.
        if part.startswith(RESERVED_PREFIXES):
            raise StorageError(
                f"{what} segment may not start with {TEMP_PREFIX!r} or {LOCK_PREFIX!r}: {key!r}"
            )


def check_prefix(prefix: str) -> None:
    """A listing prefix may be empty and may end in a slash; otherwise it follows the key rules."""
    body = prefix.removesuffix("/")
    if body:
        check_key(body, what="prefix")
    elif prefix:
        raise StorageError(f"prefix must not start with '/': {prefix!r}")


def check_condition(if_none_match: bool, if_match: str | None) -> None:
    """`put_bytes_if` takes exactly one condition: create-if-absent or replace-if-unchanged."""
    if if_none_match == (if_match is not None):
        raise ValueError("put_bytes_if needs exactly one of if_none_match=True or if_match=<etag>")
    if if_match is not None and not if_match.strip('"'):
        raise ValueError("if_match must be a non-empty ETag")


# --- the interface --------------------------------------------------------------------------------


class PartedUpload(Protocol):
    """One object written in parts that may go up concurrently from several threads.

    Nothing is visible under the key until `complete`; `abort` forgets every part sent (S3 would bill
    an unfinished upload's parts for ever). Parts are numbered from 1 and all but the last are at
    least 5 MiB (S3's rule); `offset` is where the part starts in the object.
    """

    def put_part(self, number: int, offset: int, data: ByteData) -> None: ...

    def complete(self) -> str:
        """Publish the object from every part sent; returns its URI."""
        ...

    def abort(self) -> None: ...


class Storage(Protocol):
    """A destination for archived objects; keys are relative, slash-separated paths."""

    @property
    def uri(self) -> str:
        """The root URI: `s3://bucket/prefix` or `file:///abs/path`."""
        ...

    def uri_for(self, key: str) -> str: ...

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> str: ...

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str: ...

    def put_checked(self, key: str, data: ByteData, *, sha256: bytes, content_type: str | None = None) -> str:
        """`put_bytes` for bytes whose SHA-256 digest the caller computed while they arrived.

        S3 verifies it and refuses the object if the bytes differ; no backend hashes them again.
        """
        ...

    def start_upload(self, key: str, *, content_type: str | None = None) -> PartedUpload:
        """Begin an object too large to hold in memory whole; see `PartedUpload`."""
        ...

    def get_bytes(self, key: str) -> bytes | None: ...

    def get_file(self, key: str, path: Path) -> bool:
        """Stream an object into a local file; False when there is no such object."""
        ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def digest(self, key: str) -> ObjectInfo | None:
        """`head`, with the object's SHA-256 where the store keeps one (see `ObjectInfo`): one HEAD
        request on S3, a read of the file on a local disk. None if absent."""
        ...

    def list_keys(self, prefix: str = "") -> Iterator[str]: ...

    def delete(self, key: str) -> None: ...

    def get_with_etag(self, key: str) -> tuple[bytes, str] | None:
        """A small object's bytes and the ETag to pass to `put_bytes_if`/`delete_if`; None if absent."""
        ...

    def put_bytes_if(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Write only if absent (`if_none_match=True`) or unchanged (`if_match=etag`); return the new ETag.

        Exactly one condition must be given. Raises `PreconditionFailed` when it does not hold,
        including `if_match` on a missing object.
        """
        ...

    def delete_if(self, key: str, etag: str) -> None:
        """Delete only if the object still has `etag` (`PreconditionFailed` if not); absent is fine."""
        ...
