from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mdm.protocol import x509 as X

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)  # same instant as conftest.NOW


def test_new_private_key_kinds():
    assert isinstance(X.new_private_key(), ec.EllipticCurvePrivateKey)
    assert isinstance(X.new_private_key("rsa", rsa_bits=1024), rsa.RSAPrivateKey)
    with pytest.raises(ValueError):
        X.new_private_key("dsa")  # type: ignore[arg-type]


@pytest.mark.parametrize("ca_name", ["ec_ca", "rsa_ca"])
def test_issue_sets_subject_uid_usage_and_validity(request, ca_name):
    ca: X.CertificateAuthority = request.getfixturevalue(ca_name)
    key = X.new_private_key()
    cert = ca.issue(
        key.public_key(),
        subject="APSP:1234",
        now=NOW,
        days=10,
        uid="com.apple.mgmt.External.abc",
        server_auth=True,
        san_dns=["mdm.example.org"],
    )
    assert cert.subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == "com.apple.mgmt.External.abc"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "APSP:1234"
    assert cert.issuer == ca.certificate.subject
    assert cert.not_valid_before_utc == NOW
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=10)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mdm.example.org"]
    assert X.verify_issued_by(cert, ca.certificate)
    assert X.is_ca(ca.certificate) and not X.is_ca(cert)


def test_verify_issued_by_rejects_other_issuer_and_forged_name(ec_ca):
    other = X.CertificateAuthority.create("Test EC Root", NOW)  # same name, different key
    key = X.new_private_key()
    cert = ec_ca.issue(key.public_key(), subject="d", now=NOW)
    assert not X.verify_issued_by(cert, other.certificate)
    assert not X.verify_issued_by(ec_ca.certificate, cert)


def test_issue_for_csr(ec_ca):
    from cryptography.hazmat.primitives import hashes

    key = X.new_private_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(X.make_name("csr device"))
        .sign(key, hashes.SHA256())
    )
    cert = ec_ca.issue_for_csr(csr, NOW, 5)
    assert cert.subject == csr.subject
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()


def test_pem_round_trips(rsa_ca):
    cert_pem, key_pem = rsa_ca.to_pem()
    again = X.CertificateAuthority.from_pem(cert_pem, key_pem)
    assert again.certificate == rsa_ca.certificate
    assert X.cert_from_der(X.cert_to_der(again.certificate)) == rsa_ca.certificate
    assert X.fingerprint_sha256(again.certificate) == X.fingerprint_sha256(rsa_ca.certificate)
    assert len(X.fingerprint_sha256(again.certificate)) == 64
    assert X.key_from_pem(X.key_to_pem(again.key)).private_numbers() == rsa_ca.key.private_numbers()


def test_mismatched_key_refused(ec_ca):
    with pytest.raises(ValueError):
        X.CertificateAuthority(ec_ca.certificate, X.new_private_key())


def test_self_signed_uses_injected_time():
    key = X.new_private_key()
    then = dt.datetime(2030, 1, 2, 3, 4, 5, 678, tzinfo=dt.UTC)
    cert = X.self_signed(key, "vendor", then, 365)
    assert cert.not_valid_before_utc == then.replace(microsecond=0)
    assert X.verify_issued_by(cert, cert)
