"""Pure rules on host names and IP addresses: which are loopback, which a download may not reach.

No I/O here: resolving a name is the caller's business (`etl.api.redirects`), so that the rule is
applied to the addresses a name resolves to, not to the name a server chose to show us.
"""

from __future__ import annotations

import ipaddress

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip(host: str) -> IpAddress | None:
    """The address a URL's host names literally (`127.0.0.1`, `::1`), or None for a name."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    # An IPv4 address written as IPv6 (::ffff:10.0.0.1) is judged as the IPv4 address it is.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback_host(host: str) -> bool:
    """`localhost` (and its subdomains, RFC 6761) or a literal loopback address."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    address = parse_ip(name)
    return address is not None and address.is_loopback


def forbidden_reason(address: IpAddress) -> str | None:
    """Why a download must not go to `address` (loopback, link-local, private, ...), or None."""
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        # 169.254.169.254 is the cloud metadata service: a redirect there would read credentials.
        return "a link-local address"
    if address.is_private or address.is_reserved or address.is_multicast or address.is_unspecified:
        return "a private or reserved address"
    return None
