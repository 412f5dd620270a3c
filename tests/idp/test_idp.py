"""The customer's IdP: WS-Trust 1.3 UsernameMixed tokens, faults that leak nothing, a seeded directory."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Response
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol import wstrust
from simulator.idp import service as idp_service
from simulator.idp import store as idp_store
from simulator.idp.http import USERNAME_MIXED_PATH, create_app
from simulator.idp.service import IdentityProvider, UserError, UserExists
from simulator.idp.store import open_idp_store

START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
RP = "urn:federation:MicrosoftOnline"
SOAP = "application/soap+xml; charset=utf-8"


@pytest.fixture
def clock() -> Clock:
    return Clock(Store(None, []), start=START, frozen=True)


@pytest.fixture
def idp(clock: Clock) -> Iterator[IdentityProvider]:
    store = open_idp_store()
    yield IdentityProvider(store, clock, seed=11)
    store.close()


@pytest.fixture
def client(idp: IdentityProvider) -> FlaskClient:
    idp.add_user("adele.vance@contoso.com", "P@ss <&> 'word\"", "Adele Vance")
    idp.add_user("megan.bowen@contoso.com", "Secret-1", mfa_required=True)
    return create_app(idp).test_client()


def ask(client: FlaskClient, username: str, password: str, now: datetime = START, **kw: str) -> Response:
    body = wstrust.build_rst(username, password, RP, now, **kw)
    return client.post(USERNAME_MIXED_PATH, data=body, content_type=SOAP)


def post_raw(client: FlaskClient, body: bytes, content_type: str = SOAP) -> Response:
    return client.post(USERNAME_MIXED_PATH, data=body, content_type=content_type)


# -- tokens ----------------------------------------------------------------------------------------
def test_valid_credentials_get_a_saml11_token_stamped_with_world_time(
    client: FlaskClient, clock: Clock
) -> None:
    clock.advance(minutes=5)
    response = ask(client, "adele.vance@contoso.com", "P@ss <&> 'word\"", message_id="urn:uuid:42")
    assert response.status_code == 200
    assert response.mimetype == "application/soap+xml"
    token = wstrust.parse_rstr(response.data)
    assert token["upn"] == "adele.vance@contoso.com"
    assert token["issue_instant"] == START + timedelta(minutes=5)
    assert token["not_before"] == token["issue_instant"]
    assert token["not_on_or_after"] - token["not_before"] == timedelta(hours=1)
    assert token["lifetime_created"] == token["not_before"]
    assert token["lifetime_expires"] == token["not_on_or_after"]
    assert token["audience"] == RP
    assert token["authentication_method"] == "urn:oasis:names:tc:SAML:1.0:am:password"
    assert token["token_type"] == wstrust.SAML11_TOKEN_TYPE
    assert token["issuer"] == "http://sts.contoso.com/adfs/services/trust"
    assert token["immutable_id"] and token["assertion_id"].startswith("_")
    assert b"<a:RelatesTo>urn:uuid:42</a:RelatesTo>" in response.data
    assert b"RequestSecurityTokenResponseCollection" in response.data


def test_mfa_users_get_tokens_too_because_legacy_setup_assistant_cannot_do_mfa(
    client: FlaskClient, idp: IdentityProvider
) -> None:
    assert idp.user("megan.bowen@contoso.com")["mfa_required"] is True  # type: ignore[index]
    assert wstrust.parse_rstr(ask(client, "megan.bowen@contoso.com", "Secret-1").data)["upn"] == (
        "megan.bowen@contoso.com"
    )


def test_usernames_are_matched_like_a_directory_does(client: FlaskClient) -> None:
    for username in ("Megan.Bowen@CONTOSO.com", "CONTOSO\\megan.bowen", "contoso\\MEGAN.BOWEN"):
        assert ask(client, username, "Secret-1").status_code == 200, username
    assert ask(client, "FABRIKAM\\megan.bowen", "Secret-1").status_code == 400
    assert ask(client, "megan.bowen", "Secret-1").status_code == 400


def test_path_is_case_insensitive_like_adfs(client: FlaskClient) -> None:
    body = wstrust.build_rst("megan.bowen@contoso.com", "Secret-1", RP, START)
    lower = "/adfs/services/trust/13/usernamemixed"
    assert client.post(lower, data=body, content_type=SOAP).status_code == 200


# -- failures that tell an attacker nothing ------------------------------------------------------------
def test_wrong_password_and_unknown_user_get_the_same_fault(client: FlaskClient) -> None:
    wrong = ask(client, "adele.vance@contoso.com", "nope", message_id="urn:uuid:1")
    unknown = ask(client, "nobody@contoso.com", "nope", message_id="urn:uuid:1")
    assert wrong.status_code == unknown.status_code == 400
    assert wrong.data == unknown.data
    assert wstrust.parse_fault(wrong.data) == {
        "code": "Sender",
        "subcode": "FailedAuthentication",
        "reason": "ID3242: The security token could not be authenticated or authorized.",
    }
    with pytest.raises(wstrust.WSTrustFault) as raised:
        wstrust.parse_rstr(wrong.data)
    assert raised.value.subcode[1] == "FailedAuthentication"


def test_unknown_user_and_wrong_password_both_pay_for_a_hash(
    idp: IdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    idp.add_user("a@contoso.com", "right")
    calls: list[bytes] = []
    real = idp_service._hash_password

    def counting(password: str, salt: bytes) -> bytes:
        calls.append(salt)
        return real(password, salt)

    monkeypatch.setattr(idp_service, "_hash_password", counting)
    assert idp.authenticate("a@contoso.com", "wrong") is None
    assert idp.authenticate("b@contoso.com", "wrong") is None
    assert idp.authenticate("not a upn", "wrong") is None
    assert len(calls) == 3
    assert idp.authenticate("a@contoso.com", "right")["upn"] == "a@contoso.com"  # type: ignore[index]


def test_sender_faults_can_use_adfs_real_500(idp: IdentityProvider) -> None:
    idp.add_user("a@contoso.com", "right")
    client = create_app(idp, sender_fault_status=500).test_client()
    assert ask(client, "a@contoso.com", "wrong").status_code == 500


# -- bad requests: 4xx with a SOAP fault, never 5xx ------------------------------------------------------
BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
    b"<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body>&lol2;</s:Body></s:Envelope>"
)
XXE = (
    b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>&x;</s:Body></s:Envelope>'
)
VALID = wstrust.build_rst("adele.vance@contoso.com", "x", RP, START)


@pytest.mark.parametrize(
    ("body", "status", "subcode", "reason"),
    [
        (b"", 400, "InvalidRequest", "empty"),
        (b"<not xml", 400, "InvalidRequest", "not well-formed"),
        (b"\xff\xfe<\x00", 400, "InvalidRequest", "UTF-8"),
        (BOMB, 400, "InvalidRequest", "document type declaration"),
        (XXE, 400, "InvalidRequest", "document type declaration"),
        (b"<html/>", 400, "InvalidRequest", "SOAP 1.2 Envelope"),
        (VALID.replace(b"http://www.w3.org/2003/05/soap-envelope", b"http://schemas.xmlsoap.org/soap/envelope/"),
         400, "InvalidRequest", "SOAP 1.1"),
        (VALID.replace(b"RST/Issue", b"RST/Cancel"), 400, "ActionNotSupported", "ContractFilter"),
        (VALID.split(b"<wsse:Security")[0] + b"</s:Header>" + VALID.split(b"</s:Header>")[1],
         400, "InvalidRequest", "UsernameToken"),
        (VALID.replace(b"<wsp:AppliesTo", b"<wsp:X").replace(b"</wsp:AppliesTo>", b"</wsp:X>"),
         400, "InvalidRequest", "AppliesTo"),
        (VALID.replace(b"200512/Issue</wst:RequestType>", b"200512/Renew</wst:RequestType>"),
         400, "InvalidRequest", "RequestType"),
        (VALID.replace(b"200512/Bearer", b"200512/SymmetricKey"), 400, "InvalidRequest", "Bearer"),
        (b"<" + b"a" * 70_000, 413, "InvalidRequest", "larger than"),
    ],
    ids=["empty", "malformed", "utf16", "bomb", "xxe", "not-soap", "soap11", "action", "no-security",
         "no-appliesto", "renew", "symmetric", "huge"],
)
def test_bad_requests_get_a_clear_soap_fault(
    client: FlaskClient, body: bytes, status: int, subcode: str, reason: str
) -> None:
    response = post_raw(client, body)
    assert response.status_code == status
    fault = wstrust.parse_fault(response.data)
    assert (fault["code"], fault["subcode"]) == ("Sender", subcode)
    assert reason in fault["reason"]


def test_huge_chunked_body_is_refused_without_content_length(client: FlaskClient) -> None:
    response = client.post(USERNAME_MIXED_PATH, input_stream=io.BytesIO(b"<" + b"x" * 100_000),
                           content_type=SOAP, environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    assert "larger than" in wstrust.parse_fault(response.data)["reason"]


def test_soap11_content_type_and_get_are_refused(client: FlaskClient) -> None:
    response = post_raw(client, VALID, "text/xml; charset=utf-8")
    assert response.status_code == 415
    assert "not the expected type" in wstrust.parse_fault(response.data)["reason"]
    assert client.get(USERNAME_MIXED_PATH).status_code == 405


def test_the_before_hook_can_replace_the_answer(idp: IdentityProvider) -> None:
    seen: list[tuple[str, str]] = []

    def hook(party: str, endpoint: str) -> Response | None:
        seen.append((party, endpoint))
        return Response("busy", status=503)

    client = create_app(idp, before=hook).test_client()
    lower = "/adfs/services/trust/13/usernamemixed"
    assert client.post(lower, data=VALID, content_type=SOAP).status_code == 503
    assert seen == [("idp", "post_adfs_services_trust_13_UsernameMixed")]


_TEMPLATE = wstrust.build_rst("USER", "PASS", "APPLIES", START)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    noise=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(str.encode),
        st.tuples(st.integers(0, len(_TEMPLATE)), st.integers(0, 40), st.binary(max_size=40)).map(
            lambda t: _TEMPLATE[: t[0]] + t[2] + _TEMPLATE[t[0] + t[1]:]
        ),
        st.tuples(st.text(max_size=40), st.text(max_size=40), st.text(max_size=40)).map(
            lambda t: _TEMPLATE.replace(b"USER", t[0].encode("utf-8", "surrogatepass"))
            .replace(b"PASS", t[1].encode("utf-8", "surrogatepass"))
            .replace(b"APPLIES", t[2].encode("utf-8", "surrogatepass"))
        ),
    )
)
def test_fuzzed_requests_never_get_a_5xx(client: FlaskClient, noise: bytes) -> None:
    response = post_raw(client, noise)
    assert response.status_code < 500
    if response.status_code != 200:
        wstrust.parse_fault(response.data)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                             st.sampled_from(["upn", "password", "display_name", "mfa_required", "x"]),
                             inner, max_size=5), max_leaves=10))
def test_fuzzed_user_posts_never_get_a_5xx(client: FlaskClient, body: object) -> None:
    assert client.post("/users", json=body).status_code in (201, 400, 409)


# -- the client side of the protocol ---------------------------------------------------------------------
@given(username=st.text(min_size=1, max_size=50).filter(lambda s: s.strip() == s and s.strip()),
       password=st.text(min_size=1, max_size=50))
def test_rst_round_trips_any_xml_representable_credentials(username: str, password: str) -> None:
    try:
        body = wstrust.build_rst(username, password, RP, START)
    except ValueError:
        return  # a control character XML 1.0 cannot carry
    rst = wstrust.parse_rst(body)
    assert (rst.username, rst.password, rst.applies_to) == (username, password, RP)


def test_parse_xml_refuses_dtds_even_behind_a_utf16_declaration() -> None:
    sneaky = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY b "c">]><a>&b;</a>'
    for data in (sneaky, sneaky.encode()):
        with pytest.raises(wstrust.WSTrustFault, match="document type"):
            wstrust.parse_xml(data)


# -- the directory -------------------------------------------------------------------------------------
def test_seeded_directories_are_identical_for_a_seed(clock: Clock) -> None:
    def directory(seed: int) -> list[dict]:
        idp = IdentityProvider(open_idp_store(), clock, seed=seed)
        idp.seed_users(40)
        idp.seed_users(10)  # a second batch is a function of the seed and the count, too
        return idp.users()

    first, again, other = directory(5), directory(5), directory(6)
    assert first == again
    assert first != other
    assert len({u["upn"] for u in first}) == 50
    user = first[0]
    assert set(user) == {"upn", "display_name", "password", "mfa_required", "department", "object_guid",
                         "immutable_id"}
    local, domain = user["upn"].split("@")
    assert domain == "contoso.com" and "." in local
    assert 0.1 < sum(u["mfa_required"] for u in first) / len(first) < 0.5


def test_seeded_users_can_sign_in_with_the_listed_password(
    client: FlaskClient, idp: IdentityProvider
) -> None:
    seeded = idp.seed_users(3)
    assert idp.users(limit=2)[0]["upn"] == "adele.vance@contoso.com"
    for user in seeded:
        assert wstrust.parse_rstr(ask(client, user["upn"], user["password"]).data)["upn"] == user["upn"]


def test_a_thousand_users_seed_quickly(idp: IdentityProvider) -> None:
    # The target is < 0.5 s (measured ~0.15 s); the bound here only catches an order-of-magnitude slip.
    began = time.perf_counter()
    idp.seed_users(1000)
    assert time.perf_counter() - began < 2.0
    assert len(idp.users()) == 1000


def test_users_api(client: FlaskClient) -> None:
    listed = client.get("/users").get_json()
    assert [u["upn"] for u in listed] == ["adele.vance@contoso.com", "megan.bowen@contoso.com"]
    assert listed[1]["mfa_required"] is True and listed[1]["password"] == "Secret-1"
    assert len(client.get("/users?limit=1").get_json()) == 1
    assert client.get("/users?limit=-1").status_code == 400

    new = {"upn": "lee.gu@contoso.com", "password": "pw", "mfa_required": True}
    created = client.post("/users", json=new)
    assert created.status_code == 201
    assert created.get_json()["display_name"] == "Lee Gu"
    assert ask(client, "lee.gu@contoso.com", "pw").status_code == 200

    duplicate = client.post("/users", json={"upn": "LEE.GU@contoso.com", "password": "pw"})
    assert duplicate.status_code == 409 and "already exists" in duplicate.get_json()["error"]
    for bad in ({"upn": "lee"}, {"upn": "nope", "password": "x"}, {"upn": "a@b.c", "password": ""},
                {"upn": "a@b.c", "password": "x", "mfa_required": "yes"},
                {"upn": "a@b.c", "password": "x", "y": 1},
                [1], "text"):
        response = client.post("/users", json=bad)
        assert response.status_code == 400, bad
        assert response.get_json()["error"]
    assert client.post("/users", data=b"{", content_type="application/json").status_code == 400
    assert client.get("/nowhere").get_json() == {"error": client.get("/nowhere").get_json()["error"]}


def test_add_user_errors_in_the_service(idp: IdentityProvider) -> None:
    idp.add_user("x@contoso.com", "pw")
    with pytest.raises(UserExists):
        idp.add_user("X@Contoso.com", "pw")
    with pytest.raises(UserError):
        idp.add_user("x@contoso.com", "pw\x00")


# -- seeds ---------------------------------------------------------------------------------------------
def _assertion_ids(clock: Clock, seed: int | None) -> list[str]:
    idp = IdentityProvider(open_idp_store(), clock, seed=seed)
    idp.add_user("adele.vance@contoso.com", "pw")
    idp.add_user("megan.bowen@contoso.com", "pw")
    tokens = [idp.issue(upn, "pw", RP) for upn in ("adele.vance@contoso.com", "ADELE.VANCE@contoso.com",
                                                     "megan.bowen@contoso.com")]
    return [token.assertion_id for token in tokens if token is not None]


def test_seeded_assertion_ids_repeat_per_run_and_differ_per_token(clock: Clock) -> None:
    first, again = _assertion_ids(clock, 3), _assertion_ids(clock, 3)
    assert first == again  # the clock is frozen: only the per-user count tells the tokens apart
    assert len(set(first)) == 3 and all(i.startswith("_") for i in first)
    assert _assertion_ids(clock, 4) != first
    unseeded = _assertion_ids(clock, None)
    assert len(set(unseeded)) == 3 and unseeded != _assertion_ids(clock, None)


def test_seeded_users_added_by_hand_keep_their_guid(clock: Clock) -> None:
    def guid(seed: int | None) -> str:
        idp = IdentityProvider(open_idp_store(), clock, seed=seed)
        return idp.add_user("lee.gu@contoso.com", "pw")["object_guid"]

    assert guid(9) == guid(9) != guid(10)
    assert guid(None) != guid(None)


def test_the_idp_store_counts_tokens_per_user(idp: IdentityProvider) -> None:
    idp.add_user("a@contoso.com", "pw")
    assert idp.issue("a@contoso.com", "wrong", RP) is None
    for _ in range(2):
        assert idp.issue("A@contoso.com", "pw", RP) is not None
    with idp._store.read() as db:
        assert idp_store.find_user(db, "a@contoso.com")["assertions_issued"] == 2
