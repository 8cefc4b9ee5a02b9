"""Cursor pagination, pure: given a page, say where the next one is, or stop.

The API returns absolute `next` URLs and we follow them as given (cursors are opaque). Because every
request carries the API key, a `next` URL on any origin but the API's is refused: following it would
send the key to a stranger. A `next` URL seen before means the server is looping; we fail loudly
rather than archive forever. "Seen before" compares URLs with their query parameters sorted, so a loop
whose links come back with the parameters reordered is caught too; a loop that never repeats itself
(a fresh cursor on every empty page) is stopped by the cap on pages per listing.

A `next` URL on the API's own host that says `http` while the API is reached over `https` (a proxy
in front of the API that forgets the scheme it was reached by) is followed over `https`: the same
host, never in clear.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from etl.errors import FatalError

# Whitespace and control characters are never part of a URL; httpx refuses them (InvalidURL).
_NOT_IN_URLS = re.compile(r"[\x00-\x20\x7f-\x9f]")
# Far beyond any cursor link; a longer `next` is garbage, and every one seen is kept for loop checks.
_MAX_NEXT_URL_CHARS = 8192


def origin_of(url: str) -> tuple[str, str]:
    """(scheme, host:port) of `url`; ValueError for a URL that has none (a bad port, a bad IPv6 host)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    default_port = {"http": 80, "https": 443}.get(scheme)
    port = parts.port or default_port
    return scheme, f"{host}:{port}"


def _canonical(url: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    parts = urlsplit(url)
    return parts.netloc.lower(), parts.path, tuple(sorted(parse_qsl(parts.query, keep_blank_values=True)))


@dataclass
class Paginator:
    """Tracks one paginated listing. `advance(page)` returns the next URL or None when done."""

    api_origin: tuple[str, str]
    description: str
    # A listing longer than this many pages fails (that day, or that call), never the run: an API
    # that keeps handing out `next` links must not keep the run, or its memory, for ever.
    max_pages: int = 10_000
    seen: set[tuple[str, str, tuple[tuple[str, str], ...]]] = field(default_factory=set)
    pages: int = 0

    def results(self, page: object) -> list[Any]:
        if not isinstance(page, Mapping):
            raise FatalError(f"{self.description}: page is a {type(page).__name__}, not a JSON object")
        results = page.get("results")
        if not isinstance(results, list):
            raise FatalError(f"{self.description}: page has no 'results' list")
        return results

    def advance(self, page: Mapping[str, Any]) -> str | None:
        self.pages += 1
        next_url = page.get("next")
        if next_url is None or next_url == "":
            return None
        if not isinstance(next_url, str):
            raise FatalError(f"{self.description}: 'next' is not a URL string")
        if len(next_url) > _MAX_NEXT_URL_CHARS or _NOT_IN_URLS.search(next_url):
            raise FatalError(
                f"{self.description}: 'next' is not a valid URL (too long, or control characters)"
            )
        try:
            next_url = self._over_api_scheme(next_url)
            origin = origin_of(next_url)
        except ValueError:
            raise FatalError(f"{self.description}: 'next' is not a valid URL (bad host or port)") from None
        if origin != self.api_origin:
            raise FatalError(
                f"{self.description}: refusing to follow a 'next' URL on another origin "
                f"({origin_of(next_url)[1]}); the API key is only ever sent to the API"
            )
        canonical = _canonical(next_url)
        if canonical in self.seen:
            raise FatalError(f"{self.description}: the API returned the same 'next' URL twice (a loop)")
        if self.pages >= self.max_pages:
            raise FatalError(
                f"{self.description}: more than {self.max_pages} pages (max_pages_per_listing); "
                "the API keeps handing out 'next' links"
            )
        self.seen.add(canonical)
        return next_url

    def _over_api_scheme(self, url: str) -> str:
        """`url` on the API's origin when it differs only by dropping `https` to `http` on the API's
        host (its port the API's or http's default); otherwise as it is, for the origin check."""
        scheme, netloc = self.api_origin
        parts = urlsplit(url)
        api_host, _, api_port = netloc.rpartition(":")
        if scheme != "https" or parts.scheme.lower() != "http" or (parts.hostname or "").lower() != api_host:
            return url
        if parts.username is not None or parts.port not in (None, 80, int(api_port)):
            return url
        return urlunsplit(("https", netloc, parts.path, parts.query, parts.fragment))
