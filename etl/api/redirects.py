"""Where a recording may be downloaded from: checked before the storage client sends each request,
the signed URL the API redirected to and every redirect the storage host answers after it.

The recording endpoint's `Location` is chosen by whoever answers for the API; followed blindly it
could make the archiver fetch (and archive) an internal service, the cloud metadata endpoint above
all. So a download goes only over https (or over the API's own scheme when the API itself is on
loopback: the simulator, a local proxy), and never to a loopback, link-local or private address,
judged on every address the host name resolves to, unless the host is named in
`allowed_recording_hosts` (trusted as they are, any scheme). Loopback storage is allowed when the
API is on loopback too. The check is on the addresses the resolver gives now; httpx resolves again
when it connects, so a name whose owner flips its DNS between the two (rebinding) is not covered:
name private stores in `allowed_recording_hosts` rather than rely on the check for them.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx

from etl.addresses import IpAddress, forbidden_reason, is_loopback_host, parse_ip
from etl.api.responses import redact_url
from etl.errors import FatalError, RetriableError

# host, port -> the addresses the name resolves to (text)
Resolver = Callable[[str, int], list[str]]


def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host` (in the download's thread: it blocks)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def parse_host_list(text: str) -> frozenset[str]:
    """`allowed_recording_hosts`: host names separated by commas or spaces, compared lower-case."""
    return frozenset(
        part.strip().rstrip(".").lower() for part in text.replace(",", " ").split() if part.strip()
    )


@dataclass(frozen=True)
class DownloadPolicy:
    api_scheme: str
    api_is_loopback: bool
    allowed_hosts: frozenset[str] = frozenset()
    resolve: Resolver = field(default=system_resolve, compare=False)

    @classmethod
    def for_api(
        cls, base_url: str, allowed_hosts: Iterable[str] = (), resolve: Resolver | None = None
    ) -> DownloadPolicy:
        url = httpx.URL(base_url)
        return cls(
            api_scheme=url.scheme,
            api_is_loopback=is_loopback_host(url.host),
            allowed_hosts=frozenset(host.lower() for host in allowed_hosts),
            resolve=resolve or system_resolve,
        )

    def check_request(self, request: httpx.Request) -> None:
        """httpx request hook of the storage client: runs before every request it sends."""
        self.check(request.url)

    def check(self, url: httpx.URL) -> None:
        shown = redact_url(str(url), keep_query=False)
        scheme, host = url.scheme, url.host.rstrip(".").lower()
        if host in self.allowed_hosts:
            # Named by the operator (an S3-compatible store inside their network): trusted as it is.
            return
        if scheme != "https" and not (self.api_is_loopback and scheme == self.api_scheme):
            raise FatalError(f"refusing to download a recording from {shown}: only https is allowed")
        for address in self._addresses(host, url.port or (443 if scheme == "https" else 80), shown):
            reason = forbidden_reason(address)
            if reason is not None and not (self.api_is_loopback and address.is_loopback):
                raise FatalError(
                    f"refusing to download a recording from {shown}: {host} is {reason} ({address}); "
                    "name the host in allowed_recording_hosts if it is yours"
                )

    def _addresses(self, host: str, port: int, shown: str) -> list[IpAddress]:
        literal = parse_ip(host)
        if literal is not None:
            return [literal]
        try:
            resolved = self.resolve(host, port)
        except OSError as exc:
            raise RetriableError(f"GET {shown}: cannot resolve {host} ({type(exc).__name__})") from None
        addresses = [parse_ip(text.split("%", 1)[0]) for text in resolved]
        if not addresses or any(address is None for address in addresses):
            raise FatalError(f"refusing to download a recording from {shown}: {host} resolves to no address")
        return [address for address in addresses if address is not None]
