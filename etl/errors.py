"""One exception hierarchy for the archiver.

Library exceptions (httpx, botocore) are converted into these at the module edges (`api`, `storage`),
so nothing above those modules needs to know which library did the work. Messages are built from
redacted URLs and never carry the API key.
"""

from __future__ import annotations


class ArchiverError(Exception):
    """Base of every error the archiver raises on purpose."""


class ConfigError(ArchiverError):
    """Settings are missing or invalid; the run cannot start."""


class ContractError(ArchiverError):
    """A table contract is missing or malformed: the installation is broken, nothing can be written."""


class RetriableError(ArchiverError):
    """A failure that may succeed if tried again: 429, 5xx, timeouts, connection resets."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unreachable(RetriableError):
    """No connection could be made (name not resolved, refused, connect timeout): retried like any
    transient fault during a run, but before one it means the base URL or the network is wrong."""


class FatalError(ArchiverError):
    """A failure that will not go away by retrying: 4xx other than 425/429, bad credentials."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SignedUrlRejected(FatalError):
    """The storage host refused the signed URL (expired or bad signature): ask the API for a new one."""


class AuthError(FatalError):
    """The API rejected the key (401/403). Nothing else in the run can succeed."""


class BadRecord(ArchiverError):
    """One record from the API cannot be archived; it is quarantined with this reason."""

    def __init__(self, reason: str, *, record: object = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.record = record


class StorageError(ArchiverError):
    """The destination (S3 or a local directory) refused or failed an operation."""


class PreconditionFailed(StorageError):
    """A conditional write or delete lost a race: the object was created, changed or removed first."""


class LeaseLost(ArchiverError):
    """A lease we held was taken over, released or could not be renewed; stop before publishing."""
