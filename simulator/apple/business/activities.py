"""Device activities (``POST /v1/orgDeviceActivities``): what a request may ask, how an activity moves
through its states on the world clock, what it does to each device, and the CSV log it ends with.
Pure rules: :mod:`.service` reads and writes the store around them.

A request is a JSON:API document ``{"data": {"type": "orgDeviceActivities", "attributes":
{"activityType": …}, "relationships": {"mdmServer": {"data": {"type": "mdmServers", "id": …}},
"devices": {"data": [{"type": "orgDevices", "id": <serial>}, …]}}}}``. ``mdmServer`` is required by
``ASSIGN_DEVICES``, ``UNASSIGN_DEVICES`` and ``ASSIGN_DEVICES_WITH_MDM_MIGRATION_DEADLINE`` and refused
by the others; the two deadline types need ``attributes.activityTypeMetadata.mdmMigrationDeadlineDateTime``,
at most 90 days ahead; ``RELEASE_DEVICES`` is Apple Business Manager's only (not Apple School Manager's).
A body that is not such a document is 422; a document naming a wrong type, server or serial, or a
deadline out of range, is 409 (Apple's documented conflicts).

Once accepted, an activity is ``IN_PROGRESS`` and steps through ``SUBMITTED``, ``PRE_PROCESSING``,
``PENDING``, ``PROCESSING`` and ``POST_PROCESSING`` (one step each of world time, 2 s by default); its
devices change when ``PROCESSING`` ends, so a DEP sync before that shows nothing yet; then it is
``COMPLETED`` with ``COMPLETED_WITH_SUCCESS`` (every device), ``COMPLETED_WITH_FAILURE`` (some) or
``COMPLETED_WITH_ERROR`` (none), a ``completedDateTime`` and a ``downloadUrl`` for its log. Per-device
refusals (a device no longer in the organisation, one not on the server it is unassigned from, one
with no migration to update) are rows of the log, never HTTP errors, as Apple documents.

The log's layout is inferred (Apple does not publish one): a few ``name,value`` lines, a blank line, then
``serial_number,operation_status,operation_substatus`` rows; ``operation_status`` is ``SUCCESS`` or
``FAILED``, the substatus names why (``DEVICE_NOT_FOUND``, ``NOT_ASSIGNED_TO_MDM_SERVER``,
``ALREADY_ASSIGNED_TO_MDM_SERVER``, ``DEVICE_NOT_MIGRATING``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mdm.protocol.isotime import IsoTimeError, isoformat, parse_iso

from .errors import APIError, entity_error, unprocessable

__all__ = [
    "ACTIVITY_TYPES",
    "SCHOOL_ACTIVITY_TYPES",
    "STEPS",
    "MAX_DEVICES",
    "MAX_DEADLINE_DAYS",
    "ActivityRequest",
    "Plan",
    "parse_request",
    "progress",
    "completed_substatus",
    "decide",
    "csv_log",
    "log_filename",
]

ACTIVITY_TYPES = (
    "ASSIGN_DEVICES",
    "UNASSIGN_DEVICES",
    "ASSIGN_DEVICES_WITH_MDM_MIGRATION_DEADLINE",
    "UPDATE_MDM_MIGRATION_DEADLINE",
    "CANCEL_MDM_MIGRATION",
    "RELEASE_DEVICES",
)
SCHOOL_ACTIVITY_TYPES = ACTIVITY_TYPES[:5]
_NEEDS_SERVER = frozenset({"ASSIGN_DEVICES", "UNASSIGN_DEVICES", "ASSIGN_DEVICES_WITH_MDM_MIGRATION_DEADLINE"})
_NEEDS_DEADLINE = frozenset({"ASSIGN_DEVICES_WITH_MDM_MIGRATION_DEADLINE", "UPDATE_MDM_MIGRATION_DEADLINE"})
STEPS = ("SUBMITTED", "PRE_PROCESSING", "PENDING", "PROCESSING", "POST_PROCESSING")
#: Devices change when this step ends; the activity completes when the last one ends.
APPLY_AFTER_STEPS = 4
MAX_DEVICES = 1000  # Apple documents no maximum; one page of devices is mdmsim's
MAX_DEADLINE_DAYS = 90
MAX_SERIAL = 64


@dataclass(frozen=True, slots=True)
class ActivityRequest:
    """What a valid request asks: the type, the server's API id (when the type takes one), the
    serials in order without repeats, and the migration deadline (ISO, when the type takes one)."""

    activity_type: str
    server: str | None
    serials: tuple[str, ...]
    deadline: str | None


def _object(value: Any, pointer: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise unprocessable(f"{what} must be a JSON object", pointer)
    return value


def _linkage(value: Any, kind: str, pointer: str) -> str:
    """The id of ``{"type": kind, "id": "…"}`` or a 409 pointing at it."""
    if not isinstance(value, dict) or value.get("type") != kind or not isinstance(value.get("id"), str) or not value["id"]:
        raise entity_error(
            "ENTITY_ERROR.RELATIONSHIP.INVALID", f"Expected a resource identifier {{\"type\": \"{kind}\", \"id\": …}}", pointer
        )
    return str(value["id"])


def parse_request(body: Any, *, school: bool, now: float) -> ActivityRequest:
    """A create-activity document checked as far as it can be without the store (see the module doc)."""
    data = _object(_object(body, "", "The request body").get("data"), "/data", "'data'")
    if data.get("type") != "orgDeviceActivities":
        raise entity_error("ENTITY_ERROR.ATTRIBUTE.INVALID", "The resource type must be 'orgDeviceActivities'", "/data/type")
    attributes = data.get("attributes")
    if attributes is None:
        raise entity_error(
            "ENTITY_ERROR.ATTRIBUTE.REQUIRED", "You must provide a value for the attribute 'activityType'",
            "/data/attributes/activityType",
        )
    attributes = _object(attributes, "/data/attributes", "'attributes'")
    allowed = SCHOOL_ACTIVITY_TYPES if school else ACTIVITY_TYPES
    activity_type = attributes.get("activityType")
    if activity_type is None:
        raise entity_error(
            "ENTITY_ERROR.ATTRIBUTE.REQUIRED", "You must provide a value for the attribute 'activityType'",
            "/data/attributes/activityType",
        )
    if activity_type not in allowed:
        raise entity_error(
            "ENTITY_ERROR.ATTRIBUTE.INVALID",
            f"'{str(activity_type)[:60]}' is not a valid activityType; use one of {', '.join(allowed)}",
            "/data/attributes/activityType",
        )
    relationships = data.get("relationships")
    if relationships is None:
        relationships = {}
    relationships = _object(relationships, "/data/relationships", "'relationships'")
    server = _server(activity_type, relationships)
    serials = _serials(relationships)
    deadline = _deadline(activity_type, attributes, now)
    return ActivityRequest(activity_type, server, serials, deadline)


def _server(activity_type: str, relationships: dict[str, Any]) -> str | None:
    pointer = "/data/relationships/mdmServer"
    given = relationships.get("mdmServer")
    if activity_type not in _NEEDS_SERVER:
        if given is not None:
            raise entity_error("ENTITY_ERROR.RELATIONSHIP.INVALID", f"{activity_type} takes no mdmServer", pointer)
        return None
    if given is None:
        raise entity_error(
            "ENTITY_ERROR.RELATIONSHIP.REQUIRED", f"You must provide the relationship 'mdmServer' for {activity_type}",
            pointer,
        )
    if not isinstance(given, dict):
        raise entity_error("ENTITY_ERROR.RELATIONSHIP.INVALID", "'mdmServer' must be {\"data\": {…}}", pointer)
    return _linkage(given.get("data"), "mdmServers", pointer + "/data")


def _serials(relationships: dict[str, Any]) -> tuple[str, ...]:
    pointer = "/data/relationships/devices"
    given = relationships.get("devices")
    if given is None:
        raise entity_error("ENTITY_ERROR.RELATIONSHIP.REQUIRED", "You must provide the relationship 'devices'", pointer)
    items = given.get("data") if isinstance(given, dict) else None
    if not isinstance(items, list) or not items:
        raise entity_error(
            "ENTITY_ERROR.RELATIONSHIP.INVALID", "'devices' must be {\"data\": [{\"type\": \"orgDevices\", \"id\": …}]}",
            pointer + "/data",
        )
    if len(items) > MAX_DEVICES:
        raise entity_error(
            "ENTITY_ERROR.RELATIONSHIP.INVALID", f"An activity takes at most {MAX_DEVICES} devices", pointer + "/data"
        )
    serials = [_linkage(item, "orgDevices", f"{pointer}/data/{i}") for i, item in enumerate(items)]
    for i, serial in enumerate(serials):
        if len(serial) > MAX_SERIAL:
            raise entity_error("ENTITY_ERROR.RELATIONSHIP.INVALID", "Not a serial number", f"{pointer}/data/{i}/id")
    return tuple(dict.fromkeys(serials))


def _deadline(activity_type: str, attributes: dict[str, Any], now: float) -> str | None:
    pointer = "/data/attributes/activityTypeMetadata"
    metadata = attributes.get("activityTypeMetadata")
    if activity_type not in _NEEDS_DEADLINE:
        if metadata is not None:
            raise entity_error("ENTITY_ERROR.ATTRIBUTE.INVALID", f"{activity_type} takes no activityTypeMetadata", pointer)
        return None
    pointer += "/mdmMigrationDeadlineDateTime"
    text = metadata.get("mdmMigrationDeadlineDateTime") if isinstance(metadata, dict) else None
    if text is None:
        raise entity_error(
            "ENTITY_ERROR.ATTRIBUTE.REQUIRED", f"{activity_type} needs activityTypeMetadata.mdmMigrationDeadlineDateTime",
            pointer,
        )
    try:
        deadline = parse_iso(text)
    except IsoTimeError:
        raise entity_error("ENTITY_ERROR.ATTRIBUTE.INVALID", "The deadline is not an ISO 8601 date-time", pointer) from None
    seconds = deadline.timestamp() - now
    if not 0 < seconds <= MAX_DEADLINE_DAYS * 86400:
        raise entity_error(
            "ENTITY_ERROR.ATTRIBUTE.INVALID", f"The migration deadline must be in the next {MAX_DEADLINE_DAYS} days",
            pointer,
        )
    return isoformat(deadline)


# -- the activity's life on the world clock ----------------------------------------------------------------


def progress(created_at: float, step_s: float, now: float) -> str | None:
    """The ``subStatus`` of an activity still in progress, or ``None`` once it is complete."""
    elapsed = max(0.0, now - created_at)
    index = int(elapsed // step_s) if step_s > 0 else len(STEPS)
    return STEPS[index] if index < len(STEPS) else None


def completed_substatus(succeeded: int, failed: int) -> str:
    if failed == 0:
        return "COMPLETED_WITH_SUCCESS"
    return "COMPLETED_WITH_ERROR" if succeeded == 0 else "COMPLETED_WITH_FAILURE"


# -- what an activity does to each device ------------------------------------------------------------------


@dataclass
class Plan:
    """An activity's effect: each serial's ``(status, substatus)`` in request order, and the device rows
    (``id``, ``server_id``…) to move (without a deadline, or with the activity's: ``migrate``), unassign,
    release, give the activity's deadline (``update``) or none (``cancel``).

    Moving without a deadline, unassigning and releasing end a migration as well: a device's MDM
    migration is its ``mdm_migration_deadline``, which :mod:`simulator.apple.devices` clears then."""

    outcomes: list[tuple[str, str]] = field(default_factory=list)
    move: list[Any] = field(default_factory=list)
    migrate: list[Any] = field(default_factory=list)
    unassign: list[Any] = field(default_factory=list)
    release: list[Any] = field(default_factory=list)
    update: list[Any] = field(default_factory=list)
    cancel: list[Any] = field(default_factory=list)

    def ok(self) -> None:
        self.outcomes.append(("SUCCESS", ""))

    def fail(self, why: str) -> None:
        self.outcomes.append(("FAILED", why))


def decide(
    activity_type: str,
    server_id: int | None,
    serials: Sequence[str],
    rows: Mapping[str, Any],
    migrating: Collection[int],
) -> Plan:
    """What the activity does to each serial, given the organisation's device ``rows`` by serial (a
    serial missing from them left the organisation since the request) and the ids of the devices that
    must migrate by a deadline."""
    plan = Plan()
    for serial in serials:
        row = rows.get(serial)
        if row is None:
            plan.fail("DEVICE_NOT_FOUND")
            continue
        here = server_id is not None and row["server_id"] == server_id
        if activity_type == "ASSIGN_DEVICES":
            if not here:
                plan.move.append(row)
            plan.ok()
        elif activity_type == "UNASSIGN_DEVICES":
            if not here:
                plan.fail("NOT_ASSIGNED_TO_MDM_SERVER")
                continue
            plan.unassign.append(row)
            plan.ok()
        elif activity_type == "RELEASE_DEVICES":
            plan.release.append(row)
            plan.ok()
        elif activity_type == "ASSIGN_DEVICES_WITH_MDM_MIGRATION_DEADLINE":
            if here:
                plan.fail("ALREADY_ASSIGNED_TO_MDM_SERVER")
                continue
            plan.migrate.append(row)
            plan.ok()
        elif activity_type in ("UPDATE_MDM_MIGRATION_DEADLINE", "CANCEL_MDM_MIGRATION"):
            if row["id"] not in migrating:
                plan.fail("DEVICE_NOT_MIGRATING")
                continue
            (plan.update if activity_type == "UPDATE_MDM_MIGRATION_DEADLINE" else plan.cancel).append(row)
            plan.ok()
        else:  # parse_request admits no other type
            raise APIError(409, "ENTITY_ERROR.ATTRIBUTE.INVALID", "The request entity is not valid", activity_type)
    return plan


# -- the log ---------------------------------------------------------------------------------------------------


def csv_log(activity: Mapping[str, Any], devices: Sequence[Any], completed: str) -> bytes:
    """The activity log a ``downloadUrl`` serves (layout in the module doc)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["Activity ID", activity["activity_id"]])
    writer.writerow(["Activity Type", activity["activity_type"]])
    if activity["server_name"] is not None:
        writer.writerow(["Device Management Service", _cell(activity["server_name"])])
    if activity["deadline"] is not None:
        writer.writerow(["MDM Migration Deadline", activity["deadline"]])
    writer.writerow(["Created", isoformat(datetime.fromtimestamp(activity["created_at"], UTC))])
    writer.writerow(["Completed", completed])
    writer.writerow(["Devices", len(devices)])
    writer.writerow(["Succeeded", activity["succeeded"]])
    writer.writerow(["Failed", activity["failed"]])
    writer.writerow([])
    writer.writerow(["serial_number", "operation_status", "operation_substatus"])
    for device in devices:
        writer.writerow([_cell(device["serial"]), device["status"] or "FAILED", device["substatus"] or ""])
    return out.getvalue().encode()


def _cell(value: str) -> str:
    """Text a client chose (a serial sent to the API, a server's name), made inert for spreadsheets:
    a leading ``= + - @`` would make Excel or Numbers run it as a formula (CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def log_filename(completed_at: float, school: bool) -> str:
    """``ABM-ActivityLog_May-1-2025_14-22-40.csv`` (``ASM-…`` for a school), as Apple names the file."""
    when = datetime.fromtimestamp(completed_at, UTC)
    prefix = "ASM" if school else "ABM"
    return f"{prefix}-ActivityLog_{when.strftime('%b')}-{when.day}-{when.year}_{when.strftime('%H-%M-%S')}.csv"
