"""Latency bookkeeping for load runs: per-endpoint samples, percentiles, phase timings.

Samples are kept as ``array('f')`` of milliseconds (4 bytes each), so 100,000 requests cost 400 KB
and exact percentiles stay cheap to compute at the end; no histogram approximation to explain.
Throughput over time is counted the same way: one ``array('I')`` slot per tenth of a second of the
run per series (:class:`Timeline`), so a ten-minute run costs 24 KB a series whatever its request
count, and a report can draw a two-second run as well as a two-hour one.
"""

from __future__ import annotations

import math
import re
import time
import urllib.parse
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from time import perf_counter
from typing import Any

__all__ = ["LatencyStats", "Series", "Timeline", "endpoint_name", "percentiles"]

# Path segments that identify one object (serials, UUIDs, tokens) would split the statistics per
# device; they become "{id}" so requests aggregate by endpoint, as Locust's ``name=`` does.
_ID_SEGMENT = re.compile(r"^(?=.*\d)[0-9A-Za-z_.:-]{12,}$|^[0-9a-fA-F-]{32,}$")


def endpoint_name(method: str, url: str) -> str:
    """``PUT http://h/mdm/connect?x=1`` → ``PUT /mdm/connect``: the key statistics aggregate on."""
    path = urllib.parse.urlsplit(url).path or "/"
    parts = ["{id}" if _ID_SEGMENT.match(p) else p for p in path.split("/")]
    return f"{method.upper()} {'/'.join(parts)}"


def percentiles(samples: Iterable[float], points: Iterable[float] = (50, 95, 99)) -> dict[str, float]:
    """Nearest-rank percentiles (``p50``…) of ``samples`` in their own unit, rounded to 0.1."""
    ordered = sorted(samples)
    if not ordered:
        return {f"p{int(p)}": 0.0 for p in points}
    out = {}
    for p in points:
        rank = max(0, min(len(ordered) - 1, math.ceil(p / 100.0 * len(ordered)) - 1))
        out[f"p{int(p)}"] = round(ordered[rank], 1)
    return out


#: the width of a :class:`Timeline` slot; a report adds slots up to the width its plot needs
SLOT_S = 0.1


@dataclass(frozen=True)
class Series:
    """One line of a throughput plot: events counted per ``slot_s`` from ``t0`` (a
    ``time.perf_counter()`` reading), drawn as a rate on the axis named ``axis`` ("requests per second")."""

    axis: str
    name: str
    t0: float
    counts: tuple[int, ...]
    slot_s: float = SLOT_S


class Timeline:
    """Events per tenth of a second since ``t0``, one flat ``array('I')`` per named series.

    Runners note every completed request or device here; a note is an index and an increment, no
    object is kept per event, so counting costs a fleet nothing it could measure.
    """

    def __init__(self, *names: str, t0: float | None = None) -> None:
        self.t0 = time.perf_counter() if t0 is None else t0
        self.counts: dict[str, array[int]] = {name: array("I") for name in names}

    def add(self, name: str, n: int = 1, at: float | None = None) -> None:
        """Count ``n`` events of ``name`` at ``at`` (a ``perf_counter()`` reading; default now)."""
        slot = int(((time.perf_counter() if at is None else at) - self.t0) * _SLOTS_PER_S)
        counts = self.counts[name]
        if slot >= len(counts):
            counts.extend(bytes(slot + 1 - len(counts)))  # zeros for the quiet slots in between
        counts[max(slot, 0)] += n

    def total(self, name: str) -> int:
        return sum(self.counts[name])

    def series(self, axis: str, names: dict[str, str] | None = None) -> list[Series]:
        """The counts as plot lines on ``axis``; ``names`` renames (and picks) series for the legend."""
        chosen = names or {name: name for name in self.counts}
        return [Series(axis, label, self.t0, tuple(self.counts[name])) for name, label in chosen.items()]


_SLOTS_PER_S = round(1 / SLOT_S)


class LatencyStats:
    """Response times per endpoint and the statuses that came back, and requests over time.

    ``timeline`` counts ``"requests"`` and ``"failed"`` (no answer, or a 5xx) by when they completed;
    a runner may pass its own :class:`Timeline` so every series of a run shares one ``t0``.
    """

    def __init__(self, timeline: Timeline | None = None) -> None:
        self._samples: dict[str, array[float]] = {}
        self._statuses: dict[str, dict[int, int]] = {}
        self.timeline = timeline or Timeline("requests", "failed")
        self._requests_per_slot = self.timeline.counts.setdefault("requests", array("I"))
        self._t0 = self.timeline.t0
        self.timeline.counts.setdefault("failed", array("I"))

    def record(self, endpoint: str, status: int, ms: float) -> None:
        samples = self._samples.get(endpoint)
        if samples is None:
            samples = self._samples[endpoint] = array("f")
            self._statuses[endpoint] = {}
        samples.append(ms)
        statuses = self._statuses[endpoint]
        statuses[status] = statuses.get(status, 0) + 1
        # Timeline.add inlined (this runs for every request of a fleet): ~0.2 µs more per request
        slot = int((perf_counter() - self._t0) * _SLOTS_PER_S)
        counts = self._requests_per_slot
        if slot >= len(counts):
            counts.extend(bytes(slot + 1 - len(counts)))
        counts[slot if slot > 0 else 0] += 1
        if status == 0 or status >= 500:
            self.timeline.add("failed")

    @property
    def requests(self) -> int:
        return sum(len(s) for s in self._samples.values())

    @property
    def failures(self) -> int:
        """Answers that are no answer (status 0) or a server error; 4xx may be the protocol's own."""
        return sum(n for st in self._statuses.values() for code, n in st.items() if code == 0 or code >= 500)

    def summary(self) -> dict[str, dict[str, Any]]:
        """``{endpoint: {"count", "p50", "p95", "p99", "max", "statuses"}}`` in milliseconds."""
        out: dict[str, dict[str, Any]] = {}
        for endpoint in sorted(self._samples):
            samples = self._samples[endpoint]
            out[endpoint] = {
                "count": len(samples),
                **percentiles(samples),
                "max": round(max(samples), 1) if samples else 0.0,
                "statuses": {str(k): v for k, v in sorted(self._statuses[endpoint].items())},
            }
        return out
