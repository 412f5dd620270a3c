"""The command queue (priority, order, NotNow, at-most-once under concurrency) and APNs pushes."""

from __future__ import annotations

import plistlib
import threading
import time
from collections import Counter
from typing import Any

import httpx
from flask import Response
from mdm_world import Device, World, build_world, enqueue
from werkzeug.test import Client

from mdm.server.push import send_push


def next_uuid(response: Any) -> str | None:
    data = response.get_data()
    assert response.status_code == 200, response.get_data(as_text=True)
    return plistlib.loads(data)["CommandUUID"] if data else None


def test_priority_then_age(make_device: Any, api_enqueue: Any) -> None:
    device = make_device()
    a = api_enqueue([device.udid], {"RequestType": "ProfileList"})
    b = api_enqueue([device.udid], {"RequestType": "SecurityInfo"})
    c = api_enqueue([device.udid], {"RequestType": "CertificateList"}, priority=5)
    assert next_uuid(device.connect()) == c
    assert next_uuid(device.connect("Acknowledged", c)) == a
    assert next_uuid(device.connect("Acknowledged", a)) == b
    empty = device.connect("Acknowledged", b)
    assert empty.status_code == 200 and empty.get_data() == b""


def test_in_flight_command_is_not_sent_twice(make_device: Any, api_enqueue: Any) -> None:
    device = make_device()
    a = api_enqueue([device.udid], {"RequestType": "ProfileList"})
    b = api_enqueue([device.udid], {"RequestType": "SecurityInfo"})
    assert next_uuid(device.connect()) == a
    assert next_uuid(device.connect()) == b  # a is in flight until a result arrives
    assert next_uuid(device.connect()) is None


def test_not_now_skips_for_the_request_then_retries_on_idle(make_device: Any, api_enqueue: Any) -> None:
    device = make_device()
    a = api_enqueue([device.udid], {"RequestType": "ProfileList"})
    b = api_enqueue([device.udid], {"RequestType": "SecurityInfo"})
    assert next_uuid(device.connect()) == a
    assert next_uuid(device.connect("NotNow", a)) == b
    assert next_uuid(device.connect("NotNow", b)) is None
    assert next_uuid(device.connect()) == a
    assert next_uuid(device.connect("Acknowledged", a)) == b
    assert next_uuid(device.connect("Acknowledged", b)) is None


def test_command_api_validates(client: Any, make_device: Any) -> None:
    device = make_device()
    cases = [
        ({"udids": [device.udid], "command": {"RequestType": "NoSuchThing"}}, "unknown RequestType"),
        ({"udids": [device.udid], "command": {"RequestType": "DeviceInformation"}}, "requires Queries"),
        ({"udids": ["nobody"], "command": {"RequestType": "SecurityInfo"}}, "unknown device"),
        ({"udids": [], "command": {"RequestType": "SecurityInfo"}}, "udids"),
        ({"command": {"RequestType": "SecurityInfo"}}, "udids"),
        ({"udids": [device.udid]}, "command"),
    ]
    for body, words in cases:
        response = client.post("/mdm/api/v1/commands", json=body)
        assert response.status_code == 400 and words in response.get_json()["error"], body
    assert client.post("/mdm/api/v1/commands", data=b"{not json").status_code == 400
    assert client.get("/mdm/api/v1/commands/nope").status_code == 404
    assert client.get("/mdm/api/v1/devices/nope").get_json() == {"error": "no device nope"}


def test_at_most_once_under_eight_concurrent_connections(tmp_path: Any) -> None:
    world = build_world(tmp_path)
    try:
        client = Client(world.wsgi, Response)
        cert, key = world.mdm.issue_identity("CONCURRENT-1")
        device = Device(client, "CONCURRENT-1", cert, key)
        device.enroll(world.mdm.topic)
        queued = {enqueue(client, [device.udid], {"RequestType": "SecurityInfo"}) for _ in range(40)}
        delivered: list[str] = []
        lock = threading.Lock()
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                me = Device(Client(world.wsgi, Response), device.udid, cert, key)
                uuid = next_uuid(me.connect())
                while uuid is not None:
                    with lock:
                        delivered.append(uuid)
                    uuid = next_uuid(me.connect("Acknowledged", uuid))
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not errors
        assert Counter(delivered) == Counter(queued)  # every command exactly once
        statuses = {world.mdm.command_status(u)["devices"][0]["status"] for u in queued}
        assert statuses == {"Acknowledged"}
    finally:
        world.mdm.close()


