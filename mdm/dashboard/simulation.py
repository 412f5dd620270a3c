"""The simulation as the dashboard's Simulation pages need it: where it is, and its calls relayed.

A simulation (mdmsim's ``/_sim``) is optional: an MDM product's own dashboard has none, and the
pages then say so. When there is one, the pages' buttons make the simulation's own calls (the ones a
script makes, shown beside each button) through :meth:`Simulation.relay`, which passes the JSON body
and the answer through unchanged but for a 5xx (a relay answers 502 for a simulation that failed, as
the Graph relay does). The browser reads device changes straight from the simulation's event stream
(``urls.sim_events`` of ``GET /_sim/``): a long-lived stream must not hold one of this server's threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from flask import Response, json

__all__ = ["Simulation"]

#: Powering on every device of a large world one after the other takes minutes.
LONG_TIMEOUT_S = 900.0
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Simulation:
    """The simulation's control API at ``base`` (``…/_sim``), called with ``client``."""

    client: httpx.Client
    base: str

    def relay(self, method: str, path: str, body: Any = None, *, long: bool = False) -> Response:
        """The simulation's answer to ``method path`` with ``body`` as JSON, passed through."""
        try:
            reply = self.client.request(method, self.base.rstrip("/") + path, json=body,
                                        timeout=LONG_TIMEOUT_S if long else TIMEOUT_S)  # fmt: skip
        except httpx.InvalidURL:
            return _json({"error": "no such simulation endpoint"}, 404)
        except httpx.HTTPError as exc:
            return _json({"error": f"the simulation could not be reached ({type(exc).__name__})"}, 502)
        if not reply.content:
            return _json({}, reply.status_code if reply.status_code < 500 else 502)
        try:
            value = reply.json()
        except ValueError:
            return _json({"error": f"the simulation answered {reply.status_code} with something that is not JSON"}, 502)
        return _json(value, reply.status_code if reply.status_code < 500 else 502)

    def page_context(self, *, screens: bool = False) -> dict[str, Any]:
        """What a Simulation page needs to draw: whether there is a simulation, its URL for the ``curl``
        lines, its event stream, its clock and (``screens``) the words of each Setup Assistant pane."""
        info = self._get("/")
        if not isinstance(info, dict) or not isinstance(info.get("urls"), dict):
            return {"available": False}
        urls = info["urls"]
        events = urls.get("sim_events") if isinstance(urls.get("sim_events"), str) else None
        context = {
            "available": True,
            "sim_url": str(urls.get("sim") or self.base),
            "events_url": events,
            # The feed's ticket is advertised only once the world has an admin token: scripts need it too.
            "needs_token": bool(events and "ticket=" in events),
            "now": info.get("now"),
            "organization": info.get("organization"),
        }
        if screens:
            found = self._get("/screens")
            context["screens"] = found.get("screens") if isinstance(found, dict) else None
        return context

    def _get(self, path: str) -> Any:
        try:
            reply = self.client.get(self.base.rstrip("/") + path, timeout=TIMEOUT_S)
            return reply.json() if reply.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None


def _json(value: Any, status: int) -> Response:
    response = Response(json.dumps(value), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response
