"""``/_sim/``: JSON endpoints to move the clock, read traffic, script faults and reset the world."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from flask import Flask, Response, request

from mdm.platform.clock import ClockError
from mdm.platform.web import BodyError, create_party_app, json_response, read_body, read_json
from mdm.protocol.isotime import IsoTimeError, isoformat, parse_iso

from .service import ControlService, FaultError

MAX_IDENTITIES = 1000


def _error(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


class DeviceControl(Protocol):
    """What ``/_sim/devices`` needs from the world's simulated devices."""

    def list(self, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]: ...

    def describe(self, serial: str) -> dict[str, Any] | None: ...

    def identity_bundle(self, serial: str) -> dict[str, Any] | None: ...

    def power_on_json(self, serial: str) -> dict[str, Any] | None: ...

    def run_agent_json(self, serial: str, rounds: int) -> dict[str, Any] | None: ...

    def power_on_many_json(self, serials: list[str] | None) -> dict[str, Any]: ...

    def erase_json(self, serial: str) -> dict[str, Any] | None: ...

    def exchanges_json(self, serial: str) -> dict[str, Any] | None: ...

    def exchange_json(self, serial: str, exchange_id: int) -> dict[str, Any] | None: ...

    def screens(self) -> dict[str, Any]: ...


def create_app(
    control: ControlService,
    *,
    reset: Callable[[], None],
    info: Callable[[], dict],
    devices: DeviceControl | None = None,
) -> Flask:
    """``reset``, ``info`` and ``devices`` come from the world, which alone knows every party."""
    app = create_party_app("sim", __name__, max_body=16 * 1_048_576, text_errors=False)

    @app.errorhandler(BodyError)
    def _bad_body(error: BodyError) -> Response:
        return _error(400, error.reason)

    @app.errorhandler(404)
    def _not_found(_error_: Exception) -> Response:
        return _error(404, "no such simulation endpoint; see GET /_sim/")

    @app.errorhandler(405)
    def _bad_method(_error_: Exception) -> Response:
        return _error(405, "method not allowed on this simulation endpoint")

    @app.errorhandler(413)
    def _too_large(_error_: Exception) -> Response:
        return _error(413, "request body too large")

    @app.get("/")
    def index() -> Response:
        return json_response(info())

    @app.get("/clock")
    def get_clock() -> Response:
        return json_response({"now": isoformat(control.clock.now()), "frozen": control.clock.frozen})

    @app.post("/clock")
    def set_clock() -> Response:
        body = read_json(65_536)
        if not isinstance(body, dict) or not ({"advance_seconds", "now"} & body.keys()):
            return _error(400, 'send {"advance_seconds": n} or {"now": "2026-01-01T00:00:00Z"}')
        try:
            if "now" in body:
                moved = control.set_clock(parse_iso(body["now"]))
            else:
                moved = control.advance_clock(body["advance_seconds"])
        except (ClockError, IsoTimeError) as exc:
            return _error(400, str(exc))
        return json_response({"now": isoformat(moved)})

    @app.post("/reset")
    def post_reset() -> Response:
        reset()
        return json_response({"reset": True, "now": isoformat(control.clock.now())})

    @app.get("/traffic")
    def get_traffic() -> Response:
        return json_response(control.traffic())

    @app.delete("/traffic")
    def delete_traffic() -> Response:
        control.clear_traffic()
        return Response(status=204)

    @app.get("/traffic/recent")
    def get_recent() -> Response:
        return json_response(control.recent_traffic())

    # A floor for benchmarks: the same server stack answering with a stored, pre-serialised body.
    bench: dict[str, bytes] = {"page": b"{}"}

    @app.put("/bench/page")
    def put_bench_page() -> Response:
        bench["page"] = read_body(16 * 1_048_576)
        return Response(status=204)

    @app.route("/bench/page", methods=["GET", "POST"])
    def bench_page() -> Response:
        read_body(1_048_576)
        return json_response(bench["page"])

    if devices is not None:

        @app.get("/devices")
        def list_devices() -> Response:
            limit = request.args.get("limit", "1000")
            offset = request.args.get("offset", "0")
            numbers = limit.isascii() and limit.isdigit() and offset.isascii() and offset.isdigit()
            if not numbers or not 1 <= int(limit) <= 10_000:
                return _error(400, "limit must be 1..10000 and offset a non-negative integer")
            return json_response({"devices": devices.list(int(limit), int(offset))})

        @app.get("/devices/<serial>")
        def describe_device(serial: str) -> Response:
            found = devices.describe(serial)
            return json_response(found) if found is not None else _error(404, f"no simulated device {serial} has been powered on")

        @app.get("/devices/<serial>/identity")
        def device_identity(serial: str) -> Response:
            found = devices.identity_bundle(serial)
            return json_response(found) if found is not None else _error(404, f"no device {serial} in the organization")

        @app.post("/devices/identities")
        def device_identities() -> Response:
            """Many identity bundles in one request: a 10,000-device load run needs 10 calls, not 10,000."""
            body = read_json(1_048_576)
            serials = body.get("serials") if isinstance(body, dict) else None
            if (not isinstance(serials, list) or not 1 <= len(serials) <= MAX_IDENTITIES
                    or not all(isinstance(s, str) and 0 < len(s) <= 64 for s in serials)):
                return _error(400, f'send {{"serials": [...]}} with 1..{MAX_IDENTITIES} serial numbers')
            found: list[dict[str, Any]] = []
            missing: list[str] = []
            for serial in serials:
                bundle = devices.identity_bundle(serial)
                if bundle is None:
                    missing.append(serial)
                else:
                    found.append(bundle)
            return json_response({"identities": found, "missing": missing})

        @app.post("/devices/<serial>/power-on")
        def power_on(serial: str) -> Response:
            found = devices.power_on_json(serial)
            return json_response(found) if found is not None else _error(404, f"no device {serial} in the organization")

        @app.post("/devices/power-on")
        def power_on_many() -> Response:
            """Several devices, one after the other: ``{"assigned": true}`` for every device Apple lists
            with a profile, or ``{"serials": [...]}``. Answers when the last one has stopped."""
            body = read_json(1_048_576)
            serials = body.get("serials") if isinstance(body, dict) else None
            if isinstance(body, dict) and body.get("assigned") is True and serials is None:
                return json_response(devices.power_on_many_json(None))
            if (not isinstance(serials, list) or not 1 <= len(serials) <= MAX_IDENTITIES
                    or not all(isinstance(s, str) and 0 < len(s) <= 64 for s in serials)):
                return _error(400, 'send {"assigned": true} (every device with a profile) or '
                                   f'{{"serials": [...]}} with 1..{MAX_IDENTITIES} serial numbers')
            return json_response(devices.power_on_many_json(serials))

        @app.post("/devices/<serial>/erase")
        def erase_device(serial: str) -> Response:
            """Erase All Content and Settings: the device goes back to Hello, keeping its hardware identity."""
            found = devices.erase_json(serial)
            return json_response(found) if found is not None else _error(404, f"no simulated device {serial} has been powered on")

        @app.get("/devices/<serial>/exchanges")
        def device_exchanges(serial: str) -> Response:
            """The device's HTTP exchanges in order: its timeline (bodies at ``…/exchanges/<id>``)."""
            found = devices.exchanges_json(serial)
            return json_response(found) if found is not None else _error(404, f"no simulated device {serial} has been powered on")

        @app.get("/devices/<serial>/exchanges/<int:exchange_id>")
        def device_exchange(serial: str, exchange_id: int) -> Response:
            found = devices.exchange_json(serial, exchange_id)
            return json_response(found) if found is not None else _error(404, f"no exchange {exchange_id} of device {serial}")

        @app.get("/screens")
        def screens() -> Response:
            """What a device's screen shows on each pane (``simulator.device.screens``), for pages that draw devices."""
            return json_response(devices.screens())

        @app.post("/devices/<serial>/agent")
        def run_agent(serial: str) -> Response:
            rounds = request.args.get("rounds", "1")
            if not (rounds.isascii() and rounds.isdigit()) or not 1 <= int(rounds) <= 100:
                return _error(400, "rounds must be 1..100")
            found = devices.run_agent_json(serial, int(rounds))
            return json_response(found) if found is not None else _error(404, f"no simulated device {serial} has been powered on")

    @app.post("/counters/<name>")
    def take_counter(name: str) -> Response:
        """The next number of a named counter (0, 1, …), unique across every process of the world."""
        if not 0 < len(name) <= 64 or not name.replace("-", "").replace("_", "").isalnum():
            return _error(400, "a counter name is 1..64 letters, digits, '-' or '_'")
        return json_response({"name": name, "value": control.next_in_counter(name)})

    @app.get("/faults")
    def get_faults() -> Response:
        return json_response(control.faults())

    @app.post("/faults")
    def post_faults() -> Response:
        try:
            return json_response(control.script_faults(read_json(1_048_576)))
        except FaultError as exc:
            return _error(400, str(exc))

    @app.delete("/faults")
    def delete_faults() -> Response:
        control.clear_faults()
        return Response(status=204)

    return app
