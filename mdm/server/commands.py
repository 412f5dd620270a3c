"""The command queue: what the command API queues, what a device gets on ServerURL, what it reported.

Rules: a command is queued for every target or for none (an unknown target refuses the whole
request); a device gets the next eligible command of its channel, claimed in the same transaction that
stored its report (so two concurrent connects never get the same command); a report for a command is
kept even when it answers nothing we queued. The command API's read views live here too, because they
render exactly these tables.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.commands import Command, CommandError, parse_result, validate_command
from mdm.protocol.isotime import iso_from_timestamp, isoformat
from mdm.protocol.plist import PlistError, loads
from mdm.protocol.randomness import Randomness

from . import store as q
from .identity import IdentityService
from .outbound import Outbound
from .replies import MAX_BODY, PLIST_TYPE, MDMError, Reply, enrollment_id_of, user_id_of

__all__ = ["CommandService", "parse_command_request"]


def parse_command_request(data: Any) -> tuple[list[Any], dict[str, Any], Any]:
    """The command API's ``POST /commands`` body, ``{"udids": [...], "command": {...}, "priority"?}``:
    ``(udids, command, priority)``; what each holds is checked by :meth:`CommandService.enqueue`."""
    if not isinstance(data, dict):
        raise MDMError(400, "body must be a JSON object {udids, command}")
    udids = data.get("udids")
    if not isinstance(udids, list):
        raise MDMError(400, "udids must be a non-empty array of strings")
    command = data.get("command")
    if not isinstance(command, dict):
        raise MDMError(400, "command must be an object with a RequestType")
    return udids, command, data.get("priority", 0)


class CommandService:
    """Enqueue, deliver on connect, record reports; the command and device views of the command API."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        random: Randomness,
        identity: IdentityService,
        outbound: Outbound,
        *,
        inflight_lease_s: float,
    ) -> None:
        self.store = store
        self.clock = clock
        self.random = random
        self.identity = identity
        self.outbound = outbound
        self.inflight_lease_s = inflight_lease_s

    # -- the device side (ServerURL) -----------------------------------------------------------------
    def connect(self, body: bytes, signature: str | None, *, url_params: Mapping[str, str] | None = None) -> Reply:
        """A device's report on ServerURL; answers with its next command (or an empty body).

        A command ``sent`` but unanswered for longer than ``inflight_lease_s`` is sent again: the
        device that took it may have died mid-command.
        """
        instant = self.clock.now()
        signer = self.identity.signer_of(body, signature, instant)
        try:
            result = parse_result(body, max_size=MAX_BODY)
        except PlistError as exc:
            raise MDMError(400, f"bad command report: {exc.reason}") from None
        self.identity.check_owner(signer, result.device_id)
        eid = enrollment_id_of(result.device_id, user_id_of(result))
        now = instant.timestamp()
        request_type = None
        with self.store.transaction() as db:
            if not q.touch(db, eid, now):
                raise MDMError(403, f"unknown enrollment {eid!r}: send Authenticate first"[:300])
            if result.status != "Idle" and result.command_uuid:
                request_type = q.command_request_type(db, result.command_uuid)
                chain = json.dumps([e.to_dict() for e in result.error_chain]) if result.error_chain else None
                q.record_result(
                    db,
                    enrollment_id=eid,
                    command_uuid=result.command_uuid,
                    status=result.status,
                    error_chain=chain,
                    raw=body,
                    now=now,
                )
            row = q.claim_next_command(
                db,
                eid,
                skip_not_now=result.status == "NotNow",
                now=now,
                lease_before=now - self.inflight_lease_s,
            )
        self.outbound.connect_committed(result, body, url_params, request_type)
        if row is None:
            return Reply()
        return Reply(body=bytes(row["plist"]), content_type=PLIST_TYPE)

    # -- the command API -----------------------------------------------------------------------------
    def enqueue_request(self, data: Any) -> str:
        """``POST /api/v1/commands``: the JSON body's shape, then :meth:`enqueue`."""
        udids, command, priority = parse_command_request(data)
        return self.enqueue(udids, command, priority=priority)

    def enqueue(
        self,
        targets: Sequence[str],
        command: Mapping[str, Any] | Command,
        *,
        priority: int = 0,
        push: bool = True,
    ) -> str:
        """Queue one command for several enrollments (UDIDs or ``udid:userid``) and push them.

        Unknown targets refuse the whole request (400): a half-queued command is harder to reason about.
        A CommandUUID the caller gave must be new (400 otherwise); one the server makes is drawn from
        the world's random source, and made again should a seeded draw ever meet one already stored.
        """
        server_made = False
        if isinstance(command, Command):
            cmd = command
        else:
            try:
                cmd = validate_command(command, strict=True)
            except CommandError as exc:
                raise MDMError(400, exc.reason) from None
            server_made = not ("Command" in command and command.get("CommandUUID") is not None)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise MDMError(400, "priority must be an integer")
        targets = list(dict.fromkeys(targets))
        if not targets or not all(isinstance(t, str) and t for t in targets):
            raise MDMError(400, "udids must be a non-empty array of strings")
        now = self.clock.timestamp()
        if server_made:
            cmd = replace(cmd, command_uuid=self._command_uuid(cmd, targets, now, 0))
        try:
            plist = cmd.to_plist()
        except PlistError as exc:
            raise MDMError(400, exc.reason) from None
        with self.store.transaction() as db:
            known = q.known_enrollments(db, targets)
            missing = [t for t in targets if t not in known]
            if missing:
                raise MDMError(400, f"unknown device: {', '.join(missing[:5])}"[:300])
            attempt = 0
            while not q.insert_command(
                db, command_uuid=cmd.command_uuid, request_type=cmd.request_type, plist=plist, priority=priority, now=now
            ):
                if not server_made or attempt >= 8:
                    raise MDMError(400, f"CommandUUID {cmd.command_uuid} already used")
                attempt += 1
                cmd = replace(cmd, command_uuid=self._command_uuid(cmd, targets, now, attempt))
                plist = cmd.to_plist()
            q.queue_command(db, targets, cmd.command_uuid, priority)
        if push:
            self.outbound.push(targets)
        return cmd.command_uuid

    def _command_uuid(self, cmd: Command, targets: list[str], now: float, attempt: int) -> str:
        """A server-made CommandUUID. Seeded, it is labelled by the command, its targets and the instant
        (and ``attempt``, the way past a collision), so a replay queues the same UUIDs."""
        label = ""
        if self.random.seeded:
            digest = hashlib.sha256(json.dumps([cmd.request_type, targets], separators=(",", ":")).encode()).hexdigest()
            label = f"mdm:command:{digest[:32]}:{now!r}:{attempt}"
        return self.random.uuid(label)  # lower case, as Command's own default

    # -- the command API's views ---------------------------------------------------------------------
    def command_status(self, command_uuid: str) -> dict[str, Any] | None:
        """The command, and per enrollment its queue state and latest report."""
        with self.store.read() as db:
            cmd = q.get_command(db, command_uuid)
            queue = q.command_queue(db, command_uuid)
            results = q.command_results(db, command_uuid)
        if cmd is None and not results:
            return None
        latest: dict[str, sqlite3.Row] = {}
        counts: dict[str, int] = {}
        for r in results:
            latest[r["enrollment_id"]] = r
            counts[r["enrollment_id"]] = counts.get(r["enrollment_id"], 0) + 1
        devices = []
        seen = set()
        for row in queue:
            eid = row["enrollment_id"]
            seen.add(eid)
            devices.append(_command_device(eid, row, latest.get(eid), counts.get(eid, 0)))
        for eid, res in latest.items():
            if eid not in seen:
                devices.append(_command_device(eid, None, res, counts[eid]))
        out: dict[str, Any] = {"command_uuid": command_uuid, "devices": devices}
        if cmd is not None:
            out.update(
                request_type=cmd["request_type"],
                priority=cmd["priority"],
                created_at=iso_from_timestamp(cmd["created_at"]),
                command=_json_safe(loads(bytes(cmd["plist"]))["Command"]),
            )
        return out

    def devices(self) -> list[dict[str, Any]]:
        """Every device the server knows: enrolled over DEP, checked in, or both."""
        with self.store.read() as db:
            ids = q.device_ids(db)
        return [d for d in (self.device(i) for i in ids) if d is not None]

    def device(self, udid: str) -> dict[str, Any] | None:
        with self.store.read() as db:
            dev = q.get_device(db, udid)
            enr = q.device_channel(db, udid)
            users = q.user_channels(db, udid)
        if dev is None and enr is None:
            return None
        state = enr["state"] if enr is not None else "profile_issued"
        return {
            "udid": udid,
            "serial_number": (dev["serial_number"] if dev is not None else None)
            or (enr["serial_number"] if enr is not None else None),
            "enrolled": state == "enrolled",
            "enrollment_state": state,
            "awaiting_configuration": bool(enr["awaiting_configuration"]) if enr is not None else False,
            "last_seen": iso_from_timestamp(enr["last_seen"]) if enr is not None else None,
            "push_token_present": bool(enr is not None and enr["token_hex"]),
            "topic": enr["topic"] if enr is not None else None,
            "user": dev["user_upn"] if dev is not None else None,
            "product": dev["product"] if dev is not None else None,
            "os_version": dev["os_version"] if dev is not None else None,
            "profile_issued_at": iso_from_timestamp(dev["enrolled_at"]) if dev is not None else None,
            "user_channels": [
                {"user_id": u["user_id"], "short_name": u["user_short_name"], "state": u["state"]} for u in users
            ],
            "push": {
                "sent": enr["push_sent"] if enr is not None else 0,
                "failed": enr["push_failed"] if enr is not None else 0,
                "token_invalid": bool(enr["push_invalid"]) if enr is not None else False,
                "last_status": enr["push_last_status"] if enr is not None else None,
                "last_error": enr["push_last_error"] if enr is not None else None,
                "last_at": iso_from_timestamp(enr["push_last_at"]) if enr is not None else None,
            },
        }

    def bootstrap_token(self, enrollment_id: str) -> bytes | None:
        with self.store.read() as db:
            return q.get_bootstrap_token(db, enrollment_id)


