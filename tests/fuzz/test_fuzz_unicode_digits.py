"""Numbers that are digits to ``str.isdigit`` but not to ``int``: ``'²'`` and friends.

``'²'.isdigit()`` is True and ``int('²')`` raises, so a check written as ``isdigit()`` let them
through to a 500. Every number a client sends in a query or a header is refused as the service
refuses any other bad number.
"""

from __future__ import annotations

import json

import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Response

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from simulator import World
from simulator.apple.apns import http as apns_http
from simulator.apple.apns.service import APNsService, PushRequest, open_apns_store

ODD_DIGITS = ["²", "³", "١", "𝟘", "12²"]  # superscripts, Arabic-Indic, mathematical, mixed


@pytest.fixture(scope="module")
def world():
    with World(devices=3, seed=11, background_sync=False, push_certificate=False) as w:
        yield w


@pytest.mark.parametrize("digits", ODD_DIGITS)
def test_graph_query_numbers(world: World, digits: str) -> None:
    for option in ("$top", "$skip", "$skiptoken"):
        reply = world.http.get("/intune/deviceManagement/depOnboardingSettings", params={option: digits})
        assert reply.status_code == 400, (option, reply.status_code, reply.text[:200])


@pytest.mark.parametrize("digits", ODD_DIGITS)
def test_simulation_and_business_log_numbers(world: World, digits: str) -> None:
    assert world.http.get("/_sim/devices", params={"limit": digits}).status_code == 400
    log = world.http.get("/apple/business/activity-logs/x", params={"Expires": digits, "Signature": "é" * 8})
    assert log.status_code == 403
    signed = world.http.get("/apple/business/activity-logs/x", params={"Expires": "9999999999", "Signature": "é" * 8})
    assert signed.status_code == 403  # a non-ASCII signature is a wrong signature, not a TypeError


@pytest.mark.parametrize("digits", ODD_DIGITS)
def test_apns_expiration(digits: str) -> None:
    """Over HTTP (a header arrives as Latin-1, so ``²`` and ``³`` get through as themselves), and in a
    group with a good push, which must not fail with it (the HTTP/2 listener writes pushes in groups).
    A gateway without certificate checks, so the expiration is what is judged."""
    apns = APNsService(open_apns_store(None), Clock(Store(None, [])))
    client = Client(apns_http.create_app(apns), Response)
    token = "c4" * 32
    headers = {"apns-topic": "com.apple.mgmt.External.x"}
    if all(ord(c) < 256 for c in digits):
        reply = client.post(f"/3/device/{token}", data=json.dumps({"mdm": "m"}),
                            headers={**headers, "apns-expiration": digits})  # fmt: skip
        assert (reply.status_code, reply.get_json()) == (400, {"reason": "BadExpirationDate"})
    bad = PushRequest(token, b'{"mdm": "m"}', {**headers, "apns-expiration": digits})
    good = PushRequest("c5" * 32, b'{"mdm": "m"}', headers)
    assert [(r.status, r.reason) for r in apns.send_many([bad, good])] == [(400, "BadExpirationDate"), (200, None)]
