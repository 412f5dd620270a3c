"""The shapes of DEP request bodies and headers, checked the way Apple checks them. Pure code, no I/O.

* ``limit`` must be a JSON integer (else ``MALFORMED_REQUEST_BODY``); it is clamped to 1…1000. Without
  one a page holds 1000 devices: what Apple's ``GET /account`` advertises as the default and the
  maximum of fetch and sync (``{"default": 1000, "maximum": 1000}`` in the account details Apple
  sends; the older FetchDeviceRequest page says 100), so a client that honours the advertised limit,
  or sends none, pages by 1000.
* More than 1000 serials in one device-list request → 400 ``TOO_MANY_DEVICES`` (Apple asks for at
  most 1000 per request and documents no error string for more).
* A missing or unreadable ``X-Server-Protocol-Version`` means version 1.
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

from .errors import bad_request

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_DEVICES_PER_REQUEST",
    "page_request",
    "serial_list",
    "devices_of",
    "malformed",
    "parse_protocol_version",
    "device_status",
    "discovery_url",
]

DEFAULT_LIMIT = 1000
MAX_LIMIT = 1000
MAX_DEVICES_PER_REQUEST = 1000


def malformed() -> NoReturn:
    raise bad_request("MALFORMED_REQUEST_BODY")


def page_request(body: Any) -> tuple[str | None, int]:
    """``(cursor or None, limit)`` from a fetch/sync body (an empty body is an empty request)."""
    if body is None:
        return None, DEFAULT_LIMIT
    if not isinstance(body, dict):
        malformed()
    cursor = body.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        malformed()
    limit = body.get("limit", DEFAULT_LIMIT)
    if limit is None:
        limit = DEFAULT_LIMIT
    if not isinstance(limit, int) or isinstance(limit, bool):
        malformed()
    return (cursor or None), max(1, min(limit, MAX_LIMIT))


def serial_list(devices: Any, *, required: bool = True) -> list[str]:
    """Serials of a device-list request, de-duplicated in order."""
    if devices is None or devices == []:
        if required:
            raise bad_request("DEVICE_ID_REQUIRED")
        return []
    if not isinstance(devices, list) or not all(isinstance(s, str) for s in devices):
        malformed()
    if len(devices) > MAX_DEVICES_PER_REQUEST:
        raise bad_request("TOO_MANY_DEVICES")
    return list(dict.fromkeys(devices))


def devices_of(body: Any) -> list[str]:
    """The serials of ``{"devices": [...]}`` (``POST /devices``, ``/devices/disown``)."""
    if not isinstance(body, dict):
        malformed()
    return serial_list(body.get("devices"))


def discovery_url(body: Any) -> str:
    """The ``mdm_service_discovery_url`` of an account-driven enrollment profile request.

    Missing or empty → ``MDM_SERVICE_DISCOVERY_URL_REQUIRED``; not a string, not an ``https`` URL with a
    host, longer than 2000 characters or holding spaces → ``MDM_SERVICE_DISCOVERY_URL_NOT_VALID``
    (Apple: "incorrectly formatted or does not belong to the required HTTPS scheme"; the length bound
    is the profile ``url``'s)."""
    if not isinstance(body, dict):
        malformed()
    url = body.get("mdm_service_discovery_url")
    if url is None or url == "":
        raise bad_request("MDM_SERVICE_DISCOVERY_URL_REQUIRED")
    if not isinstance(url, str) or len(url) > 2000 or not _HTTPS_URL.fullmatch(url):
        raise bad_request("MDM_SERVICE_DISCOVERY_URL_NOT_VALID")
    return url


_HTTPS_URL = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/\S*)?")


def parse_protocol_version(value: str | None) -> int:
    """``X-Server-Protocol-Version`` as an int; missing or unreadable means version 1."""
    if not value:
        return 1
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 3:
        return 1
    return max(1, int(value))


def device_status(status: str, version: int) -> str:
    """THROTTLED exists from protocol v9; older clients would not know it, so they see FAILED."""
    return "FAILED" if status == "THROTTLED" and version < 9 else status
