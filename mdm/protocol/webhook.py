"""The MDM server's webhook event, in NanoMDM's shape: what happened at a check-in, as JSON.

The MDM server writes events (``mdm.Authenticate``, ``mdm.TokenUpdate``, ``mdm.CheckOut``,
``mdm.Connect``…) and the controller reads them; both go through this codec. An event is::

    {"topic": "mdm.TokenUpdate", "event_id": "…", "created_at": "…Z",
     "checkin_event": {"udid": "…", "enrollment_id": "…", "url_params": null, "raw_payload": "<base64 plist>"}}

with ``acknowledge_event`` (adding ``status``, ``command_uuid`` and ``request_type``) for ``mdm.Connect``.
The raw payload is the device's own plist, parsed here with the bounded plist reader every party uses.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .plist import PlistError, loads

__all__ = ["WebhookError", "WebhookEvent", "checkin_event", "acknowledge_event", "parse_event", "MAX_EVENT_PAYLOAD"]

#: The base64 of a check-in plist is a few KB; a DeviceInformation report can reach ~100 KB.
MAX_EVENT_PAYLOAD = 256 * 1024


class WebhookError(ValueError):
    """An event that is not in the shape above; the message says which part."""


def _base(topic: str, event_id: str, created_at: str, key: str, part: dict[str, Any]) -> dict[str, Any]:
    return {"topic": topic, "event_id": event_id, "created_at": created_at, key: part}


def checkin_event(
    message_type: str,
    *,
    udid: str | None,
    enrollment_id: str | None,
    raw: bytes,
    event_id: str,
    created_at: str,
    url_params: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The event for a check-in message (``mdm.<MessageType>``)."""
    return _base(f"mdm.{message_type}", event_id, created_at, "checkin_event", {
        "udid": udid or "",
        "enrollment_id": enrollment_id or "",
        "url_params": dict(url_params) if url_params else None,
        "raw_payload": base64.b64encode(raw).decode(),
    })


def acknowledge_event(
    *,
    udid: str | None,
    enrollment_id: str | None,
    status: str,
    command_uuid: str | None,
    request_type: str | None,
    raw: bytes,
    event_id: str,
    created_at: str,
    url_params: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The event for a command report (``mdm.Connect``); ``request_type`` names the command reported on,
    which the device's report does not."""
    return _base("mdm.Connect", event_id, created_at, "acknowledge_event", {
        "udid": udid or "",
        "enrollment_id": enrollment_id or "",
        "status": status,
        "command_uuid": command_uuid or "",
        "request_type": request_type,
        "url_params": dict(url_params) if url_params else None,
        "raw_payload": base64.b64encode(raw).decode(),
    })


@dataclass
class WebhookEvent:
    """An event as a receiver needs it: who (UDID, serial when known), what (topic, command, status)."""

    topic: str
    udid: str | None = None
    serial_number: str | None = None
    request_type: str | None = None
    status: str | None = None
    #: the device's plist, decoded (empty when the event carried none)
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def enrolled_topic(self) -> str | None:
        """The push topic the device enrolled with (Authenticate and TokenUpdate carry it)."""
        if self.topic not in ("mdm.Authenticate", "mdm.TokenUpdate"):
            return None
        value = self.payload.get("Topic")
        return value if isinstance(value, str) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_event(event: Any) -> WebhookEvent:
    """Read an event (the parsed JSON); WebhookError says what is wrong with one that is not an event."""
    if not isinstance(event, dict) or not isinstance(event.get("topic"), str):
        raise WebhookError("an MDM event is a JSON object with a topic")
    part = event.get("checkin_event") or event.get("acknowledge_event") or {}
    if not isinstance(part, dict):
        raise WebhookError("checkin_event/acknowledge_event must be objects")
    payload: dict[str, Any] = {}
    raw = part.get("raw_payload")
    if raw is not None:
        if not isinstance(raw, str) or len(raw) > MAX_EVENT_PAYLOAD:
            raise WebhookError("raw_payload must be base64 text")
        try:
            decoded = loads(base64.b64decode(raw, validate=True), max_size=MAX_EVENT_PAYLOAD)
        except (binascii.Error, ValueError, PlistError):
            raise WebhookError("raw_payload is not a base64 plist") from None
        payload = decoded if isinstance(decoded, dict) else {}
    return WebhookEvent(
        topic=event["topic"],
        udid=_text(payload.get("UDID")) or _text(part.get("udid")),
        serial_number=_text(payload.get("SerialNumber"))
        or _text(event.get("serial_number"))
        or _text(part.get("serial_number")),
        request_type=_text(part.get("request_type")) or _text(payload.get("RequestType")),
        status=_text(part.get("status")) or _text(payload.get("Status")),
        payload=payload,
    )
