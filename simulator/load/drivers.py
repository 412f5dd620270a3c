"""Drivers that run device flows over :class:`~simulator.load.transport.LoadClient`: thousands of
devices on one event loop.

The flows are the very generators :class:`~simulator.device.drivers.HTTPDriver` runs (DESIGN.md
rule 5); only ``send`` awaits. One client (one connection pool) serves every device of a fleet: a
device is a :class:`~simulator.device.machine.DeviceState` and nothing else, no client of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import httpcore

from simulator.device.agent import AgentRound, agent_round
from simulator.device.drivers import DEFAULT_TIMEOUT, StepLimitExceeded, _origin, _short, _untrusted
from simulator.device.machine import Device, Flow, Now, Request, Response, wall_now
from simulator.device.phases import Phase
from simulator.device.setup_assistant import run_setup

from .stats import LatencyStats, endpoint_name
from .transport import LoadClient, LoadHTTPError

__all__ = ["AsyncHTTPDriver", "AsyncObserver", "run_coroutine"]

T = TypeVar("T")
#: Called after every exchange with the elapsed milliseconds (phase timings hook in here).
AsyncObserver = Callable[[Request, Response, float], None]


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)``, also from a thread whose event loop is already running (a notebook, a
    test session that holds Playwright's sync API open): then on a fresh loop in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mdmsim-load") as pool:
        return pool.submit(asyncio.run, coro).result()


class AsyncHTTPDriver:
    """Runs flows with ``await client.request(...)``; records each exchange in ``stats``.

    Transport failures become ``Response(status=0, error=…)`` exactly as in the synchronous drivers,
    so a refused connection lands in the device's transcript instead of killing the fleet.
    """

    def __init__(
        self,
        client: LoadClient,
        *,
        now: Now | None = None,
        stats: LatencyStats | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.client = client
        self.now: Now = now or wall_now
        self.stats = stats
        self.timeout = timeout
        self.exchanges = 0
        # As HTTPDriver: ``client`` is the devices' system store; a request carrying ``trust`` (the MDM
        # server, when the profile has anchor certificates) goes through a client that trusts only those.
        self._trusted: dict[tuple[str, ...], LoadClient] = {}

    def _client_for(self, request: Request) -> LoadClient:
        if request.trust is None or not request.url.lower().startswith("https:"):
            return self.client
        client = self._trusted.get(request.trust)
        if client is None:
            from simulator.tls import anchor_context

            client = LoadClient(ssl_context=anchor_context(request.trust), max_connections=64, timeout=self.timeout)
            self._trusted[request.trust] = client
        return client

    async def aclose(self) -> None:
        """Close the anchor-specific clients (the caller owns ``client``)."""
        for client in self._trusted.values():
            await client.aclose()
        self._trusted.clear()

    async def send(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            r = await self._client_for(request).request(
                request.method, request.url, headers=request.headers, content=request.body, timeout=self.timeout
            )
            response = Response(r.status_code, r.headers, r.content)
        except LoadHTTPError as exc:
            if exc.timeout:
                response = Response.network_error(f"{_origin(request.url)} did not answer in time")
            elif _untrusted(exc):
                response = Response.network_error(
                    f"server certificate not trusted: {_origin(request.url)}: {_short(exc)}")
            elif isinstance(exc.__cause__, httpcore.ConnectError):
                response = Response.network_error(f"cannot connect to {_origin(request.url)}: {_short(exc)}")
            else:
                response = Response.network_error(f"{_origin(request.url)}: {_short(exc)}")
        self.exchanges += 1
        if self.stats is not None:
            self.stats.record(endpoint_name(request.method, request.url), response.status,
                              (time.perf_counter() - started) * 1000.0)
        return response

    async def run(self, flow: Flow[T], *, max_steps: int | None = None,
                  observer: AsyncObserver | None = None) -> T:
        """Drive one flow to its end and return its result (``observer`` sees every exchange)."""
        steps = 0
        try:
            request = next(flow)
            while True:
                if max_steps is not None and steps >= max_steps:
                    flow.close()
                    raise StepLimitExceeded(f"flow needed more than {max_steps} HTTP exchanges")
                started = time.perf_counter()
                response = await self.send(request)
                steps += 1
                if observer is not None:
                    observer(request, response, (time.perf_counter() - started) * 1000.0)
                request = flow.send(response)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def run_until_home(self, device: Device, max_steps: int = 500,
                             observer: AsyncObserver | None = None) -> str:
        """Power on and walk Setup Assistant; answer the MDM while held at Awaiting Configuration.

        Same contract as :meth:`simulator.device.drivers.Driver.run_until_home`.
        """
        used = 0
        while True:
            before = self.exchanges
            phase = await self.run(run_setup(device, self.now), max_steps=max(max_steps - used, 0),
                                   observer=observer)
            used += self.exchanges - before
            if phase != Phase.AWAITING_CONFIGURATION or used >= max_steps:
                return phase
            before = self.exchanges
            report = await self.run(agent_round(device, self.now), max_steps=max_steps - used, observer=observer)
            used += self.exchanges - before
            if device.phase == Phase.AWAITING_CONFIGURATION and not report.commands:
                return device.phase

    async def run_agent(self, device: Device, *, poll_push: bool = True, connect: bool = True,
                        notifications: Sequence[Any] | None = None,
                        observer: AsyncObserver | None = None) -> AgentRound:
        """One wake-up of the device's MDM agent (``notifications``: what its push stream delivered)."""
        flow = agent_round(device, self.now, poll_push=poll_push, connect=connect, notifications=notifications)
        return await self.run(flow, observer=observer)
