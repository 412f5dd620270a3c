"""Client side of WS-Trust 1.3 Username/Mixed, as an MDM server checks Setup Assistant credentials.

Legacy "user affinity" enrollment (FACTS §4) asks the customer's IdP (ADFS path
``/adfs/services/trust/13/UsernameMixed``) to issue a token for the user's name and password: a SOAP 1.2
``RequestSecurityToken`` carrying a ``wsse:UsernameToken``. A ``RequestSecurityTokenResponse`` holding a
SAML assertion means the password is right; a SOAP Fault means it is not. Anything else (no answer, a
500 without a Fault, an answer that is not safe to read) is an IdP outage, which the caller must not
report as "wrong password".

The messages themselves are :mod:`mdm.protocol.wstrust`'s, the codec the simulated IdP uses too, so
every answer is read through its guarded parser (no DTD or entity, bounded size and depth). What stays
here is the client's part: which relying party to ask for, the HTTP call, and what an answer means.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import httpx

from mdm.protocol import wstrust

__all__ = ["APPLIES_TO", "IdPResult", "IdPUnavailable", "NS", "build_rst", "check_credentials", "interpret"]

#: Prefixes for reading our messages with ElementTree (tests use them); the namespaces are the codec's.
NS = {
    "s": wstrust.SOAP12,
    "a": wstrust.WSA,
    "u": wstrust.WSU,
    "o": wstrust.WSSE,
    "trust": wstrust.WST,
    "wsp": wstrust.WSP,
    "saml1": wstrust.SAML1,
    "saml2": wstrust.SAML2,
}
#: The relying party Intune's enrollment asks ADFS for: Microsoft Online (Entra ID's federation trust).
APPLIES_TO = "urn:federation:MicrosoftOnline"
#: The client's own cap on an answer, below the codec's; the rest is never read.
MAX_RESPONSE = 256 * 1024


class IdPUnavailable(Exception):
    """The IdP could not give an answer (network, timeout, not a SOAP reply)."""


@dataclass(frozen=True)
class IdPResult:
    ok: bool
    upn: str | None = None
    reason: str | None = None


def build_rst(url: str, username: str, password: str, now: _dt.datetime, *, message_id: str | None = None) -> bytes:
    """The SOAP 1.2 RST ADFS clients send to ``url`` (``…/trust/13/UsernameMixed``), for Microsoft Online.

    Raises ValueError for a credential XML cannot carry (a control character): no IdP could match it.
    """
    return wstrust.build_rst(username, password, APPLIES_TO, now, to=url, message_id=message_id)


def interpret(body: bytes, username: str) -> IdPResult:
    """Read an IdP answer: Fault → wrong credentials; RSTR with an assertion → OK; else unavailable.

    The user is the assertion's UPN claim, else its subject's NameID, else the name that was typed.
    """
    try:
        token = wstrust.read_token(body)
    except wstrust.WSTrustFault as fault:
        return IdPResult(ok=False, reason=fault.reason or "invalid user credentials")
    except wstrust.NoTokenError:
        raise IdPUnavailable("identity provider answer holds neither a SAML assertion nor a SOAP Fault") from None
    except ValueError as exc:
        raise IdPUnavailable(f"identity provider answer refused: {exc}") from None
    return IdPResult(ok=True, upn=token.upn or token.name_id or username)


def check_credentials(
    http: httpx.Client,
    url: str,
    username: str,
    password: str,
    now: _dt.datetime,
    *,
    timeout: float = 10.0,
    message_id: str | None = None,
) -> IdPResult:
    """Ask the IdP; never called inside a store transaction (it is network I/O).

    ``message_id`` lets a seeded caller fix the RST's MessageID (a fresh UUID otherwise).
    """
    try:
        body = build_rst(url, username, password, now, message_id=message_id)
    except ValueError as exc:
        # A name or password XML cannot carry matches no user; the IdP would refuse the request anyway.
        return IdPResult(ok=False, reason=str(exc))
    try:
        response = http.post(
            url,
            content=body,
            headers={"Content-Type": wstrust.SOAP_CONTENT_TYPE},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise IdPUnavailable(f"identity provider unreachable: {exc}"[:200]) from None
    data = response.content[: MAX_RESPONSE + 1]
    if len(data) > MAX_RESPONSE:
        raise IdPUnavailable("identity provider answer too large")
    return interpret(data, username)