def test_push_reaches_apns_newest_only(world: World, client: Any, make_device: Any, api_enqueue: Any) -> None:
    device = make_device()
    api_enqueue([device.udid], {"RequestType": "ProfileList"})
    api_enqueue([device.udid], {"RequestType": "SecurityInfo"})
    pending = world.apns.pending(device.token.hex())
    assert len(pending) == 1 and pending[0]["payload"] == {"mdm": device.push_magic}
    assert pending[0]["push_type"] == "mdm" and pending[0]["priority"] == 10
    assert world.apns.stats(device.token.hex())["coalesced"] == 1
    assert world.mdm.device(device.udid)["push"]["sent"] == 2


def test_unregistered_token_stops_pushes_until_token_update(
    world: World, client: Any, make_device: Any, api_enqueue: Any
) -> None:
    device = make_device()
    assert client.post(f"/apple/apns/devices/{device.token.hex()}/unregister").status_code == 200
    api_enqueue([device.udid], {"RequestType": "ProfileList"})
    push = world.mdm.device(device.udid)["push"]
    assert (
        push["token_invalid"] is True and push["last_status"] == 410 and "Unregistered" in push["last_error"]
    )
    api_enqueue([device.udid], {"RequestType": "SecurityInfo"})
    assert world.apns.stats(device.token.hex())["rejected"] == 1  # no second attempt
    device.token = b"\x07" * 32
    device.token_update(world.mdm.topic)
    assert world.mdm.device(device.udid)["push"]["token_invalid"] is False
    api_enqueue([device.udid], {"RequestType": "CertificateList"})
    assert world.apns.pending(device.token.hex())


def test_push_retries_429_and_5xx_with_bounded_backoff() -> None:
    replies = iter([429, 503, 200])
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = next(replies)
        headers = {"apns-id": "ABC"} if status == 200 else {}
        return httpx.Response(
            status, json={"reason": "TooManyRequests"} if status != 200 else None, headers=headers
        )

    delays: list[float] = []
    outcome = send_push(
        httpx.Client(transport=httpx.MockTransport(handler)),
        "http://apns",
        token_hex="ab" * 32,
        push_magic="M",
        topic="com.apple.mgmt.X",
        sleep=delays.append,
    )
    assert outcome.ok and outcome.attempts == 3 and outcome.apns_id == "ABC"
    assert delays == [0.05, 0.2]
    request = seen[0]
    assert request.url.path == "/3/device/" + "ab" * 32 and request.content == b'{"mdm":"M"}'
    assert request.headers["apns-topic"] == "com.apple.mgmt.X" and request.headers["apns-push-type"] == "mdm"
    assert request.headers["apns-priority"] == "10"

    always_down = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(503)))
    outcome = send_push(
        always_down, "http://apns", token_hex="ab" * 32, push_magic="M", topic="t", sleep=lambda s: None
    )
    assert outcome.status == 503 and outcome.attempts == 5


def test_background_push_and_webhook_after_commit() -> None:
    world = build_world(synchronous=False)
    try:
        client = Client(world.wsgi, Response)
        cert, key = world.mdm.issue_identity("BG-1")
        device = Device(client, "BG-1", cert, key)
        device.enroll(world.mdm.topic)
        enqueue(client, [device.udid], {"RequestType": "ProfileList"})
        assert world.mdm.wait_for_outbound(10)
        assert world.apns.pending(device.token.hex())
        assert [e["topic"] for e in world.webhook.config["events"]] == ["mdm.Authenticate", "mdm.TokenUpdate"]
    finally:
        world.mdm.close()


def test_failing_webhook_never_fails_the_device(make_device: Any, world: World) -> None:
    world.mdm.webhook_urls = lambda: ["http://mdmsim.test/nowhere", "http://unreachable.invalid:1/x"]
    device = make_device()
    assert device.connect().status_code == 200


def test_long_poll_returns_a_push_made_while_waiting(world: World, make_device: Any) -> None:
    device = make_device()
    result: dict[str, Any] = {}

    def poll() -> None:
        started = time.monotonic()
        response = Client(world.wsgi, Response).get(f"/apple/apns/events?token={device.token.hex()}&wait=10")
        result["elapsed"] = time.monotonic() - started
        result["body"] = response.get_json()

    thread = threading.Thread(target=poll)
    thread.start()
    world.mdm.push([device.udid])
    thread.join(timeout=15)
    assert result["body"]["notifications"][0]["payload"] == {"mdm": device.push_magic}
    assert result["elapsed"] < 5
