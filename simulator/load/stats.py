"""Latency bookkeeping for load runs: per-endpoint samples, percentiles, phase timings.

Samples are kept as ``array('f')`` of milliseconds (4 bytes each), so 100,000 requests cost 400 KB
and exact percentiles stay cheap to compute at the end; no histogram approximation to explain.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from array import array
from collections.abc import Iterable
from typing import Any

__all__ = ["LatencyStats", "endpoint_name", "percentiles"]

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


class LatencyStats:
    """Response times per endpoint and the statuses that came back."""

    def __init__(self) -> None:
        self._samples: dict[str, array[float]] = {}
        self._statuses: dict[str, dict[int, int]] = {}

    def record(self, endpoint: str, status: int, ms: float) -> None:
        samples = self._samples.get(endpoint)
        if samples is None:
            samples = self._samples[endpoint] = array("f")
            self._statuses[endpoint] = {}
        samples.append(ms)
        statuses = self._statuses[endpoint]
        statuses[status] = statuses.get(status, 0) + 1

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
