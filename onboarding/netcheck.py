"""Which addresses a completion callback may reach: one classification for submission and send time.

The requester chooses the callback URL, so it is a server-side request forgery target. An address is
acceptable only when it is globally reachable, whatever form it is written in:

- the ``ipaddress`` module's properties (private, loopback, link-local, site-local, reserved,
  multicast, unspecified, not global);
- IPv6 forms that carry an IPv4 address are judged by that IPv4 address: IPv4-mapped
  (``::ffff:0:0/96``), IPv4-translated (``::ffff:0:0:0/96``, RFC 2765), IPv4-compatible (``::/96``,
  deprecated by RFC 4291), NAT64 (``64:ff9b::/96``, RFC 6052) and 6to4 (``2002::/16``, RFC 3056);
- forms a caller cannot judge are refused outright: the NAT64 local-use prefix (``64:ff9b:1::/48``,
  RFC 8215, translated by the operator's own gateway) and Teredo (``2001::/32``, RFC 4380);
- IPv4 hosts written in decimal, octal or hex (``2130706433``, ``0177.0.0.1``, ``0x7f.1``) are the
  address ``inet_aton`` reads, which is what the resolver connects to.

The private-network switch (sandbox only) lets loopback through, and nothing else.
"""

from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_LOOPBACK_NAMES = frozenset({"localhost"})


def host_address(host: str) -> IPAddress | None:
    """The address a URL host names literally (any IPv4 notation the resolver accepts), or None."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        pass
    # A host made only of digits, dots and 0x-hex parts is an address to the resolver: "2130706433",
    # "0177.0.0.1" and "0x7f.1" all connect to 127.0.0.1. A DNS name always has a letter past "0x".
    labels = host.lower().split(".")
    if not all(label and _numeric(label) for label in labels):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _numeric(label: str) -> bool:
    if label.startswith("0x"):
        return all(c in "0123456789abcdef" for c in label[2:])
    return label.isdigit()


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 transition form carries, if it is one of the forms judged by it."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _TRANSLATED or ip in _NAT64 or (ip in _COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _plainly_global(ip: IPAddress) -> bool:
    return (
        ip.is_global
        and not ip.is_private
        and not ip.is_loopback
        and not ip.is_link_local
        and not ip.is_multicast
        and not ip.is_reserved
        and not ip.is_unspecified
        and not (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )


def is_public(ip: IPAddress) -> bool:
    """True only for a globally reachable unicast address, judged through any transition form."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL or ip in _TEREDO:
            return False
        inner = embedded_ipv4(ip)
        if inner is not None:
            return _plainly_global(inner)
    return _plainly_global(ip)


def is_loopback(ip: IPAddress) -> bool:
    """Loopback, also when written as IPv4-mapped (``::ffff:127.0.0.1``)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def is_loopback_host(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    ip = host_address(host)
    return ip is not None and is_loopback(ip)


def allowed(ip: IPAddress, *, allow_loopback: bool) -> bool:
    """Whether a callback may connect to ``ip``; the sandbox switch admits loopback only."""
    return is_public(ip) or (allow_loopback and is_loopback(ip))
