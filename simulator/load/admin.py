"""Preparing a served world for load, over HTTP only: the admin side of every scenario.

The fastest honest path to a fleet that can enroll is Apple's own DEP API with the server token's
OAuth keys (``GET /apple/portal/api/servers/<uuid>/token``): define one profile whose ``url`` is the
MDM's enrollment URL, assign every serial 1000 at a time. It skips the controller on purpose, so a
load run measures enrollment and check-in, not the Graph API. The sync storm needs the controller
and onboards a token there as an admin would (:meth:`WorldAdmin.onboard_controller`).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import httpx
from oauthlib.oauth1 import Client as OAuthClient

from simulator.device.drivers import served_world_clock
from simulator.device.identity import DeviceIdentity
from simulator.device.machine import Device, DeviceScript
from simulator.device.push_stream import reachable_stream_url

__all__ = ["WorldAdmin", "LoadSetupError", "GRAPH", "DEFAULT_SKIP_SETUP", "chunks", "device_from_bundle"]

GRAPH = "/intune/deviceManagement/depOnboardingSettings"
DEP_HEADERS = {"User-Agent": "mdmsim-load/1", "X-Server-Protocol-Version": "3"}
ASSIGN_CHUNK = 1000  # Apple's limit per device-list request
IDENTITY_CHUNK = 500
#: What a corporate fleet typically skips; fewer panes also keep each idle device's transcript small.
DEFAULT_SKIP_SETUP = [
    "Privacy", "DeviceToDeviceMigration", "Restore", "Android", "AppleID", "EnableLockdownMode", "TOS",
    "SoftwareUpdate", "Location", "Siri", "ScreenTime", "Payment", "iMessageAndFaceTime", "Diagnostics",
    "Safety", "Intelligence", "Appearance", "AppStore", "OnBoarding", "Welcome", "Zoom", "DisplayTone",
    "Biometric", "Passcode", "ActionButton", "CameraButton", "HomeButtonSensitivity", "SIMSetup",
    "MessagingActivationUsingPhoneNumber",
]  # fmt: skip


class LoadSetupError(RuntimeError):
    """The target did not let us prepare the run (wrong URL, an endpoint missing, a refusal)."""


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _check(response: httpx.Response, what: str, ok: tuple[int, ...] = (200, 201, 204)) -> httpx.Response:
    if response.status_code not in ok:
        raise LoadSetupError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response


class WorldAdmin:
    """An administrator of one served world at ``target`` (its base URL)."""

    def __init__(self, target: str, *, client: httpx.Client | None = None, timeout: float = 60.0) -> None:
        self.target = target.rstrip("/")
        self.http = client or httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=32))
        self._info: dict[str, Any] | None = None
        self._dep_session: str | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> WorldAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the world -------------------------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        if self._info is None:
            try:
                r = self.http.get(f"{self.target}/_sim/")
            except httpx.HTTPError as exc:
                raise LoadSetupError(f"cannot reach {self.target}: {exc}") from None
            self._info = _check(r, f"GET {self.target}/_sim/ (is this an mdmsim world?)").json()
        return self._info

    def url(self, party: str) -> str:
        """A party's base URL as the world publishes it (``dep``, ``mdm``, ``controller``…)."""
        return str(self.info["urls"][party])

    def apns_stream_url(self) -> str | None:
        """The push gateway's device-stream listener, where devices hold their streams (``None``: the
        world is not served with one, e.g. an older ``mdmsim serve``; devices then poll APNs)."""
        value = self.info.get("urls", {}).get("apns_stream")
        return reachable_stream_url(str(value), self.target) if value else None

    def world_now(self) -> Callable[[], datetime]:
        """The world's clock, read once and then advanced with the wall clock."""
        return served_world_clock(self.http, self.target)

    def serials(self, limit: int | None = None) -> list[str]:
        """Serials assigned to the world's default MDM server, in the portal's (stable) order."""
        server = self.info["default_server_uuid"]
        out: list[str] = []
        while limit is None or len(out) < limit:
            page = min(1000, (limit - len(out)) if limit is not None else 1000)
            r = _check(self.http.get(f"{self.target}/apple/portal/api/devices",
                                     params={"server_uuid": server, "limit": page, "offset": len(out)}),
                       "listing the portal's devices")
            devices = r.json()["devices"]
            out.extend(d["serial_number"] for d in devices)
            if len(devices) < page:
                break
        return out

    def serial_at(self, index: int) -> str | None:
        server = self.info["default_server_uuid"]
        r = _check(self.http.get(f"{self.target}/apple/portal/api/devices",
                                 params={"server_uuid": server, "limit": 1, "offset": index}), "portal device")
        devices = r.json()["devices"]
        return devices[0]["serial_number"] if devices else None

    # -- DEP, as the MDM vendor ---------------------------------------------------------------------
    def dep_headers(self) -> dict[str, str]:
        if self._dep_session is None:
            creds = _check(self.http.get(self.info["credentials"]), "reading the server token").json()
            oauth = OAuthClient(creds["consumer_key"], client_secret=creds["consumer_secret"],
                                resource_owner_key=creds["access_token"],
                                resource_owner_secret=creds["access_secret"], realm="ADM")
            url = f"{self.url('dep')}/session"
            _, headers, _ = oauth.sign(url)
            r = _check(self.http.get(url, headers={**headers, **DEP_HEADERS}), "DEP session")
            self._dep_session = r.json()["auth_session_token"]
        return {**DEP_HEADERS, "X-ADM-Auth-Session": self._dep_session,
                "Content-Type": "application/json;charset=UTF8"}

    def define_profile(self, *, mdm_url: str | None = None, skip_setup: Sequence[str] = DEFAULT_SKIP_SETUP,
                       name: str = "mdmsim load") -> str:
        """A DEP profile whose ConfigurationURL is ``{mdm}/enroll`` (or ``mdm_url``); its UUID."""
        body = {"profile_name": name, "url": mdm_url or f"{self.url('mdm')}/enroll", "is_supervised": True,
                "is_mandatory": True, "is_mdm_removable": False, "department": "Load test",
                "skip_setup_items": list(skip_setup)}
        r = _check(self.http.post(f"{self.url('dep')}/profile", json=body, headers=self.dep_headers()),
                   "defining the DEP profile")
        return str(r.json()["profile_uuid"])

    def assign_profile(self, profile_uuid: str, serials: Sequence[str]) -> int:
        """Assign in Apple's chunks of 1000; the number of serials Apple answered SUCCESS for."""
        ok = 0
        for chunk in chunks(serials, ASSIGN_CHUNK):
            r = _check(self.http.put(f"{self.url('dep')}/profile/devices",
                                     json={"profile_uuid": profile_uuid, "devices": list(chunk)},
                                     headers=self.dep_headers()), "assigning the DEP profile")
            ok += sum(1 for v in r.json()["devices"].values() if v == "SUCCESS")
        return ok

    # -- identities (the world as the devices' manufacturer) -------------------------------------------
    def identity_bundles(self, serials: Sequence[str], *, threads: int = 16) -> list[dict[str, Any]]:
        """One bundle per serial, via ``POST /_sim/devices/identities`` (500 per request) or, against
        a world without that endpoint, one ``GET /_sim/devices/<serial>/identity`` each, in threads."""
        out: list[dict[str, Any]] = []
        for chunk in chunks(serials, IDENTITY_CHUNK):
            r = self.http.post(f"{self.target}/_sim/devices/identities", json={"serials": list(chunk)})
            if r.status_code in (404, 405):
                return self._identity_bundles_one_by_one(serials, threads)
            _check(r, "fetching identity bundles")
            body = r.json()
            if body["missing"]:
                raise LoadSetupError(f"the world does not know {', '.join(body['missing'][:5])}")
            out.extend(body["identities"])
        return out

    def _identity_bundles_one_by_one(self, serials: Sequence[str], threads: int) -> list[dict[str, Any]]:
        def one(serial: str) -> dict[str, Any]:
            r = self.http.get(f"{self.target}/_sim/devices/{serial}/identity")
            return _check(r, f"identity of {serial}").json()  # type: ignore[no-any-return]

        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, serials))

    def claim_index(self, counter: str) -> int | None:
        """The next number of a world-wide counter (``POST /_sim/counters/<name>``), None if absent."""
        r = self.http.post(f"{self.target}/_sim/counters/{counter}")
        if r.status_code in (404, 405):
            return None
        return int(_check(r, "claiming a device").json()["value"])

    # -- the MDM command API --------------------------------------------------------------------------
    def enqueue(self, udids: Sequence[str], command: dict[str, Any]) -> str:
        r = _check(self.http.post(f"{self.url('mdm')}/api/v1/commands",
                                  json={"udids": list(udids), "command": command}), "enqueueing a command")
        return str(r.json()["command_uuid"])

    # -- the controller, as Intune's admin --------------------------------------------------------------
    def onboard_controller(self, name: str = "Load test") -> str:
        """Token in the controller, its public key at Apple, the ``.p7m`` back: the setting's id."""
        graph = f"{self.url('controller')}/deviceManagement/depOnboardingSettings"
        setting = _check(self.http.post(graph, json={"tokenName": name}), "creating a DEP token").json()["id"]
        pem = _check(self.http.post(f"{graph}/{setting}/generateEncryptionPublicKey"),
                     "generating the token key").json()["value"]
        server = self.info["default_server_uuid"]
        portal = self.url("portal")
        _check(self.http.post(f"{portal}/api/servers/{server}/public-key", content=pem), "uploading the key")
        p7m = _check(self.http.get(f"{portal}/api/servers/{server}/token.p7m"), "downloading the token")
        _check(self.http.post(f"{graph}/{setting}/uploadDepToken",
                              json={"appleId": "admin@contoso.example", "depToken": p7m.text}), "uploading the token")
        return str(setting)

    def dep_setting(self, setting: str) -> dict[str, Any]:
        graph = f"{self.url('controller')}/deviceManagement/depOnboardingSettings"
        return _check(self.http.get(f"{graph}/{setting}"), "reading the DEP token").json()  # type: ignore[no-any-return]

    def traffic(self) -> dict[str, Any]:
        return _check(self.http.get(f"{self.target}/_sim/traffic"), "reading traffic").json()  # type: ignore[no-any-return]

    def script_faults(self, script: dict[str, Any]) -> None:
        _check(self.http.post(f"{self.target}/_sim/faults", json=script), "scripting faults")

    def clear_faults(self) -> None:
        _check(self.http.delete(f"{self.target}/_sim/faults"), "clearing faults")


def device_from_bundle(bundle: dict[str, Any], script: DeviceScript | None = None) -> Device:
    """A factory-fresh device from ``/_sim/devices/<serial>/identity``'s bundle.

    Here rather than in the fleet module because Locust imports it too, and under gevent it must not
    pull in the asyncio transport (httpcore imports trio when present, which gevent's ``select`` breaks)."""
    return Device.create(
        DeviceIdentity(**bundle["identity"]),
        device_key=bundle["device_key_pem"],
        device_cert=bundle["device_certificate_pem"],
        apple_url=bundle["apple_url"],
        script=script,
    )
