"""Checks before a run does any work, each failing with a ConfigError that says what to do.

What they catch would otherwise surface late and misleading: a base URL without `/api` as 404s on
every day (exit 1, "retry later"), an unreachable host after ~40 s of retries, a file as the
destination as a raw NotADirectoryError, a window in the future as open partitions written for
days that have not happened. The destination and the dates are checked first (no request); the API
last, after the run has read the destination's state, so that an unusable bucket still stops the
run before any API request.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from datetime import date
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from etl.api.client import ClientOptions
from etl.api.probe import probe_list_endpoint
from etl.api.responses import redact_url
from etl.config import DEFAULT_API_BASE_URL, Settings
from etl.errors import AuthError, ConfigError, FatalError, RetriableError, Unreachable
from etl.state import MANIFEST_PREFIX
from etl.storage.base import Storage

log = logging.getLogger(__name__)


def check_window(since: date | None, until: date | None, today: date) -> None:
    """A day after today (UTC) has no calls yet; archiving it would only write open partitions."""
    for flag, day in (("--since", since), ("--until", until)):
        if day is not None and day > today:
            raise ConfigError(
                f"{flag} {day} is in the future (today is {today} UTC): give a day up to {today}; "
                "days still to come are archived by a later sync"
            )


def check_destination(dest: str, *, access: Callable[[Path, int], bool] = os.access) -> None:
    """A local destination must be a directory we can write, or a path where one can be created.
    S3 destinations are checked by the run itself (its first request reads the bucket)."""
    path = _local_path(dest)
    if path is None:
        return
    path = path.expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"is below {existing}, which is a file"
        raise ConfigError(
            f"--dest {dest} {where}, not a directory: give a directory (created if missing) "
            "or s3://bucket/prefix"
        )
    if not access(existing, os.W_OK | os.X_OK):
        what = "directory" if existing == path else f"parent directory {existing}"
        raise ConfigError(
            f"--dest {dest}: the {what} is not writable by this user: fix its permissions or give "
            "another directory"
        )


async def check_usable(settings: Settings, storage: Storage) -> None:
    """The destination answers, then the API: a missing bucket stays fatal (exit 3) before any API
    request, and a wrong key or URL is found before any day is leased."""
    await asyncio.to_thread(_first_key, storage)
    await check_api(settings)


def _first_key(storage: Storage) -> None:
    # One listing request at most: only the first key is taken from the iterator.
    next(iter(storage.list_keys(MANIFEST_PREFIX)), None)


async def check_api(settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
    """One quick request to the list endpoint: a rejected key, a wrong base URL or an unreachable host
    stop the run here. A 429 or 5xx does not: the run's own retry policy deals with those."""
    shown = redact_url(settings.api_base_url)
    try:
        await probe_list_endpoint(ClientOptions.from_settings(settings), transport=transport)
    except AuthError as exc:
        raise ConfigError(
            f"the API rejected the key (HTTP {exc.status}): check ULTRAVOX_API_KEY or --api-key-file "
            f"(a key of the account at {shown})"
        ) from None
    except Unreachable:
        raise ConfigError(
            f"cannot connect to {shown}: check --api-base-url (ULTRAVOX_API_BASE_URL), the network "
            "and any proxy (HTTPS_PROXY)"
        ) from None
    except FatalError as exc:
        if exc.status != 404:
            # Another refusal (400, 405, ...) or a page that cannot be read (not JSON, too large):
            # the run meets it again on each day and reports it there, in context (exit 1).
            log.warning("the API's list endpoint failed the check request", extra={"error": str(exc)})
            return
        raise ConfigError(
            f"{shown}/calls is not the Ultravox API's call list (HTTP 404): --api-base-url must end "
            f"in /api, e.g. {DEFAULT_API_BASE_URL}"
        ) from None
    except RetriableError as exc:
        log.warning("the API is not answering well; the run retries as usual", extra={"error": str(exc)})


def _local_path(dest: str) -> Path | None:
    if "://" not in dest:
        return Path(dest)
    parts = urlsplit(dest)
    return Path(unquote(parts.path)) if parts.scheme == "file" else None
