"""A small DEP client of the kind an MDM vendor writes: requests + oauthlib, from Apple's documentation.

It is here as "your code": the examples test it against mdmsim. Nothing in it knows mdmsim.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import requests
from oauthlib.oauth1 import Client


class DEPError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


class DEPClient:
    def __init__(self, base_url: str, consumer_key: str, consumer_secret: str, access_token: str,
                 access_secret: str, **_: Any) -> None:
        self.base_url = base_url.rstrip("/")
        self.oauth = Client(consumer_key, client_secret=consumer_secret, resource_owner_key=access_token,
                            resource_owner_secret=access_secret, realm="ADM")
        self.http = requests.Session()
        self.http.headers.update({"User-Agent": "my-mdm/1.0", "X-Server-Protocol-Version": "3",
                                  "Content-Type": "application/json;charset=UTF8"})
        self.session: str | None = None
        self.session_calls = 0

    def _authenticate(self) -> None:
        url = f"{self.base_url}/session"
        _, headers, _ = self.oauth.sign(url)
        reply = self.http.get(url, headers=headers)
        self.session_calls += 1
        if reply.status_code != 200:
            raise DEPError(reply.status_code, reply.text)
        self.session = reply.json()["auth_session_token"]

    def request(self, method: str, path: str, **kw: Any) -> Any:
        for attempt in range(2):
            if self.session is None:
                self._authenticate()
            reply = self.http.request(method, f"{self.base_url}{path}",
                                      headers={"X-ADM-Auth-Session": self.session or ""}, **kw)
            if "X-ADM-Auth-Session" in reply.headers:
                self.session = reply.headers["X-ADM-Auth-Session"]
            if reply.status_code == 401 and attempt == 0:
                self.session = None  # expired: authenticate again
                continue
            if reply.status_code != 200:
                raise DEPError(reply.status_code, reply.text.strip('"'))
            return reply.json()
        raise AssertionError("unreachable")

    def account(self) -> dict[str, Any]:
        return self.request("GET", "/account")

    def fetch_all(self, limit: int = 1000) -> tuple[list[dict[str, Any]], str]:
        devices, cursor = [], None
        while True:
            page = self.request("POST", "/server/devices", json={"limit": limit, **({"cursor": cursor} if cursor else {})})
            devices += page["devices"]
            cursor = page["cursor"]
            if not page["more_to_follow"]:
                return devices, cursor

    def sync(self, cursor: str) -> Iterator[dict[str, Any]]:
        while True:
            page = self.request("POST", "/devices/sync", json={"cursor": cursor, "limit": 1000})
            yield page
            cursor = page["cursor"]
            if not page["more_to_follow"]:
                return
