"""Apple's host names and which party of the world answers for each: the one table behind Host routing.

An unmodified client hard-codes Apple's addresses (``https://mdmenrollment.apple.com/session``, a push
to ``https://api.push.apple.com/3/device/<token>``). With one hosts-file line pointing such a name at
the world, and the world's CA trusted, the request reaches the world's main port with ``Host:`` still
naming Apple; :mod:`simulator.mounting` then hands it to the party mounted at the prefix this table
names, with the path left at ``/`` as Apple serves it. The same table puts the names into the world's
TLS certificate (:func:`simulator.tls.issue_server_pair`), so the client's certificate check passes.

A new Apple service joins by one line here, as the Business API and its token host did.
Pure data: no I/O, nothing imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["APPLE_HOSTS", "prefix_for_host", "host_name"]

#: Apple host name → the prefix of the party that answers for it on the world's main port.
APPLE_HOSTS: Mapping[str, str] = MappingProxyType({
    # Device Assignment (DEP) web service: /session, /account, /server/devices, ...
    "mdmenrollment.apple.com": "/apple/dep",
    # APNs provider API (production, sandbox and its older development name): /3/device/<token>
    "api.push.apple.com": "/apple/apns",
    "api.sandbox.push.apple.com": "/apple/apns",
    "api.development.push.apple.com": "/apple/apns",
    # Activation: a Mac asks iprofiles.apple.com for its cloud configuration; albert.apple.com is where
    # devices activate (the iOS endpoints are private, so our activation app's paths are its own).
    "iprofiles.apple.com": "/apple/activation",
    "albert.apple.com": "/apple/activation",
    # Apple Business API (/v1/orgDevices, ...) and the account service that issues its tokens (/auth/oauth2/token)
    "api-business.apple.com": "/apple/business",
    "account.apple.com": "/apple/account",
})  # fmt: skip


def host_name(host_header: str) -> str:
    """The host name of a ``Host`` header value: lower case, without port or trailing dot.

    ``mdmenrollment.apple.com:8080`` and ``MDMENROLLMENT.APPLE.COM.`` both name Apple's DEP host; an
    IP literal in brackets (``[::1]:8080``) keeps its brackets, so it never matches a name."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return host.rstrip(".")


def prefix_for_host(host_header: str | None, hosts: Mapping[str, str] = APPLE_HOSTS) -> str | None:
    """The party prefix that answers for the request's ``Host``, or ``None`` for any other host."""
    if not host_header:
        return None
    return hosts.get(host_name(host_header))
