"""Which addresses the server may connect to: an allow-list of address kinds, not a deny-list.

An address is admitted only when it is

* a global unicast IPv4 address: outside every range of the IANA IPv4 Special-Purpose Address Registry
  (RFC 6890) that is not globally reachable, and outside multicast and the reserved 240.0.0.0/4; or
* a global unicast IPv6 address: inside 2000::/3 (RFC 4291 §2.4, the only range IANA allocates for global
  unicast) and outside the special-purpose and documentation ranges carved out of it, including every form
  that embeds an IPv4 address (6to4, Teredo);

or when it lies in a network the operator listed explicitly (``[outbound] allowed_networks``).

IPv6 forms that embed an IPv4 address (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64, 6to4, Teredo) are
refused outright rather than unwrapped and vetted by their IPv4 part: whether such an address reaches the
embedded IPv4 host depends on translators we cannot see (a NAT64 gateway may use any network-specific prefix,
Teredo obfuscates its client address, the kernel maps ::ffff:a.b.c.d to a.b.c.d), so vetting the embedded part
would be a guess about someone else's routing. A public host never needs such a form to be reached: its own A
record works. Operators on an IPv6-only network behind DNS64 list the NAT64 prefix in ``allowed_networks``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

EMBEDS_IPV4 = "embeds an IPv4 address"

# IANA IPv4 Special-Purpose Address Registry (RFC 6890 and updates): the blocks not globally reachable, plus
# multicast (RFC 5771) and the reserved 240.0.0.0/4 (RFC 1112 §4, including the broadcast address).
_IPV4_REFUSED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified ('this network')"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared address space (carrier-grade NAT, RFC 6598)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata services live here)"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignment"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
)

# IANA IPv6 Special-Purpose Address Registry and RFC 4291. Order matters: the first match names the kind, so
# narrower blocks come before the blocks that contain them.
_IPV6_REFUSED: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::ffff:0:0/96", f"IPv4-mapped; {EMBEDS_IPV4}"),
    ("::ffff:0:0:0/96", f"IPv4-translated (SIIT); {EMBEDS_IPV4}"),
    ("::/96", f"IPv4-compatible; {EMBEDS_IPV4}"),
    ("64:ff9b::/96", f"NAT64; {EMBEDS_IPV4}"),
    ("64:ff9b:1::/48", f"local-use NAT64; {EMBEDS_IPV4}"),
    ("100::/64", "discard-only"),
    ("2001::/32", f"Teredo; {EMBEDS_IPV4}"),
    ("2001:db8::/32", "documentation"),
    ("2001::/23", "IETF protocol assignment"),
    ("2002::/16", f"6to4; {EMBEDS_IPV4}"),
    ("3fff::/20", "documentation"),
    ("fc00::/7", "unique local (private)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")


def _table(rows: Iterable[tuple[str, str]]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), kind) for cidr, kind in rows)


_REFUSED_V4 = _table(_IPV4_REFUSED)
_REFUSED_V6 = _table(_IPV6_REFUSED)


def address_kind(address: IPAddress) -> str | None:
    """Why ``address`` is not global unicast (e.g. ``"loopback"``), or None when it is."""
    table = _REFUSED_V4 if address.version == 4 else _REFUSED_V6
    for network, kind in table:
        if address in network:
            return kind
    if address.version == 6 and address not in _GLOBAL_UNICAST_V6:
        return "not global unicast (outside 2000::/3)"
    if not address.is_global:  # the standard library's own registry copy; if it is stricter, it wins
        return "special-purpose"
    return None


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Global unicast addresses, plus ``allowed_networks`` the operator named. ``any_address`` admits every
    address (tests and local development, ``allow_private_network``)."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    any_address: bool = False

    def refusal(self, address: IPAddress) -> str | None:
        """None when the policy admits ``address``; otherwise the kind of address it is, for the error."""
        if self.any_address or any(address in network for network in self.allowed_networks):
            return None
        # A scoped address (fe80::1%eth0) compares without its zone; the kind is what matters.
        return address_kind(address)


PUBLIC_ONLY = AddressPolicy()
ANY_ADDRESS = AddressPolicy(any_address=True)

# WHATWG URL "ends in a number": a host whose last label is digits or 0x-hex is an IPv4 address to a browser
# and to inet_aton (127.1, 2130706433, 0x7f.1, 017700000001), never a DNS name (RFC 1123 §2.1).
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0[xX][0-9a-fA-F]*)$")
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


class HostError(ValueError):
    """The URL's host is not a DNS name or a canonical IP address literal."""


def literal_address(host: str) -> IPAddress | None:
    """The IP address ``host`` spells (an IPv6 literal without brackets, or a dotted quad), or None for a name.

    Raises:
        HostError: ``host`` is a number in a non-canonical spelling (decimal, octal, hex or shortened IPv4) or
            not a valid DNS name (after IDNA encoding, which the URL parser has done).
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    name = host.lower().removesuffix(".")  # one trailing dot names the root; the name is the same
    labels = name.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        raise HostError(f"'{host}' spells an IPv4 address in a non-standard form; write it as a.b.c.d")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise HostError(f"'{host}' is not a valid host name")
    return None
