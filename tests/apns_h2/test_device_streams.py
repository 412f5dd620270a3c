"""The device listener: what a device holding ``GET /events?token=…`` is told, and what it is refused.

Refusals are APNs' ``{"reason": …}`` JSON, then the connection closes; a 200 is an event stream that
stays open. Read over a raw socket, as a device's own HTTP code would.
"""

from __future__ import annotations

import json
import socket

import pytest
from apns_h2_clients import PushWorld, mdm_body


def _ask(apns: PushWorld, head: str) -> tuple[int, dict[str, str], bytes]:
    """Send one request head; the status, headers and body the gateway answered before closing."""
    host, port = apns.served.apns_stream_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head.encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head_bytes, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head_bytes.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    ("head", "status", "reason"),
    [
        ("GET /events?token=zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "BadDeviceToken"),
        ("GET /events HTTP/1.1\r\nHost: x\r\n\r\n", 400, "BadDeviceToken"),
        ("POST /events?token={token} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, "MethodNotAllowed"),
        ("GET /3/device/{token} HTTP/1.1\r\nHost: x\r\n\r\n", 404, "BadPath"),
        ("GET /events?token={token} HTTP/1.1\r\n\r\n", 400, "BadRequest"),  # HTTP/1.1 without Host
        ("GET /events?token={token} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "BadRequest"),
        ("NOT HTTP AT ALL\r\n\r\n", 400, "BadRequest"),
    ],
)
def test_a_request_the_device_listener_refuses(apns: PushWorld, head: str, status: int, reason: str) -> None:
    answered = _ask(apns, head.format(token=apns.token()))
    assert answered[:1] == (status,) and answered[1]["content-type"] == "application/json", answered
    assert json.loads(answered[2]) == {"reason": reason}


def test_a_stream_opens_under_either_path_and_the_token_in_any_case(apns: PushWorld) -> None:
    """``/events`` at the listener's root, or ``/apple/apns/events`` as under the all-in-one server; a
    token written in capitals is the same device."""
    token = apns.token()
    with apns.h2() as client:
        for path, written, magic in [("/events", token, "root"), ("/apple/apns/events", token.upper(), "prefixed")]:
            assert client.push(token, mdm_body(magic)).status == 200
            with apns.stream(written, path) as device:
                assert (device.status, device.headers["content-type"]) == (200, "text/event-stream")
                assert device.next_push()["payload"] == {"mdm": magic}
