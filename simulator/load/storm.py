"""The sync storm: K admins press "Sync" on the same DEP token at once.

The controller must start exactly one sync and refuse every other request while it runs, each with
``409`` (``429`` under the ``current`` rules' 15-minute spacing) and a ``Retry-After`` that says when
the next sync can start. Apple must see one sync's worth of traffic, not K.

The single-flight rule is enforced by the store in one transaction (DESIGN.md rule 3), so it must
hold across gunicorn workers: run this against ``mdmsim serve --data-dir D --workers 2``.

Apple's fetch is slowed by a scripted latency (``/_sim/faults``, ``apple_latency_ms``) so the one
sync is still running while the storm lands. Without it a small world syncs in milliseconds and,
under the 2016 rules, a later request may legitimately start the next (limited) sync.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .admin import WorldAdmin
from .drivers import run_coroutine
from .stats import Series, Timeline, percentiles

__all__ = ["StormReport", "run_storm"]

WINDOW_LIMIT_S = 900  # the longest window of either rule set: a Retry-After beyond it is wrong


@dataclass
class StormReport:
    requests: int
    started: int
    refused: int
    other: dict[str, int]
    retry_after_ok: bool
    retry_after_range: tuple[int, int]
    p50_ms: float
    p95_ms: float
    p99_ms: float
    elapsed_s: float
    apple_session_calls: int
    apple_fetch_calls: int
    apple_errors: int
    sync_finished: bool
    apple_within_rules: bool
    problems: list[str] = field(default_factory=list)
    #: latency percentiles by outcome: the one that started the sync, the refused, all of them
    outcomes_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    #: answers per second by outcome, for ``--report``
    throughput: list[Series] = field(default_factory=list)

    def headline(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "started": self.started, "refused": self.refused,
            "retry_after_ok": self.retry_after_ok, "retry_after_range": list(self.retry_after_range),
            "p50_ms": self.p50_ms, "p95_ms": self.p95_ms, "p99_ms": self.p99_ms, "elapsed_s": self.elapsed_s,
            "apple_session_calls": self.apple_session_calls, "apple_fetch_calls": self.apple_fetch_calls,
            "apple_errors": self.apple_errors, "apple_within_rules": self.apple_within_rules,
            "sync_finished": self.sync_finished, "other": self.other,
        }  # fmt: skip


def _outcome(status: int) -> str:
    return "started" if status == 204 else "refused" if status in (409, 429) else "other"


async def _storm(url: str, requests: int, concurrency: int, timeout: float,
                 timeline: Timeline | None = None) -> list[tuple[int, str | None, float]]:
    """Fire ``requests`` POSTs, ``concurrency`` in flight, the first wave released at one instant;
    ``timeline`` counts the answers by outcome as they come."""
    gate = asyncio.Event()
    results: list[tuple[int, str | None, float]] = []
    remaining = iter(range(requests))
    per_client = 4
    limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
    clients = [httpx.AsyncClient(limits=limits, timeout=timeout) for _ in range(-(-concurrency // per_client))]

    async def worker(client: httpx.AsyncClient) -> None:
        await gate.wait()
        for _ in remaining:
            started = time.perf_counter()
            try:
                r = await client.post(url)
                results.append((r.status_code, r.headers.get("retry-after"), (time.perf_counter() - started) * 1000))
            except httpx.HTTPError:
                results.append((0, None, (time.perf_counter() - started) * 1000))
            if timeline is not None:
                timeline.add(_outcome(results[-1][0]))

    try:
        # connections are opened before the gate so the first wave is one burst, not a TCP handshake race
        await asyncio.gather(*(c.get(url.split("/intune/")[0] + "/_sim/clock") for c in clients))
        tasks = [asyncio.create_task(worker(clients[k % len(clients)])) for k in range(concurrency)]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)
    finally:
        for c in clients:
            await c.aclose()
    return results


def run_storm(target: str, *, requests: int = 1000, concurrency: int = 32, apple_latency_ms: int = 2000,
              setting: str | None = None, timeout: float = 60.0, wait_for_sync_s: float = 120.0,
              on_phase: Callable[[str], None] | None = None) -> StormReport:
    """Onboard a token (unless ``setting`` is given), storm its sync endpoint, check Apple's side."""
    say = on_phase or (lambda _text: None)
    with WorldAdmin(target) as admin:
        say("onboarding a token" if setting is None else "scripting Apple's latency")
        setting = setting or admin.onboard_controller("Storm")
        if apple_latency_ms:
            admin.script_faults({"party": "dep", "latency_ms": {"post_server_devices": apple_latency_ms}})
        before = admin.traffic().get("dep", {})
        url = f"{admin.url('controller')}/deviceManagement/depOnboardingSettings/{setting}/syncWithAppleDeviceEnrollmentProgram"
        say("storm")
        started_at = time.perf_counter()
        timeline = Timeline("started", "refused", "other", t0=started_at)
        results = run_coroutine(_storm(url, requests, concurrency, timeout, timeline))
        elapsed = time.perf_counter() - started_at
        say("waiting for the one sync")
        finished = False
        deadline = time.monotonic() + wait_for_sync_s
        while time.monotonic() < deadline:
            if admin.dep_setting(setting).get("syncStatus") != "running":
                finished = True
                break
            time.sleep(0.1)
        if apple_latency_ms:
            admin.clear_faults()
        traffic = _minus(admin.traffic().get("dep", {}), before)
    problems: list[str] = []
    started = sum(1 for s, _, _ in results if s == 204)
    refused_rows = [(s, ra) for s, ra, _ in results if s in (409, 429)]
    other: dict[str, int] = {}
    for s, _, _ in results:
        if s not in (204, 409, 429):
            other[str(s)] = other.get(str(s), 0) + 1
    retry_afters: list[int] = []
    for status, value in refused_rows:
        if value is None or not (value.isascii() and value.isdigit()):
            problems.append(f"a {status} without a numeric Retry-After ({value!r})")
            continue
        retry_afters.append(int(value))
    retry_ok = bool(refused_rows) and len(retry_afters) == len(refused_rows) and all(
        1 <= v <= WINDOW_LIMIT_S for v in retry_afters)
    if not retry_ok and not problems:
        problems.append(f"Retry-After outside 1..{WINDOW_LIMIT_S}: {sorted(set(retry_afters))[:5]}")
    if started != 1:
        problems.append(f"{started} syncs started, expected exactly 1")
    sessions = sum(traffic.get("get_session", {}).values())
    fetches = sum(traffic.get("post_server_devices", {}).values())
    apple_errors = sum(n for ep in traffic.values() for code, n in ep.items() if int(code) >= 400)
    within = sessions <= max(started, 1) and apple_errors == 0
    if not within:
        problems.append(f"Apple saw {sessions} session calls and {apple_errors} errors for {started} sync(s)")
    latencies = [ms for _, _, ms in results]
    pct = percentiles(latencies, (50, 95, 99))
    by_outcome: dict[str, list[float]] = {"started": [], "refused": [], "other": []}
    for status, _, ms in results:
        by_outcome[_outcome(status)].append(ms)
    outcomes_ms = {f"{name} ({len(ms)})": percentiles(ms) for name, ms in by_outcome.items() if ms}
    outcomes_ms[f"all ({len(latencies)})"] = pct
    return StormReport(
        requests=len(results), started=started, refused=len(refused_rows), other=other,
        retry_after_ok=retry_ok,
        retry_after_range=(min(retry_afters, default=0), max(retry_afters, default=0)),
        p50_ms=pct["p50"], p95_ms=pct["p95"], p99_ms=pct["p99"], elapsed_s=round(elapsed, 2),
        apple_session_calls=sessions, apple_fetch_calls=fetches, apple_errors=apple_errors,
        sync_finished=finished, apple_within_rules=within, problems=problems, outcomes_ms=outcomes_ms,
        throughput=timeline.series("answers per second", {"started": "started (204)",
                                                            "refused": "refused (409/429)", "other": "other"}),
    )  # fmt: skip


def _minus(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Apple's traffic during the storm only (counters are world-wide and never reset here)."""
    out: dict[str, dict[str, int]] = {}
    for endpoint, statuses in after.items():
        for code, n in statuses.items():
            d = n - before.get(endpoint, {}).get(code, 0)
            if d:
                out.setdefault(endpoint, {})[code] = d
    return out
