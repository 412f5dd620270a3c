"""WS-Trust 1.3 over SOAP 1.2, as ADFS's ``/adfs/services/trust/13/UsernameMixed`` speaks it.

The one codec of this wire format, for both of its ends: the customer's IdP (``simulator.idp``)
parses the request (RST) and writes the answer (an RSTR collection holding a SAML 1.1 assertion) or a
SOAP fault; the MDM server (``mdm.server.idp``) writes the request and reads the answer when it checks
a user's password during Setup Assistant. Before, each end had its own copy, and the MDM server's read
answers without the guard below; one codec means the two can neither drift apart nor differ in safety.

Pure protocol code (DESIGN.md rule 2): no I/O, no Flask, no clock (callers pass ``now``).

Every parse of XML from the network goes through :func:`parse_xml`, which refuses DTDs outright (no
entity can be declared, so none can be expanded or fetched; SOAP 1.2 forbids a DTD anyway), and bounds
the size and the nesting depth. Answers are read two ways: :func:`parse_rstr` reads every fact of an
ADFS-shaped SAML 1.1 answer (for tests and simulated clients), :func:`read_token` reads only what a
relying client needs (the user) from any IdP's answer, SAML 1.1 or 2.0.

Messages are written from templates rather than with ElementTree so they carry the prefixes ADFS
uses (``s:``, ``a:``, ``u:``, ``trust:``, ``saml:``): clients that match on prefixed names, wrongly
but commonly, keep working.
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from mdm.protocol.isotime import IsoTimeError, parse_iso

__all__ = [
    "ACTION_ISSUE", "ACTION_ISSUE_FINAL", "AUTHN_METHOD_PASSWORD", "BEARER", "MAX_ANSWER_BYTES", "MAX_XML_BYTES",
    "MAX_XML_DEPTH", "REQUEST_TYPE_ISSUE", "SAML11_TOKEN_TYPE", "SOAP_CONTENT_TYPE",
    "IssuedToken", "NoTokenError", "RequestSecurityToken", "SamlToken", "WSTrustFault",
    "build_fault", "build_rst", "build_rstr", "failed_authentication", "invalid_request",
    "parse_fault", "parse_rst", "parse_rstr", "parse_xml", "read_token",
]

# -- namespaces ----------------------------------------------------------------------------------
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
WST = "http://docs.oasis-open.org/ws-sx/ws-trust/200512"
WST_2005 = "http://schemas.xmlsoap.org/ws/2005/02/trust"
WSP = "http://schemas.xmlsoap.org/ws/2004/09/policy"
WSP_15 = "http://www.w3.org/ns/ws-policy"
SAML1 = "urn:oasis:names:tc:SAML:1.0:assertion"
SAML2 = "urn:oasis:names:tc:SAML:2.0:assertion"

#: SOAP 1.2's media type (its HTTP binding); ADFS refuses a SOAP 1.1 ``text/xml`` request.
SOAP_CONTENT_TYPE = "application/soap+xml; charset=utf-8"

ACTION_ISSUE = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue"
ACTION_ISSUE_FINAL = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RSTRC/IssueFinal"
ACTION_FAULT = "http://www.w3.org/2005/08/addressing/soap/fault"
REQUEST_TYPE_ISSUE = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue"
BEARER = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer"
SAML11_TOKEN_TYPE = "urn:oasis:names:tc:SAML:1.0:assertion"
SAML11_TOKEN_TYPES = frozenset(
    {SAML11_TOKEN_TYPE, "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV1.1"}
)
PASSWORD_TEXT = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText"
)
AUTHN_METHOD_PASSWORD = "urn:oasis:names:tc:SAML:1.0:am:password"
ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"
UPN_CLAIM_NAMESPACE = "http://schemas.xmlsoap.org/claims"
IMMUTABLE_ID_NAMESPACE = "http://schemas.microsoft.com/LiveID/Federation/2008/05"

#: A request (RST) is a few kilobytes; an answer carries an assertion, maybe signed with a certificate chain.
MAX_XML_BYTES = 65_536
MAX_ANSWER_BYTES = 1_048_576
#: An ADFS answer nests about a dozen levels (a signed assertion's KeyInfo is the deepest); the bound
#: is the plist codec's, and protects every later consumer (``ET.tostring`` recurses) from a deep tree.
MAX_XML_DEPTH = 64
MAX_FIELD_CHARS = 1024
_DTD = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
# XML 1.0 cannot carry these characters at all, escaped or not (lone surrogates cannot even be encoded).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


# -- faults --------------------------------------------------------------------------------------
class WSTrustFault(Exception):
    """A SOAP 1.2 fault: raised by the parsers, rendered by :func:`build_fault`.

    ``code`` is the SOAP code's local name (``Sender`` when the request is at fault, ``Receiver``
    when the service is); ``subcode`` is a qualified name ``(namespace, local)``.
    """

    def __init__(self, code: str, subcode: tuple[str, str], reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.subcode = subcode
        self.reason = reason

    def __repr__(self) -> str:
        return f"WSTrustFault({self.code!r}, {self.subcode[1]!r}, {self.reason!r})"


def failed_authentication() -> WSTrustFault:
    """The fault ADFS answers for a wrong password and for an unknown user alike (no user probing)."""
    return WSTrustFault(
        "Sender",
        (WST_2005, "FailedAuthentication"),
        "ID3242: The security token could not be authenticated or authorized.",
    )


def invalid_request(reason: str) -> WSTrustFault:
    """A request that is not a WS-Trust 1.3 Issue request we can read; ``reason`` says what is wrong."""
    return WSTrustFault("Sender", (WST, "InvalidRequest"), reason)


# -- safe parsing --------------------------------------------------------------------------------
def parse_xml(data: bytes | str, *, limit: int = MAX_XML_BYTES, max_depth: int = MAX_XML_DEPTH) -> ET.Element:
    """Parse untrusted XML, refusing DTDs (entity bombs, external entities), oversized and too deep input.

    The text is decoded here and handed to expat as ``str``, which makes expat read it as UTF-8
    whatever the XML declaration claims: the text searched for ``<!DOCTYPE`` is exactly the text
    parsed. Raises :class:`WSTrustFault` (``InvalidRequest``) for anything unacceptable; the readers
    of answers turn that into ``ValueError`` (an answer that cannot be read is not the IdP's fault).
    """
    if isinstance(data, bytes):
        if len(data) > limit:
            raise invalid_request(f"the message is larger than {limit} bytes")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise invalid_request("the message is not UTF-8 text") from None
    else:
        if len(data) > limit:
            raise invalid_request(f"the message is larger than {limit} characters")
        text = data.removeprefix("\ufeff")
    if _DTD.search(text):
        raise invalid_request("a SOAP message must not contain a document type declaration (DTD)")
    if not text.strip():
        raise invalid_request("the message is empty; expected a SOAP 1.2 envelope")
    try:
        if text.count("<") <= 2 * max_depth:
            # Nesting d levels takes d start tags and d - 1 end tags (only the innermost can be empty), so
            # a document with this few tags cannot be too deep: the common, small messages skip counting.
            return ET.fromstring(text)
        parser = ET.XMLPullParser(("start", "end"))
        parser.feed(text)
        parser.close()
    except (ET.ParseError, ValueError) as exc:
        raise invalid_request(f"the message is not well-formed XML: {exc}") from None
    depth, root = 0, None
    for event, element in parser.read_events():
        if event == "start":
            depth += 1
            if depth > max_depth:
                raise invalid_request(f"the message nests elements deeper than {max_depth} levels")
        else:
            depth -= 1
            root = element
    if root is None:  # expat refuses a document without an element; this is a second lock on that door
        raise invalid_request("the message holds no element")
    return root


def _q(namespace: str, local: str) -> str:
    return f"{{{namespace}}}{local}"


def _text(element: ET.Element | None) -> str | None:
    if element is None:
        return None
    return (element.text or "").strip()


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _find_local(parent: ET.Element, local: str) -> ET.Element | None:
    """First descendant with this local name, whatever its namespace (clients disagree on WS-Policy's)."""
    for element in parent.iter():
        if element is not parent and _local(element.tag) == local:
            return element
    return None


# -- the request ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RequestSecurityToken:
    """What the IdP needs from an RST: the credentials, the relying party and the message to answer."""

    username: str
    password: str
    applies_to: str
    message_id: str | None = None
    key_type: str = BEARER


def build_rst(
    username: str,
    password: str,
    applies_to: str,
    now: datetime,
    *,
    to: str = "https://sts.contoso.com/adfs/services/trust/13/usernamemixed",
    message_id: str | None = None,
    token_id: str | None = None,
) -> bytes:
    """The RST a client sends (the shape MSAL/ADAL send): UsernameToken in the header, Issue in the body.

    ``now`` stamps the WS-Security timestamp (valid ten minutes); pass the world clock's time. ``to``
    is the endpoint's URL. ``message_id`` (echoed back as ``RelatesTo``) and ``token_id`` (the
    UsernameToken's ``wsu:Id``) are fresh UUIDs unless given: a seeded caller passes its own.
    Raises ValueError for a value XML cannot carry (control characters, lone surrogates).
    """
    message_id = message_id or f"urn:uuid:{uuid.uuid4()}"
    token_id = token_id or f"uuid-{uuid.uuid4()}"
    values = {"username": username, "password": password, "applies_to": applies_to, "to": to,
              "message_id": message_id, "token_id": token_id}
    for name, value in values.items():
        if _NOT_XML.search(value):
            raise ValueError(f"{name} contains a character XML cannot carry")
    created = _instant(now)
    expires = _instant(datetime.fromtimestamp(now.timestamp() + 600, UTC))
    return (
        f'<s:Envelope xmlns:s="{SOAP12}" xmlns:wsa="{WSA}" xmlns:wsu="{WSU}">'
        "<s:Header>"
        f'<wsa:Action s:mustUnderstand="1">{ACTION_ISSUE}</wsa:Action>'
        f"<wsa:MessageID>{_x(message_id)}</wsa:MessageID>"
        f"<wsa:ReplyTo><wsa:Address>{ANONYMOUS}</wsa:Address></wsa:ReplyTo>"
        f'<wsa:To s:mustUnderstand="1">{_x(to)}</wsa:To>'
        f'<wsse:Security s:mustUnderstand="1" xmlns:wsse="{WSSE}">'
        f'<wsu:Timestamp wsu:Id="_0"><wsu:Created>{created}</wsu:Created>'
        f"<wsu:Expires>{expires}</wsu:Expires></wsu:Timestamp>"
        f"<wsse:UsernameToken wsu:Id={quoteattr(token_id)}>"
        f"<wsse:Username>{_x(username)}</wsse:Username>"
        f'<wsse:Password Type="{PASSWORD_TEXT}">{_x(password)}</wsse:Password>'
        "</wsse:UsernameToken></wsse:Security>"
        "</s:Header>"
        "<s:Body>"
        f'<wst:RequestSecurityToken xmlns:wst="{WST}">'
        f'<wsp:AppliesTo xmlns:wsp="{WSP}"><wsa:EndpointReference>'
        f"<wsa:Address>{_x(applies_to)}</wsa:Address></wsa:EndpointReference></wsp:AppliesTo>"
        f"<wst:KeyType>{BEARER}</wst:KeyType>"
        f"<wst:RequestType>{REQUEST_TYPE_ISSUE}</wst:RequestType>"
        "</wst:RequestSecurityToken>"
        "</s:Body>"
        "</s:Envelope>"
    ).encode()


def parse_rst(data: bytes | str) -> RequestSecurityToken:
    """Read an RST sent to UsernameMixed; raises :class:`WSTrustFault` saying what is wrong with it."""
    root = parse_xml(data)
    if root.tag == _q(SOAP11, "Envelope"):
        raise invalid_request("this endpoint speaks SOAP 1.2; the envelope is SOAP 1.1")
    if root.tag != _q(SOAP12, "Envelope"):
        raise invalid_request(f"expected a SOAP 1.2 Envelope, got <{_local(root.tag)}>")
    header = root.find(_q(SOAP12, "Header"))
    body = root.find(_q(SOAP12, "Body"))
    if header is None or body is None:
        raise invalid_request("the envelope needs both an s:Header and an s:Body")

    action = _text(header.find(_q(WSA, "Action")))
    if action is None:
        raise WSTrustFault(
            "Sender",
            (WSA, "MessageAddressingHeaderRequired"),
            "A required header representing a Message Addressing Property is not present: Action",
        )
    if action != ACTION_ISSUE:
        raise WSTrustFault(
            "Sender",
            (WSA, "ActionNotSupported"),
            f"The message with Action '{action}' cannot be processed at the receiver, due to a "
            "ContractFilter mismatch at the EndpointDispatcher.",
        )
    # WS-Addressing spells it MessageID; MSAL's WS-Trust client writes messageID, and ADFS copes.
    message_id = _text(header.find(_q(WSA, "MessageID"))) or _text(header.find(_q(WSA, "messageID")))

    token = header.find(f"{_q(WSSE, 'Security')}/{_q(WSSE, 'UsernameToken')}")
    if token is None:
        raise invalid_request("the s:Header has no wsse:Security/wsse:UsernameToken")
    username = _text(token.find(_q(WSSE, "Username")))
    password_element = token.find(_q(WSSE, "Password"))
    if not username or password_element is None:
        raise invalid_request("the wsse:UsernameToken needs a wsse:Username and a wsse:Password")
    if password_element.get("Type", PASSWORD_TEXT) != PASSWORD_TEXT:
        raise invalid_request("only wsse:Password of Type PasswordText is supported")
    password = password_element.text or ""  # passwords keep their spaces
    if len(username) > MAX_FIELD_CHARS or len(password) > MAX_FIELD_CHARS:
        raise invalid_request(f"the username and password are limited to {MAX_FIELD_CHARS} characters")

    rst = body.find(_q(WST, "RequestSecurityToken"))
    if rst is None:
        if body.find(_q(WST_2005, "RequestSecurityToken")) is not None:
            raise invalid_request(
                "this is the WS-Trust 1.3 endpoint; the request uses WS-Trust February 2005"
            )
        raise invalid_request("the s:Body has no wst:RequestSecurityToken")
    request_type = _text(rst.find(_q(WST, "RequestType")))
    if request_type != REQUEST_TYPE_ISSUE:
        raise invalid_request(f"wst:RequestType must be {REQUEST_TYPE_ISSUE}")
    key_type = _text(rst.find(_q(WST, "KeyType"))) or BEARER
    if key_type != BEARER:
        raise invalid_request("only Bearer tokens are issued (wst:KeyType)")
    token_type = _text(rst.find(_q(WST, "TokenType")))
    if token_type and token_type not in SAML11_TOKEN_TYPES:
        raise invalid_request(f"only SAML 1.1 tokens are issued ({SAML11_TOKEN_TYPE})")
    applies = rst.find(_q(WSP, "AppliesTo"))
    if applies is None:
        applies = rst.find(_q(WSP_15, "AppliesTo"))
    address = _text(_find_local(applies, "Address")) if applies is not None else None
    if not address:
        raise invalid_request("wsp:AppliesTo with a wsa:EndpointReference/wsa:Address is required")
    if len(address) > MAX_FIELD_CHARS:
        raise invalid_request(f"the wsp:AppliesTo address is limited to {MAX_FIELD_CHARS} characters")
    return RequestSecurityToken(username, password, address, message_id, key_type)


# -- the answer ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamlToken:
    """The facts of one issued SAML 1.1 assertion: the service decides them, :func:`build_rstr` writes."""

    upn: str
    immutable_id: str
    issuer: str
    audience: str
    assertion_id: str
    issue_instant: datetime
    not_on_or_after: datetime

    @property
    def not_before(self) -> datetime:
        return self.issue_instant


def build_rstr(token: SamlToken, *, relates_to: str | None = None) -> bytes:
    """The RSTR collection ADFS answers with. The assertion is not XML-signed (see the report)."""
    created, expires = _instant(token.issue_instant), _instant(token.not_on_or_after)
    subject = (
        "<saml:Subject>"
        '<saml:NameIdentifier Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified">'
        f"{_x(token.immutable_id)}</saml:NameIdentifier>"
        "<saml:SubjectConfirmation><saml:ConfirmationMethod>urn:oasis:names:tc:SAML:1.0:cm:bearer"
        "</saml:ConfirmationMethod></saml:SubjectConfirmation>"
        "</saml:Subject>"
    )
    assertion = (
        f'<saml:Assertion MajorVersion="1" MinorVersion="1" AssertionID={quoteattr(token.assertion_id)} '
        f'Issuer={quoteattr(token.issuer)} IssueInstant="{created}" xmlns:saml="{SAML1}">'
        f'<saml:Conditions NotBefore="{_instant(token.not_before)}" NotOnOrAfter="{expires}">'
        "<saml:AudienceRestrictionCondition>"
        f"<saml:Audience>{_x(token.audience)}</saml:Audience>"
        "</saml:AudienceRestrictionCondition></saml:Conditions>"
        f"<saml:AttributeStatement>{subject}"
        f'<saml:Attribute AttributeName="UPN" AttributeNamespace="{UPN_CLAIM_NAMESPACE}">'
        f"<saml:AttributeValue>{_x(token.upn)}</saml:AttributeValue></saml:Attribute>"
        f'<saml:Attribute AttributeName="ImmutableID" AttributeNamespace="{IMMUTABLE_ID_NAMESPACE}">'
        f"<saml:AttributeValue>{_x(token.immutable_id)}</saml:AttributeValue></saml:Attribute>"
        "</saml:AttributeStatement>"
        f'<saml:AuthenticationStatement AuthenticationMethod="{AUTHN_METHOD_PASSWORD}" '
        f'AuthenticationInstant="{created}">{subject}</saml:AuthenticationStatement>'
        "</saml:Assertion>"
    )
    reference = (
        f'<o:SecurityTokenReference xmlns:o="{WSSE}" '
        'k:TokenType="http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV1.1" '
        'xmlns:k="http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd">'
        '<o:KeyIdentifier ValueType="http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.0'
        f'#SAMLAssertionID">{_x(token.assertion_id)}</o:KeyIdentifier></o:SecurityTokenReference>'
    )
    return (
        f'<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA}" xmlns:u="{WSU}">'
        "<s:Header>"
        f'<a:Action s:mustUnderstand="1">{ACTION_ISSUE_FINAL}</a:Action>'
        + (f"<a:RelatesTo>{_x(relates_to)}</a:RelatesTo>" if relates_to else "")
        + f'<o:Security s:mustUnderstand="1" xmlns:o="{WSSE}">'
        f'<u:Timestamp u:Id="_0"><u:Created>{created}</u:Created>'
        f"<u:Expires>{_instant(datetime.fromtimestamp(token.issue_instant.timestamp() + 300, UTC))}"
        "</u:Expires></u:Timestamp></o:Security>"
        "</s:Header>"
        "<s:Body>"
        f'<trust:RequestSecurityTokenResponseCollection xmlns:trust="{WST}">'
        "<trust:RequestSecurityTokenResponse>"
        f"<trust:Lifetime><u:Created>{created}</u:Created><u:Expires>{expires}</u:Expires></trust:Lifetime>"
        f'<wsp:AppliesTo xmlns:wsp="{WSP}"><a:EndpointReference>'
        f"<a:Address>{_x(token.audience)}</a:Address></a:EndpointReference></wsp:AppliesTo>"
        f"<trust:RequestedSecurityToken>{assertion}</trust:RequestedSecurityToken>"
        f"<trust:RequestedAttachedReference>{reference}</trust:RequestedAttachedReference>"
        f"<trust:RequestedUnattachedReference>{reference}</trust:RequestedUnattachedReference>"
        f"<trust:TokenType>{SAML11_TOKEN_TYPE}</trust:TokenType>"
        f"<trust:RequestType>{REQUEST_TYPE_ISSUE}</trust:RequestType>"
        f"<trust:KeyType>{BEARER}</trust:KeyType>"
        "</trust:RequestSecurityTokenResponse>"
        "</trust:RequestSecurityTokenResponseCollection>"
        "</s:Body>"
        "</s:Envelope>"
    ).encode()


def parse_rstr(data: bytes | str) -> dict[str, Any]:
    """Read every fact of an ADFS-shaped answer (a SAML 1.1 assertion), as a simulated client checks it.

    Returns ``upn``, ``immutable_id``, ``issuer``, ``assertion_id``, ``issue_instant``,
    ``not_before``, ``not_on_or_after``, ``audience``, ``authentication_method``, ``token_type``,
    ``lifetime_created``, ``lifetime_expires`` (datetimes in UTC) and ``assertion`` (the SAML
    assertion re-serialised). Raises :class:`WSTrustFault` when the answer is a fault, ValueError
    when it is neither (or not safe to read).
    """
    body = _envelope_body(data)
    _raise_fault(body)
    found = _find_assertion(body, (SAML1,))
    if found is None:
        raise ValueError("the answer holds no SAML 1.1 assertion")
    response, assertion = found
    attributes: dict[str, str] = {}
    for attribute in assertion.iter(_q(SAML1, "Attribute")):
        value = _text(attribute.find(_q(SAML1, "AttributeValue")))
        attributes[attribute.get("AttributeName", "")] = value or ""
    upn = _upn_claim(assertion)
    conditions = assertion.find(_q(SAML1, "Conditions"))
    statement = assertion.find(_q(SAML1, "AuthenticationStatement"))
    lifetime = response.find(_q(WST, "Lifetime"))
    if conditions is None or statement is None or lifetime is None or upn is None:
        raise ValueError("the assertion lacks Conditions, an AuthenticationStatement, a UPN or a Lifetime")
    return {
        "upn": upn,
        "immutable_id": attributes.get("ImmutableID"),
        "issuer": assertion.get("Issuer"),
        "assertion_id": assertion.get("AssertionID"),
        "issue_instant": _time(assertion.get("IssueInstant")),
        "not_before": _time(conditions.get("NotBefore")),
        "not_on_or_after": _time(conditions.get("NotOnOrAfter")),
        "audience": _text(_find_local(conditions, "Audience")),
        "authentication_method": statement.get("AuthenticationMethod"),
        "token_type": _text(response.find(_q(WST, "TokenType"))),
        "lifetime_created": _time(_text(lifetime.find(_q(WSU, "Created")))),
        "lifetime_expires": _time(_text(lifetime.find(_q(WSU, "Expires")))),
        "assertion": ET.tostring(assertion, encoding="unicode"),
    }


class NoTokenError(ValueError):
    """A well-formed SOAP answer that holds neither a token nor a fault: the IdP did not answer the question."""


@dataclass(frozen=True)
class IssuedToken:
    """What a relying client needs from any IdP's token answer: who the user is.

    ADFS issues SAML 1.1 to ``urn:federation:MicrosoftOnline``; other IdPs (and ADFS for other relying
    parties) issue SAML 2.0. The UPN is the attribute named ``UPN`` (any case) or a claim URI ending
    in ``/upn``; ``name_id`` is the subject's NameIdentifier (1.1) or NameID (2.0), for IdPs that
    send no UPN claim.
    """

    saml_version: str
    upn: str | None
    name_id: str | None


def read_token(data: bytes | str) -> IssuedToken:
    """Read a token answer as the MDM server does: a SAML assertion means the password was right.

    Raises :class:`WSTrustFault` when the answer is a SOAP fault (the IdP said no),
    :class:`NoTokenError` when it is a SOAP envelope with neither, ValueError when it is not a SOAP
    1.2 envelope or not safe to read (too large, too deep, a DTD, not XML).
    """
    body = _envelope_body(data)
    _raise_fault(body)
    found = _find_assertion(body, (SAML1, SAML2))
    if found is None:
        raise NoTokenError("the answer holds neither a SAML assertion nor a SOAP Fault")
    assertion = found[1]
    name_id = None
    for node in assertion.iter():
        if _local(node.tag) in ("NameIdentifier", "NameID") and node.text:
            name_id = node.text.strip()
            break
    version = "2.0" if assertion.tag == _q(SAML2, "Assertion") else "1.1"
    return IssuedToken(version, _upn_claim(assertion), name_id)


def _find_assertion(body: ET.Element, versions: tuple[str, ...]) -> tuple[ET.Element, ET.Element] | None:
    """The first RSTR in the Body holding an assertion of one of ``versions`` (earlier ones preferred).

    WS-Trust 1.3 wraps the final answer in an RSTR collection, a non-final one stands alone; searching
    the whole Body reads both. Raises :class:`NoTokenError` when the Body holds no RSTR at all.
    """
    responses = list(body.iter(_q(WST, "RequestSecurityTokenResponse")))
    if not responses:
        raise NoTokenError("the answer holds no wst:RequestSecurityTokenResponse")
    for response in responses:
        for namespace in versions:
            assertion = response.find(f".//{_q(namespace, 'Assertion')}")
            if assertion is not None:
                return response, assertion
    return None


def _upn_claim(assertion: ET.Element) -> str | None:
    """The UPN claim: SAML 1.1 ``AttributeName="UPN"`` (ADFS), or SAML 2.0 ``Name="…/claims/upn"``."""
    for attribute in assertion.iter():
        if _local(attribute.tag) != "Attribute":
            continue
        name = (attribute.get("AttributeName") or attribute.get("Name") or "").lower()
        if name == "upn" or name.endswith("/upn"):
            for value in attribute:
                if _local(value.tag) == "AttributeValue" and value.text:
                    return value.text.strip()
    return None


# -- faults on the wire --------------------------------------------------------------------------
def build_fault(fault: WSTrustFault, *, relates_to: str | None = None) -> bytes:
    """A SOAP 1.2 fault envelope in ADFS's shape."""
    namespace, local = fault.subcode
    return (
        f'<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA}">'
        "<s:Header>"
        f'<a:Action s:mustUnderstand="1">{ACTION_FAULT}</a:Action>'
        + (f"<a:RelatesTo>{_x(relates_to)}</a:RelatesTo>" if relates_to else "")
        + "</s:Header>"
        "<s:Body><s:Fault>"
        f"<s:Code><s:Value>s:{_x(fault.code)}</s:Value>"
        f'<s:Subcode><s:Value xmlns:a={quoteattr(namespace)}>a:{_x(local)}</s:Value></s:Subcode></s:Code>'
        f'<s:Reason><s:Text xml:lang="en-US">{_x(fault.reason)}</s:Text></s:Reason>'
        "</s:Fault></s:Body>"
        "</s:Envelope>"
    ).encode()


def parse_fault(data: bytes | str) -> dict[str, str]:
    """``{"code": "Sender", "subcode": "FailedAuthentication", "reason": "ID3242: …"}``.

    Raises ValueError when the message is not a fault.
    """
    fault = _envelope_body(data).find(_q(SOAP12, "Fault"))
    if fault is None:
        raise ValueError("the message is not a SOAP 1.2 fault")
    parsed = _fault_from(fault)
    return {"code": parsed.code, "subcode": parsed.subcode[1], "reason": parsed.reason}


def _raise_fault(body: ET.Element) -> None:
    """A fault in the Body is the IdP's answer (a wrong password, say): raise it before looking for a token."""
    fault = body.find(_q(SOAP12, "Fault"))
    if fault is not None:
        raise _fault_from(fault)


def _fault_from(fault: ET.Element) -> WSTrustFault:
    code = _text(fault.find(f"{_q(SOAP12, 'Code')}/{_q(SOAP12, 'Value')}")) or ""
    subcode = _text(fault.find(f"{_q(SOAP12, 'Code')}/{_q(SOAP12, 'Subcode')}/{_q(SOAP12, 'Value')}")) or ""
    reason = _text(fault.find(f"{_q(SOAP12, 'Reason')}/{_q(SOAP12, 'Text')}")) or ""
    return WSTrustFault(code.rpartition(":")[2], ("", subcode.rpartition(":")[2]), reason)


def _envelope_body(data: bytes | str) -> ET.Element:
    try:
        root = parse_xml(data, limit=MAX_ANSWER_BYTES)
    except WSTrustFault as exc:
        raise ValueError(exc.reason) from None
    body = root.find(_q(SOAP12, "Body"))
    if root.tag != _q(SOAP12, "Envelope") or body is None:
        raise ValueError("the message is not a SOAP 1.2 envelope with a Body")
    return body


# -- small helpers -------------------------------------------------------------------------------
def _x(value: str) -> str:
    """Escape text content; a carriage return is written as a reference so parsing keeps it."""
    return escape(value).replace("\r", "&#13;")


def _instant(moment: datetime) -> str:
    """ADFS writes instants with milliseconds and a Z: ``2026-01-01T09:30:00.000Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parse_iso(text)
    except IsoTimeError:
        raise ValueError(f"not an instant: {text!r}") from None
