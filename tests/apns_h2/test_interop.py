"""Unmodified push clients push to a registered device token; the device's stream receives the push magic.

The judges are software we did not write: ``curl --http2`` (nghttp2) and aioapns from PyPI, each given
only what a user gives it for Apple (the push certificate and its key), plus where to connect and which
CA to trust. And httpx's HTTP/2 client, the one the project's own MDM server could use.
"""

from __future__ import annotations

import asyncio
import re
import ssl

import httpx
import pytest
from aioapns import APNs, NotificationRequest
from aioapns.common import NotificationResult
from aioapns.connection import APNsProductionClientProtocol
from apns_h2_clients import PushWorld, mdm_body, push_magic

from simulator.load.drivers import run_coroutine

UUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")


def test_curl_pushes_to_a_registered_token_and_the_device_stream_receives_it(apns: PushWorld) -> None:
    """``curl --http2 --cert … --key …`` exactly as against Apple, but for ``--resolve`` and ``--cacert``;
    no ``apns-topic`` (NanoMDM sends none: a push certificate has one topic)."""
    token = apns.token()
    with apns.stream(token) as device:
        sent = apns.curl(token, "-H", "apns-push-type: mdm")
        assert (sent.returncode, sent.status, sent.body) == (0, 200, b""), sent
        assert UUID.match(sent.headers["apns-id"])
        notification = device.next_push()
    assert notification["payload"] == {"mdm": push_magic("curl")}
    assert (notification["apns_id"], notification["topic"]) == (sent.headers["apns-id"], apns.a.topic)


def test_aioapns_pushes_with_only_host_port_and_trust_store_changed(
    apns: PushWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aioapns 4 (PyPI), unmodified but for three things a user changes to point any client at a
    stand-in for Apple: the host (``APNsProductionClientProtocol.APNS_SERVER``: ``localhost``, which the
    gateway's certificate names beside Apple's hosts), the port (``APNS_PORT``) and the trust store
    (``ssl_context`` trusting the world's TLS CA). The certificate and key are one PEM, as for Apple;
    aioapns reads the topic from the certificate's UID and sends its own ``apns-id`` (lower case), which
    it matches the response by, so the echo must be exact."""
    monkeypatch.setattr(APNsProductionClientProtocol, "APNS_SERVER", "localhost")
    monkeypatch.setattr(APNsProductionClientProtocol, "APNS_PORT", apns.port)
    token, unknown = apns.token(), apns.token(apns.b)
    magic = push_magic("aioapns")

    async def send() -> tuple[NotificationResult, NotificationResult]:
        client = APNs(client_cert=str(apns.a.combined), use_sandbox=False, topic=None,
                      ssl_context=ssl.create_default_context(cafile=str(apns.ca)))  # fmt: skip
        try:
            ok = await asyncio.wait_for(client.send_notification(NotificationRequest(token, {"mdm": magic})), 5)
            # A refusal reaches aioapns too: matched to its request by the echoed apns-id.
            refused = await asyncio.wait_for(client.send_notification(NotificationRequest(unknown, {"mdm": magic})), 5)
        finally:
            client.pool.close()
        return ok, refused

    with apns.stream(token) as device:
        ok, refused = run_coroutine(send())  # not asyncio.run: a browser test's Playwright session may hold this loop
        notification = device.next_push()
    assert (ok.status, ok.is_successful) == ("200", True)
    assert (refused.status, refused.description) == ("400", "DeviceTokenNotForTopic")
    assert notification["payload"] == {"mdm": magic}
    assert notification["apns_id"] == ok.notification_id


def test_httpx_http2_client_pushes_with_the_certificate(apns: PushWorld) -> None:
    """httpx (``http2=True``) with the certificate as client certificate: it negotiates h2 by ALPN."""
    token = apns.token()
    magic = push_magic("httpx")
    context = ssl.create_default_context(cafile=str(apns.ca))
    context.load_cert_chain(str(apns.a.cert), str(apns.a.key))
    with apns.stream(token) as device, httpx.Client(http2=True, verify=context) as client:
        response = client.post(f"https://localhost:{apns.port}/3/device/{token}", content=mdm_body(magic),
                               headers={"apns-topic": apns.a.topic, "apns-push-type": "mdm"})  # fmt: skip
        assert (response.http_version, response.status_code) == ("HTTP/2", 200)
        assert device.next_push()["payload"] == {"mdm": magic}
