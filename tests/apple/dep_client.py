"""A DEP web service client written from Apple's documentation alone (requests + oauthlib).

It shares no code with the simulator on purpose: if the server and this client agreed only because
they imported the same helper, the tests would prove nothing about what a real MDM vendor's client
sees. What it follows, from Apple's "Device Assignment" documentation:

* ``GET /session`` signed with OAuth 1.0a HMAC-SHA1, ``realm="ADM"``, using the four keys of the server
  token; the reply's ``auth_session_token`` goes into ``X-ADM-Auth-Session`` on every later call.
* Any response may carry a fresh ``X-ADM-Auth-Session``, which replaces the stored one.
* On 401 (and 403 ``FORBIDDEN`` after a service restart) a client authenticates again and retries once.
* ``X-Server-Protocol-Version`` selects fields; ``User-Agent`` is required; bodies are JSON sent as
  ``Content-Type: application/json;charset=UTF8``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import requests
from oauthlib.oauth1 import Client
from urllib3.util import SKIP_HEADER

__all__ = ["DEPClient", "DEPClientError"]


class DEPClientError(Exception):
    """A non-200 answer: ``status`` and Apple's short error string (quotes stripped)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body.strip().strip('"')


class DEPClient:
    """Talks to one DEP base URL (``https://mdmenrollment.apple.com`` or a simulator's mount point)."""

    def __init__(
        self,
        base_url: str,
        token: dict[str, str],
        *,
        protocol_version: int | None = 7,
        user_agent: str | None = "mdmsim-tests-dep-client/1.0",
        http: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.protocol_version = protocol_version
        self.user_agent = user_agent
        self.http = http or requests.Session()
        self.auth_session: str | None = None

    # -- authentication ------------------------------------------------------------------------------
    def oauth_client(self, **overrides: Any) -> Client:
        """An oauthlib client for the server token (tests override nonce/timestamp/secrets)."""
        args: dict[str, Any] = {
            "client_key": self.token["consumer_key"],
            "client_secret": self.token["consumer_secret"],
            "resource_owner_key": self.token["access_token"],
            "resource_owner_secret": self.token["access_secret"],
            "realm": "ADM",
            "signature_method": "HMAC-SHA1",
        }
        args.update(overrides)
        return Client(**args)

    def session_request(self, **overrides: Any) -> requests.Response:
        """A signed ``GET /session``, not raising, so tests can look at failures."""
        url = self.base_url + "/session"
        _, headers, _ = self.oauth_client(**overrides).sign(url, http_method="GET")
        headers.update(self._base_headers())
        return self.http.get(url, headers=headers, timeout=30)

    def authenticate(self) -> str:
        response = self.session_request()
        if response.status_code != 200:
            raise DEPClientError(response.status_code, response.text)
        self.auth_session = response.json()["auth_session_token"]
        return self.auth_session

    def _base_headers(self) -> dict[str, str | None]:
        # SKIP_HEADER stops requests/urllib3 adding their own User-Agent, so tests can send none at all.
        headers: dict[str, str | None] = {
            "Content-Type": "application/json;charset=UTF8",
            "User-Agent": self.user_agent if self.user_agent is not None else SKIP_HEADER,
        }
        if self.protocol_version is not None:
            headers["X-Server-Protocol-Version"] = str(self.protocol_version)
        return headers

    # -- raw calls ---------------------------------------------------------------------------------------
    def raw(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> requests.Response:
        """One request with the current session; the session header is updated from the reply."""
        merged = self._base_headers()
        if self.auth_session is not None:
            merged["X-ADM-Auth-Session"] = self.auth_session
        merged.update(headers or {})
        if data is None and body is not None:
            data = json.dumps(body).encode()
        response = self.http.request(
            method, self.base_url + path, data=data, params=params, headers=merged, timeout=60
        )
        fresh = response.headers.get("X-ADM-Auth-Session")
        if fresh:
            self.auth_session = fresh
        return response

    def call(self, method: str, path: str, body: Any = None, *, params: dict[str, str] | None = None) -> Any:
        """A call that authenticates when needed, re-authenticates once on 401/403 FORBIDDEN, and
        raises :class:`DEPClientError` for anything but 200."""
        if self.auth_session is None:
            self.authenticate()
        response = self.raw(method, path, body, params=params)
        if response.status_code == 401 or (response.status_code == 403 and "FORBIDDEN" in response.text):
            self.authenticate()
            response = self.raw(method, path, body, params=params)
        if response.status_code != 200:
            raise DEPClientError(response.status_code, response.text)
        return response.json()

    # -- the documented endpoints -------------------------------------------------------------------------
    def account(self) -> dict[str, Any]:
        return self.call("GET", "/account")

    def fetch_devices(self, cursor: str | None = None, limit: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if cursor is not None:
            body["cursor"] = cursor
        if limit is not None:
            body["limit"] = limit
        return self.call("POST", "/server/devices", body)

    def sync_devices(self, cursor: str, limit: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"cursor": cursor}
        if limit is not None:
            body["limit"] = limit
        return self.call("POST", "/devices/sync", body)

    def fetch_pages(self, limit: int = 1000) -> Iterator[dict[str, Any]]:
        """Every page of a full fetch, following ``more_to_follow``."""
        cursor = None
        while True:
            page = self.fetch_devices(cursor, limit)
            yield page
            cursor = page["cursor"]
            if not page["more_to_follow"]:
                return

    def device_details(self, serials: list[str]) -> dict[str, Any]:
        return self.call("POST", "/devices", {"devices": serials})

    def disown(self, serials: list[str]) -> dict[str, Any]:
        return self.call("POST", "/devices/disown", {"devices": serials})

    def define_profile(self, profile: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", "/profile", profile)

    def get_profile(self, profile_uuid: str) -> dict[str, Any]:
        return self.call("GET", "/profile", params={"profile_uuid": profile_uuid})

    def assign_profile(self, profile_uuid: str, serials: list[str], method: str = "POST") -> dict[str, Any]:
        return self.call(method, "/profile/devices", {"profile_uuid": profile_uuid, "devices": serials})

    def remove_profile(self, serials: list[str], profile_uuid: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"devices": serials}
        if profile_uuid is not None:
            body["profile_uuid"] = profile_uuid
        return self.call("DELETE", "/profile/devices", body)

    def activation_lock(
        self, serial: str, escrow_key: str | None = None, lost_message: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"device": serial}
        if escrow_key is not None:
            body["escrow_key"] = escrow_key
        if lost_message is not None:
            body["lost_message"] = lost_message
        return self.call("POST", "/device/activationlock", body)

    def replacement_details(self, serial: str) -> dict[str, Any]:
        """``GET /device/replacementDetails?device=`` (Apple asks for protocol version 10)."""
        return self.call("GET", "/device/replacementDetails", params={"device": serial})

    def beta_enrollment_tokens(self) -> dict[str, Any]:
        return self.call("GET", "/os-beta-enrollment/tokens")

    def discovery_profile(self) -> dict[str, Any]:
        return self.call("GET", "/account-driven-enrollment/profile")

    def set_discovery_profile(self, url: str) -> dict[str, Any]:
        return self.call("POST", "/account-driven-enrollment/profile", {"mdm_service_discovery_url": url})

    def delete_discovery_profile(self) -> dict[str, Any]:
        return self.call("DELETE", "/account-driven-enrollment/profile")
