"""A device driver whose HTTP client is a Locust user's: Locust times and counts every exchange.

The device flows are the same generators the other drivers run (DESIGN.md rule 5). Requests are
named by endpoint path (``/mdm/connect``; Locust shows the method beside it), so Locust aggregates
ten thousand devices into a handful of rows instead of one row per serial or push token.

A response is a Locust *failure* only when it is no answer at all or a server error: a 401 with a
Basic challenge or a 409 is part of the protocol, and the device's flow decides what it means.
"""

from __future__ import annotations

from typing import Any

from simulator.device.drivers import DEFAULT_TIMEOUT, Driver
from simulator.device.machine import Now, Request, Response

from .stats import endpoint_name

__all__ = ["LocustDriver"]


class LocustDriver(Driver):
    """Runs device flows with ``client.request(...)`` of an ``HttpUser`` or ``FastHttpUser``."""

    def __init__(self, client: Any, *, now: Now | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(now=now)
        self.client = client
        self.timeout = timeout

    def send(self, request: Request) -> Response:
        with self.client.request(
            request.method, request.url, name=endpoint_name(request.method, request.url).split(" ", 1)[1],
            headers=request.headers, data=request.body, catch_response=True,
        ) as r:  # fmt: skip
            status = int(r.status_code or 0)
            if status == 0 or status >= 500:
                r.failure(f"HTTP {status}: {getattr(r, 'error', None) or (r.text or '')[:200]}")
                error = str(getattr(r, "error", None) or f"HTTP {status}")
                if status == 0:
                    return Response.network_error(error[:200])
            else:
                r.success()
            headers = {str(k).lower(): str(v) for k, v in (r.headers or {}).items()}
            return Response(status, headers, r.content or b"")
