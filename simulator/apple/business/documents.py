"""The Business API's JSON:API documents, query parameters and cursors. Pure code: no store, no Flask.

What Apple documents and this follows: resource objects ``{type, id, attributes, relationships,
links.self}``; collections ``{data, links: {self, next?}, meta: {paging: {limit, nextCursor?}}}``
(``next`` and ``nextCursor`` only while there is more); single documents ``{data, links.self}``;
``fields[<type>]`` (a comma list naming attributes and relationships) and ``limit`` (1 to 1,000,
default 100) as the only query parameters, with ``cursor`` taken from ``links.next``. Times are ISO 8601
in UTC with milliseconds (``2025-04-30T22:05:14.192Z``).

Choices where Apple documents nothing, each visible to a client: a parameter the endpoint does not
take, one given twice, a ``limit`` outside 1..1000 or a ``fields`` value the type does not have is a 400
naming the parameter (Apple's JSON:API services refuse rather than ignore). Cursors are opaque:
base64url of ``<position>:<issued ms>`` without padding, a keyset position (so paging while devices
move never skips or repeats one that stays); a cursor that does not decode is a 400 on ``cursor``.
``links.next`` repeats ``limit`` and ``fields`` so a client that follows it keeps its page size.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import illegal_parameter, invalid_parameter

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "ORG_DEVICE_FIELDS",
    "MDM_SERVER_FIELDS",
    "ACTIVITY_FIELDS",
    "APPLECARE_FIELDS",
    "Query",
    "read_query",
    "encode_cursor",
    "decode_cursor",
    "api_time",
    "api_time_from_iso",
    "org_device",
    "mdm_server",
    "linkage",
    "collection",
    "single",
    "select_fields",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR = 200

ORG_DEVICE_ATTRIBUTES = (
    "serialNumber", "addedToOrgDateTime", "releasedFromOrgDateTime", "updatedDateTime", "deviceModel",
    "productFamily", "productType", "deviceCapacity", "partNumber", "orderNumber", "color", "status",
    "orderDateTime", "imei", "meid", "eid", "wifiMacAddress", "bluetoothMacAddress", "ethernetMacAddress",
    "purchaseSourceId", "purchaseSourceType", "isMdmMigrationCapable", "mdmMigrationStatus",
    "mdmMigrationDeadlineDateTime",
)
ORG_DEVICE_FIELDS = frozenset(ORG_DEVICE_ATTRIBUTES) | {"assignedServer", "appleCareCoverage"}
MDM_SERVER_ATTRIBUTES = (
    "serverName", "serverType", "createdDateTime", "updatedDateTime", "status", "deviceCount",
    "enableMdmDisownFlag", "defaultProductFamilies", "lastConnectedDateTime", "lastConnectedIp",
)
MDM_SERVER_FIELDS = frozenset(MDM_SERVER_ATTRIBUTES) | {"devices"}
ACTIVITY_FIELDS = frozenset({"status", "subStatus", "createdDateTime", "completedDateTime", "downloadUrl"})
APPLECARE_FIELDS = frozenset({
    "status", "paymentType", "description", "agreementNumber", "startDateTime", "endDateTime", "isRenewable",
    "isCanceled", "contractCancelDateTime",
})
# Our device families → Apple's productFamily values (an iPod touch is shown as the iOS device it is).
_PRODUCT_FAMILIES = {"iPhone": "iPhone", "iPad": "iPad", "Mac": "Mac", "AppleTV": "AppleTV", "Watch": "Watch",
                     "Vision": "Vision", "iPod": "iPhone"}
_CURSOR_TEXT = re.compile(r"^[A-Za-z0-9_-]{1,200}$")


# -- times ---------------------------------------------------------------------------------------------


def api_time(timestamp: float) -> str:
    """``2025-04-30T22:05:14.192Z``: UTC, milliseconds, a ``Z``."""
    instant = datetime.fromtimestamp(timestamp, UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond // 1000:03d}Z"


def api_time_from_iso(text: str | None) -> str | None:
    """A stored whole-second ISO time (``…T09:00:00Z``) in the API's millisecond form."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return api_time(value.timestamp())


# -- query parameters -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query:
    """An endpoint's query parameters once checked."""

    limit: int
    cursor: int | None
    fields: frozenset[str] | None
    raw_fields: str | None


