"""Clients that hard-code Apple's addresses reach the world: Host routing on the main port, and one
party alone at the root of a port of its own.

:class:`AppleDEPClient` is written as a vendor writes a DEP client: ``https://mdmenrollment.apple.com``
is a constant, the page size comes from the limit ``GET /account`` advertises for ``/server/devices``,
a 401 opens a new session. Nothing in it knows mdmsim. What a hosts-file line does for a real client
(``127.0.0.1 mdmenrollment.apple.com``) :class:`HostsFile` does here: the connection goes to the
served world's socket while the request, its ``Host`` header and the TLS server name stay Apple's,
and the world's CA is the only trust, so the world's certificate must name Apple's host.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from oauthlib.oauth1 import Client as OAuth1
from tests_support import GRAPH, onboard

from simulator import World
from simulator.authorities import dep_record

APPLE_DEP = "https://mdmenrollment.apple.com"
APPLE_BUSINESS_API = "https://api-business.apple.com"
APPLE_TOKEN_URL = "https://account.apple.com/auth/oauth2/token"
APPLE_HOST_NAMES = {"mdmenrollment.apple.com", "api.push.apple.com", "iprofiles.apple.com", "api-business.apple.com",
                    "account.apple.com"}


class HostsFile(httpx.HTTPTransport):
    """A hosts-file line for one process: Apple's names resolve to ``address``, nothing else changes."""

    def __init__(self, address: tuple[str, int], names: set[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.address = address
        self.names = names

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in self.names:
            request.extensions = {**request.extensions, "sni_hostname": request.url.host}
            request.url = request.url.copy_with(host=self.address[0], port=self.address[1])
        return super().handle_request(request)


class AppleDEPClientError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.code = body.strip().strip('"')


class AppleDEPClient:
    """A DEP client as a vendor writes one against Apple's documentation (httpx + oauthlib)."""

    def __init__(self, token: dict[str, str], http: httpx.Client) -> None:
        self.token = token
        self.http = http
        self.session: str | None = None
        self.sessions_opened = 0
        self._limits: dict[str, int] | None = None

    def _authenticate(self) -> None:
        oauth = OAuth1(self.token["consumer_key"], client_secret=self.token["consumer_secret"],
                       resource_owner_key=self.token["access_token"],
                       resource_owner_secret=self.token["access_secret"], realm="ADM")  # fmt: skip
        _, headers, _ = oauth.sign(f"{APPLE_DEP}/session")
        response = self.http.get(f"{APPLE_DEP}/session", headers={**headers, "User-Agent": "vendor-dep/2.0"})
        if response.status_code != 200:
            raise AppleDEPClientError(response.status_code, response.text)
        self.session = response.json()["auth_session_token"]
        self.sessions_opened += 1

    def call(self, method: str, path: str, body: Any = None) -> Any:
        for attempt in (1, 2):
            if self.session is None:
                self._authenticate()
            assert self.session is not None
            response = self.http.request(method, APPLE_DEP + path, content=None if body is None else json.dumps(body),
                                         headers={"X-ADM-Auth-Session": self.session, "X-Server-Protocol-Version": "10",
                                                  "User-Agent": "vendor-dep/2.0",
                                                  "Content-Type": "application/json;charset=UTF8"})  # fmt: skip
            self.session = response.headers.get("X-ADM-Auth-Session", self.session)
            if response.status_code == 401 and attempt == 1:
                self.session = None
                continue
            if response.status_code != 200:
                raise AppleDEPClientError(response.status_code, response.text)
            return response.json()
        raise AssertionError("unreachable")

    def page_limit(self, path: str) -> int:
        """The ``maximum`` Apple advertises for ``path`` in the account's urls; 100 when it advertises none."""
        if self._limits is None:
            account = self.call("GET", "/account")
            self._limits = {u["uri"]: u["limit"]["maximum"] for u in account.get("urls", []) if "limit" in u}
        return self._limits.get(path, 100)

    def fetch_all(self) -> tuple[list[dict[str, Any]], str, list[int]]:
        """Every device, the cursor to sync from, and the size of each page."""
        devices: list[dict[str, Any]] = []
        sizes: list[int] = []
        body: dict[str, Any] = {"limit": self.page_limit("/server/devices")}
        while True:
            page = self.call("POST", "/server/devices", body)
            devices += page["devices"]
            sizes.append(len(page["devices"]))
            body["cursor"] = page["cursor"]
            if not page["more_to_follow"]:
                return devices, page["cursor"], sizes

    def sync(self, cursor: str) -> dict[str, Any]:
        return self.call("POST", "/devices/sync", {"cursor": cursor, "limit": self.page_limit("/devices/sync")})


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[World, Any, httpx.Client]]:
    """A world of 2,500 devices served over HTTPS, and a client whose hosts file sends Apple's names to it."""
    with World(devices=2500, seed=19, background_sync=False, push_certificate=False) as world:
        with world.serve(tls=True) as live:
            address = live.server.server_address[:2]
            transport = HostsFile(address, APPLE_HOST_NAMES, verify=_ca_context(world.tls_ca_pem))
            with httpx.Client(transport=transport, timeout=60) as http:
                yield world, live, http


def _ca_context(pem: str) -> Any:
    import ssl

    context = ssl.create_default_context(cadata=pem)  # the world's CA and nothing else
    return context


def test_a_client_hard_coding_apples_url_syncs_pages_by_the_advertised_limit_and_renews_its_session(served) -> None:
    world, _, http = served
    client = AppleDEPClient(world.dep_credentials, http)
    account = client.call("GET", "/account")
    assert account["server_uuid"] == world.default_server_uuid
    assert client.page_limit("/server/devices") == 1000 and client.page_limit("/devices/sync") == 1000

    devices, cursor, sizes = client.fetch_all()
    assert sizes == [1000, 1000, 500]
    assert sorted(d["serial_number"] for d in devices) == sorted(world.serials)

    # an hour and a bit later the session has expired: one 401, a new session, the call goes through
    world.clock.advance(minutes=61)
    world.portal.generate(3, server_uuid=world.default_server_uuid)
    synced = client.sync(cursor)
    assert client.sessions_opened == 2
    assert [d["op_type"] for d in synced["devices"]] == ["added"] * 3

    # eight days on, the sync cursor has expired: Apple's error, after yet another new session
    world.clock.advance(days=8)
    with pytest.raises(AppleDEPClientError) as expired:
        client.sync(synced["cursor"])
    assert (expired.value.status, expired.value.code) == (400, "EXPIRED_CURSOR")
    assert client.sessions_opened == 3


def test_apples_push_and_activation_hosts_reach_their_parties(served) -> None:
    world, _, http = served
    push = http.post("https://api.push.apple.com/3/device/" + "ab" * 32, json={"mdm": "x"},
                     headers={"apns-topic": "com.apple.mgmt.nobody"})  # fmt: skip
    assert "reason" in push.json(), push.text  # the gateway's own error format, not a 404 of the world
    serial = world.serials[0]
    cloud = http.post("https://iprofiles.apple.com/profile", json={"action": "RequestProfileConfiguration", "sn": serial})
    assert cloud.status_code == 200 and cloud.json() == {}  # no profile assigned yet: activates unmanaged
    traffic = world.traffic()
    assert "post_3_device_token" in traffic.get("apns", {}) and "post_profile" in traffic.get("activation", {})


def test_a_business_api_client_hard_coding_apples_urls_gets_a_token_and_the_devices_dep_lists(served) -> None:
    """The token from ``account.apple.com``, the devices from ``api-business.apple.com``, as Apple's
    documentation writes both URLs; the hardware identifiers it reads are the ones DEP (v10) lists."""
    world, _, http = served
    credentials = world.business_credentials
    issued = int(world.clock.timestamp())  # the world's clock is the one the assertion is checked on
    assertion = jwt.encode(
        {"sub": credentials["client_id"], "iss": credentials["client_id"], "iat": issued,
         "exp": issued + 86400, "jti": str(uuid.uuid4()), "aud": "https://account.apple.com/auth/oauth2/v2/token"},
        credentials["private_key_pem"], algorithm="ES256", headers={"kid": credentials["key_id"]},
    )  # fmt: skip
    token = http.post(APPLE_TOKEN_URL, data={
        "grant_type": "client_credentials", "client_id": credentials["client_id"], "scope": "business.api",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion})  # fmt: skip
    assert token.status_code == 200, token.text
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}", "Accept": "application/json"}

    page = http.get(f"{APPLE_BUSINESS_API}/v1/orgDevices", params={"limit": 5}, headers=bearer)
    assert page.status_code == 200, page.text
    assert [d["id"] for d in page.json()["data"]] == world.serials[:5]
    # the links it follows stay on Apple's host, so the client never learns another address
    assert page.json()["links"]["next"].startswith(f"{APPLE_BUSINESS_API}/v1/orgDevices?")
    serial = next(s for s in world.serials if world.identity(s).imei)
    device = http.get(f"{APPLE_BUSINESS_API}/v1/orgDevices/{serial}", headers=bearer).json()["data"]
    assert device["links"]["self"] == f"{APPLE_BUSINESS_API}/v1/orgDevices/{serial}"
    listed = AppleDEPClient(world.dep_credentials, http).call("POST", "/devices", {"devices": [serial]})["devices"][serial]
    attributes = device["attributes"]
    assert attributes["imei"] == listed["imei"] == [world.identity(serial).imei]
    assert attributes["eid"] == listed["eid"] and attributes["wifiMacAddress"] == listed["wifi_mac_address"]
    assert attributes["bluetoothMacAddress"] == listed["bluetooth_mac_address"]
    traffic = world.traffic()
    assert "post_auth_oauth2_token" in traffic.get("account", {}), traffic
    assert "get_v1_orgDevices" in traffic.get("business", {}), traffic


