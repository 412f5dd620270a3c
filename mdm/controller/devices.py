"""Imported device identities (Graph ``importedAppleDeviceIdentities`` of a token): what syncs listed.

A device is listed by a sync, assigned a profile by an assignment, and learns its enrollment state
from the MDM server's events; this module only reads and renders, a page at a time, with ``$top``,
``$skiptoken`` and ``$filter`` (:mod:`mdm.controller.odata`).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from mdm.platform.storage import Store
from mdm.protocol.isotime import iso_from_timestamp

from . import odata
from .errors import not_found
from .pushcert import PushCertificates
from .rows import token_row
from .store import devices as device_table

__all__ = ["DEFAULT_TOP", "FILTER_FIELDS", "MAX_TOP", "Devices", "render_device"]

DEFAULT_TOP = 100
MAX_TOP = 1000
#: The properties ``$filter`` takes, and the column each one is stored in.
FILTER_FIELDS = {
    "serialNumber": "serial",
    "enrollmentState": "enrollment_state",
    "requestedEnrollmentProfileId": "requested_profile_id",
    "isDeleted": "is_deleted",
    "isSupervised": "is_supervised",
}


class Devices:
    """Lists a token's imported device identities."""

    def __init__(self, store: Store, push_certificates: PushCertificates) -> None:
        self.store = store
        self.push_certificates = push_certificates

    def list_page(
        self,
        token_id: str,
        *,
        top: str | None = None,
        skiptoken: str | None = None,
        filter: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``importedAppleDeviceIdentities`` and the ``$skiptoken`` of the next, if any."""
        size = odata.parse_top(top, default=DEFAULT_TOP, maximum=MAX_TOP)
        after = odata.decode_skiptoken(skiptoken)
        equal = [(FILTER_FIELDS[field], value) for field, value in odata.parse_filter(filter, FILTER_FIELDS)]
        with self.store.read() as db:
            token_row(db, token_id)
            rows = device_table.page(db, token_id, after_seq=after, limit=size + 1, equal=equal)
        more = len(rows) > size
        rows = rows[:size]
        token = odata.encode_skiptoken(rows[-1]["seq"]) if more else None
        push_topic = self.push_certificates.topic()
        return [render_device(r, push_topic) for r in rows], token

    def get(self, token_id: str, device_id: str) -> dict[str, Any]:
        with self.store.read() as db:
            row = device_table.get(db, token_id, device_id)
        if row is None:
            raise not_found("importedAppleDeviceIdentity", device_id)
        return render_device(row, self.push_certificates.topic())


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
