"""The one WS-Trust 1.3 codec: both ends round-trip, every reader refuses DTDs, and IdP and MDM server agree.

The MDM server's client (``mdm.server.idp``) used to read IdP answers with a bare ``ET.fromstring``, so an
answer could declare entities; the payloads here would have been expanded there. Every parse path, the
client's included, now goes through :func:`mdm.protocol.wstrust.parse_xml`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol import wstrust
from mdm.server import idp as client
from simulator.idp.http import USERNAME_MIXED_PATH, create_app
from simulator.idp.service import IdentityProvider
from simulator.idp.store import open_idp_store

START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
RP = "urn:federation:MicrosoftOnline"
IDP_URL = "http://idp.test" + USERNAME_MIXED_PATH
TOKEN = wstrust.SamlToken(
    upn="adele.vance@contoso.com",
    immutable_id="q1w2e3r4t5y6u7i8o9p0AA==",
    issuer="http://sts.contoso.com/adfs/services/trust",
    audience=RP,
    assertion_id="_6f1b4d9e-0000-4000-8000-000000000001",
    issue_instant=START,
    not_on_or_after=START + timedelta(hours=1),
)
ENVELOPE = '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>{}</s:Body></s:Envelope>'
WST = "http://docs.oasis-open.org/ws-sx/ws-trust/200512"


def answer(assertion: str, *, collection: bool = True) -> str:
    """A token answer around ``assertion``, in or out of an RSTR collection."""
    rstr = (f'<trust:RequestSecurityTokenResponse xmlns:trust="{WST}"><trust:RequestedSecurityToken>'
            f"{assertion}</trust:RequestedSecurityToken></trust:RequestSecurityTokenResponse>")
    if collection:
        rstr = f'<c:RequestSecurityTokenResponseCollection xmlns:c="{WST}">{rstr}</c:RequestSecurityTokenResponseCollection>'
    return ENVELOPE.format(rstr)


# -- round trips ---------------------------------------------------------------------------------------
def test_rst_round_trips_with_its_header() -> None:
    password = " p<&>'\"w\r\n\t "  # passwords keep every space, and XML's five specials survive
    body = wstrust.build_rst("adele.vance@contoso.com", password, RP, START, to="https://sts.contoso.com/x",
                             message_id="urn:uuid:1", token_id="uuid-2")
    assert wstrust.parse_rst(body) == wstrust.RequestSecurityToken(
        "adele.vance@contoso.com", password, RP, "urn:uuid:1", wstrust.BEARER)
    ns = client.NS
    root = ET.fromstring(body)
    assert root.findtext("s:Header/a:To", namespaces=ns) == "https://sts.contoso.com/x"
    assert root.findtext("s:Header/a:MessageID", namespaces=ns) == "urn:uuid:1"
    assert root.find("s:Header/o:Security/o:UsernameToken", ns).get(f"{{{ns['u']}}}Id") == "uuid-2"
    stamp = root.find("s:Header/o:Security/u:Timestamp", ns)
    assert stamp.findtext("u:Created", namespaces=ns) == "2026-03-02T09:30:00.000Z"
    assert stamp.findtext("u:Expires", namespaces=ns) == "2026-03-02T09:40:00.000Z"


def test_rst_ids_are_fresh_unless_given() -> None:
    one, two = (ET.fromstring(wstrust.build_rst("a@b.c", "p", RP, START)) for _ in range(2))
    ids = [r.findtext("s:Header/a:MessageID", namespaces=client.NS) for r in (one, two)]
    assert ids[0] != ids[1] and all(i.startswith("urn:uuid:") for i in ids)


def test_the_idp_reads_msal_lowercase_message_id() -> None:
    body = wstrust.build_rst("a@b.c", "p", RP, START, message_id="urn:uuid:7").replace(b"MessageID", b"messageID")
    assert wstrust.parse_rst(body).message_id == "urn:uuid:7"


@pytest.mark.parametrize("field", ["username", "password", "applies_to", "to", "message_id", "token_id"])
@pytest.mark.parametrize("bad", ["\x00", "\x1b", "\ud800", "\uffff"])
def test_build_rst_refuses_what_xml_cannot_carry(field: str, bad: str) -> None:
    values = {"username": "a@b.c", "password": "p", "applies_to": RP}
    extra = {"to": "https://x", "message_id": "urn:uuid:1", "token_id": "uuid-1"}
    (values if field in values else extra)[field] = f"x{bad}y"
    with pytest.raises(ValueError, match=f"{field} contains a character XML cannot carry"):
        wstrust.build_rst(values["username"], values["password"], values["applies_to"], START, **extra)


def test_rstr_round_trips_every_fact() -> None:
    data = wstrust.build_rstr(TOKEN, relates_to="urn:uuid:42")
    parsed = wstrust.parse_rstr(data)
    assert {k: v for k, v in parsed.items() if k != "assertion"} == {
        "upn": TOKEN.upn,
        "immutable_id": TOKEN.immutable_id,
        "issuer": TOKEN.issuer,
        "assertion_id": TOKEN.assertion_id,
        "issue_instant": START,
        "not_before": START,
        "not_on_or_after": START + timedelta(hours=1),
        "audience": RP,
        "authentication_method": wstrust.AUTHN_METHOD_PASSWORD,
        "token_type": wstrust.SAML11_TOKEN_TYPE,
        "lifetime_created": START,
        "lifetime_expires": START + timedelta(hours=1),
    }
    assert ET.fromstring(parsed["assertion"]).get("AssertionID") == TOKEN.assertion_id
    assert wstrust.read_token(data) == wstrust.IssuedToken("1.1", TOKEN.upn, TOKEN.immutable_id)
    assert b"<a:RelatesTo>urn:uuid:42</a:RelatesTo>" in data


@given(upn=st.text(min_size=1, max_size=40).filter(lambda s: s.strip() == s),
       audience=st.text(min_size=1, max_size=40).filter(lambda s: s.strip() == s))
def test_rstr_round_trips_any_text_xml_can_carry(upn: str, audience: str) -> None:
    if any(wstrust._NOT_XML.search(v) for v in (upn, audience)):
        return
    token = wstrust.SamlToken(upn, "id", 'iss "&<', audience, "_a'\"", START, START + timedelta(hours=1))
    parsed = wstrust.parse_rstr(wstrust.build_rstr(token))
    assert (parsed["upn"], parsed["audience"], parsed["issuer"], parsed["assertion_id"]) == (
        upn, audience, 'iss "&<', "_a'\"")


@pytest.mark.parametrize("fault", [
    wstrust.failed_authentication(),
    wstrust.invalid_request("a <reason> & 'more'"),
    wstrust.WSTrustFault("Receiver", ("urn:x", "InternalServiceFault"), "the IdP broke"),
], ids=["failed-authentication", "invalid-request", "receiver"])
def test_fault_round_trips_and_every_answer_reader_raises_it(fault: wstrust.WSTrustFault) -> None:
    data = wstrust.build_fault(fault, relates_to="urn:uuid:9")
    assert wstrust.parse_fault(data) == {"code": fault.code, "subcode": fault.subcode[1], "reason": fault.reason}
    for read in (wstrust.parse_rstr, wstrust.read_token):
        with pytest.raises(wstrust.WSTrustFault) as raised:
            read(data)
        assert (raised.value.code, raised.value.subcode[1], raised.value.reason) == (
            fault.code, fault.subcode[1], fault.reason)
    assert client.interpret(data, "x") == client.IdPResult(ok=False, reason=fault.reason)


def test_parse_fault_says_when_a_message_is_no_fault() -> None:
    with pytest.raises(ValueError, match="not a SOAP 1.2 fault"):
        wstrust.parse_fault(wstrust.build_rstr(TOKEN))


# -- what a relying client reads from other IdPs ---------------------------------------------------------
SAML2_UPN = (
    '<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="_x" Version="2.0">'
    "<saml2:Subject><saml2:NameID>AbCdEf==</saml2:NameID></saml2:Subject><saml2:AttributeStatement>"
    '<saml2:Attribute Name="http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn">'
    "<saml2:AttributeValue> lee.gu@contoso.com </saml2:AttributeValue></saml2:Attribute>"
    "</saml2:AttributeStatement></saml2:Assertion>"
)
SAML1_NAME_ONLY = (
    '<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:1.0:assertion"><saml:AttributeStatement><saml:Subject>'
    "<saml:NameIdentifier>megan.bowen@contoso.com</saml:NameIdentifier></saml:Subject></saml:AttributeStatement>"
    "</saml:Assertion>"
)


@pytest.mark.parametrize(("data", "token", "user"), [
    (answer(SAML2_UPN), wstrust.IssuedToken("2.0", "lee.gu@contoso.com", "AbCdEf=="), "lee.gu@contoso.com"),
    (answer(SAML2_UPN, collection=False), wstrust.IssuedToken("2.0", "lee.gu@contoso.com", "AbCdEf=="),
     "lee.gu@contoso.com"),
    (answer(SAML1_NAME_ONLY), wstrust.IssuedToken("1.1", None, "megan.bowen@contoso.com"), "megan.bowen@contoso.com"),
    (answer('<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:1.0:assertion"/>'),
     wstrust.IssuedToken("1.1", None, None), "typed@contoso.com"),
], ids=["saml2-claim-uri", "saml2-single-rstr", "saml1-nameid-only", "saml1-empty"])
def test_read_token_reads_any_idps_token_and_the_client_names_the_user(
    data: str, token: wstrust.IssuedToken, user: str
) -> None:
    assert wstrust.read_token(data) == token
    assert client.interpret(data.encode(), "typed@contoso.com") == client.IdPResult(ok=True, upn=user)


@pytest.mark.parametrize("data", [
    ENVELOPE.format(""),
    ENVELOPE.format(f'<t:RequestSecurityTokenResponse xmlns:t="{WST}"><t:TokenType>x</t:TokenType>'
                    "</t:RequestSecurityTokenResponse>"),
], ids=["empty-body", "rstr-without-assertion"])
def test_an_answer_with_neither_token_nor_fault_is_an_outage(data: str) -> None:
    with pytest.raises(wstrust.NoTokenError):
        wstrust.read_token(data)
    with pytest.raises(client.IdPUnavailable, match="neither a SAML assertion nor a SOAP Fault"):
        client.interpret(data.encode(), "x")


# -- the guard, on every parse path ------------------------------------------------------------------------
#: An otherwise perfect answer whose UPN is an entity: a reader that expands it signs in "evil@contoso.com".
ENTITY_ANSWER = ('<?xml version="1.0"?><!DOCTYPE s:Envelope [<!ENTITY who "evil@contoso.com">]>'
                 + answer(SAML1_NAME_ONLY.replace("megan.bowen@contoso.com", "&who;")))
BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">' for i in range(1, 10))
    + "]>" + ENVELOPE.format("&lol9;")
)
XXE = ('<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + ENVELOPE.format("&x;"))
EXTERNAL_DTD = '<!doctype s:Envelope SYSTEM "http://evil.example/soap.dtd">' + ENVELOPE.format("")
SNEAKY_UTF16 = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY b "c">]>' + ENVELOPE.format("&b;")


def _server_reads(data: str | bytes) -> object:
    return client.interpret(data if isinstance(data, bytes) else data.encode(), "typed@contoso.com")


#: Every reader of untrusted XML and the error it raises: the IdP's (a fault to send back), the answer
#: readers' (ValueError), the MDM server's (the IdP is unavailable: never "wrong password", never a user).
PATHS: dict[str, tuple[Callable[[str | bytes], object], type[Exception]]] = {
    "parse_xml": (wstrust.parse_xml, wstrust.WSTrustFault),
    "parse_rst": (wstrust.parse_rst, wstrust.WSTrustFault),
    "parse_rstr": (wstrust.parse_rstr, ValueError),
    "parse_fault": (wstrust.parse_fault, ValueError),
    "read_token": (wstrust.read_token, ValueError),
    "mdm_server_interpret": (_server_reads, client.IdPUnavailable),
}


def _refused(path: str, data: str | bytes) -> str:
    read, error = PATHS[path]
    with pytest.raises(error) as raised:
        read(data)
    return str(raised.value)


def test_the_entity_payload_is_live_xml() -> None:
    # Proof the payloads bite: a plain ElementTree parse (what the MDM server used) expands the entity.
    root = ET.fromstring(ENTITY_ANSWER)
    assert [e.text for e in root.iter("{urn:oasis:names:tc:SAML:1.0:assertion}NameIdentifier")] == ["evil@contoso.com"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("payload", [ENTITY_ANSWER, BILLION_LAUGHS, XXE, EXTERNAL_DTD, SNEAKY_UTF16],
                         ids=["entity", "billion-laughs", "xxe", "external-dtd", "utf16-declared"])
def test_dtds_and_entities_are_refused_on_every_parse_path(path: str, payload: str) -> None:
    for data in (payload, payload.encode()):  # text (expat told it is UTF-8) and bytes from the network
        message = _refused(path, data)
        assert "document type declaration (DTD)" in message
        assert "evil" not in message


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("payload", "reason"), [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"<not xml", "not well-formed XML"),
    (wstrust.build_rstr(TOKEN)[:-20], "not well-formed XML"),
    (b"<a></b>", "not well-formed XML"),
    (b"<a>\x01</a>", "not well-formed XML"),
    (b"\xff\xfe<\x00a\x00/\x00>\x00", "not UTF-8"),
    (b"<!-- only a comment -->", "not well-formed XML"),
], ids=["empty", "blank", "unclosed", "truncated", "mismatched", "control-char", "utf16", "no-element"])
def test_malformed_xml_is_refused_with_a_clear_error(path: str, payload: bytes, reason: str) -> None:
    assert reason in _refused(path, payload)


@pytest.mark.parametrize("path", PATHS)
def test_deep_nesting_is_refused(path: str) -> None:
    deep = ENVELOPE.format("<x>" * 70 + "</x>" * 70)
    assert f"deeper than {wstrust.MAX_XML_DEPTH} levels" in _refused(path, deep)
    ok = ENVELOPE.format("<x>" * 60 + "</x>" * 60)
    assert wstrust.parse_xml(ok) is not None


def test_the_depth_bound_is_exact_whether_the_message_is_small_or_large() -> None:
    def nested(depth: int, padding: int = 0) -> str:
        return "<a>" * (depth - 1) + "<!---->" * padding + "<a/>" + "</a>" * (depth - 1)

    limit = wstrust.MAX_XML_DEPTH
    for padding in (0, 200):  # few tags (parsed at once) and many (counted while parsing)
        assert wstrust.parse_xml(nested(limit, padding)).tag == "a"
        with pytest.raises(wstrust.WSTrustFault, match=f"deeper than {limit} levels"):
            wstrust.parse_xml(nested(limit + 1, padding))


def test_size_is_bounded_for_requests_and_answers() -> None:
    padding = "<!--" + "x" * wstrust.MAX_XML_BYTES + "-->"
    assert "larger than 65536 bytes" in _refused("parse_rst", wstrust.build_rst("a@b.c", "p", RP, START) + padding.encode())
    # An answer may be larger (a signed assertion), up to its own bound.
    big_answer = wstrust.build_rstr(TOKEN) + padding.encode()
    assert wstrust.parse_rstr(big_answer)["upn"] == TOKEN.upn
    huge = wstrust.build_rstr(TOKEN) + b" " * wstrust.MAX_ANSWER_BYTES
    for path in ("parse_rstr", "parse_fault", "read_token", "mdm_server_interpret"):
        assert f"larger than {wstrust.MAX_ANSWER_BYTES} bytes" in _refused(path, huge)


@pytest.mark.parametrize("data", [b"<html><body>502 Bad Gateway</body></html>",
                                  b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>'],
                         ids=["html", "soap11"])
def test_an_answer_that_is_no_soap12_envelope_is_an_outage(data: bytes) -> None:
    with pytest.raises(client.IdPUnavailable, match="not a SOAP 1.2 envelope"):
        client.interpret(data, "x")


# -- the MDM server's HTTP call ------------------------------------------------------------------------------
def _mock(reply: Callable[[httpx.Request], httpx.Response]) -> tuple[httpx.Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return reply(request)

    return httpx.Client(transport=httpx.MockTransport(handler)), seen


def test_the_client_refuses_a_dtd_answer_from_the_network() -> None:
    http, seen = _mock(lambda r: httpx.Response(200, content=ENTITY_ANSWER.encode()))
    with pytest.raises(client.IdPUnavailable, match="document type declaration"):
        client.check_credentials(http, IDP_URL, "evil@contoso.com", "pw", START)
    assert seen[0].headers["content-type"] == wstrust.SOAP_CONTENT_TYPE


def test_the_client_caps_the_answer_below_the_codec() -> None:
    http, _ = _mock(lambda r: httpx.Response(200, content=b" " * (client.MAX_RESPONSE + 1)))
    with pytest.raises(client.IdPUnavailable, match="too large"):
        client.check_credentials(http, IDP_URL, "a@b.c", "pw", START)


def test_credentials_xml_cannot_carry_are_wrong_without_asking() -> None:
    http, seen = _mock(lambda r: httpx.Response(500))
    result = client.check_credentials(http, IDP_URL, "a@b.c", "pass\x00word", START)
    assert result.ok is False and "password" in (result.reason or "")
    assert seen == []


def test_an_unreachable_idp_is_an_outage() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    http, _ = _mock(refuse)
    with pytest.raises(client.IdPUnavailable, match="unreachable"):
        client.check_credentials(http, IDP_URL, "a@b.c", "pw", START)


# -- interop: the simulated IdP and the MDM server's client ---------------------------------------------------------
@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    store = open_idp_store()
    provider = IdentityProvider(store, Clock(Store(None, []), start=START, frozen=True), seed=4)
    provider.add_user("adele.vance@contoso.com", "P@ss <&> 'word\"")
    yield provider
    store.close()


def _wired(idp: IdentityProvider, **app_options: int) -> tuple[httpx.Client, list[bytes]]:
    """The MDM server's HTTP client wired to the IdP's real app, recording what the IdP answered."""
    answers: list[bytes] = []
    app = create_app(idp, **app_options)

    def recording(environ: dict, start_response: Callable) -> list[bytes]:
        body = b"".join(app(environ, start_response))
        answers.append(body)
        return [body]

    return httpx.Client(transport=httpx.WSGITransport(app=recording)), answers


def test_what_the_client_writes_the_idp_reads() -> None:
    body = client.build_rst(IDP_URL, "CONTOSO\\adele.vance", " p <&> ", START, message_id="urn:uuid:5")
    assert wstrust.parse_rst(body) == wstrust.RequestSecurityToken(
        "CONTOSO\\adele.vance", " p <&> ", client.APPLIES_TO, "urn:uuid:5", wstrust.BEARER)


@pytest.mark.parametrize("sender_fault_status", [400, 500], ids=["soap12-binding", "adfs-500"])
def test_what_the_idp_writes_the_client_reads(idp: IdentityProvider, sender_fault_status: int) -> None:
    http, answers = _wired(idp, sender_fault_status=sender_fault_status)
    ok = client.check_credentials(http, IDP_URL, "Adele.Vance@contoso.com", "P@ss <&> 'word\"", START,
                                  message_id="urn:uuid:77")
    assert ok == client.IdPResult(ok=True, upn="adele.vance@contoso.com")
    assert wstrust.parse_rstr(answers[-1])["upn"] == "adele.vance@contoso.com"  # the full reader agrees
    assert b"<a:RelatesTo>urn:uuid:77</a:RelatesTo>" in answers[-1]

    wrong = client.check_credentials(http, IDP_URL, "adele.vance@contoso.com", "nope", START)
    assert wrong == client.IdPResult(ok=False, reason=wstrust.failed_authentication().reason)
    unknown = client.check_credentials(http, IDP_URL, "nobody@contoso.com", "nope", START)
    assert unknown == wrong


def test_the_idps_request_faults_reach_the_client_as_wrong_credentials(idp: IdentityProvider) -> None:
    # A request the IdP refuses (a name over its limit) is a Sender fault: the client says "no", not "down".
    http, answers = _wired(idp)
    result = client.check_credentials(http, IDP_URL, "a" * 2000 + "@contoso.com", "pw", START)
    assert result.ok is False and "limited to 1024 characters" in (result.reason or "")
    assert wstrust.parse_fault(answers[-1])["subcode"] == "InvalidRequest"
