"""Pure: does a stored recording object agree with its row (size and SHA-256), without its bytes?

Shared by `backfill`, which checks an archived recording before re-using it, and by `verify`.
"""

from __future__ import annotations

from etl.storage.base import ObjectInfo


def disagreement(stored: ObjectInfo | None, *, size: int | None, sha256_hex: str | None) -> str | None:
    """Why the object `stored` (from `Storage.digest`) is not the recording its row describes; None
    when it agrees."""
    if stored is None:
        return "the recording object is missing"
    if size is not None and stored.size != size:
        return f"the stored object has {stored.size} bytes, the row says {size}"
    if stored.sha256 is not None:
        if sha256_hex is not None and stored.sha256.hex() != sha256_hex.lower():
            return f"the stored object's SHA-256 is {stored.sha256.hex()}, the row says {sha256_hex}"
        return None
    if stored.parted:
        # A multipart object carries checksums of its parts only: its size is all a HEAD can prove.
        return None
    # The archiver sends every single-PUT recording with its SHA-256, which S3 verifies and keeps:
    # an object without one was written by something else.
    return "the stored object carries no SHA-256 checksum: it is not the object the archiver wrote"
