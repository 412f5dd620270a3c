"""OAuth 1.0a sessions of the DEP service, as a vendor's client meets them over a real socket."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import requests
from dep_client import DEPClientError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _status(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.text.strip().strip('"')


def _signed_header(live: Any, **overrides: Any) -> str:
    client = live.client()
    _, headers, _ = client.oauth_client(**overrides).sign(live.dep_url + "/session", http_method="GET")
    return headers["Authorization"]


def test_session_hands_out_a_token_that_opens_the_other_endpoints(live: Any, validate) -> None:
    client = live.client()
    response = client.session_request()
    assert response.status_code == 200
    token = response.json()["auth_session_token"]
    assert response.headers["X-ADM-Auth-Session"] == token
    client.auth_session = token
    validate(client.account(), "AccountDetail")


@pytest.mark.parametrize(
    "override",
    [
        {"client_secret": "CS_wrong"},
        {"resource_owner_secret": "AS_wrong"},
        {"client_key": "CK_unknown"},
        {"resource_owner_key": "AT_unknown"},
    ],
    ids=["wrong-consumer-secret", "wrong-access-secret", "unknown-consumer-key", "unknown-access-token"],
)
def test_bad_credentials_are_unauthorized(live: Any, override: dict[str, str]) -> None:
    assert _status(live.client().session_request(**override)) == (401, "UNAUTHORIZED")


def test_a_nonce_is_accepted_once(live: Any) -> None:
    client = live.client()
    stamp = str(int(time.time()))
    assert client.session_request(nonce="n-once-1234", timestamp=stamp).status_code == 200
    assert _status(client.session_request(nonce="n-once-1234", timestamp=stamp)) == (401, "UNAUTHORIZED")
    assert client.session_request(nonce="n-once-5678", timestamp=stamp).status_code == 200


def test_timestamps_are_checked_against_wall_time_not_world_time(live: Any) -> None:
    client = live.client()
    stale = str(int(time.time()) - 11 * 60)
    assert _status(client.session_request(timestamp=stale)) == (401, "UNAUTHORIZED")
    live.world.clock.advance(days=8)  # the world's clock moves; clients keep signing with their wall clock
    assert client.session_request().status_code == 200


def test_an_expired_server_token_is_unauthorized(live: Any) -> None:
    live.world.clock.advance(days=366)
    assert _status(live.client().session_request()) == (401, "UNAUTHORIZED")


@pytest.mark.parametrize("param", ["oauth_nonce", "oauth_signature", "oauth_token", "oauth_timestamp"])
def test_a_missing_oauth_parameter_is_a_bad_request(live: Any, param: str) -> None:
    header = re.sub(rf',?\s*{param}="[^"]*"', "", _signed_header(live))
    response = requests.get(live.dep_url + "/session", headers={"Authorization": header, "User-Agent": "t"})
    assert _status(response) == (400, "BAD_REQUEST")


def test_duplicated_parameters_and_other_signature_methods_are_bad_requests(live: Any) -> None:
    header = _signed_header(live)
    duplicated = header + ', oauth_nonce="again"'
    for auth in (duplicated, _signed_header(live, signature_method="PLAINTEXT"), "Basic dXNlcjpwYXNz", ""):
        response = requests.get(live.dep_url + "/session", headers={"Authorization": auth, "User-Agent": "t"})
        assert _status(response) == (400, "BAD_REQUEST"), auth


def test_session_accepts_only_get(live: Any) -> None:
    response = requests.post(
        live.dep_url + "/session", headers={"Authorization": _signed_header(live), "User-Agent": "t"}
    )
    assert response.status_code == 405


def test_user_agent_is_required_everywhere(live: Any) -> None:
    client = live.client()
    client.authenticate()
    bare = live.client(user_agent=None)
    assert _status(bare.session_request()) == (400, "USER_AGENT_MISSING")
    bare.auth_session = client.auth_session
    for method, path in [("GET", "/account"), ("POST", "/server/devices"), ("POST", "/devices/sync")]:
        assert _status(bare.raw(method, path, {})) == (400, "USER_AGENT_MISSING")


def test_sessions_expire_with_world_time_and_clients_reauthenticate(live: Any) -> None:
    client = live.client()
    token = client.authenticate()
    live.world.clock.advance(seconds=3601)
    assert _status(client.raw("GET", "/account")) == (401, "UNAUTHORIZED")
    assert client.account()["server_uuid"] == live.world.server["server_uuid"]  # re-authenticated
    assert client.auth_session != token


def test_responses_refresh_the_session_and_old_tokens_live_until_their_expiry(live: Any) -> None:
    client = live.client()
    first = client.authenticate()
    assert client.raw("GET", "/account").headers["X-ADM-Auth-Session"] == first  # young: same token
    live.world.clock.advance(minutes=30)
    fresh = client.raw("GET", "/account").headers["X-ADM-Auth-Session"]
    assert fresh != first
    client.auth_session = first
    assert client.raw("GET", "/account").status_code == 200  # the old one still works…
    live.world.clock.advance(minutes=31)
    client.auth_session = first
    assert client.raw("GET", "/account").status_code == 401  # …until its own hour is up
    client.auth_session = fresh
    assert client.raw("GET", "/account").status_code == 200


def test_missing_or_unknown_session_is_unauthorized(live: Any) -> None:
    client = live.client()
    assert _status(client.raw("POST", "/server/devices", {})) == (401, "UNAUTHORIZED")
    client.auth_session = "not-a-session"
    assert _status(client.raw("GET", "/account")) == (401, "UNAUTHORIZED")


def test_unaccepted_terms_forbid_everything_until_accepted(live: Any) -> None:
    client = live.client()
    client.authenticate()
    assert live.portal("POST", "/api/terms", json={"require_acceptance": True}).status_code == 200
    assert _status(client.raw("GET", "/account")) == (403, "T_C_NOT_SIGNED")
    assert _status(client.session_request()) == (403, "T_C_NOT_SIGNED")
    with pytest.raises(DEPClientError) as forbidden:
        client.fetch_devices()
    assert forbidden.value.body == "T_C_NOT_SIGNED"
    live.portal("POST", "/api/terms", json={"require_acceptance": False})
    assert client.fetch_devices()["devices"] == []


def test_a_nonce_cannot_be_accepted_by_two_processes_sharing_a_world(apple: Any, tmp_path: Any) -> None:
    """Two workers (two stores on one file) race for the same signed request: exactly one wins."""
    from oauthlib.oauth1 import Client

    from mdm.platform.clock import Clock
    from simulator.apple.dep.http import create_app
    from simulator.apple.dep.service import DEPService
    from simulator.apple.portal.service import PortalService
    from simulator.apple.store import open_apple_store

    path = tmp_path / "apple.db"
    first, second = open_apple_store(path), open_apple_store(path)
    try:
        clock = Clock(first)
        server = PortalService(first, clock).create_server("shared")
        apps = [create_app(DEPService(store, Clock(store))).test_client() for store in (first, second)]
        oauth = Client(
            server["consumer_key"],
            client_secret=server["consumer_secret"],
            resource_owner_key=server["access_token"],
            resource_owner_secret=server["access_secret"],
            realm="ADM",
        )
        _, headers, _ = oauth.sign("http://localhost/session")
        statuses = sorted(
            app.get("/session", headers={**headers, "User-Agent": "t"}).status_code for app in apps
        )
        assert statuses == [200, 401]
    finally:
        first.close()
        second.close()


def test_a_client_that_signed_the_public_url_behind_a_proxy_is_accepted(apple: Any) -> None:
    from oauthlib.oauth1 import Client

    apple.dep.public_url = lambda: "https://mdmenrollment.example.com/apple/dep/"
    token = apple.token()
    oauth = Client(
        token["consumer_key"],
        client_secret=token["consumer_secret"],
        resource_owner_key=token["access_token"],
        resource_owner_secret=token["access_secret"],
        realm="ADM",
    )
    _, headers, _ = oauth.sign("https://mdmenrollment.example.com/apple/dep/session")
    response = apple.dep_app().test_client().get("/session", headers={**headers, "User-Agent": "t"})
    assert response.status_code == 200


def test_session_tokens_are_stored_only_as_digests() -> None:
    """The database never holds a usable X-ADM-Auth-Session value."""
    from mdm.platform.clock import Clock
    from mdm.platform.storage import Store
    from simulator.apple.dep.service import DEPService
    from simulator.apple.portal.service import PortalService
    from simulator.apple.store import open_apple_store

    store = open_apple_store(None)
    clock = Clock(Store(None, []))
    portal = PortalService(store, clock)
    portal.ensure_organization(name="Org")
    server = portal.create_server("s")
    dep = DEPService(store, clock)
    with store.transaction() as db:
        token = dep._mint(db, db.execute("SELECT id FROM servers WHERE server_uuid = ?",
                                         (server["server_uuid"],)).fetchone()[0], 1, clock.timestamp())
    assert dep.authenticate(token).server_id
    with store.read() as db:
        stored = [r[0] for r in db.execute("SELECT token FROM sessions")]
    assert token not in stored and len(stored) == 1
