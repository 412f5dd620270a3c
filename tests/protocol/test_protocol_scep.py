"""SCEP pkiMessages: round trips, what OpenSSL makes of ours and we of OpenSSL's, and tampering refused."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import AttributeOID, NameOID

from mdm.protocol import scep
from mdm.protocol import x509 as X

NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
OPENSSL = "/usr/bin/openssl"


@pytest.fixture(scope="module")
def ca() -> X.CertificateAuthority:
    return X.CertificateAuthority.create("Test SCEP CA", NOW, key=X.new_private_key("rsa"))


@pytest.fixture(scope="module")
def requester():
    key = X.new_private_key("rsa")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device 1")])
    csr = (
        x509.CertificateSigningRequestBuilder().subject_name(subject)
        .add_attribute(AttributeOID.CHALLENGE_PASSWORD, b"one-time-secret")
        .sign(key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(7).not_valid_before(NOW - dt.timedelta(hours=1)).not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert, csr


def _request(ca, requester, *, cipher="aes128", digest="sha256") -> bytes:
    key, cert, csr = requester
    return scep.sign_pki_message(
        message_type=scep.MessageType.PKCS_REQ,
        transaction_id=scep.transaction_id(key.public_key()),
        signer_cert=cert, signer_key=key,
        content=scep.envelope(csr.public_bytes(serialization.Encoding.DER), [ca.certificate], cipher),
        sender_nonce=b"\x01" * 16, digest=digest,
    )


@pytest.mark.parametrize("cipher", ["aes128", "aes256", "des3"])
@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha512"])
def test_request_round_trip(ca, requester, cipher: str, digest: str) -> None:
    key, cert, csr = requester
    message = scep.parse_pki_message(_request(ca, requester, cipher=cipher, digest=digest))
    assert message.message_type is scep.MessageType.PKCS_REQ and message.digest_algorithm == digest
    assert message.signer == cert and message.sender_nonce == b"\x01" * 16
    assert message.transaction_id == scep.transaction_id(key.public_key())
    inner = x509.load_der_x509_csr(scep.open_envelope(message.content, ca.certificate, ca.key))
    assert inner == csr and scep.challenge_password(inner) == "one-time-secret"


@pytest.mark.parametrize("cipher", ["aes128", "aes256", "des3"])
def test_openssl_verifies_our_signature_and_opens_our_envelope(ca, requester, tmp_path: Path, cipher: str) -> None:
    der = _request(ca, requester, cipher=cipher)
    (tmp_path / "m.der").write_bytes(der)
    verified = subprocess.run(
        [OPENSSL, "cms", "-verify", "-noverify", "-inform", "DER", "-in", str(tmp_path / "m.der"), "-binary"],
        capture_output=True, check=True,
    )
    envelope = verified.stdout
    (tmp_path / "e.der").write_bytes(envelope)
    (tmp_path / "ca.pem").write_bytes(X.cert_to_pem(ca.certificate))
    (tmp_path / "ca.key").write_bytes(X.key_to_pem(ca.key))
    opened = subprocess.run(
        [OPENSSL, "cms", "-decrypt", "-inform", "DER", "-in", str(tmp_path / "e.der"), "-recip",
         str(tmp_path / "ca.pem"), "-inkey", str(tmp_path / "ca.key"), "-binary"],
        capture_output=True, check=True,
    )
    assert x509.load_der_x509_csr(opened.stdout) == requester[2]


@pytest.mark.parametrize("cipher", ["-des", "-des3", "-aes128", "-aes256"])
def test_we_open_what_openssl_envelopes_including_single_des(ca, tmp_path: Path, cipher: str) -> None:
    """micromdm's scepclient and scepserver envelope with single DES unless told otherwise."""
    (tmp_path / "ca.pem").write_bytes(X.cert_to_pem(ca.certificate))
    (tmp_path / "plain").write_bytes(b"a CSR would be here" * 10)
    legacy = ["-provider", "legacy", "-provider", "default"] if cipher == "-des" else []  # OpenSSL 3 retired DES
    sealed = subprocess.run(
        [OPENSSL, "cms", "-encrypt", *legacy, "-binary", "-outform", "DER", cipher, "-in", str(tmp_path / "plain"),
         str(tmp_path / "ca.pem")],
        capture_output=True,
    )
    assert sealed.returncode == 0, sealed.stderr
    assert scep.open_envelope(sealed.stdout, ca.certificate, ca.key) == b"a CSR would be here" * 10


def test_certrep_failure_and_pending_carry_status_and_no_content(ca) -> None:
    for status, fail in ((scep.PKIStatus.FAILURE, scep.FailInfo.BAD_REQUEST), (scep.PKIStatus.PENDING, None)):
        der = scep.sign_pki_message(
            message_type=scep.MessageType.CERT_REP, transaction_id="T1", signer_cert=ca.certificate,
            signer_key=ca.key, pki_status=status, fail_info=fail, sender_nonce=b"s" * 16, recipient_nonce=b"r" * 16,
        )
        reply = scep.parse_pki_message(der)
        assert (reply.pki_status, reply.fail_info, reply.content) == (status, fail, b"")
        assert reply.recipient_nonce == b"r" * 16 and reply.signer == ca.certificate