def test_other_hosts_keep_the_world_s_paths(served) -> None:
    world, live, _ = served
    with httpx.Client(verify=_ca_context(world.tls_ca_pem), timeout=30) as plain:
        assert plain.get(f"{live.url}/session").status_code == 404  # not DEP without Apple's name
        assert plain.get(f"{live.url}/").json()["default_server_uuid"] == world.default_server_uuid


def _dep_pages_at_root(base: str, token: dict[str, str]) -> list[str]:
    """A NanoDEP-like client given ``base``: ``/session`` and ``/server/devices`` from the root."""
    oauth = OAuth1(token["consumer_key"], client_secret=token["consumer_secret"],
                   resource_owner_key=token["access_token"], resource_owner_secret=token["access_secret"],
                   realm="ADM")  # fmt: skip
    _, headers, _ = oauth.sign(f"{base}/session")
    with httpx.Client(base_url=base, headers={"User-Agent": "nanodep-like/1"}, timeout=30) as http:
        session = http.get("/session", headers=headers).json()["auth_session_token"]
        page = http.post("/server/devices", json={}, headers={"X-ADM-Auth-Session": session}).json()
        assert http.get("/apple/dep/session").status_code == 404  # the world's paths are not here
        assert http.get("/_sim/").status_code == 404
    return sorted(d["serial_number"] for d in page["devices"])


