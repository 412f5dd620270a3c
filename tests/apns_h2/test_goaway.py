"""How the gateway hangs up on a provider: GOAWAY frames whose debug data is ``{"reason": …}``, as Apple's.

NanoMDM and Fleet decode that debug data as they decode a refusal's body, so it has to be the JSON
Apple sends. Read with ``h2`` directly: the frame itself is what is tested.
"""

from __future__ import annotations

import json
import socket

import pytest
from apns_h2_clients import PushWorld, push_world

from simulator.apple.apns import gateway as gateway_module
from simulator.apple.apns.provider import MAX_REFUSALS


def test_stopping_the_server_sends_goaway_shutdown_and_ends_device_streams() -> None:
    with push_world() as apns:
        token = apns.token()
        client = apns.h2()
        assert client.push(token).status == 200
        device = apns.stream(token)
        assert device.next_push()["topic"] == apns.a.topic
    # the world stopped serving: what it said on the way out is in the sockets
    with client:
        goaway = client.until_terminated()
    assert json.loads(goaway.additional_data) == {"reason": "Shutdown"}
    assert (goaway.error_code, goaway.last_stream_id) == (0, 1)
    with device:
        device.read_rest()
        assert device.ended  # the stream's last chunk, then the connection closed


def test_refusals_in_a_row_end_with_goaway_naming_the_last_reason(apns: PushWorld) -> None:
    token = apns.token()
    with apns.h2() as client:
        # MAX_REFUSALS - 1 refusals, then an accepted push: the count starts again
        for stream_id in [client.start(f"/3/device/{token}", method="GET") for _ in range(MAX_REFUSALS - 1)]:
            assert client.response(stream_id).status == 405
        assert client.push(token).status == 200
        assert client.terminated is None
        # then MAX_REFUSALS in a row: each is answered, and the last is followed by GOAWAY
        answers = [client.start(f"/3/device/{token}", method="GET") for _ in range(MAX_REFUSALS - 1)]
        answers.append(client.start("/3/device/", b"{}"))
        statuses = [client.response(stream_id).status for stream_id in answers]
        goaway = client.until_terminated()
    assert statuses == [405] * (MAX_REFUSALS - 1) + [400]
    assert json.loads(goaway.additional_data) == {"reason": "MissingDeviceToken"}
    with apns.h2() as again:  # a new connection is served as before
        assert again.push(token).status == 200


def test_an_idle_provider_gets_goaway_idle_timeout_and_idle_devices_keepalives(monkeypatch: pytest.MonkeyPatch) -> None:
    """Apple's hour without a request (and the streams' 15 s keep-alive), shortened to a fraction of a
    second: the gateway's one timer sends both."""
    monkeypatch.setattr(gateway_module, "IDLE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(gateway_module, "KEEPALIVE_S", 0.05)
    with push_world() as apns, apns.h2() as client, apns.stream(apns.token()) as device:
        assert client.push(apns.token()).status == 200
        goaway = client.until_terminated()  # read with a deadline: 5 s, well beyond 0.2 s
        device.until_comment(": keepalive")
    assert json.loads(goaway.additional_data) == {"reason": "IdleTimeout"}


def test_a_device_connection_that_never_sends_its_request_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection to the device listener that says nothing holds one of the process's open files:
    the gateway's timer closes it once HEAD_TIMEOUT_S passed (shortened here), and an open stream stays."""
    monkeypatch.setattr(gateway_module, "HEAD_TIMEOUT_S", 0.1)
    monkeypatch.setattr(gateway_module, "KEEPALIVE_S", 0.05)
    with push_world() as apns, apns.stream(apns.token()) as device:
        host, port = apns.served.apns_stream_url.rsplit("/", 1)[-1].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as silent:
            assert silent.recv(1) == b""  # closed by the server, well within the 5 s timeout
        assert device.status == 200 and not device.ended  # the open stream is left alone
