"""A client of Apple's DEP web service, written to Apple's documentation rather than to our simulator.

It is meant to work against the real ``mdmenrollment.apple.com`` and against Apple's ``depsim``, so it
codes around what real clients learned the hard way (FACTS.md §1):

* the session is fetched on demand and fetched again on 401 and on 403 ``FORBIDDEN`` (depsim after a
  restart); any response's ``X-ADM-Auth-Session`` header replaces the stored session;
* error bodies are matched by substring because some arrive wrapped in quotes;
* 429/503 are retried after ``Retry-After`` (or an exponential backoff), a bounded number of times,
  with an injectable ``sleep`` so tests never wait;
* assignments go in chunks of at most 1000 serials.

No store, no clock: the session and the time come in through callables, so the controller decides
where they live (its store) and what "now" is (the world clock).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from oauthlib import oauth1

__all__ = [
    "APPLE_ERROR_CODES",
    "ASSIGN_CHUNK",
    "DEPClient",
    "DEPError",
    "OAuthCredentials",
    "TermsNotSigned",
]

USER_AGENT = "mdmsim-controller/1"
ASSIGN_CHUNK = 1000

# Longest first, so "EXPIRED_CURSOR" is not mistaken for a shorter code it contains.
APPLE_ERROR_CODES = sorted(
    [
        "T_C_NOT_SIGNED",
        "ACCESS_DENIED",
        "FORBIDDEN",
        "UNAUTHORIZED",
        "TOO_MANY_REQUESTS",
        "INVALID_CURSOR",
        "EXPIRED_CURSOR",
        "EXHAUSTED_CURSOR",
        "CURSOR_REQUIRED",
        "MALFORMED_REQUEST_BODY",
        "DEVICE_ID_REQUIRED",
        "PROFILE_UUID_REQUIRED",
        "NOT_FOUND",
        "USER_AGENT_MISSING",
        "USER_AGENT_INVALID",
        "CONFIG_NAME_REQUIRED",
        "CONFIG_NAME_INVALID",
        "CONFIG_URL_REQUIRED",
        "CONFIG_URL_INVALID",
        "FLAGS_INVALID",
        "SUPPORT_PHONE_INVALID",
        "SUPPORT_EMAIL_INVALID",
        "DEPARTMENT_INVALID",
        "MAGIC_INVALID",
        "LOCALE_INVALID",
        "ANCHOR_CERTIFICATE_INVALID",
        "SUPERVISING_CERTIFICATE_INVALID",
        "INVALID_METHOD",
        "SERVICE_UNAVAILABLE",
        "INTERNAL_SERVER_ERROR",
        "BAD_REQUEST",
    ],
    key=len,
    reverse=True,
)


@dataclass(frozen=True)
class OAuthCredentials:
    """The four OAuth 1.0a values of a decrypted server token."""

    consumer_key: str
    consumer_secret: str
    access_token: str
    access_secret: str


class DEPError(Exception):
    """Apple answered with an error we cannot (or may no longer) work around.

    ``code`` is Apple's error string found in the body (``INVALID_CURSOR``), or ``HTTP_<status>``.
    """

    def __init__(self, status: int, body: str, *, retry_after: float | None = None) -> None:
        self.status = status
        self.body = body[:500]
        self.code = match_code(body) or f"HTTP_{status}"
        self.retry_after = retry_after
        super().__init__(f"Apple DEP service answered {status} {self.code}")


class TermsNotSigned(DEPError):
    """403 ``T_C_NOT_SIGNED``: nothing works until an admin accepts Apple's new terms in the portal."""


def match_code(body: str) -> str | None:
    """Apple's error string inside ``body`` (which may be quoted, JSON or plain), or None."""
    upper = body.upper()
    for code in APPLE_ERROR_CODES:
        if code in upper:
            return code
    return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None  # an HTTP date: treat as absent and back off instead


