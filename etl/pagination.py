"""Cursor pagination, pure: given a page, say where the next one is, or stop.

The API returns absolute `next` URLs and we follow them as given (cursors are opaque). Because every
request carries the API key, a `next` URL on any origin but the API's is refused: following it would
send the key to a stranger. A `next` URL seen before means the server is looping; we fail loudly
rather than archive forever.

A `next` URL on the API's own host that says `http` while the API is reached over `https` (a proxy
in front of the API that forgets the scheme it was reached by) is followed over `https`: the same
host, never in clear.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from etl.errors import FatalError


def origin_of(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    default_port = {"http": 80, "https": 443}.get(scheme)
    port = parts.port or default_port
    return scheme, f"{host}:{port}"


@dataclass
class Paginator:
    """Tracks one paginated listing. `advance(page)` returns the next URL or None when done."""

    api_origin: tuple[str, str]
    description: str
    seen: set[str] = field(default_factory=set)

    def results(self, page: object) -> list[Any]:
        if not isinstance(page, Mapping):
            raise FatalError(f"{self.description}: page is a {type(page).__name__}, not a JSON object")
        results = page.get("results")
        if not isinstance(results, list):
            raise FatalError(f"{self.description}: page has no 'results' list")
        return results

    def advance(self, page: Mapping[str, Any]) -> str | None:
        next_url = page.get("next")
        if next_url is None or next_url == "":
            return None
        if not isinstance(next_url, str):
            raise FatalError(f"{self.description}: 'next' is not a URL string")
        next_url = self._over_api_scheme(next_url)
        if origin_of(next_url) != self.api_origin:
            raise FatalError(
                f"{self.description}: refusing to follow a 'next' URL on another origin "
                f"({origin_of(next_url)[1]}); the API key is only ever sent to the API"
            )
        if next_url in self.seen:
            raise FatalError(f"{self.description}: the API returned the same 'next' URL twice (a loop)")
        self.seen.add(next_url)
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
