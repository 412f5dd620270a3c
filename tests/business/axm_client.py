"""An Apple Business API client written from Apple's documentation alone (httpx + PyJWT).

It shares no code with the simulator on purpose: if the server and this client agreed only because
they imported the same helper, the tests would prove nothing about what an MDM vendor's client sees.
What it follows, from "Implementing OAuth for the Apple School Manager and Apple Business API" and the
endpoint pages of the Apple Business API:

* A client assertion is a JWT signed ES256 with the API account's private key, header ``kid`` = key ID,
  claims ``sub`` = client ID, ``aud`` = ``https://account.apple.com/auth/oauth2/v2/token``, ``iat``,
  ``exp`` (at most 180 days after ``iat``), ``jti`` (a UUID), and ``iss`` = the client ID as Apple's
  sample sets it. It may be reused until it expires.
* ``POST …/auth/oauth2/token`` form-encoded: ``grant_type=client_credentials``, ``client_id``,
  ``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer``,
  ``client_assertion``, ``scope=business.api``; the reply's ``access_token`` lasts ``expires_in``.
* Every API call sends ``Authorization: Bearer …`` and ``Accept: application/json``; on 401 the client
  gets a new token and retries once. Lists page with ``limit`` (≤ 1000) and ``links.next``.
* ``POST /v1/orgDeviceActivities`` (201) then poll ``GET /v1/orgDeviceActivities/{id}`` until ``status``
  is not ``IN_PROGRESS``; ``downloadUrl`` is fetched without a token and is a CSV whose data rows
  follow a header row starting ``serial_number``.
"""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt

__all__ = ["AxMClient", "AxMError", "AUDIENCE", "ASSERTION_TYPE"]

AUDIENCE = "https://account.apple.com/auth/oauth2/v2/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class AxMError(Exception):
    """A non-2xx answer: ``status`` and the parsed body (``{"errors": [...]}`` or an OAuth error)."""

    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.headers = response.headers
        try:
            self.body: Any = response.json()
        except ValueError:
            self.body = response.text
        super().__init__(f"{self.status} {str(self.body)[:300]}")


