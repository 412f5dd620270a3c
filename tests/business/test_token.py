"""Apple's token endpoint (``account.apple.com/auth/oauth2/token``): client credentials with an ES256
client assertion. What it accepts (form or query parameters, both paths, assertions reused), and each
way a client gets it wrong, refused with RFC 6749's code and a sentence saying which check failed."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import jwt
import pytest
from axm_client import ASSERTION_TYPE, AxMClient
from business_support import client_for, schema_validate
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from simulator.world import World

TOKEN = "/apple/account/auth/oauth2/token"


def _form(client: AxMClient, assertion: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": client.client_id, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion, "scope": "business.api"}


def _refused(response: httpx.Response, error: str, words: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    schema_validate(body, "TokenErrorResponse")
    assert body["error"] == error and words in body["error_description"], body
    assert response.headers["Cache-Control"] == "no-store"


def test_a_signed_assertion_gets_an_hour_long_bearer_token(world: World, client: AxMClient) -> None:
    assertion = client.client_assertion()
    schema_validate(jwt.decode(assertion, options={"verify_signature": False}), "ClientAssertionClaims")
    response = client.token_request(assertion)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["scope"] == "business.api"
    assert response.headers["Cache-Control"] == "no-store"
    assert client.token_request(assertion).json()["access_token"] != body["access_token"]  # reusable, new token each time


def test_parameters_in_the_query_string_and_the_v2_path_work_too(world: World, client: AxMClient) -> None:
    form = _form(client, client.client_assertion())
    by_query = world.http.post(TOKEN, params=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert by_query.status_code == 200, by_query.text
    by_v2 = world.http.post("/apple/account/auth/oauth2/v2/token", data=form)
    assert by_v2.status_code == 200, by_v2.text
    schema_validate(by_v2.json(), "TokenResponse")


def test_an_assertion_for_the_simulators_own_audience_is_accepted(world: World, client: AxMClient) -> None:
    own = f"{world.account_url}/auth/oauth2/v2/token"
    assert client.token_request(client.client_assertion(aud=own)).status_code == 200
    _refused(client.token_request(client.client_assertion(aud=f"{world.account_url}/auth/oauth2/token")),
             "invalid_client", "audience")


def test_tampered_assertions_are_invalid_client(world: World, client: AxMClient) -> None:
    good = client.client_assertion()
    head, body, signature = good.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    _refused(client.token_request(f"{head}.{body}.{flipped}"), "invalid_client", "signature")
    other_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _refused(client.token_request(client.client_assertion(key=other_key)), "invalid_client", "signature")
    # a payload edited after signing (another client's subject) does not verify either
    claims = {**jwt.decode(good, options={"verify_signature": False}), "exp": 4102444800}
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    _refused(client.token_request(f"{head}.{forged}.{signature}"), "invalid_client", "signature")
    _refused(client.token_request("not-a-jwt"), "invalid_client", "JWT")


@pytest.mark.parametrize(("overrides", "words"), [
    ({"headers": {"kid": str(uuid.uuid4())}}, "key ID"),
    ({"sub": "BUSINESSAPI." + str(uuid.uuid4())}, "subject"),
    ({"aud": "https://example.com/token"}, "audience"),
    ({"jti": None}, "jti"),
    ({"exp": None}, "exp"),
    ({"lifetime_s": 180 * 86400 + 1}, "180 days"),
    ({"algorithm": "HS256", "key": "a shared secret that is long enough for HS256"}, "ES256"),
    ({"algorithm": "ES384", "key": None}, "ES256"),
])
def test_each_claim_and_header_is_checked(world: World, client: AxMClient, overrides: dict, words: str) -> None:
    if overrides.get("key", "") is None:
        overrides["key"] = ec.generate_private_key(ec.SECP384R1())
    _refused(client.token_request(client.client_assertion(**overrides)), "invalid_client", words)


def test_exactly_180_days_is_allowed_as_apples_sample_signs(client: AxMClient) -> None:
    assert client.token_request(client.client_assertion(lifetime_s=180 * 86400)).status_code == 200


def test_an_assertion_expires_on_the_world_clock(world: World, client: AxMClient) -> None:
    assertion = client.client_assertion(lifetime_s=3600)
    assert client.token_request(assertion).status_code == 200
    world.clock.advance(seconds=3601)
    _refused(client.token_request(assertion), "invalid_client", "expired")
    now = int(world.clock.timestamp())
    _refused(client.token_request(client.client_assertion(iat=now + 3600, exp=now + 7200)), "invalid_client", "future")


def test_scope_client_and_grant_errors(world: World, client: AxMClient) -> None:
    _refused(client.token_request(scope="school.api"), "invalid_scope", "business.api")
    _refused(client.token_request(scope="business.api school.api"), "invalid_scope", "unknown scope")
    _refused(client.token_request(grant_type="authorization_code"), "unsupported_grant_type", "client_credentials")
    _refused(client.token_request(client_assertion_type="urn:x"), "invalid_request", "client_assertion_type")
    _refused(client.token_request(scope=None), "invalid_request", "scope")
    stranger = client_for(world, client_id="BUSINESSAPI." + str(uuid.uuid4()))
    _refused(stranger.token_request(), "invalid_client", "client_id")
    form = _form(client, client.client_assertion())
    twice = world.http.post(TOKEN, params={"scope": "business.api"}, data=form)
    _refused(twice, "invalid_request", "more than once")
    wrong_method = world.http.get(TOKEN)
    _refused(wrong_method, "invalid_request", "POST", status=405)


def test_a_revoked_api_account_gets_no_token_and_its_tokens_stop_working(world: World, client: AxMClient) -> None:
    token = client.authenticate()
    api = f"{world.business_url}/v1/mdmServers"
    assert world.http.get(api, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    world.portal.api_accounts.revoke(client.client_id)
    _refused(client.token_request(), "invalid_client", "revoked")
    refused = world.http.get(api, headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401
    schema_validate(refused.json(), "ErrorResponse")


def test_a_school_organization_issues_schoolapi_clients_with_school_scope() -> None:
    with World(devices=2, seed=4, background_sync=False, push_certificate=False) as world:
        world.portal.ensure_organization(org_type="edu")
        account = world.portal.api_accounts.create("SIS sync")
        assert account["client_id"].startswith("SCHOOLAPI.") and account["scope"] == "school.api"
        pem = world.portal.api_accounts.private_key(account["client_id"])
        school = client_for(world, client_id=account["client_id"], key_id=account["key_id"], private_key_pem=pem)
        assert school.token_request().json()["scope"] == "school.api"
        _refused(school.token_request(scope="business.api"), "invalid_scope", "school.api")


def test_scripted_token_faults(world: World, client: AxMClient) -> None:
    world.faults.add({"party": "account", "post_auth_oauth2_token_responses": [
        {"count": 1, "response": "too_many_requests"}, {"count": 1, "response": "invalid_client"}]})
    first = client.token_request()
    assert first.status_code == 429 and first.headers["Retry-After"] == "60"
    schema_validate(first.json(), "TokenErrorResponse")
    _refused(client.token_request(), "invalid_client", "")
    assert client.token_request().status_code == 200
