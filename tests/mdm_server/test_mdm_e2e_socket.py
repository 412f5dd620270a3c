"""One end-to-end run over real sockets: the push arrives as a server-sent event, as on a real network."""

from __future__ import annotations

import json
import plistlib
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import pkcs12
from flask import Flask
from mdm_world import START, issue, make_ca, mdm_signature, pkcs7_sign
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol import cms
from mdm.server import http as mdm_http
from mdm.server.service import MDMService
from mdm.server.store import open_mdm_store
from simulator.apple.apns import http as apns_http
from simulator.apple.apns.service import APNsService, open_apns_store


@pytest.fixture
def served() -> Iterator[dict[str, Any]]:
    clock = Clock(Store(None, []), start=START)
    apple_ca = make_ca("Apple Device CA (test)")
    address: dict[str, str] = {}
    outbound = httpx.Client()
    mdm = MDMService(
        open_mdm_store(None),
        clock,
        trust_roots=[apple_ca[0]],
        http=outbound,
        base_url=lambda: address["base"] + "/mdm",
        apns_url=lambda: address["base"] + "/apple/apns",
    )
    apns = APNsService(open_apns_store(None), clock)
    app = DispatcherMiddleware(
        Flask("root"), {"/mdm": mdm_http.create_app(mdm), "/apple/apns": apns_http.create_app(apns)}
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    address["base"] = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"base": address["base"], "mdm": mdm, "apple_ca": apple_ca}
    finally:
        server.shutdown()
        mdm.close()
        outbound.close()


def test_enroll_push_over_sse_and_answer_over_real_http(served: dict[str, Any]) -> None:
    base, mdm = served["base"], served["mdm"]
    udid = "00008120-0011223344556677"
    http = httpx.Client(base_url=base, timeout=10)
    device_cert, device_key = issue(served["apple_ca"], "Apple iPhone Device")
    machine_info = plistlib.dumps(
        {"UDID": udid, "SERIAL": "DMQXK1ABCD", "PRODUCT": "iPad13,1", "VERSION": "21E"}
    )
    response = http.post(
        "/mdm/enroll",
        content=pkcs7_sign(machine_info, device_cert, device_key, detached=False),
        headers={"Content-Type": "application/pkcs7-signature"},
    )
    assert response.status_code == 200
    profile = plistlib.loads(cms.verify(response.content, trust_roots=[mdm.ca_certificate()]).content)
    payloads = {p["PayloadType"]: p for p in profile["PayloadContent"]}
    p12 = payloads["com.apple.security.pkcs12"]
    key, cert, _ = pkcs12.load_key_and_certificates(p12["PayloadContent"], p12["Password"].encode())
    server_url = payloads["com.apple.mdm"]["ServerURL"]
    checkin_url = payloads["com.apple.mdm"]["CheckInURL"]
    topic = payloads["com.apple.mdm"]["Topic"]
    token = bytes(range(32))

    def send(url: str, message: dict[str, Any]) -> httpx.Response:
        body = plistlib.dumps({"UDID": udid, **message})
        return http.put(url, content=body, headers={"Mdm-Signature": mdm_signature(body, cert, key)})

    assert send(checkin_url, {"MessageType": "Authenticate", "Topic": topic}).status_code == 200
    assert (
        send(
            checkin_url, {"MessageType": "TokenUpdate", "Topic": topic, "Token": token, "PushMagic": "MAGIC"}
        ).status_code
        == 200
    )

    events: list[dict[str, Any]] = []
    connected = threading.Event()
    received = threading.Event()

    def listen() -> None:
        with httpx.stream(
            "GET",
            f"{base}/apple/apns/events?token={token.hex()}&wait=20",
            headers={"Accept": "text/event-stream"},
            timeout=30,
        ) as stream:
            for line in stream.iter_lines():
                if line.startswith(":"):
                    connected.set()
                elif line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    received.set()
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert connected.wait(10)
    created = http.post(
        "/mdm/api/v1/commands", json={"udids": [udid], "command": {"RequestType": "SecurityInfo"}}
    )
    command_uuid = created.json()["command_uuid"]
    assert received.wait(10), "no push arrived over SSE"
    assert events[0]["payload"] == {"mdm": "MAGIC"}

    command = plistlib.loads(send(server_url, {"Status": "Idle"}).content)
    assert command["CommandUUID"] == command_uuid
    done = send(server_url, {"Status": "Acknowledged", "CommandUUID": command_uuid, "SecurityInfo": {}})
    assert done.status_code == 200 and done.content == b""
    status = http.get(f"/mdm/api/v1/commands/{command_uuid}").json()
    assert status["devices"][0]["status"] == "Acknowledged"