class AxMClient:
    """One API account against one token URL and one API base (``https://api-business.apple.com``)."""

    def __init__(
        self,
        *,
        token_url: str,
        api_url: str,
        client_id: str,
        key_id: str,
        private_key_pem: str,
        http: httpx.Client | None = None,
        now: Callable[[], float] = time.time,
        on_response: Callable[[str, httpx.Response], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.token_url = token_url
        self.api_url = api_url.rstrip("/")
        self.client_id = client_id
        self.key_id = key_id
        self.private_key_pem = private_key_pem
        self.http = http or httpx.Client(timeout=30.0)
        self.now = now
        self.on_response = on_response or (lambda _kind, _response: None)
        self.sleep = sleep
        self.throttled = 0
        self.scope = "business.api" if client_id.startswith("BUSINESSAPI.") else "school.api"
        self._assertion: str | None = None
        self._assertion_exp = 0.0
        self.access_token: str | None = None

    # -- OAuth --------------------------------------------------------------------------------------
    def client_assertion(self, *, lifetime_s: int = 180 * 86400, **overrides: Any) -> str:
        """A signed client assertion (tests pass ``overrides`` for claims, ``headers``, ``key``)."""
        issued = int(self.now())
        claims = {"sub": self.client_id, "aud": AUDIENCE, "iat": issued, "exp": issued + lifetime_s,
                  "jti": str(uuid.uuid4()), "iss": self.client_id}
        headers = {"kid": self.key_id, **overrides.pop("headers", {})}
        key = overrides.pop("key", self.private_key_pem)
        algorithm = overrides.pop("algorithm", "ES256")
        claims.update(overrides)
        return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm=algorithm, headers=headers)

    def token_request(self, assertion: str | None = None, **params: str) -> httpx.Response:
        """``POST`` the token endpoint form-encoded (parameters may be overridden), not raising."""
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion or self.client_assertion(),
                "scope": self.scope}
        form.update(params)
        response = self.http.post(self.token_url, data={k: v for k, v in form.items() if v is not None})
        self.on_response("token", response)
        return response

    def authenticate(self) -> str:
        """A fresh access token, reusing the client assertion while it is valid (as Apple allows)."""
        if self._assertion is None or self._assertion_exp - self.now() < 60:
            self._assertion = self.client_assertion()
            self._assertion_exp = self.now() + 180 * 86400
        response = self.token_request(self._assertion)
        if response.status_code != 200:
            raise AxMError(response)
        self.access_token = response.json()["access_token"]
        return self.access_token

    # -- the API ------------------------------------------------------------------------------------
    def request(self, method: str, path_or_url: str, *, kind: str, **kwargs: Any) -> httpx.Response:
        """One API call with the bearer token. A 401 gets a new token and one retry (Apple's advice); a
        429 waits its ``Retry-After`` (when at most a minute) and retries, up to three times."""
        url = path_or_url if path_or_url.startswith("http") else f"{self.api_url}{path_or_url}"
        extra = kwargs.pop("headers", {})
        renewed = False
        waits = 0
        while True:
            if self.access_token is None:
                self.authenticate()
            headers = {"Authorization": f"Bearer {self.access_token}", "Accept": "application/json", **extra}
            response = self.http.request(method, url, headers=headers, **kwargs)
            self.on_response(kind if response.is_success else "ErrorResponse", response)
            if response.status_code == 401 and not renewed:
                self.access_token, renewed = None, True
                continue
            retry_after = response.headers.get("Retry-After", "")
            if response.status_code == 429 and retry_after.isdigit() and int(retry_after) <= 60 and waits < 3:
                self.throttled += 1
                waits += 1
                self.sleep(int(retry_after))
                continue
            break
        if not response.is_success:
            raise AxMError(response)
        return response

    def get(self, path_or_url: str, kind: str, **params: Any) -> dict[str, Any]:
        return self.request("GET", path_or_url, kind=kind, params=params or None).json()

    def pages(self, path: str, kind: str, *, limit: int = 1000) -> Iterator[dict[str, Any]]:
        """Every page of a list, following ``links.next`` until there is none."""
        page = self.get(path, kind, limit=limit)
        while True:
            yield page
            following = page["links"].get("next")
            if not following:
                return
            page = self.get(following, kind)

    def all_devices(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        return [device for page in self.pages("/v1/orgDevices", "OrgDevicesResponse", limit=limit) for device in page["data"]]

    def create_activity(self, activity_type: str, serials: list[str], server_id: str | None = None,
                        deadline: str | None = None) -> dict[str, Any]:  # fmt: skip
        relationships: dict[str, Any] = {"devices": {"data": [{"type": "orgDevices", "id": s} for s in serials]}}
        if server_id is not None:
            relationships["mdmServer"] = {"data": {"type": "mdmServers", "id": server_id}}
        attributes: dict[str, Any] = {"activityType": activity_type}
        if deadline is not None:
            attributes["activityTypeMetadata"] = {"mdmMigrationDeadlineDateTime": deadline}
        body = {"data": {"type": "orgDeviceActivities", "attributes": attributes, "relationships": relationships}}
        response = self.request("POST", "/v1/orgDeviceActivities", kind="OrgDeviceActivityResponse", json=body,
                                headers={"Content-Type": "application/json"})
        assert response.status_code == 201, response.status_code
        return response.json()["data"]

    def wait_for_activity(self, activity_id: str, wait: Callable[[], None], *, tries: int = 30) -> dict[str, Any]:
        """Poll until the activity leaves ``IN_PROGRESS``; ``wait`` is what passes time between polls."""
        for _ in range(tries):
            activity = self.get(f"/v1/orgDeviceActivities/{activity_id}", "OrgDeviceActivityResponse")["data"]
            if activity["attributes"]["status"] != "IN_PROGRESS":
                return activity
            wait()
        raise AssertionError(f"activity {activity_id} still in progress after {tries} polls")

    def activity_log(self, download_url: str) -> list[dict[str, str]]:
        """The activity log's rows (a presigned URL: no token)."""
        response = self.http.get(download_url)
        self.on_response("log", response)
        if response.status_code != 200:
            raise AxMError(response)
        rows = list(csv.reader(io.StringIO(response.text)))
        start = next(i for i, row in enumerate(rows) if row and "serial_number" in row[0].lower())
        header = rows[start]
        return [dict(zip(header, row, strict=False)) for row in rows[start + 1:] if any(cell.strip() for cell in row)]
