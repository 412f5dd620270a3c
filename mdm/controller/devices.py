"""Imported device identities (Graph ``importedAppleDeviceIdentities`` of a token): what syncs listed.

A device is listed by a sync, assigned a profile by an assignment, and learns its enrollment state
from the MDM server's events; this module only reads and renders, a page at a time, with ``$top``,
``$skip``, ``$skiptoken``, ``$filter``, ``$orderby``, ``$select`` and ``$count`` (:mod:`mdm.controller.odata`).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from mdm.platform.storage import Store
from mdm.protocol.isotime import iso_from_timestamp

from . import odata
from .errors import GraphError, not_found
from .pushcert import PushCertificates
from .rows import token_row
from .store import devices as device_table

__all__ = ["DEFAULT_TOP", "FIELDS", "FILTER_FIELDS", "MAX_TOP", "ORDER_FIELDS", "Devices", "render_device"]

DEFAULT_TOP = 100
MAX_TOP = 1000
#: The properties ``$filter`` takes, and the column each one is stored in.
FILTER_FIELDS = {
    "serialNumber": "serial",
    "enrollmentState": "enrollment_state",
    "requestedEnrollmentProfileId": "requested_profile_id",
    "isDeleted": "is_deleted",
    "isSupervised": "is_supervised",
    "description": "description",
}
#: The properties ``$orderby`` takes, and their columns.
ORDER_FIELDS = {
    **FILTER_FIELDS,
    "createdDateTime": "created_at",
    "lastContactedDateTime": "last_contacted",
    "requestedEnrollmentProfileAssignmentDateTime": "requested_at",
}
#: What ``$select`` may name: every property :func:`render_device` writes.
SELECT_FIELDS = (
    "id", "serialNumber", "requestedEnrollmentProfileId", "requestedEnrollmentProfileAssignmentDateTime",
    "isSupervised", "discoverySource", "isDeleted", "createdDateTime", "lastContactedDateTime", "description",
    "enrollmentState", "platform", "model", "color", "deviceFamily", "appleProfileStatus",
    "profileAssignmentStatus", "pushTopic", "reenrollmentRequired",
)  # fmt: skip
FIELDS = odata.Fields("importedAppleDeviceIdentity", FILTER_FIELDS, ORDER_FIELDS, SELECT_FIELDS)


class Devices:
    """Lists a token's imported device identities."""

    def __init__(self, store: Store, push_certificates: PushCertificates) -> None:
        self.store = store
        self.push_certificates = push_certificates

    def list_page(self, token_id: str, query: odata.Query | None = None) -> odata.Page:
        """One page of ``importedAppleDeviceIdentities``, filtered and ordered in SQL (a token may list
        200,000 devices). Unordered pages are keyset-paged on ``seq``; ordered ones by offset."""
        query = query or odata.Query()
        size = odata.parse_top(query.top, default=DEFAULT_TOP, maximum=MAX_TOP)
        after, offset = 0, query.skip
        if query.skiptoken is not None:
            kind, position = odata.decode_position(query.skiptoken)
            if (kind == "offset") != bool(query.orderby):
                raise GraphError(400, "badRequest", "$skiptoken is not one this API handed out")
            after, offset = (0, position) if kind == "offset" else (position, 0)
        conditions = [(FILTER_FIELDS[c.field], c.op, _column_value(c.value)) for c in query.filter]
        order = [(ORDER_FIELDS[field], descending) for field, descending in query.orderby]
        with self.store.read() as db:
            token_row(db, token_id)
            rows = device_table.page(
                db, token_id, after_seq=after, offset=offset, limit=size + 1, conditions=conditions, order=order
            )
            count = device_table.count_matching(db, token_id, conditions) if query.count else None
        more = len(rows) > size
        rows = rows[:size]
        token = None
        if more:
            token = odata.encode_offset(offset + size) if order else odata.encode_skiptoken(rows[-1]["seq"])
        push_topic = self.push_certificates.topic()
        items = [odata.project(render_device(r, push_topic), query.select) for r in rows]
        return odata.Page(items, token, count)

    def count(self, token_id: str, query: odata.Query) -> int:
        """``/$count``: how many of the token's devices match ``$filter``."""
        conditions = [(FILTER_FIELDS[c.field], c.op, _column_value(c.value)) for c in query.filter]
        with self.store.read() as db:
            token_row(db, token_id)
            return device_table.count_matching(db, token_id, conditions)

    def get(self, token_id: str, device_id: str) -> dict[str, Any]:
        with self.store.read() as db:
            row = device_table.get(db, token_id, device_id)
        if row is None:
            raise not_found("importedAppleDeviceIdentity", device_id)
        return render_device(row, self.push_certificates.topic())


def _column_value(value: Any) -> Any:
    """A ``$filter`` value as its column stores it: booleans are 0/1."""
    return int(value) if isinstance(value, bool) else value


def render_device(row: sqlite3.Row, push_topic: str | None = None) -> dict[str, Any]:
    """``reenrollmentRequired``: enrolled under another topic than the push certificate's, so no push
    reaches the device until it enrolls again (after a new, not renewed, push certificate)."""
    os_name = row["os"] or ""
    stale = (
        push_topic is not None
        and row["enrollment_state"] == "enrolled"
        and row["mdm_topic"] is not None
        and row["mdm_topic"] != push_topic
    )
    return {
        "@odata.type": "#microsoft.graph.importedAppleDeviceIdentity",
        "id": row["id"],
        "serialNumber": row["serial"],
        "requestedEnrollmentProfileId": row["requested_profile_id"],
        "requestedEnrollmentProfileAssignmentDateTime": iso_from_timestamp(row["requested_at"]),
        "isSupervised": bool(row["is_supervised"]),
        "discoverySource": "deviceEnrollmentProgram",
        "isDeleted": bool(row["is_deleted"]),
        "createdDateTime": iso_from_timestamp(row["created_at"]),
        "lastContactedDateTime": iso_from_timestamp(row["last_contacted"]),
        "description": row["description"],
        "enrollmentState": row["enrollment_state"],
        "platform": "macOS" if os_name == "OSX" else "ios",
        "model": row["model"],
        "color": row["color"],
        "deviceFamily": row["device_family"],
        "appleProfileStatus": row["apple_profile_status"],
        "profileAssignmentStatus": row["assignment_status"],
        "pushTopic": row["mdm_topic"],
        "reenrollmentRequired": stale,
    }