def test_dep_alone_at_the_root_of_its_own_port() -> None:
    """``World.serve(dep_port=0)``: DEP at ``/`` of a second port, as a client with ``base_url`` expects."""
    with World(devices=3, seed=5, background_sync=False, push_certificate=False) as world:
        with world.serve(dep_port=0) as served:
            assert served.dep_url and world.info()["urls"]["dep_root"] == served.dep_url
            assert _dep_pages_at_root(served.dep_url, world.dep_credentials) == sorted(world.serials)
            assert world.traffic()["dep"]["post_server_devices"]["200"] == 1
    with World(devices=0, push_certificate=False) as empty, pytest.raises(ValueError):
        empty.party_wsgi("intune")


def test_mdmsim_serve_dep_port() -> None:
    """``mdmsim serve --dep-port P``: gunicorn listens on both ports and P answers as Apple's DEP host."""
    from simulator.load.server import free_port, mdmsim_serve

    dep_port = free_port()
    with mdmsim_serve("--devices", "4", "--seed", "2", "--dep-port", str(dep_port), timeout_s=120) as url:
        info = httpx.get(f"{url}/_sim/", timeout=10).json()
        assert info["urls"]["dep_root"] == f"http://127.0.0.1:{dep_port}"
        token = httpx.get(info["credentials"], timeout=10).json()
        serials = _dep_pages_at_root(info["urls"]["dep_root"], token)
        assert len(serials) == 4
        assert httpx.get(f"{url}/apple/dep/account", timeout=10).status_code == 401  # the main port still has it


