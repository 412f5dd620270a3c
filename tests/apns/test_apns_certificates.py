"""APNs with a provider-certificate check: Apple's reasons for each refusal, and tokens bound to topics."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import Response
from werkzeug.test import Client

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.x509 import CertificateAuthority, new_private_key
from simulator.apple.apns import http as apns_http
from simulator.apple.apns.service import APNsService, open_apns_store

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
TOPIC = "com.apple.mgmt.External.11111111-2222-3333-4444-555555555555"
TOKEN = "b2" * 32


def _gateway(verdict: dict[str, tuple[bool, str]]) -> tuple[Client, APNsService]:
    """A gateway whose certificate check answers from ``verdict`` (keyed by CN), recording each call."""

    def check(cert: x509.Certificate) -> tuple[bool, str]:
        cn = str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)
        return verdict[cn]

    clock = Clock(Store(None, []), start=NOW, frozen=True)
    apns = APNsService(open_apns_store(None), clock, certificate_check=check)
    return Client(apns_http.create_app(apns), Response), apns


def _header(cn: str, topic: str = TOPIC) -> str:
    ca = CertificateAuthority.create("Some CA", NOW)
    cert = ca.issue(new_private_key().public_key(), subject=cn, uid=topic, now=NOW)
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def _push(gateway: Client, cert: str | None, topic: str = TOPIC, token: str = TOKEN) -> Any:
    headers = {"apns-topic": topic, "apns-push-type": "mdm"}
    if cert is not None:
        headers["X-Mdmsim-Client-Cert"] = cert
    return gateway.post(f"/3/device/{token}", data=json.dumps({"mdm": "M"}), headers=headers)


def test_each_refusal_has_apples_reason() -> None:
    gateway, apns = _gateway(
        {
            "good": (True, "current: ok"),
            "old": (False, "expired: expired at 2026-01-01T00:00:00Z"),
            "gone": (False, "revoked: revoked"),
            "stranger": (False, "untrusted: not issued by Apple's push certification authority"),
        }
    )
    cases = [
        (_push(gateway, None), 403, "MissingProviderToken"),
        (_push(gateway, "%%%"), 403, "BadCertificate"),
        (_push(gateway, _header("old")), 403, "Forbidden"),
        (_push(gateway, _header("gone")), 403, "Forbidden"),
        (_push(gateway, _header("stranger")), 403, "BadCertificate"),
        (_push(gateway, _header("good"), topic=TOPIC.replace("1111", "9999")), 400, "TopicDisallowed"),
    ]
    for response, status, reason in cases:
        assert (response.status_code, response.get_json()) == (status, {"reason": reason})
    assert apns.pending(TOKEN) == []
    assert _push(gateway, _header("good")).status_code == 200


def test_a_token_belongs_to_one_topic() -> None:
    other = TOPIC.replace("5555", "6666")
    gateway, apns = _gateway({"a": (True, "current"), "b": (True, "current")})
    assert _push(gateway, _header("a")).status_code == 200  # learnt on first push
    assert apns.token_topic(TOKEN) == TOPIC
    refused = _push(gateway, _header("b", other), topic=other)
    assert (refused.status_code, refused.get_json()) == (400, {"reason": "DeviceTokenNotForTopic"})
    # The device registers the token for the other topic (it enrolled again): now that topic may push.
    reply = gateway.post(f"/devices/{TOKEN}/register", json={"topic": other})
    assert reply.get_json()["topic"] == other
    assert _push(gateway, _header("b", other), topic=other).status_code == 200


def test_without_a_check_every_provider_is_accepted(apns: APNsService, gateway: Client) -> None:
    assert apns.certificate_check is None
    assert _push(gateway, None).status_code == 200