def read_query(
    pairs: Sequence[tuple[str, str]], *, fields: tuple[str, frozenset[str]] | None = None, paged: bool = False
) -> Query:
    """Check ``?limit=&cursor=&fields[type]=`` against what this endpoint takes (400 otherwise)."""
    allowed = {"limit", "cursor"} if paged else set()
    fields_name = f"fields[{fields[0]}]" if fields is not None else None
    if fields_name is not None:
        allowed.add(fields_name)
    seen: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            raise illegal_parameter(name)
        if name in seen:
            raise invalid_parameter(name, f"The parameter '{name}' can be given only once")
        seen[name] = value
    limit = DEFAULT_LIMIT
    if "limit" in seen:
        text = seen["limit"]
        if not (text.isascii() and text.isdigit() and len(text) <= 7) or not 1 <= int(text) <= MAX_LIMIT:
            raise invalid_parameter("limit", f"'{text[:40]}' is not a valid value for 'limit': give 1 to {MAX_LIMIT}")
        limit = int(text)
    cursor = decode_cursor(seen["cursor"]) if "cursor" in seen else None
    chosen: frozenset[str] | None = None
    raw_fields = seen.get(fields_name) if fields_name is not None else None
    if fields is not None and raw_fields is not None:
        names = [n.strip() for n in raw_fields.split(",")]
        unknown = [n for n in names if n not in fields[1]]
        if unknown or not names:
            raise invalid_parameter(
                fields_name or "", f"'{unknown[0][:60] if unknown else ''}' is not a valid field of '{fields[0]}'"
            )
        chosen = frozenset(names)
    return Query(limit=limit, cursor=cursor, fields=chosen, raw_fields=raw_fields)


def encode_cursor(position: int, issued_ms: int) -> str:
    return base64.urlsafe_b64encode(f"{position}:{issued_ms}".encode()).rstrip(b"=").decode("ascii")


def decode_cursor(text: str) -> int:
    """The keyset position a cursor carries (400 on ``cursor`` when it is not one of ours)."""
    error = invalid_parameter("cursor", "The cursor is not valid: follow links.next or pass meta.paging.nextCursor")
    if not _CURSOR_TEXT.match(text):
        raise error
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise error from None
    position, sep, issued = decoded.partition(":")
    if not sep or not _digits(position) or not _digits(issued) or len(position) > 18:
        raise error
    return int(position)


# -- documents ------------------------------------------------------------------------------------------


def select_fields(values: Mapping[str, Any], fields: frozenset[str] | None) -> dict[str, Any]:
    return dict(values) if fields is None else {k: v for k, v in values.items() if k in fields}


def _resource(kind: str, resource_id: str, attributes: dict[str, Any], relationships: dict[str, Any],
              self_url: str, fields: frozenset[str] | None) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {"type": kind, "id": resource_id, "attributes": select_fields(attributes, fields)}
    chosen = select_fields(relationships, fields)
    if chosen:
        out["relationships"] = chosen
    out["links"] = {"self": self_url}
    return out


def _identifiers(stored: str | None) -> list[str]:
    """``imei``/``meid`` as :mod:`simulator.apple.devices` stores them (a JSON array, as DEP sends it)."""
    if not stored:
        return []
    values = json.loads(stored)
    return [value.upper() for value in values if isinstance(value, str) and value]


def _from_apple(row: Mapping[str, Any]) -> bool:
    """Whether the device came with its maker's data (the product, or identifiers such as its Wi-Fi
    MAC): bought from Apple, as a world's devices are, even those bought before the product columns
    existed. A serial typed in with nothing else was added by hand."""
    return bool(row["product_type"] or row["wifi_mac"] or row["imei"] or row["ethernet_mac"])


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _capacity(gigabytes: Any) -> str | None:
    if isinstance(gigabytes, bool) or not isinstance(gigabytes, int) or gigabytes <= 0:
        return None
    return f"{gigabytes // 1024}TB" if gigabytes % 1024 == 0 else f"{gigabytes}GB"


