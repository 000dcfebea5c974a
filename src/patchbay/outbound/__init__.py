"""Outbound HTTP: the one SSRF guard every fetch the server makes goes through.

``Fetcher`` makes requests (deadline, size cap, redirects only when allowed); ``AddressPolicy`` says which
addresses it may connect to (global unicast only, unless the operator lists networks); ``GuardedTransport``
applies the policy and pins the vetted address for any httpx client. Only this package creates outbound HTTP
clients in server code (tests/unit/test_outbound_guard.py checks).
"""

from patchbay.outbound.fetcher import Fetched, Fetcher, Streamed, fetcher_for
from patchbay.outbound.pinned import PinnedTransport, pinned_client
from patchbay.outbound.policy import ANY_ADDRESS, PUBLIC_ONLY, AddressPolicy, address_kind
from patchbay.outbound.transport import FetchError, GuardedTransport, Refused, Resolver

__all__ = [
    "ANY_ADDRESS",
    "PUBLIC_ONLY",
    "AddressPolicy",
    "FetchError",
    "Fetched",
    "Fetcher",
    "GuardedTransport",
    "PinnedTransport",
    "Refused",
    "Resolver",
    "Streamed",
    "address_kind",
    "fetcher_for",
    "pinned_client",
]