class DEPClient:
    """One token's conversation with Apple.

    ``session`` and ``on_session`` let the caller keep the ``X-ADM-Auth-Session`` value in its store,
    so a restarted controller (or another worker) reuses it instead of authenticating again.
    """

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        credentials: OAuthCredentials,
        *,
        session: str | None = None,
        on_session: Callable[[str | None], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.time,
        protocol_version: int = 7,
        max_attempts: int = 5,
        backoff_base_s: float = 1.0,
        max_wait_s: float = 300.0,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.session = session
        self._on_session = on_session
        self._sleep = sleep
        self._now = now
        self.protocol_version = protocol_version
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.max_wait_s = max_wait_s

    # -- plumbing ----------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {
            "User-Agent": USER_AGENT,
            "X-Server-Protocol-Version": str(self.protocol_version),
            "Content-Type": "application/json;charset=UTF8",
            "Accept": "application/json",
        }

    def _store_session(self, token: str | None) -> None:
        if token != self.session:
            self.session = token
            if self._on_session is not None:
                self._on_session(token)

    def authenticate(self) -> str:
        """``GET /session``, signed with OAuth 1.0a (HMAC-SHA1, realm ADM) at world time."""
        url = f"{self.base_url}/session"
        for attempt in range(1, self.max_attempts + 1):
            signer = oauth1.Client(
                self.credentials.consumer_key,
                client_secret=self.credentials.consumer_secret,
                resource_owner_key=self.credentials.access_token,
                resource_owner_secret=self.credentials.access_secret,
                realm="ADM",
                timestamp=str(int(self._now())),
            )
            _, signed, _ = signer.sign(url, http_method="GET")
            headers = self._headers()
            headers["Authorization"] = signed["Authorization"]
            response = self.http.get(url, headers=headers)
            if response.status_code in (429, 503) and attempt < self.max_attempts:
                self._wait(response, attempt)
                continue
            if response.status_code != 200:
                raise self._error(response)
            try:
                token = response.json()["auth_session_token"]
            except (ValueError, KeyError, TypeError):
                raise DEPError(response.status_code, "MALFORMED_SESSION_RESPONSE") from None
            self._store_session(str(token))
            return str(token)
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, response: httpx.Response) -> DEPError:
        body = response.text
        cls = TermsNotSigned if response.status_code == 403 and "T_C_NOT_SIGNED" in body.upper() else DEPError
        return cls(response.status_code, body, retry_after=_retry_after(response))

    def _wait(self, response: httpx.Response, attempt: int) -> None:
        """Honour Retry-After; without it back off exponentially (1, 2, 4 … seconds)."""
        wait = _retry_after(response)
        if wait is None:
            wait = self.backoff_base_s * (2 ** (attempt - 1))
        self._sleep(min(wait, self.max_wait_s))

    def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """Send one call, re-authenticating and retrying as Apple documents; raises DEPError."""
        url = f"{self.base_url}{path}"
        content = json.dumps(body).encode() if body is not None else None
        reauthenticated = False
        attempt = 0
        while True:
            attempt += 1
            if self.session is None:
                self.authenticate()
            headers = self._headers()
            headers["X-ADM-Auth-Session"] = self.session or ""
            response = self.http.request(method, url, content=content, headers=headers)
            fresh = response.headers.get("X-ADM-Auth-Session")
            if fresh:
                self._store_session(fresh)
            status = response.status_code
            if status < 300:
                return response
            text = response.text
            expired_session = status == 401 or (
                status == 403 and "FORBIDDEN" in text.upper() and "T_C_NOT_SIGNED" not in text.upper()
            )
            if expired_session and not reauthenticated:
                reauthenticated = True
                self._store_session(None)
                continue
            if status in (429, 503) and attempt < self.max_attempts:
                self._wait(response, attempt)
                continue
            raise self._error(response)

    def _json(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = self.request(method, path, body)
        try:
            value = response.json()
        except ValueError:
            raise DEPError(response.status_code, "MALFORMED_RESPONSE_BODY") from None
        if not isinstance(value, dict):
            raise DEPError(response.status_code, "MALFORMED_RESPONSE_BODY")
        return value

    # -- Apple's endpoints -------------------------------------------------------------------------
    def account(self) -> dict[str, Any]:
        return self._json("GET", "/account")

    def fetch_devices(self, cursor: str | None = None, limit: int = 1000) -> dict[str, Any]:
        body: dict[str, Any] = {"limit": limit}
        if cursor:
            body["cursor"] = cursor
        return self._json("POST", "/server/devices", body)

    def sync_devices(self, cursor: str, limit: int = 1000) -> dict[str, Any]:
        return self._json("POST", "/devices/sync", {"cursor": cursor, "limit": limit})

    def device_details(self, serials: Sequence[str]) -> dict[str, Any]:
        return self._json("POST", "/devices", {"devices": list(serials)})

    def define_profile(self, profile: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/profile", profile)

    def get_profile(self, profile_uuid: str) -> dict[str, Any]:
        return self._json("GET", f"/profile?profile_uuid={profile_uuid}")

    def assign_profile(
        self, profile_uuid: str, serials: Iterable[str]
    ) -> tuple[dict[str, str], float | None]:
        """Assign in chunks of ≤ 1000 (Apple's limit); returns ``({serial: status}, retry_after_s)``.

        ``retry_after_s`` is the largest ``retry_after_seconds`` Apple sent with ``THROTTLED`` serials.
        """
        serials = list(dict.fromkeys(serials))
        results: dict[str, str] = {}
        retry_after: float | None = None
        for start in range(0, len(serials), ASSIGN_CHUNK):
            chunk = serials[start : start + ASSIGN_CHUNK]
            reply = self._json("POST", "/profile/devices", {"profile_uuid": profile_uuid, "devices": chunk})
            devices = reply.get("devices") or {}
            for serial in chunk:
                results[serial] = str(devices.get(serial, "FAILED"))
            seconds = reply.get("retry_after_seconds")
            if isinstance(seconds, int | float) and not isinstance(seconds, bool):
                retry_after = max(retry_after or 0.0, float(seconds))
        return results, retry_after
