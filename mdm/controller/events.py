"""The MDM server's webhook events (NanoMDM-style): what enrollment state Graph shows for each device.

Authenticate carries the serial (remembered per UDID, since later messages only carry the UDID);
TokenUpdate means enrolled; CheckOut means no longer enrolled (``unknown``: Graph has no
"unenrolled"); an acknowledged EraseDevice means ``pendingReset``; ``mdm.EnrollmentFailed`` (our
server's extension, sent when it refuses an enrollment) means ``failed``. Every check-in also sets
the device's last contact and the push topic it enrolled with. A device's first TokenUpdate (or one
that says it is waiting at Setup Assistant) hands it to :mod:`.after_enrollment`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.webhook import WebhookError, parse_event

from .after_enrollment import Enrolled
from .errors import GraphError
from .store import devices as device_table

__all__ = ["MDM_EVENT_TOPICS", "MdmEvents"]

#: The MDM webhook topics the controller subscribes to: the check-in messages that change what Graph
#: shows (serial ↔ UDID, enrollment state, last contact), and reports on EraseDevice (``pendingReset``).
#: Other command reports (``mdm.Connect``, two or more per device and command) are left out: every
#: event costs the MDM server a request and changes nothing Graph shows.
MDM_EVENT_TOPICS = frozenset({
    "mdm.Authenticate", "mdm.TokenUpdate", "mdm.CheckOut", "mdm.EnrollmentFailed", "mdm.Connect:EraseDevice",
})
_STATE_OF_TOPIC = {
    "mdm.TokenUpdate": "enrolled",
    "mdm.CheckOut": "unknown",
    "mdm.EnrollmentFailed": "failed",
}


class MdmEvents:
    """Takes webhook events into the controller's store."""

    def __init__(self, store: Store, clock: Clock, on_enrolled: Callable[[Enrolled], None] | None = None) -> None:
        self.store = store
        self.clock = clock
        self.on_enrolled = on_enrolled

    def handle(self, event: Any) -> None:
        """Learn enrollment state from one event; 400 for a body that is not an event."""
        try:
            parsed = parse_event(event)
        except WebhookError as exc:
            raise GraphError(400, "badRequest", str(exc)) from None
        topic, udid, serial = parsed.topic, parsed.udid, parsed.serial_number
        # The topic the device enrolled with: compared with the push certificate's after a topic change.
        enrolled_topic = parsed.enrolled_topic
        state = _STATE_OF_TOPIC.get(topic)
        if topic == "mdm.Connect" and parsed.request_type == "EraseDevice" and parsed.status == "Acknowledged":
            state = "pendingReset"
        now = self.clock.timestamp()
        enrolled: Enrolled | None = None
        with self.store.transaction() as db:
            if isinstance(udid, str) and isinstance(serial, str):
                device_table.remember_udid(db, udid, serial)
            elif isinstance(udid, str):
                serial = device_table.serial_of_udid(db, udid)
            if not isinstance(serial, str):
                return
            if topic == "mdm.TokenUpdate" and isinstance(udid, str) and "UserID" not in parsed.payload:
                before = [row["enrollment_state"] for row in device_table.rows_for_serial(db, serial)]
                awaiting = parsed.payload.get("AwaitingConfiguration") is True
                enrolled = Enrolled(serial, udid, awaiting, first="enrolled" not in before)
            device_table.record_contact(
                db,
                serial,
                now=now,
                udid=udid if isinstance(udid, str) else None,
                enrollment_state=state,
                topic=enrolled_topic and enrolled_topic[:255],
            )
        if enrolled is not None and (enrolled.first or enrolled.awaiting) and self.on_enrolled is not None:
            self.on_enrolled(enrolled)  # after the commit: it calls the MDM server
