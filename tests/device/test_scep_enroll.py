"""A device's SCEP client against our MDM server's SCEP service and against micromdm's scepserver."""

from __future__ import annotations

import datetime as dt
import hashlib
import urllib.parse

import pytest
from cryptography.hazmat.primitives import serialization

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol import x509 as X
from mdm.protocol.mobileconfig import SCEPPayload
from mdm.protocol.randomness import Randomness
from mdm.server.scep import PKI_CONTENT_TYPE, RA_CONTENT_TYPE, SCEPService
from mdm.server.scep_store import SCEP_MIGRATION
from simulator.device.machine import Request, Response
from simulator.device.scep_enroll import SCEPResult, obtain_identity

START = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
UDID = "00008130-0016253A0E81801C"


def _keys(bits: int):
    return Randomness(5).rsa_key(f"test-device:{bits}", bits)


def run(flow, send) -> SCEPResult:
    """Drive a sans-I/O flow: each Request through ``send``, until it returns."""
    try:
        request = next(flow)
        while True:
            request = flow.send(send(request))
    except StopIteration as done:
        return done.value


@pytest.fixture
def ours():
    store = Store(None, [SCEP_MIGRATION])
    clock = Clock(store, start=START, frozen=True)
    ca = X.CertificateAuthority.create("mdmsim MDM CA", START - dt.timedelta(days=1))
    ra_key = X.new_private_key("rsa")
    ra = ca.issue(ra_key.public_key(), subject="mdmsim SCEP RA", now=START - dt.timedelta(days=1), client_auth=False)
    service = SCEPService(store, clock, ca=lambda: ca, ra=lambda: (ra, ra_key))

    def send(request: Request) -> Response:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query)
        operation = query["operation"][0]
        if operation == "GetCACaps":
            return Response(200, {"content-type": "text/plain"}, service.caps().encode())
        if operation == "GetCACert":
            return Response(200, {"content-type": RA_CONTENT_TYPE}, service.ca_certs())
        assert request.method == "POST" and operation == "PKIOperation"
        return Response(200, {"content-type": PKI_CONTENT_TYPE}, service.pki_operation(request.body).der)

    service.send, service.ca = send, ca  # type: ignore[attr-defined]
    return service


def _payload(challenge: str, **extra) -> SCEPPayload:
    return SCEPPayload(
        payload_identifier="com.example.scep", url="https://mdm.example.org/mdm/scep", challenge=challenge,
        subject=[[["CN", UDID]], [["O", "Example Org"]]], keysize=2048, key_type="RSA", key_usage=5, **extra,
    )


def _obtain(payload, progress, clock_now=lambda: START):
    return obtain_identity(payload, now=clock_now, progress=progress, make_key=_keys, default_cn=UDID)


def test_device_gets_its_identity_from_our_scep_service(ours) -> None:
    result = run(_obtain(_payload(ours.new_challenge(UDID)), {}), ours.send)
    assert result.status == "issued", result.reason
    assert result.certificate.subject.rfc4514_string() == f"O=Example Org,CN={UDID}"
    assert X.verify_issued_by(result.certificate, ours.ca.certificate)
    assert result.certificate.public_key() == result.key.public_key() and result.key.key_size == 2048


def test_pending_polls_on_the_world_clock(ours) -> None:
    progress: dict = {}
    payload = _payload(ours.new_challenge(UDID, pending_seconds=120), retries=3, retry_delay=60)
    first = run(_obtain(payload, progress, ours.clock.now), ours.send)
    assert first.status == "pending" and first.retry_at == START  # iOS polls once at once
    second = run(_obtain(payload, progress, ours.clock.now), ours.send)
    assert second.status == "pending" and second.retry_at == START + dt.timedelta(seconds=60)
    waiting = run(_obtain(payload, progress, ours.clock.now), ours.send)  # too early: no request at all
    assert waiting.status == "pending"
    ours.clock.advance(seconds=121)
    done = run(_obtain(payload, progress, ours.clock.now), ours.send)
    assert done.status == "issued" and progress == {}


def test_failures_end_with_the_fail_info_and_leave_nothing_half_done(ours) -> None:
    progress: dict = {}
    refused = run(_obtain(_payload("wrong"), progress), ours.send)
    assert (refused.status, refused.reason) == ("failed", "the SCEP server refused the request: badRequest")
    assert progress == {}
    other_ca = X.CertificateAuthority.create("Someone else", START)
    pinned = _payload(ours.new_challenge(UDID), ca_fingerprint=hashlib.sha256(
        other_ca.certificate.public_bytes(serialization.Encoding.DER)).digest())
    mismatch = run(_obtain(pinned, {}), ours.send)
    assert mismatch.status == "failed" and "CAFingerprint" in mismatch.reason
    right = _payload(ours.new_challenge(UDID), ca_fingerprint=hashlib.sha256(
        ours.ca.certificate.public_bytes(serialization.Encoding.DER)).digest())
    assert run(_obtain(right, {}), ours.send).status == "issued"


def test_renewal_is_signed_with_the_current_identity(ours) -> None:
    first = run(_obtain(_payload(ours.new_challenge(UDID)), {}), ours.send)
    renewed = run(obtain_identity(_payload(""), now=lambda: START, progress={}, make_key=lambda bits: X.new_private_key("rsa"),
                                  default_cn=UDID, renew_with=(first.certificate, first.key)), ours.send)
    assert renewed.status == "issued" and renewed.certificate.subject == first.certificate.subject
    assert renewed.certificate.public_key() != first.certificate.public_key()