def test_the_imei_a_device_reports_is_the_one_dep_lists() -> None:
    with World(devices=6, seed=23, background_sync=False) as world:
        serial = next(s for s in world.serials if world.identity(s).imei)
        identity = world.identity(serial)
        http = world.http
        setting = onboard(world)
        profile = http.post(f"{GRAPH}/{setting}/enrollmentProfiles", json={
            "@odata.type": "#microsoft.graph.depIOSEnrollmentProfile", "displayName": "Phones",
            "supervisedModeEnabled": True}).json()["id"]  # fmt: skip
        assert http.post(f"{GRAPH}/{setting}/syncWithAppleDeviceEnrollmentProgram").status_code == 204
        world.controller.wait_for_sync(setting, 30)
        assigned = http.post(f"{GRAPH}/{setting}/enrollmentProfiles/{profile}/updateDeviceProfileAssignment",
                             json={"deviceIds": [serial]})  # fmt: skip
        assert assigned.status_code == 204, assigned.text
        assert world.devices.power_on(serial).phase == "home"
        command = http.post("/mdm/api/v1/commands", json={"udids": [identity.udid], "command": {
            "RequestType": "DeviceInformation",
            "Queries": ["IMEI", "MEID", "WiFiMAC", "BluetoothMAC", "ServiceSubscriptions"]}}).json()  # fmt: skip
        world.devices.run_agent(serial)
        result = http.get(f"/mdm/api/v1/commands/{command['command_uuid']}").json()["devices"][0]["result"]
        reported = result["payload"]["QueryResponses"]

        # what Apple lists for the server (protocol version 10), read as a DEP client reads it
        token = world.dep_credentials
        oauth = OAuth1(token["consumer_key"], client_secret=token["consumer_secret"],
                       resource_owner_key=token["access_token"], resource_owner_secret=token["access_secret"],
                       realm="ADM")  # fmt: skip
        _, headers, _ = oauth.sign(f"{world.dep_url}/session")
        session = http.get("/apple/dep/session", headers={**headers, "User-Agent": "t"}).json()["auth_session_token"]
        listed = http.post("/apple/dep/devices", json={"devices": [serial]}, headers={
            "X-ADM-Auth-Session": session, "X-Server-Protocol-Version": "10", "User-Agent": "t"}).json()["devices"][serial]

        assert listed["imei"] == [reported["IMEI"]]
        assert listed["wifi_mac_address"] == reported["WiFiMAC"]
        assert listed["bluetooth_mac_address"] == reported["BluetoothMAC"]
        assert listed["eid"] == reported["ServiceSubscriptions"][0]["EID"]
        assert listed.get("meid") == ([reported["MEID"]] if "MEID" in reported else None)
        assert listed["profile_status"] == "pushed" and "profile_push_time" in listed
        # a serial added by hand gets its maker's identity too, so it also matches once powered on
        world.portal.add_serials(["C39ZZ1TESTQ1"], server_uuid=world.default_server_uuid)
        assert world.portal.device("C39ZZ1TESTQ1")["model"] == dep_record(world.identity("C39ZZ1TESTQ1"))["model"]
