"""Client side of WS-Trust 1.3 Username/Mixed, as an MDM server checks Setup Assistant credentials.

Legacy "user affinity" enrollment (FACTS §4) asks the customer's IdP (ADFS path
``/adfs/services/trust/13/UsernameMixed``) to issue a token for the user's name and password: a SOAP 1.2
``RequestSecurityToken`` carrying a ``wsse:UsernameToken``. A ``RequestSecurityTokenResponse`` holding a
SAML assertion means the password is right; a SOAP Fault means it is not. Anything else (no answer, a
500 without a Fault) is an IdP outage, which the caller must not report as "wrong password".
"""

from __future__ import annotations

import datetime as _dt
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape

import httpx

__all__ = ["IdPResult", "IdPUnavailable", "build_rst", "check_credentials", "NS"]

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://www.w3.org/2005/08/addressing",
    "u": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
    "o": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "trust": "http://docs.oasis-open.org/ws-sx/ws-trust/200512",
    "wsp": "http://schemas.xmlsoap.org/ws/2004/09/policy",
    "saml1": "urn:oasis:names:tc:SAML:1.0:assertion",
    "saml2": "urn:oasis:names:tc:SAML:2.0:assertion",
}
RST_ISSUE = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue"
PASSWORD_TEXT = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText"
)
APPLIES_TO = "urn:federation:MicrosoftOnline"
MAX_RESPONSE = 256 * 1024


class IdPUnavailable(Exception):
    """The IdP could not give an answer (network, timeout, not a SOAP reply)."""


@dataclass(frozen=True)
class IdPResult:
    ok: bool
    upn: str | None = None
    reason: str | None = None


def build_rst(url: str, username: str, password: str, now: _dt.datetime) -> bytes:
    """The SOAP 1.2 envelope ADFS clients send to ``…/trust/13/UsernameMixed``."""
    created = now.astimezone(_dt.UTC)
    expires = created + _dt.timedelta(minutes=10)
    fmt = "%Y-%m-%dT%H:%M:%S.000Z"
    return f"""<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" xmlns:u="{NS["u"]}">
<s:Header>
<a:Action s:mustUnderstand="1">{RST_ISSUE}</a:Action>
<a:MessageID>urn:uuid:{uuid.uuid4()}</a:MessageID>
<a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo>
<a:To s:mustUnderstand="1">{escape(url)}</a:To>
<o:Security s:mustUnderstand="1" xmlns:o="{NS["o"]}">
<u:Timestamp u:Id="_0"><u:Created>{created.strftime(fmt)}</u:Created>
<u:Expires>{expires.strftime(fmt)}</u:Expires></u:Timestamp>
<o:UsernameToken u:Id="uuid-{uuid.uuid4()}"><o:Username>{escape(username)}</o:Username>
<o:Password Type="{PASSWORD_TEXT}">{escape(password)}</o:Password></o:UsernameToken>
</o:Security>
</s:Header>
<s:Body>
<trust:RequestSecurityToken xmlns:trust="{NS["trust"]}">
<wsp:AppliesTo xmlns:wsp="{NS["wsp"]}"><a:EndpointReference>
<a:Address>{APPLIES_TO}</a:Address></a:EndpointReference></wsp:AppliesTo>
<trust:KeyType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer</trust:KeyType>
<trust:RequestType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue</trust:RequestType>
</trust:RequestSecurityToken>
</s:Body>
</s:Envelope>""".encode()


def _upn(assertion: ET.Element, fallback: str) -> str:
    """The user's UPN from the assertion's ``upn`` attribute (ADFS's claim), else its NameID."""
    for attr in assertion.iter():
        tag = attr.tag.rsplit("}", 1)[-1]
        if tag == "Attribute":
            name = (attr.get("AttributeName") or attr.get("Name") or "").lower()
            if name == "upn" or name.endswith("/upn"):
                for value in attr:
                    if value.tag.rsplit("}", 1)[-1] == "AttributeValue" and value.text:
                        return value.text.strip()
    for node in assertion.iter():
        if node.tag.rsplit("}", 1)[-1] in ("NameIdentifier", "NameID") and node.text:
            return node.text.strip()
    return fallback


def interpret(body: bytes, username: str) -> IdPResult:
    """Read an IdP answer: Fault → wrong credentials; RSTR with an assertion → OK; else unavailable."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise IdPUnavailable(f"identity provider answered with something that is not XML: {exc}") from None
    if root.find("s:Body/s:Fault", NS) is not None:
        reason = root.findtext("s:Body/s:Fault/s:Reason/s:Text", default="", namespaces=NS).strip()
        return IdPResult(ok=False, reason=reason or "invalid user credentials")
    for rstr in root.iter(f"{{{NS['trust']}}}RequestSecurityTokenResponse"):
        for ns in ("saml1", "saml2"):
            assertion = rstr.find(f".//{{{NS[ns]}}}Assertion")
            if assertion is not None:
                return IdPResult(ok=True, upn=_upn(assertion, username))
    raise IdPUnavailable("identity provider answer holds neither a SAML assertion nor a SOAP Fault")


def check_credentials(
    http: httpx.Client, url: str, username: str, password: str, now: _dt.datetime, *, timeout: float = 10.0
) -> IdPResult:
    """Ask the IdP; never called inside a store transaction (it is network I/O)."""
    body = build_rst(url, username, password, now)
    try:
        response = http.post(
            url,
            content=body,
            headers={"Content-Type": "application/soap+xml; charset=utf-8"},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise IdPUnavailable(f"identity provider unreachable: {exc}"[:200]) from None
    data = response.content[: MAX_RESPONSE + 1]
    if len(data) > MAX_RESPONSE:
        raise IdPUnavailable("identity provider answer too large")
    return interpret(data, username)
