"""Scripted faults: depsim-style response queues and added latency per endpoint.

Queues live in the world's store, not in memory, so that every worker process of one world takes
from the same place: a fault scripted "once" fires once even when four processes serve the world.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mdm.platform.storage import Store

from . import store as queries

__all__ = ["FaultError", "FaultBook", "MAX_LATENCY_MS", "MAX_FAULT_COUNT"]

MAX_LATENCY_MS = 60_000
MAX_FAULT_COUNT = 1_000_000


class FaultError(ValueError):
    """A fault script that names an unknown endpoint shape or response."""


class FaultBook:
    """What each party's fault hook should answer next, per endpoint."""

    def __init__(self, store: Store, vocabularies: Mapping[str, Iterable[str]]) -> None:
        self.store = store
        # party -> response names its fault hook understands (depsim's names for the DEP service)
        self.vocabularies = {party: frozenset(names) for party, names in vocabularies.items()}

    def script(self, script: Mapping[str, Any]) -> dict[str, Any]:
        """Add depsim-style response queues and latencies; validated whole before anything is stored.

        ``{"party": "dep", "<endpoint>_responses": [{"count": 1, "response": "..."}],
        "latency_ms": {"<endpoint>": 2000}}``
        """
        if not isinstance(script, Mapping):
            raise FaultError("expected a JSON object such as {\"get_session_responses\": [...]}")
        party = script.get("party", "dep")
        if party not in self.vocabularies:
            raise FaultError(f"unknown party {party!r}; choose one of {sorted(self.vocabularies)}")
        names = self.vocabularies[party]
        queue: list[tuple[str, str, int]] = []
        latency: list[tuple[str, int]] = []
        for key, value in script.items():
            if key == "party":
                continue
            if key == "latency_ms":
                latency.extend(_latencies(value))
                continue
            if not key.endswith("_responses"):
                raise FaultError(f"unknown key {key!r}: expected <endpoint>_responses or latency_ms")
            endpoint = key[: -len("_responses")]
            queue.extend((endpoint, response, count) for response, count in _responses(key, value, names))
        with self.store.transaction() as db:
            queries.queue_faults(db, party, queue)
            queries.set_latencies(db, party, latency)
        return self.current()

    def current(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with self.store.read() as db:
            for party, endpoint, response, remaining in queries.queued_faults(db):
                out.setdefault(party, {}).setdefault(f"{endpoint}_responses", []).append(
                    {"count": remaining, "response": response}
                )
            for party, endpoint, ms in queries.latencies(db):
                out.setdefault(party, {}).setdefault("latency_ms", {})[endpoint] = ms
        return out

    def clear(self) -> None:
        with self.store.transaction() as db:
            queries.clear_faults(db)

    def take(self, party: str, endpoint: str) -> tuple[str | None, int]:
        """The next scripted response for this endpoint (consumed atomically) and its added latency."""
        if party not in self.vocabularies:
            # :meth:`script` refuses any other party, so nothing can be scripted for it in any
            # process of this world: no read needed (the MDM server's and APNs's hot paths).
            return None, 0
        with self.store.read() as db:  # the common case, nothing scripted, costs one read and no lock
            if not queries.anything_scripted(db, party, endpoint):
                return None, 0
        with self.store.transaction() as db:
            response = queries.take_queued_fault(db, party, endpoint)
            latency = queries.latency_of(db, party, endpoint)
        return response, latency


def _latencies(value: Any) -> list[tuple[str, int]]:
    if not isinstance(value, Mapping):
        raise FaultError("latency_ms must map endpoint names to milliseconds")
    out = []
    for endpoint, ms in value.items():
        if not isinstance(ms, int) or isinstance(ms, bool) or not 0 <= ms <= MAX_LATENCY_MS:
            raise FaultError(f"latency for {endpoint} must be an integer 0..{MAX_LATENCY_MS} ms")
        out.append((str(endpoint), ms))
    return out


def _responses(key: str, value: Any, names: frozenset[str]) -> list[tuple[str, int]]:
    if not isinstance(value, list):
        raise FaultError(f"{key} must be a list of {{\"count\": n, \"response\": name}}")
    out = []
    for item in value:
        if not isinstance(item, Mapping) or not isinstance(item.get("response"), str):
            raise FaultError(f"each entry of {key} needs a \"response\" name")
        count = item.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_FAULT_COUNT:
            raise FaultError(f"count in {key} must be an integer 1..{MAX_FAULT_COUNT}")
        if item["response"] not in names:
            raise FaultError(f"unknown response {item['response']!r} in {key}; known: {', '.join(sorted(names))}")
        out.append((item["response"], count))
    return out
