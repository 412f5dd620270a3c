"""Steady check-ins: an enrolled fleet idling, polling and answering the commands an admin pushes.

Each device loops on one agent wake-up: read its push events, connect with ``Idle``, answer whatever
is queued. Meanwhile an admin task enqueues ``SecurityInfo`` for a slice of the fleet every tick, so
some rounds carry command round trips. The floor is the same number of clients hitting a bare
endpoint on the same server stack (``/_sim/bench/page``: routing, middleware, gunicorn, no work), so
``floor_ratio`` says how much of the server's capacity MDM check-in logic leaves.
"""

from __future__ import annotations

import asyncio
import random
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from simulator.device.machine import Device

from .drivers import AsyncHTTPDriver, run_coroutine
from .fleet import ClientPool, FleetOptions, FleetReport, FleetRunner
from .stats import LatencyStats, Series, Timeline, percentiles
from .transport import LoadClient

__all__ = ["CheckinReport", "run_checkins", "floor_rate"]


@dataclass
class CheckinReport:
    devices: int
    seconds: float
    requests_per_s: float
    floor_requests_per_s: float
    floor_ratio: float
    rounds: int
    commands_answered: int
    commands_enqueued: int
    failures: int
    endpoints: dict[str, dict[str, Any]]
    #: the fleet enrolled before the measured window (its phases, failures and throughput)
    enrollment: FleetReport | None = None
    #: milliseconds per agent round (one wake-up: events, Idle, the answers) in the window
    round_ms: dict[str, float] = field(default_factory=dict)
    #: requests and rounds per second in the window, for ``--report``
    throughput: list[Series] = field(default_factory=list)

    def headline(self) -> dict[str, Any]:
        return {
            "devices": self.devices, "seconds": self.seconds, "requests_per_s": self.requests_per_s,
            "floor_requests_per_s": self.floor_requests_per_s, "floor_ratio": self.floor_ratio,
            "rounds": self.rounds, "commands_enqueued": self.commands_enqueued,
            "commands_answered": self.commands_answered, "failures": self.failures,
        }  # fmt: skip


@dataclass
class _Window:
    """What the measured window counted: requests (``stats``), rounds and their durations."""

    stats: LatencyStats
    round_ms: array[float]
    rounds: int = 0
    answered: int = 0
    enqueued: int = 0


async def _steady(devices: list[Device], mdm_url: str, *, seconds: float, concurrency: int,
                  command_every_s: float, command_share: float, runner: FleetRunner) -> _Window:
    timeline = Timeline("requests", "failed", "rounds", "commands answered")
    window = _Window(LatencyStats(timeline), array("f"))
    stats = window.stats
    stop = time.monotonic() + seconds
    async with ClientPool(concurrency) as pool:
        drivers = [AsyncHTTPDriver(c, now=runner.now, stats=stats) for c in pool.clients]

        async def device_loop(k: int) -> None:
            driver = drivers[k % len(drivers)]
            mine = devices[k::concurrency]
            j = 0
            while time.monotonic() < stop and mine:
                device = mine[j % len(mine)]
                j += 1
                started = time.perf_counter()
                report = await driver.run_agent(device, poll_push=True, connect=True)
                window.round_ms.append((time.perf_counter() - started) * 1000.0)
                device.forget_cached_keys()
                window.rounds += 1
                timeline.add("rounds")
                acknowledged = sum(1 for _, status in report.commands if status == "Acknowledged")
                if acknowledged:
                    window.answered += acknowledged
                    timeline.add("commands answered", acknowledged)

        async def admin_loop() -> None:
            rng = random.Random(7)
            while time.monotonic() < stop:
                await asyncio.sleep(command_every_s)
                batch = rng.sample(devices, max(1, int(len(devices) * command_share)))
                r = await pool.admin.post(f"{mdm_url}/api/v1/commands", json={
                    "udids": [d.udid for d in batch], "command": {"RequestType": "SecurityInfo"}})
                stats.record("POST /mdm/api/v1/commands", r.status_code, 0.0)
                if r.status_code == 201:
                    window.enqueued += len(batch)

        await asyncio.gather(admin_loop(), *(device_loop(k) for k in range(min(concurrency, len(devices)))))
        for driver in drivers:
            await driver.aclose()
    return window


async def _floor(url: str, seconds: float, concurrency: int) -> float:
    done = 0
    stop = time.monotonic() + seconds
    async with ClientPool(concurrency) as pool:
        async def loop(client: LoadClient) -> None:
            nonlocal done
            while time.monotonic() < stop:
                r = await client.get(url)
                if r.status_code == 200:
                    done += 1

        began = time.monotonic()
        await asyncio.gather(*(loop(pool.clients[k % len(pool.clients)]) for k in range(concurrency)))
        return done / (time.monotonic() - began)


def floor_rate(target: str, seconds: float, concurrency: int) -> float:
    """Requests per second of the bare endpoint with ``concurrency`` clients."""
    return run_coroutine(_floor(f"{target.rstrip('/')}/_sim/bench/page", seconds, concurrency))


def run_checkins(target: str, *, devices: int = 200, seconds: float = 10.0, concurrency: int = 32,
                 command_every_s: float = 0.5, command_share: float = 0.1,
                 on_phase: Callable[[str], None] | None = None) -> CheckinReport:
    """Enroll ``devices`` (as the fleet runner does), then measure steady check-ins and the floor."""
    from .fleet import run_fleet

    say = on_phase or (lambda _text: None)
    options = FleetOptions(devices=devices, concurrency=concurrency)
    holder: dict[str, FleetRunner] = {}
    enrolled = run_fleet(target, options, keep=holder, on_phase=on_phase)
    if enrolled.acknowledged < devices:
        raise RuntimeError(f"only {enrolled.acknowledged}/{devices} devices enrolled: {enrolled.errors[:3]}")
    runner = holder["runner"]
    say("warming up")
    floor_rate(target, 1.0, concurrency)  # warm the server's threads and our connections
    with httpx.Client() as http:
        mdm_url = http.get(f"{target.rstrip('/')}/_sim/").json()["urls"]["mdm"]
    say("steady check-ins")
    began = time.monotonic()
    window = run_coroutine(_steady(
        runner.devices, mdm_url, seconds=seconds, concurrency=concurrency, command_every_s=command_every_s,
        command_share=command_share, runner=runner))
    elapsed = time.monotonic() - began
    stats = window.stats
    admin_requests = stats.summary().get("POST /mdm/api/v1/commands", {}).get("count", 0)
    rps = (stats.requests - admin_requests) / elapsed  # the devices' exchanges only
    say("bare-endpoint floor")
    floor = floor_rate(target, seconds, concurrency)
    return CheckinReport(
        devices=devices, seconds=round(elapsed, 2), requests_per_s=round(rps, 1),
        floor_requests_per_s=round(floor, 1), floor_ratio=round(rps / floor, 3) if floor else 0.0,
        rounds=window.rounds, commands_answered=window.answered, commands_enqueued=window.enqueued,
        failures=stats.failures, endpoints=stats.summary(), enrollment=enrolled,
        round_ms=percentiles(window.round_ms),
        throughput=[
            *stats.timeline.series("requests per second", {"requests": "check-in requests",
                                                             "failed": "failed requests"}),
            *stats.timeline.series("rounds per second", {"rounds": "agent rounds",
                                                           "commands answered": "commands answered"}),
        ],
    )  # fmt: skip
