"""Profile assignments (Graph ``updateDeviceProfileAssignment``): Apple's answer per serial, kept per device.

Apple answers each serial ``SUCCESS``, ``NOT_ACCESSIBLE``, ``FAILED`` or ``THROTTLED``. A success
makes the profile the device's requested one; a THROTTLED serial is assigned again once its retry
time has come (:meth:`Assignments.retry_throttled`, run by ``tick()``); any other answer is shown on
the device and not retried. Assignments are also made by syncs (the token's default profile) and by a
profile edit (its devices move to the new Apple profile).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.isotime import iso_from_timestamp

from .apple import Apple, graph_from_apple
from .depclient import DEPError
from .errors import GraphError
from .rows import dep_token_row, profile_row
from .store import devices as device_table

__all__ = ["DEFAULT_THROTTLE_RETRY_S", "MAX_SERIALS_PER_REQUEST", "Assignments"]

DEFAULT_THROTTLE_RETRY_S = 60.0
MAX_SERIALS_PER_REQUEST = 10_000


class Assignments:
    """Assigns enrollment profiles to serials through Apple and records each answer."""

    def __init__(self, store: Store, clock: Clock, apple: Apple) -> None:
        self.store = store
        self.clock = clock
        self.apple = apple

    def assign_profile(self, token_id: str, profile_id: str, body: Any) -> list[dict[str, Any]]:
        """``updateDeviceProfileAssignment``: every serial's result as Apple reported it."""
        serials = body.get("deviceIds") if isinstance(body, dict) else None
        if (
            not isinstance(serials, list)
            or not serials
            or len(serials) > MAX_SERIALS_PER_REQUEST
            or not all(isinstance(s, str) and 0 < len(s) <= 64 for s in serials)
        ):
            raise GraphError(
                400,
                "badRequest",
                f"deviceIds must be a list of 1 to {MAX_SERIALS_PER_REQUEST} serial numbers",
            )
        return self.assign(token_id, profile_id, list(dict.fromkeys(serials)))

    def assign(self, token_id: str, profile_id: str, serials: list[str]) -> list[dict[str, Any]]:
        """Ask Apple to assign the profile to ``serials`` (Apple is called outside any transaction)."""
        with self.store.read() as db:
            token = dep_token_row(db, token_id)
            profile = profile_row(db, token_id, profile_id)
        try:
            statuses, retry_after = self.apple.client_for(token).assign_profile(profile["profile_uuid"], serials)
        except (DEPError, httpx.HTTPError) as exc:
            raise graph_from_apple(exc, "assignment") from None
        now = self.clock.timestamp()
        retry_at = now + (retry_after if retry_after is not None else DEFAULT_THROTTLE_RETRY_S)
        supervised = bool(json.loads(profile["settings"]).get("supervisedModeEnabled"))
        with self.store.transaction() as db:
            for serial, status in statuses.items():
                if status == "SUCCESS":
                    device_table.record_assigned(
                        db, token_id, serial, profile_id=profile_id, now=now, supervised=supervised
                    )
                elif status == "THROTTLED":
                    device_table.record_throttled(db, token_id, serial, profile_id=profile_id, retry_at=retry_at)
                else:
                    device_table.record_assignment_status(db, token_id, serial, status)
        results = []
        for serial, status in statuses.items():
            item: dict[str, Any] = {"serialNumber": serial, "status": status}
            if status == "THROTTLED":
                item["retryAfterDateTime"] = iso_from_timestamp(retry_at)
            results.append(item)
        return results

    def retry_throttled(self) -> int:
        """Assign again the serials Apple answered THROTTLED for, once their retry time has come."""
        with self.store.read() as db:
            rows = device_table.due_retries(db, self.clock.timestamp())
        groups: dict[tuple[str, str], list[str]] = {}
        for row in rows:
            groups.setdefault((row[0], row[1]), []).append(row[2])
        done = 0
        for (token_id, profile_id), serials in groups.items():
            try:
                self.assign(token_id, profile_id, serials)
                done += len(serials)
            except GraphError:
                continue  # Apple still refuses: the retry time stays, tried on a later tick
        return done