def _command_device(eid: str, row: sqlite3.Row | None, res: sqlite3.Row | None, reports: int) -> dict[str, Any]:
    """One enrollment's line in a command's status: its queue row (if queued) and latest report."""
    udid, _, user = eid.partition(":")
    item: dict[str, Any] = {
        "udid": udid,
        "enrollment_id": eid,
        "user_id": user or None,
        "status": row["status"] if row is not None else (res["status"] if res is not None else None),
        "deliveries": row["deliveries"] if row is not None else 0,
        "sent_at": iso_from_timestamp(row["sent_at"]) if row is not None else None,
        "answered_at": iso_from_timestamp(row["answered_at"]) if row is not None else None,
        "reports": reports,
        "result": None,
    }
    if res is not None:
        raw = bytes(res["raw"])
        try:
            decoded: Any = _json_safe(loads(raw))
        except PlistError:
            decoded = None
        item["result"] = {
            "status": res["status"],
            "received_at": iso_from_timestamp(res["received_at"]),
            "error_chain": json.loads(res["error_chain"]) if res["error_chain"] else [],
            "raw": base64.b64encode(raw).decode(),
            "payload": decoded,
        }
    return item


def _json_safe(value: Any) -> Any:
    """Plist values as JSON: data as base64, dates as ISO 8601."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, _dt.datetime):
        return isoformat(value if value.tzinfo else value.replace(tzinfo=_dt.UTC))
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