def test_certs_only_and_issuer_and_subject_round_trip(ca, requester) -> None:
    certs = [ca.certificate, requester[1]]
    assert set(scep.parse_certs_only(scep.certs_only(certs))) == set(certs)  # a SET OF: DER order
    names = (ca.certificate.subject, requester[2].subject)
    assert scep.parse_issuer_and_subject(scep.issuer_and_subject(*names)) == names


def test_tampering_is_a_bad_message_check(ca, requester) -> None:
    der = bytearray(_request(ca, requester))
    at = der.find(b"device 1")
    der[at] ^= 1  # the signer's certificate, inside the signed message
    with pytest.raises(scep.SCEPError):
        scep.parse_pki_message(bytes(der))
    body = bytearray(_request(ca, requester))
    body[len(body) // 3] ^= 0x40  # somewhere in the envelope (the signed content)
    with pytest.raises(scep.SCEPError) as caught:
        scep.parse_pki_message(bytes(body))
    assert caught.value.fail_info in (scep.FailInfo.BAD_MESSAGE_CHECK, scep.FailInfo.BAD_REQUEST)


def test_an_envelope_for_someone_else_is_refused(ca, requester) -> None:
    other = X.CertificateAuthority.create("Other CA", NOW, key=X.new_private_key("rsa"))
    message = scep.parse_pki_message(_request(ca, requester))
    with pytest.raises(scep.SCEPError) as caught:
        scep.open_envelope(message.content, other.certificate, other.key)
    assert caught.value.fail_info is scep.FailInfo.BAD_MESSAGE_CHECK


@pytest.mark.parametrize("garbage", [b"", b"\x30\x03\x02\x01\x00", b"not der at all", b"\x30\x80" * 5000])
def test_garbage_is_a_scep_error_never_anything_else(garbage: bytes) -> None:
    with pytest.raises(scep.SCEPError):
        scep.parse_pki_message(garbage)
    with pytest.raises(scep.SCEPError):
        scep.parse_certs_only(garbage)


def test_caps_parse() -> None:
    assert scep.parse_caps("POSTPKIOperation\r\nAES\n\nSHA-256\n") == {"POSTPKIOperation", "AES", "SHA-256"}


def _asn1crypto_reference(**kw) -> bytes:
    """The same pkiMessage built with asn1crypto's classes (how the codec first wrote it): the hand-written
    DER must come out byte for byte the same (PKCS#1 v1.5 signatures are deterministic)."""
    from asn1crypto import algos, cms, core
    from asn1crypto import x509 as asn1_x509

    def cert(c):
        return asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))

    digest, content, signer = kw["digest"], kw["content"], cert(kw["signer_cert"])
    h = hashes.Hash({"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha512": hashes.SHA512}[digest]())
    h.update(content)
    values = [("content_type", "data"), ("message_digest", h.finalize()),
              ("scep_message_type", core.PrintableString(kw["message_type"].value)),
              ("scep_transaction_id", core.PrintableString(kw["transaction_id"]))]
    for name, key, wrap in (("scep_sender_nonce", "sender_nonce", core.OctetString),
                            ("scep_recipient_nonce", "recipient_nonce", core.OctetString),
                            ("scep_pki_status", "pki_status", lambda v: core.PrintableString(v.value)),
                            ("scep_fail_info", "fail_info", lambda v: core.PrintableString(v.value))):
        if kw.get(key) is not None:
            values.append((name, wrap(kw[key])))
    attrs = cms.CMSAttributes([cms.CMSAttribute({"type": n, "values": [v]}) for n, v in values])
    from cryptography.hazmat.primitives.asymmetric import padding

    signature = kw["signer_key"].sign(attrs.dump(), padding.PKCS1v15(), h.algorithm)
    info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value=cms.IssuerAndSerialNumber(
            {"issuer": signer.issuer, "serial_number": signer.serial_number})),
        "digest_algorithm": {"algorithm": digest}, "signed_attrs": attrs,
        "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"}, "signature": signature,
    })
    signed = cms.SignedData({
        "version": "v1", "digest_algorithms": [algos.DigestAlgorithm({"algorithm": digest})],
        "encap_content_info": {"content_type": "data", "content": content or None},
        "certificates": [signer, *(cert(c) for c in kw.get("extra_certs", ()))], "signer_infos": [info],
    })
    return cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()


@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("case", ["success", "failure", "request"])
def test_hand_written_der_is_byte_for_byte_what_asn1crypto_writes(ca, requester, digest: str, case: str) -> None:
    kw = {
        "success": dict(content=b"\x30" * 900, recipient_nonce=b"r" * 16, pki_status=scep.PKIStatus.SUCCESS),
        "failure": dict(content=b"", recipient_nonce=b"r" * 16, pki_status=scep.PKIStatus.FAILURE,
                        fail_info=scep.FailInfo.BAD_REQUEST),
        "request": dict(content=b"e" * 3000, extra_certs=[requester[1]]),
    }[case]
    kw.update(message_type=scep.MessageType.CERT_REP, transaction_id="0A1B+/=", signer_cert=ca.certificate,
              signer_key=ca.key, sender_nonce=b"s" * 16, digest=digest)
    assert scep.sign_pki_message(**kw) == _asn1crypto_reference(**kw)
