"""Apple's push gateway as an MDM server and a simulated device see it."""

from __future__ import annotations

import json
import threading
from typing import Any

from simulator.apple.apns.service import APNsService

TOKEN = "a1" * 32
TOPIC = "com.apple.mgmt.External.11111111-2222-3333-4444-555555555555"
HEADERS = {"apns-topic": TOPIC, "apns-push-type": "mdm", "apns-priority": "10"}


def push(gateway: Any, token: str = TOKEN, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body if body is not None else {"mdm": "MAGIC"})
    return gateway.post(f"/3/device/{token}", data=data, headers=headers if headers is not None else HEADERS)


def test_push_is_accepted_with_an_apns_id_and_coalesced(gateway: Any, apns: APNsService) -> None:
    first = push(gateway, body={"mdm": "ONE"})
    assert first.status_code == 200 and len(first.headers["apns-id"]) == 36
    push(gateway, body={"mdm": "TWO"})
    [pending] = apns.pending(TOKEN)
    assert pending["payload"] == {"mdm": "TWO"} and pending["topic"] == TOPIC
    assert apns.take(TOKEN)[0]["payload"] == {"mdm": "TWO"}
    assert apns.take(TOKEN) == []
    assert apns.stats(TOKEN) == {"accepted": 2, "coalesced": 1, "rejected": 0, "delivered": 1, "expired": 0}


def test_apples_reason_strings(gateway: Any, apns: APNsService) -> None:
    cases = [
        (push(gateway, token="xyz"), 400, "BadDeviceToken"),
        (push(gateway, token="a1" * 31), 400, "BadDeviceToken"),
        (push(gateway, headers={"apns-push-type": "mdm"}), 400, "MissingTopic"),
        (push(gateway, body=b""), 400, "PayloadEmpty"),
        (push(gateway, body=b"{not json"), 400, "BadPayload"),
        (push(gateway, body={"mdm": "M", "aps": {}}), 400, "BadPayload"),
        (push(gateway, body={"mdm": ""}), 400, "BadPayload"),
        (push(gateway, headers={**HEADERS, "apns-topic": "com.example.app"}), 400, "BadTopic"),
        (push(gateway, headers={**HEADERS, "apns-priority": "7"}), 400, "BadPriority"),
        (push(gateway, headers={**HEADERS, "apns-push-type": "fax"}), 400, "InvalidPushType"),
        (push(gateway, body=b'{"mdm":"' + b"x" * 5000 + b'"}'), 413, "PayloadTooLarge"),
        (gateway.get(f"/3/device/{TOKEN}"), 405, "MethodNotAllowed"),
    ]
    for response, status, reason in cases:
        assert (response.status_code, response.get_json()) == (status, {"reason": reason})
    assert apns.pending(TOKEN) == []


def test_unregistered_token_gets_410_with_timestamp(gateway: Any, apns: APNsService) -> None:
    push(gateway)
    assert gateway.post(f"/devices/{TOKEN}/unregister").get_json() == {"token": TOKEN, "unregistered": True}
    assert apns.pending(TOKEN) == []
    response = push(gateway)
    assert response.status_code == 410
    body = response.get_json()
    assert body["reason"] == "Unregistered" and isinstance(body["timestamp"], int)
    gateway.post(f"/devices/{TOKEN}/register")
    assert push(gateway).status_code == 200


def test_events_long_poll_and_sse(gateway: Any, apns: APNsService) -> None:
    assert gateway.get(f"/events?token={TOKEN}&wait=0").get_json() == {"notifications": []}
    assert gateway.get("/events?token=nope").status_code == 400
    assert gateway.get(f"/events?token={TOKEN}&wait=-1").status_code == 400
    push(gateway, body={"mdm": "SSE"})
    response = gateway.get(f"/events?token={TOKEN}&wait=0", headers={"Accept": "text/event-stream"})
    assert response.mimetype == "text/event-stream"
    lines = [line for line in response.get_data(as_text=True).splitlines() if line.startswith("data: ")]
    assert [json.loads(line[6:])["payload"] for line in lines] == [{"mdm": "SSE"}]
    assert apns.pending(TOKEN) == []


def test_concurrent_takers_never_both_get_a_notification(gateway: Any, apns: APNsService) -> None:
    for round_ in range(20):
        push(gateway, body={"mdm": f"R{round_}"})
        got: list[Any] = []

        def taker(sink: list[Any] = got) -> None:
            sink.extend(apns.take(TOKEN))

        threads = [threading.Thread(target=taker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [n["payload"]["mdm"] for n in got] == [f"R{round_}"]
