"""Safe defaults of ``mdmsim serve``, proven over real sockets.

Loopback by default; any other address (127.0.0.2 is used here: still this machine, not the
default) puts the simulation control, the command API and the controller (API and dashboard)
behind the token printed at start; secrets never reach the logs; bodies are bounded even when
streamed without a Content-Length through gunicorn.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from oauthlib.oauth1 import Client as OAuthClient
from served import GRAPH, Served, create_profile, onboard, wait_synced

from simulator import cli

pytestmark = pytest.mark.slow


def test_the_default_bind_is_loopback_and_only_the_default_goes_without_a_token(tmp_path: Path) -> None:
    host = next(p for p in cli.serve.params if p.name == "host")
    assert host.default == "127.0.0.1"
    assert all(cli._is_loopback(h) for h in ("127.0.0.1", "::1", "localhost"))
    assert not any(cli._is_loopback(h) for h in ("127.0.0.2", "0.0.0.0", "::", "10.0.0.1", "example.com"))
    served = Served(tmp_path / "world", devices=2, workers=1).start()
    try:
        with httpx.Client(base_url=served.url) as http:
            assert http.get("/_sim/clock").status_code == 200  # loopback, default: no token asked
        assert "Bearer" not in served.output()
    finally:
        served.kill9()


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = Served(tmp_path_factory.mktemp("exposed") / "world", devices=5, workers=2, host="127.0.0.2").start()
    try:
        found = re.search(r"Authorization: Bearer ([A-Za-z0-9_-]+)", served.output())
        assert found, served.output()
        served.token = found.group(1)
        yield served
    finally:
        served.kill9()


@pytest.mark.parametrize("path", ["/_sim/clock", "/_sim/faults", "/mdm/api/v1/devices", f"{GRAPH}", "/intune/",
                                  "/intune/enrollment/tokens", "/intune/api/simulated-devices"])
def test_admin_surfaces_need_the_token_beyond_the_default_address(exposed: Served, path: str) -> None:
    with httpx.Client(base_url=exposed.url) as anonymous:
        refused = anonymous.get(path)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert anonymous.get(path, headers={"Authorization": "Bearer " + "x" * len(exposed.token or "")}).status_code == 401
    with exposed.client() as admin:
        assert admin.get(path).status_code == 200


def test_device_facing_endpoints_stay_open(exposed: Served) -> None:
    with httpx.Client(base_url=exposed.url) as device:
        assert device.get("/apple/activation/device-ca.pem").status_code == 200
        assert device.put("/mdm/checkin", content=b"x").status_code in (400, 401, 403)  # judged, not token-gated
        assert device.get("/apple/dep/account", headers={"User-Agent": "x"}).status_code == 401
        assert "needs Authorization: Bearer" not in device.get("/apple/dep/account", headers={"User-Agent": "x"}).text


def test_the_dashboard_is_entered_once_with_the_token_then_by_an_http_only_strict_cookie(exposed: Served) -> None:
    with httpx.Client(base_url=exposed.url) as browser:
        assert browser.get("/intune/?api_token=wrong").status_code == 401
        entered = browser.get(f"/intune/enrollment/tokens?api_token={exposed.token}&notice=x")
        assert entered.status_code == 303
        assert entered.headers["Location"] == "/intune/enrollment/tokens?notice=x"  # the token leaves the address bar
        cookie = entered.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/intune" in cookie
        assert browser.get("/intune/enrollment/tokens").status_code == 200  # the cookie now
        assert browser.get(GRAPH).status_code == 401  # the cookie opens the pages, not the API
        assert browser.get("/_sim/clock").status_code == 401


def test_a_streamed_body_one_byte_over_the_bound_is_413_through_gunicorn(exposed: Served) -> None:
    def chunks() -> Iterator[bytes]:  # a generator body: httpx sends it chunked, without Content-Length
        for _ in range(16):
            yield b" " * 65_536
        yield b" "

    with httpx.Client(base_url=exposed.url, timeout=30) as client:
        reply = client.post("/apple/dep/server/devices", content=chunks(), headers={"User-Agent": "x"})
        assert reply.status_code == 413 and reply.text == "REQUEST_ENTITY_TOO_LARGE"


def test_no_secret_reaches_the_logs(exposed: Served) -> None:
    """A whole flow (token, OAuth session, sync, enrollment with an IdP user, commands), then the logs."""
    secrets: list[str] = []
    with exposed.client() as http:
        setting = onboard(http)
        profile = create_profile(http, setting)
        assert http.post(f"{GRAPH}/{setting}/syncWithAppleDeviceEnrollmentProgram").status_code == 204
        wait_synced(http, setting)
        server = next(s for s in http.get("/apple/portal/api/servers").json() if s["server_name"] == "mdmsim")["server_uuid"]
        keys = http.get(f"/apple/portal/api/servers/{server}/token").json()
        secrets += [keys["consumer_secret"], keys["access_secret"], keys["access_token"]]
        oauth = OAuthClient(keys["consumer_key"], client_secret=keys["consumer_secret"],
                            resource_owner_key=keys["access_token"], resource_owner_secret=keys["access_secret"])
        url, headers, _ = oauth.sign(f"{exposed.url}/apple/dep/session")
        session = http.get(url, headers={**headers, "User-Agent": "x"}).json()["auth_session_token"]
        secrets.append(session)
        serial = http.get("/apple/portal/api/devices", params={"limit": 1}).json()["devices"][0]["serial_number"]
        http.post(f"{GRAPH}/{setting}/enrollmentProfiles/{profile}/updateDeviceProfileAssignment", json={"deviceIds": [serial]})
        assert http.post(f"/_sim/devices/{serial}/power-on").json()["enrolled"] is True
        users = http.get("/idp/users").json()
        users = users.get("users", users) if isinstance(users, dict) else users
        secrets += [u["password"] for u in users if isinstance(u, dict) and u.get("password")][:5]
        http.post("/apple/dep/session", headers={"Authorization": 'OAuth oauth_consumer_key="CK_x"'})  # a refusal
    text = exposed.output()
    for secret in secrets:
        assert secret not in text
    assert "PRIVATE KEY" not in text
    banner, _, after = text.partition("Listening at")
    assert exposed.token and exposed.token not in after  # the token is printed once, at start, and only there


def test_apples_portal_is_an_admin_surface_and_the_root_never_shows_the_live_feed_ticket(exposed: Served) -> None:
    """Business Manager's API accounts hand out private keys and its server pages renew DEP tokens:
    beyond loopback they need the token, as the other admin surfaces do; its pages take the same
    one-time entry. The open ``GET /`` leaves out the live feed's URL (its ticket comes from the token)."""
    with httpx.Client(base_url=exposed.url) as anonymous:
        assert anonymous.post("/apple/portal/api/api-accounts", json={"name": "x"}).status_code == 401
        assert anonymous.get("/apple/portal/api/servers").status_code == 401
        assert anonymous.get("/apple/portal/push-certificates/api/certificates").status_code == 401
        assert "ticket=" not in anonymous.get("/").text
        entered = anonymous.get(f"/apple/portal/?api_token={exposed.token}")
        assert entered.status_code == 303 and "Path=/apple/portal" in entered.headers["Set-Cookie"]
        assert anonymous.get("/apple/portal/", follow_redirects=True).status_code == 200
        assert anonymous.get("/apple/portal/api/servers").status_code == 401  # the cookie opens pages only
    with exposed.client() as admin:
        assert "ticket=" in admin.get("/_sim/").text
