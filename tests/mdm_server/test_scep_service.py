"""The MDM server's SCEP rules, message by message: challenges, keys, subjects, pending, renewal."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import AttributeOID, NameOID

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol import scep
from mdm.protocol import x509 as X
from mdm.server.scep import SCEPService
from mdm.server.scep_store import SCEP_MIGRATION

START = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
UDID = "00008130-0016253A0E81801C"


class Requester:
    """A SCEP client reduced to what the tests need: a key, a self-signed certificate, requests."""

    def __init__(self, cn: str = UDID, key=None) -> None:
        self.key = key or X.new_private_key("rsa")
        self.subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        self.cert = (
            x509.CertificateBuilder().subject_name(self.subject).issuer_name(self.subject)
            .public_key(self.key.public_key()).serial_number(1)
            .not_valid_before(START - dt.timedelta(days=1)).not_valid_after(START + dt.timedelta(days=30))
            .sign(self.key, hashes.SHA256())
        )
        self.transaction = scep.transaction_id(self.key.public_key())

    def csr(self, challenge: str | None, *, key=None, subject=None) -> bytes:
        builder = x509.CertificateSigningRequestBuilder().subject_name(subject or self.subject)
        if challenge is not None:
            builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
        return builder.sign(key or self.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def request(self, ra: x509.Certificate, payload: bytes, kind=scep.MessageType.PKCS_REQ, *, signer=None) -> bytes:
        cert, key = signer or (self.cert, self.key)
        return scep.sign_pki_message(
            message_type=kind, transaction_id=self.transaction, signer_cert=cert, signer_key=key,
            content=scep.envelope(payload, [ra], "des3"), sender_nonce=b"n" * 16, digest="sha1",
        )

    def certificate(self, reply: bytes, *, key=None, cert=None) -> x509.Certificate:
        message = scep.parse_pki_message(reply)
        assert message.pki_status is scep.PKIStatus.SUCCESS, (message.pki_status, message.fail_info)
        inner = scep.open_envelope(message.content, cert or self.cert, key or self.key)
        return scep.parse_certs_only(inner)[0]


@pytest.fixture
def service():
    store = Store(None, [SCEP_MIGRATION])
    clock = Clock(store, start=START, frozen=True)
    ca = X.CertificateAuthority.create("MDM CA", START - dt.timedelta(days=1))
    ra_key = X.new_private_key("rsa")
    ra_cert = ca.issue(ra_key.public_key(), subject="MDM SCEP RA", now=START - dt.timedelta(days=1), client_auth=False)
    issued: list[tuple[str | None, x509.Certificate]] = []
    svc = SCEPService(
        store, clock, ca=lambda: ca, ra=lambda: (ra_cert, ra_key),
        on_issued=lambda db, cert, cn, now, renews=None: issued.append((cn, cert)),
    )
    svc.test_ca, svc.test_ra, svc.issued = ca, ra_cert, issued  # type: ignore[attr-defined]
    return svc


def _failure(reply) -> scep.FailInfo:
    message = scep.parse_pki_message(reply.der)
    assert message.pki_status is scep.PKIStatus.FAILURE and message.content == b""
    return message.fail_info


def test_ca_certs_are_the_ra_and_the_ca(service) -> None:
    certs = scep.parse_certs_only(service.ca_certs())
    assert set(certs) == {service.test_ra, service.test_ca.certificate}
    assert {"POSTPKIOperation", "AES", "DES3", "SHA-256", "Renewal"} <= scep.parse_caps(service.caps())


def test_a_challenge_buys_one_certificate_for_its_subject(service) -> None:
    device = Requester()
    challenge = service.new_challenge(UDID)
    reply = service.pki_operation(device.request(service.test_ra, device.csr(challenge)))
    cert = device.certificate(reply.der)
    assert cert.subject == device.subject and cert.public_key() == device.key.public_key()
    assert X.verify_issued_by(cert, service.test_ca.certificate)
    assert service.issued == [(UDID, cert)]
    message = scep.parse_pki_message(reply.der)
    assert message.recipient_nonce == b"n" * 16 and message.signer == service.test_ra
    again = Requester()
    assert _failure(service.pki_operation(again.request(service.test_ra, again.csr(challenge)))) is scep.FailInfo.BAD_REQUEST
    # the same transaction sent again (a retry after a lost answer) gets the same certificate
    retry = service.pki_operation(device.request(service.test_ra, device.csr(challenge)))
    assert device.certificate(retry.der) == cert and len(service.issued) == 1


def test_wrong_expired_and_missing_challenges_fail_with_bad_request(service) -> None:
    device = Requester()
    for csr in (device.csr("not-a-challenge"), device.csr(None)):
        reply = service.pki_operation(device.request(service.test_ra, csr))
        assert _failure(reply) is scep.FailInfo.BAD_REQUEST
    challenge = service.new_challenge(UDID)
    service.clock.advance(seconds=3601)
    reply = service.pki_operation(device.request(service.test_ra, device.csr(challenge)))
    assert _failure(reply) is scep.FailInfo.BAD_REQUEST and "expired" in reply.reason
    assert service.issued == []


def test_a_csr_for_another_subject_or_key_fails_and_does_not_spend_the_challenge(service) -> None:
    device = Requester()
    challenge = service.new_challenge(UDID)
    other = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone else")])
    reply = service.pki_operation(device.request(service.test_ra, device.csr(challenge, subject=other)))
    assert _failure(reply) is scep.FailInfo.BAD_REQUEST and "subject" in reply.reason
    stranger = X.new_private_key("rsa")
    reply = service.pki_operation(device.request(service.test_ra, device.csr(challenge, key=stranger)))
    assert _failure(reply) is scep.FailInfo.BAD_REQUEST and "key" in reply.reason
    device.certificate(service.pki_operation(device.request(service.test_ra, device.csr(challenge))).der)


def test_tampered_and_misaddressed_requests(service) -> None:
    device = Requester()
    challenge = service.new_challenge(UDID)
    body = bytearray(device.request(service.test_ra, device.csr(challenge)))
    body[len(body) // 2] ^= 0x01
    with pytest.raises(scep.SCEPError):  # nothing signed to answer to: the HTTP layer says 400
        service.pki_operation(bytes(body))
    elsewhere = X.CertificateAuthority.create("Not our RA", START, key=X.new_private_key("rsa")).certificate
    reply = service.pki_operation(device.request(elsewhere, device.csr(challenge)))
    assert _failure(reply) is scep.FailInfo.BAD_MESSAGE_CHECK
    reply = service.pki_operation(device.request(service.test_ra, b"not a CSR"))
    assert _failure(reply) is scep.FailInfo.BAD_REQUEST
    assert service.issued == []


def test_pending_then_success_on_the_world_clock(service) -> None:
    device = Requester()
    challenge = service.new_challenge(UDID, pending_seconds=300)
    first = scep.parse_pki_message(service.pki_operation(device.request(service.test_ra, device.csr(challenge))).der)
    assert first.pki_status is scep.PKIStatus.PENDING
    poll = scep.issuer_and_subject(service.test_ca.certificate.subject, device.subject)
    early = service.pki_operation(device.request(service.test_ra, poll, scep.MessageType.CERT_POLL))
    assert early.status is scep.PKIStatus.PENDING
    service.clock.advance(seconds=301)
    late = service.pki_operation(device.request(service.test_ra, poll, scep.MessageType.CERT_POLL))
    assert device.certificate(late.der).subject == device.subject and len(service.issued) == 1
    stranger = Requester("x")
    unknown = service.pki_operation(stranger.request(service.test_ra, poll, scep.MessageType.CERT_POLL))
    assert _failure(unknown) is scep.FailInfo.BAD_CERT_ID


def test_renewal_is_signed_by_the_current_identity_and_keeps_the_subject(service) -> None:
    device = Requester()
    current = device.certificate(service.pki_operation(
        device.request(service.test_ra, device.csr(service.new_challenge(UDID)))).der)
    new_key = X.new_private_key("rsa")
    renewing = Requester(key=new_key)
    renewal = renewing.request(service.test_ra, renewing.csr(None), scep.MessageType.RENEWAL_REQ,
                               signer=(current, device.key))
    renewed = device.certificate(service.pki_operation(renewal).der, key=device.key, cert=current)
    assert renewed.public_key() == new_key.public_key() and renewed.subject == current.subject
    # a self-signed certificate cannot renew
    forged = renewing.request(service.test_ra, renewing.csr(None), scep.MessageType.RENEWAL_REQ)
    assert _failure(service.pki_operation(forged)) is scep.FailInfo.BAD_REQUEST


def test_two_workers_of_a_seeded_world_never_hand_out_one_challenge_twice(tmp_path) -> None:
    """Each gunicorn worker has its own SCEPService over one file: the seeded series continues from what
    the store holds, so a second worker neither repeats a challenge nor fails on its digest."""
    ca = X.CertificateAuthority.create("MDM CA", START)
    ra_key = X.new_private_key("rsa")
    ra = ca.issue(ra_key.public_key(), subject="RA", now=START, client_auth=False)

    def worker() -> SCEPService:
        store = Store(tmp_path / "mdm.db", [SCEP_MIGRATION])
        return SCEPService(store, Clock(store, start=START, frozen=True), ca=lambda: ca, ra=lambda: (ra, ra_key), seed=9)

    first, second = worker(), worker()
    made = [first.new_challenge(UDID), second.new_challenge(UDID), second.new_challenge(), first.new_challenge()]
    assert len(set(made)) == 4
    with pytest.raises(scep.SCEPError, match="pending_seconds"):
        first.challenge_request({"pending_seconds": -1})
    assert first.challenge_request(None)["expires_in"] == 3600
