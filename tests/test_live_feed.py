"""The live device feed (``GET /sim-events`` on the push gateway's device listener), read over real sockets.

What a dashboard page subscribes to: a snapshot, then each device as it changes, whoever changed it;
answered for the dashboard's origin only; behind the admin token's ticket once the world has a token.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from tests_support import GRAPH, onboard

import simulator.live as live
from simulator import World


@contextmanager
def feed(url: str, origin: str | None = None) -> Iterator[Iterator[tuple[str, Any]]]:
    """The feed's events as ``(name, data)``, read as a browser's ``EventSource`` reads them."""
    headers = {"Accept": "text/event-stream", **({"Origin": origin} if origin else {})}
    with httpx.stream("GET", url, headers=headers, timeout=20) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "text/event-stream"

        def events() -> Iterator[tuple[str, Any]]:
            name = "message"
            for line in response.iter_lines():
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    yield name, json.loads(line[5:])
                elif not line:
                    name = "message"

        yield events()


def next_event(events: Iterator[tuple[str, Any]], wanted: str) -> Any:
    for name, data in events:
        if name == wanted:
            return data
    raise AssertionError(f"the feed ended before a {wanted!r} event")


def test_a_page_sees_the_snapshot_then_each_device_walk_as_it_happens() -> None:
    with World(devices=3, seed=21, background_sync=False) as world, world.serve() as served:
        setting = onboard(world)
        world.http.post(f"{GRAPH}/{setting}/syncWithAppleDeviceEnrollmentProgram")
        world.controller.wait_for_sync(setting, 30)
        profile = world.http.post(f"{GRAPH}/{setting}/enrollmentProfiles", json={
            "displayName": "P", "supportDepartment": "Pharmacy IT", "supportPhoneNumber": "+1 555 0100",
            "siriDisabled": True}).json()  # fmt: skip
        first, second, _third = world.serials
        world.http.post(f"{GRAPH}/{setting}/enrollmentProfiles/{profile['id']}/updateDeviceProfileAssignment",
                        json={"deviceIds": [first, second]})
        world.devices.power_on(first)
        url = httpx.get(f"{served.url}/_sim/").json()["urls"]["sim_events"]
        assert url == f"{served.apns_stream_url}/sim-events"

        with feed(url, origin=served.url) as events:
            snapshot = next_event(events, "snapshot")
            (view,) = snapshot["devices"]
            assert (view["serial_number"], view["phase"], view["pane"], view["enrolled"]) == (first, "home", "HomeScreen", True)
            assert view["fields"]["org"] == "Contoso Pharmaceuticals"
            assert (view["fields"]["department"], view["fields"]["phone"]) == ("Pharmacy IT", "+1 555 0100")
            assert view["entries"][-1][1:3] == ["HomeScreen", "shown"] and view["recorded"] == view["entries"][-1][0] + 1

            world.devices.power_on(second)  # in this process, but the feed reads the store: any process would do
            walked: list[list[Any]] = []
            while not walked or walked[-1][1] != "HomeScreen":
                for changed in next_event(events, "devices")["devices"]:
                    assert changed["serial_number"] == second
                    walked += [e for e in changed["entries"] if not walked or e[0] > walked[-1][0]]
            shown = [e[1] for e in walked if e[2] == "shown"]
            assert shown[0] == "Hello" and "RemoteManagement" in shown and "Siri" not in shown
            assert ["Siri", "skipped"] in [e[1:3] for e in walked]
            assert walked[0][1:3] == ["Boot", "info"]  # the first power-on starts at the Apple logo

            world.http.post(f"/_sim/devices/{first}/erase")
            erased = next_event(events, "devices")["devices"][0]
            assert (erased["serial_number"], erased["pane"], erased["enrolled"]) == (first, "Hello", False)
            assert [e[1] for e in erased["entries"]] == ["EraseDevice"]  # what came before the erase is not redrawn

            world.reset()
            next_event(events, "reset")
            assert next_event(events, "snapshot")["devices"] == []


def test_the_feed_answers_the_dashboards_origin_only() -> None:
    with World(devices=0, seed=22) as world, world.serve() as served:
        url = f"{served.apns_stream_url}/sim-events"
        port = served.url.rsplit(":", 1)[1]
        for origin in (served.url, f"http://localhost:{port}"):
            with httpx.stream("GET", url, headers={"Origin": origin}, timeout=10) as ok:
                assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == origin
        for origin in ("http://evil.example", f"https://127.0.0.1:{port}", "http://127.0.0.1:1", "null", "x"):
            refused = httpx.get(url, headers={"Origin": origin}, timeout=10)
            assert refused.status_code == 403 and refused.json() == {"reason": "Forbidden"}, origin
            assert "access-control-allow-origin" not in refused.headers
        assert httpx.post(url, timeout=10).status_code == 405


def test_once_the_world_has_a_token_the_feed_needs_the_ticket_it_advertises() -> None:
    with World(devices=0, seed=23) as world, world.serve() as served:
        world.control.set_setting("api_token", "s3cret")
        bare = f"{served.apns_stream_url}/sim-events"
        assert httpx.get(bare, timeout=10).status_code == 403
        assert httpx.get(bare + "?ticket=s3cret", timeout=10).status_code == 403  # the token itself is not the ticket
        assert httpx.get(f"{served.url}/_sim/", timeout=10).status_code == 401
        advertised = httpx.get(f"{served.url}/_sim/", headers={"Authorization": "Bearer s3cret"},
                               timeout=10).json()["urls"]["sim_events"]  # fmt: skip
        assert "s3cret" not in advertised and "ticket=" in advertised
        with feed(advertised) as events:
            assert next_event(events, "snapshot")["devices"] == []


def test_readers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "MAX_READERS", 2)
    with World(devices=0, seed=24) as world, world.serve() as served:
        url = f"{served.apns_stream_url}/sim-events"
        with feed(url) as one, feed(url) as two:
            next_event(one, "snapshot")
            next_event(two, "snapshot")
            third = httpx.get(url, timeout=10)
            assert third.status_code == 429 and third.json() == {"reason": "TooManyRequests"}
            assert third.headers["retry-after"] == "5"
        host, port = served.apns_stream_url.removeprefix("http://").rsplit(":", 1)
        deadline = time.monotonic() + 10
        while True:  # once they hung up (the gateway notices on its loop), a new reader gets in
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(b"GET /sim-events HTTP/1.1\r\nHost: x\r\n\r\n")
                head = sock.recv(64)
            if head.startswith(b"HTTP/1.1 200 ") or time.monotonic() > deadline:
                break
        assert head.startswith(b"HTTP/1.1 200 "), head


def test_which_pages_may_read_the_feed() -> None:
    """The dashboard's own origin (or loopback by another name) on the world's scheme and port; any
    host name on them when the world is bound to every address (``--host 0.0.0.0``), where the page
    is reached by the machine's name and the ticket admits the reader."""
    allowed_origin = live.allowed_origin
    assert allowed_origin("http://localhost:8080", "http://127.0.0.1:8080")
    assert not allowed_origin("http://evil.example:8080", "http://127.0.0.1:8080")
    assert not allowed_origin("http://localhost:9090", "http://127.0.0.1:8080")
    assert allowed_origin("http://mdm-lab.example:8080", "http://0.0.0.0:8080")
    assert allowed_origin("http://[fe80::1]:8080", "http://[::]:8080")
    assert not allowed_origin("https://mdm-lab.example:8080", "http://0.0.0.0:8080")
    assert not allowed_origin("http://mdm-lab.example:9090", "http://0.0.0.0:8080")
