"""What the controller has the MDM server send a device once it enrolled: its name, then its release.

Intune names a device from its profile's ``deviceNameTemplate`` (a Settings command, supervised devices
only, as iOS allows) and, for a profile with ``waitForDeviceConfiguredConfirmation``, keeps the device
at Setup Assistant's Awaiting Configuration pane until that configuration is queued, then releases it
with DeviceConfigured. The device says it is waiting (``AwaitingConfiguration`` in its TokenUpdate); the
commands go to the MDM server's command API over HTTP, after the event's transaction, in queue order:
the name first, so a released device already has it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from mdm.platform.storage import Store

from . import profiles as profile_rules
from .store import devices as device_table
from .store import profiles as profile_table

__all__ = ["AfterEnrollment", "Enrolled"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Enrolled:
    """A TokenUpdate the controller learned of: ``first`` when the device was not enrolled before it."""

    serial: str
    udid: str
    awaiting: bool
    first: bool


class AfterEnrollment:
    """Queues the post-enrollment commands of a device's enrollment profile at the MDM server."""

    def __init__(self, store: Store, *, http: httpx.Client, mdm_api_url: Callable[[], str] | None) -> None:
        self.store = store
        self.http = http
        self.mdm_api_url = mdm_api_url

    def commands(self, event: Enrolled) -> list[dict[str, Any]]:
        """The commands this enrollment calls for (pure but for reading the device's profile)."""
        with self.store.read() as db:
            settings, family = None, None
            for row in device_table.rows_for_serial(db, event.serial):
                if row["requested_profile_id"] is None or row["is_deleted"]:
                    continue
                profile = profile_table.get(db, row["token_id"], row["requested_profile_id"])
                if profile is not None:
                    settings, family = json.loads(profile["settings"]), row["device_family"]
                    break
        out: list[dict[str, Any]] = []
        template = (settings or {}).get("deviceNameTemplate")
        if event.first and template:
            name = profile_rules.device_name(template, event.serial, family)
            out.append({"RequestType": "Settings", "Settings": [{"Item": "DeviceName", "DeviceName": name}]})
        if event.awaiting:
            out.append({"RequestType": "DeviceConfigured"})
        return out

    def enrolled(self, event: Enrolled) -> None:
        """Queue the commands; a failure is logged, never raised (the event itself was taken)."""
        if self.mdm_api_url is None:
            return
        commands = self.commands(event)
        url = f"{self.mdm_api_url().rstrip('/')}/commands"
        for command in commands:
            try:
                reply = self.http.post(url, json={"udids": [event.udid], "command": command}, timeout=10.0)
            except httpx.HTTPError as exc:
                log.warning("could not queue %s for %s: %s", command["RequestType"], event.udid, exc)
                return
            if reply.status_code >= 300:
                log.warning("the MDM server refused %s for %s: %s %s", command["RequestType"], event.udid,
                            reply.status_code, reply.text[:200])
                return
