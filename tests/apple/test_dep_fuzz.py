"""Fuzzing every DEP and portal endpoint with odd bodies, headers and queries: never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oauthlib.oauth1 import Client

FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=24)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
serials = st.lists(st.text(st.sampled_from("ABCD0123"), max_size=13), max_size=6)
field_values = json_values | ascii_text | serials
shaped = st.fixed_dictionaries(
    {},
    optional={
        key: field_values
        for key in (
            "cursor",
            "limit",
            "devices",
            "profile_uuid",
            "profile_name",
            "url",
            "is_supervised",
            "is_mdm_removable",
            "anchor_certs",
            "language",
            "device",
            "escrow_key",
            "lost_message",
        )
    },
)
bodies = st.one_of(
    shaped.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=120),
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "X-Server-Protocol-Version": ascii_text | st.sampled_from(["1", "2", "3", "7", "9", "10", "999"]),
        "Content-Type": st.sampled_from(
            ["application/json;charset=UTF8", "text/plain", "application/x-www-form-urlencoded"]
        ),
        "User-Agent": st.sampled_from(["", "t"]),
    },
)

DEP_ENDPOINTS = [
    ("POST", "/server/devices"),
    ("POST", "/devices/sync"),
    ("POST", "/devices"),
    ("POST", "/devices/disown"),
    ("POST", "/profile"),
    ("GET", "/profile"),
    ("PUT", "/profile/devices"),
    ("POST", "/profile/devices"),
    ("DELETE", "/profile/devices"),
    ("POST", "/device/activationlock"),
    ("GET", "/account"),
]


@pytest.fixture
def dep(apple: Any) -> tuple[Any, str]:
    apple.portal.generate(5, server_uuid=apple.server["server_uuid"])
    client = apple.dep_app().test_client()
    token = apple.token()
    oauth = Client(
        token["consumer_key"],
        client_secret=token["consumer_secret"],
        resource_owner_key=token["access_token"],
        resource_owner_secret=token["access_secret"],
        realm="ADM",
    )
    _, signed, _ = oauth.sign("http://localhost/session")
    session = client.get("/session", headers={**signed, "User-Agent": "fuzz"}).get_json()[
        "auth_session_token"
    ]
    return client, session


@pytest.mark.parametrize(("method", "path"), DEP_ENDPOINTS, ids=[f"{m} {p}" for m, p in DEP_ENDPOINTS])
def test_dep_endpoints_never_fail_with_5xx(dep: tuple[Any, str], method: str, path: str) -> None:
    client, session = dep

    @FUZZ
    @given(
        body=bodies, extra=headers, query=st.dictionaries(st.sampled_from(["profile_uuid", "x"]), ascii_text)
    )
    def run(body: bytes, extra: dict[str, str], query: dict[str, str]) -> None:
        sent = {"User-Agent": "fuzz", "X-ADM-Auth-Session": session, **extra}
        response = client.open(path, method=method, data=body, headers=sent, query_string=query)
        assert response.status_code < 500, (response.status_code, response.data[:200])
        if response.status_code != 200:
            assert response.mimetype == "text/plain" and response.data.isupper() or b"_" in response.data

    run()


@FUZZ
@given(
    params=st.lists(
        st.tuples(
            st.sampled_from(["oauth_nonce", "oauth_token", "oauth_signature", "realm", "x", ""]), ascii_text
        ),
        max_size=6,
    ),
    prefix=st.sampled_from(["OAuth ", "oauth ", "Bearer ", ""]),
)
def test_session_authorization_header_fuzz(apple: Any, params: list[tuple[str, str]], prefix: str) -> None:
    client = apple.dep_app().test_client()
    header = prefix + ", ".join(f'{k}="{v}"' if k else v for k, v in params)
    response = client.get("/session", headers={"Authorization": header, "User-Agent": "fuzz"})
    assert response.status_code in (400, 401)


PORTAL_ENDPOINTS = [
    ("POST", "/api/servers"),
    ("POST", "/api/devices"),
    ("PATCH", "/api/devices/D0000001"),
    ("POST", "/api/devices/release"),
    ("POST", "/api/assignments"),
    ("DELETE", "/api/assignments"),
    ("POST", "/api/terms"),
    ("POST", "/api/servers/{uuid}/public-key"),
    ("GET", "/api/devices"),
]


@pytest.mark.parametrize(("method", "path"), PORTAL_ENDPOINTS, ids=[f"{m} {p}" for m, p in PORTAL_ENDPOINTS])
def test_portal_endpoints_never_fail_with_5xx(apple: Any, method: str, path: str) -> None:
    apple.portal.generate(3, server_uuid=apple.server["server_uuid"])
    client = apple.portal_app().test_client()
    portal_bodies = bodies | st.fixed_dictionaries(
        {},
        optional={
            "count": st.integers(-3, 20) | st.none() | st.booleans() | ascii_text,  # small: real work is slow
            **{
                k: field_values | st.just(apple.server["server_uuid"])
                for k in (
                    "serial_numbers",
                    "server_uuid",
                    "order_number",
                    "asset_tag",
                    "color",
                    "require_acceptance",
                    "certificate",
                    "server_name",
                )
            },
        },
    ).map(lambda d: json.dumps(d).encode())

    @FUZZ
    @given(
        body=portal_bodies,
        content_type=st.sampled_from(["application/json", "text/csv", "text/plain"]),
        query=st.dictionaries(st.sampled_from(["server_uuid", "limit", "offset"]), ascii_text),
    )
    def run(body: bytes, content_type: str, query: dict[str, str]) -> None:
        target = path.replace("{uuid}", apple.server["server_uuid"])
        response = client.open(
            target, method=method, data=body, content_type=content_type, query_string=query
        )
        assert response.status_code < 500, (response.status_code, response.data[:200])
        if response.status_code >= 400:
            assert isinstance(response.get_json()["error"], str)

    run()