def org_device(row: Mapping[str, Any], base: str, org_id: str, fields: frozenset[str] | None) -> dict[str, Any]:
    """An ``orgDevices`` resource from a device row (columns of :mod:`simulator.apple.business.store`)."""
    serial = row["serial"]
    added = api_time_from_iso(row["added_at"]) or api_time_from_iso(row["assigned_date"]) or api_time(0)
    deadline = api_time_from_iso(row["mdm_migration_deadline"])
    ethernet = _text(row["ethernet_mac"])
    attributes: dict[str, Any] = {
        "serialNumber": serial,
        "addedToOrgDateTime": added,
        "releasedFromOrgDateTime": api_time_from_iso(row["released_at"]) if row["released"] else None,
        "updatedDateTime": api_time_from_iso(row["updated_at"]) or added,
        "deviceModel": row["model"],
        "productFamily": _PRODUCT_FAMILIES.get(row["device_family"], "iPhone"),
        "productType": _text(row["product_type"]),
        "deviceCapacity": _capacity(row["capacity_gb"]),
        "partNumber": _text(row["part_number"]),
        "orderNumber": row["order_number"],
        "color": (row["color"] or "").upper(),
        "status": "ASSIGNED" if row["server_id"] is not None else "UNASSIGNED",
        "orderDateTime": added,
        # the identifiers DEP reports from protocol version 10 on, from the same columns
        "imei": _identifiers(row["imei"]),
        "meid": _identifiers(row["meid"]),
        "eid": _text(row["eid"]),
        "wifiMacAddress": _text(row["wifi_mac"]),
        "bluetoothMacAddress": _text(row["bluetooth_mac"]),
        "ethernetMacAddress": [ethernet] if ethernet else None,
        "purchaseSourceId": org_id if _from_apple(row) else None,
        "purchaseSourceType": "APPLE" if _from_apple(row) else "MANUALLY_ADDED",
        "isMdmMigrationCapable": True,
        # a device must migrate while it has a deadline (set by an activity or in the portal)
        "mdmMigrationStatus": "REQUESTED" if deadline else None,
        "mdmMigrationDeadlineDateTime": deadline,
    }
    # Unknown values are left out, except the release date, which Apple always sends (null while in the org).
    attributes = {k: v for k, v in attributes.items() if v is not None or k == "releasedFromOrgDateTime"}
    device_url = f"{base}v1/orgDevices/{_quote(serial)}"
    relationships = {
        "assignedServer": {"links": {"self": f"{device_url}/relationships/assignedServer",
                                     "related": f"{device_url}/assignedServer"}},
        "appleCareCoverage": {"links": {"related": f"{device_url}/appleCareCoverage"}},
    }
    return _resource("orgDevices", serial, attributes, relationships, device_url, fields)


def mdm_server(row: Mapping[str, Any], base: str, fields: frozenset[str] | None) -> dict[str, Any]:
    """An ``mdmServers`` resource: one of the organisation's MDM servers (device management services)."""
    server_id = api_server_id(row["server_uuid"])
    created = api_time(row["created_at"])
    attributes: dict[str, Any] = {
        "serverName": row["server_name"],
        "serverType": "MDM",
        "createdDateTime": created,
        "updatedDateTime": api_time(row["updated_at"]) if row["updated_at"] is not None else created,
        "status": "ACTIVE",
        "deviceCount": int(row["device_count"]),
        "enableMdmDisownFlag": False,
        "defaultProductFamilies": [],
    }
    if row["last_connected"] is not None:
        attributes["lastConnectedDateTime"] = api_time(row["last_connected"])
    url = f"{base}v1/mdmServers/{server_id}"
    relationships = {"devices": {"links": {"self": f"{url}/relationships/devices"}}}
    return _resource("mdmServers", server_id, attributes, relationships, url, fields)


def api_server_id(server_uuid: str) -> str:
    """How the Business API names a server: its UUID as 32 upper-case hex digits, no dashes."""
    return server_uuid.replace("-", "").upper()


def linkage(kind: str, resource_id: str) -> dict[str, str]:
    return {"type": kind, "id": resource_id}


def collection(
    data: list[Any], self_url: str, limit: int, next_position: int | None, issued_ms: int,
    keep: Iterable[tuple[str, str]] = (), related: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A page: ``links.next`` and ``meta.paging.nextCursor`` only while there is more."""
    links: dict[str, str] = {"self": self_url}
    paging: dict[str, Any] = {"limit": limit}
    if next_position is not None:
        cursor = encode_cursor(next_position, issued_ms)
        links["next"] = f"{self_url}?{urllib.parse.urlencode([('cursor', cursor), *keep])}"
        paging["nextCursor"] = cursor
    if related is not None:
        links["related"] = related
    return {"data": data, "links": links, "meta": {"paging": paging}}


def single(data: Any, self_url: str, related: str | None = None) -> dict[str, Any]:
    links = {"self": self_url}
    if related is not None:
        links["related"] = related
    return {"data": data, "links": links}


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _digits(text: str) -> bool:
    """ASCII digits only: ``'²'.isdigit()`` is True, and ``int('²')`` raises."""
    return text.isascii() and text.isdigit()
