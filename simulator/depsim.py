"""Apple's ``depsim`` as mdmsim speaks it: well-known credentials, failure names, fleet schedules.

Suites written against Apple's DEP simulator (MicroMDM's ``-depsim`` flag, for one) hard-code its
OAuth credentials, script failures by depsim's response names and describe a fleet that grows or
shrinks over time. This module turns each of those into the world's terms: the credentials of the
default MDM server (``--depsim-compat``), a reply for a failure name (the names themselves belong to
the DEP service, :mod:`simulator.apple.dep.faults`), and insertion/deletion events applied as
*world* time passes. The schedules are a setting in the world's store, so every worker process
applies each event exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from flask import Response

from mdm.platform.clock import Clock
from mdm.platform.storage import Store

from .apple.dep.faults import DEVICE_FAULTS, FAULT_ENVIRON_KEY, FAULT_RESPONSES
from .control import store as queries
from .control.service import ControlService

__all__ = ["DEPSIM_CREDENTIALS", "DEP_FAULT_NAMES", "fault_reply", "DepsimSchedules"]

# The well-known credentials of Apple's depsim that MicroMDM's -depsim flag and other suites hard-code.
DEPSIM_CREDENTIALS = {
    "consumer_key": "CK_48dd68d198350f51258e885ce9a5c37ab7f98543c4a697323d75682a6c10a32501cb247e3db08105db868f73f2c972bdb6ae77112aea803b9219eb52689d42e6",  # noqa: E501
    "consumer_secret": "CS_34c7b2b531a600d99a0e4edcf4a78ded79b86ef318118c2f5bcfee1b011108c32d5302df801adbe29d446eb78f02b13144e323eb9aad51c79f01e50cb45c3a68",  # noqa: E501
    "access_token": "AT_927696831c59ba510cfe4ec1a69e5267c19881257d4bca2906a99d0785b785a6f6fdeb09774954fdd5e2d0ad952e3af52c6d8d2f21c924ba0caf4a031c158b89",  # noqa: E501
    "access_secret": "AS_c31afd7a09691d83548489336e8ff1cb11b82b6bca13f793344496a556b1f4972eaff4dde6deb5ac9cf076fdfa97ec97699c34d515947b9cf9ed31c99dded6ba",  # noqa: E501
}

# Every response name a fault script may queue for the DEP service.
DEP_FAULT_NAMES = FAULT_RESPONSES.keys() | DEVICE_FAULTS.keys()

SCHEDULE_KINDS = ("device_insertions", "device_deletions")
MAX_DEVICES_PER_EVENT = 100_000
_SETTING = "depsim_schedules"


def fault_reply(name: str, environ: dict[str, Any]) -> Response | None:
    """What the DEP service answers for a scripted failure ``name``.

    A whole-response name (``too_many_requests``) replaces the handler's answer with Apple's status
    and short body (429 and 503 carry ``Retry-After``, as Apple's do). A per-device name
    (``not_accessible``) marks the request and lets it through: the handler gives every serial of
    the request that status."""
    if name in DEVICE_FAULTS:
        environ[FAULT_ENVIRON_KEY] = name
        return None
    status, body = FAULT_RESPONSES[name]
    reply = Response(body, status=status, mimetype="text/plain")
    if status in (429, 503):
        reply.headers["Retry-After"] = "60"
    return reply


class DepsimSchedules:
    """depsim's ``device_insertions`` / ``device_deletions``, applied lazily in world time.

    ``insert(n)`` manufactures ``n`` devices for the default MDM server; ``release(n)`` releases its
    ``n`` oldest. Both come from the world, which alone knows the portal and the manufacturer.
    """

    def __init__(self, control: ControlService, clock: Clock, *, insert: Callable[[int], None],
                 release: Callable[[int], None]) -> None:
        self._control = control
        self._store: Store = control.store
        self._clock = clock
        self._insert = insert
        self._release = release

    def apply_config(self, config: Mapping[str, Any]) -> None:
        """Read depsim's config format: device insertions/deletions over world time, failure queues.

        ``device_insertions`` / ``device_deletions`` are ``{devices_per_event, interval_in_seconds,
        max_event_count}``; without an interval an event happens once, at once. Events are applied
        lazily, whenever the DEP service is called, for every interval of *world* time that has
        passed, so moving the clock an hour ahead inserts an hour's devices.
        """
        faults = {k: v for k, v in config.items() if k.endswith("_responses")}
        schedules = {}
        for kind in SCHEDULE_KINDS:
            spec = config.get(kind)
            if spec is not None:
                schedules[kind] = self._schedule(kind, spec)
        unknown = set(config) - set(faults) - set(SCHEDULE_KINDS)
        if unknown:
            raise ValueError(f"unknown depsim config keys: {', '.join(sorted(unknown))}")
        if faults:
            self._control.script_faults({"party": "dep", **faults})
        self._control.set_setting(_SETTING, json.dumps(schedules))
        self.run_due()

    def _schedule(self, kind: str, spec: Any) -> dict[str, Any]:
        if not isinstance(spec, dict):
            raise ValueError(f"{kind} must be an object with devices_per_event")
        per_event = spec.get("devices_per_event", 0)
        interval = spec.get("interval_in_seconds")
        max_events = spec.get("max_event_count")
        for name, value in (("devices_per_event", per_event), ("interval_in_seconds", interval),
                            ("max_event_count", max_events)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{kind}.{name} must be a non-negative integer")
        if per_event > MAX_DEVICES_PER_EVENT:
            raise ValueError(f"{kind}.devices_per_event must be at most {MAX_DEVICES_PER_EVENT}")
        return {
            "per_event": per_event,
            "interval": interval or None,
            "max_events": max_events if max_events is not None else (None if interval else 1),
            "start": self._clock.timestamp(),
            "done": 0,
        }

    @property
    def active(self) -> bool:
        """Whether a config was applied (a cached read: the DEP hook asks on every request)."""
        return self._control.get_setting(_SETTING) is not None

    def run_due(self) -> None:
        """Apply the insertion/deletion events that are due in world time (idempotent, atomic)."""
        due: dict[str, int] = {}
        with self._store.transaction() as db:
            stored = queries.get_setting(db, _SETTING)
            if stored is None:
                return
            schedules = json.loads(stored)
            now = self._clock.timestamp()
            for kind, spec in schedules.items():
                events = 1 if spec["interval"] is None else int((now - spec["start"]) // spec["interval"])
                if spec["max_events"] is not None:
                    events = min(events, spec["max_events"])
                if events > spec["done"]:
                    due[kind] = (events - spec["done"]) * spec["per_event"]
                    spec["done"] = events
            if due:
                queries.set_setting(db, _SETTING, json.dumps(schedules))
                self._store.forget(f"setting:{_SETTING}")
        if due.get("device_insertions"):
            self._insert(due["device_insertions"])
        if due.get("device_deletions"):
            self._release(due["device_deletions"])
