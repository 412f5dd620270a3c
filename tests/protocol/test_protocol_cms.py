from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from asn1crypto import cms as asn1_cms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdm.protocol import cms
from mdm.protocol import x509 as X

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)  # same instant as conftest.NOW

DATA = b"<plist>\r\n\x00binary\nbytes</plist>"


@pytest.fixture(params=["ec", "rsa"])
def identity(request, ec_identity, rsa_identity):
    return ec_identity if request.param == "ec" else rsa_identity


@pytest.fixture
def root(identity, ec_ca, rsa_ca):
    return ec_ca.certificate if identity[0].issuer == ec_ca.certificate.subject else rsa_ca.certificate


def test_sign_verify_embedded(identity, root):
    cert, key = identity
    v = cms.verify(cms.sign(DATA, cert, key), trust_roots=[root], now=NOW)
    assert v.content == DATA
    assert v.signer == cert
    assert v.chain == [cert, root]


def test_sign_verify_detached(identity, root):
    cert, key = identity
    sig = cms.sign(DATA, cert, key, detached=True)
    assert cms.verify(sig, content=DATA, trust_roots=[root]).content == DATA
    with pytest.raises(cms.CMSError, match="no content given"):
        cms.verify(sig, trust_roots=[root])
    with pytest.raises(cms.CMSError, match="digest mismatch"):
        cms.verify(sig, content=DATA + b"x", trust_roots=[root])


def test_embedded_and_given_content_must_agree(identity, root):
    cert, key = identity
    sig = cms.sign(DATA, cert, key)
    assert cms.verify(sig, content=DATA, trust_roots=[root]).content == DATA
    with pytest.raises(cms.CMSError, match="differs"):
        cms.verify(sig, content=b"other", trust_roots=[root])


def test_signed_attrs_are_verified_as_set_of(identity):
    """The signature is over the attributes re-tagged as SET OF (0x31), not the [0] IMPLICIT bytes."""
    cert, key = identity
    info = asn1_cms.ContentInfo.load(cms.sign(DATA, cert, key))
    si = info["content"]["signer_infos"][0]
    assert si["signed_attrs"].dump()[0] == 0xA0
    assert si["signed_attrs"].untag().dump()[0] == 0x31


def test_tampered_content_rejected(identity, root):
    cert, key = identity
    sig = bytearray(cms.sign(b"AAAA-payload-AAAA", cert, key))
    i = sig.find(b"AAAA-payload")
    sig[i] = ord("B")
    with pytest.raises(cms.CMSError, match="digest mismatch"):
        cms.verify(bytes(sig), trust_roots=[root])


def test_tampered_signature_rejected(identity, root):
    cert, key = identity
    der = cms.sign(DATA, cert, key)
    info = asn1_cms.ContentInfo.load(der)
    si = info["content"]["signer_infos"][0]
    sig = bytearray(si["signature"].native)
    sig[len(sig) // 2] ^= 0xFF
    si["signature"] = bytes(sig)
    with pytest.raises(cms.CMSError, match="bad signature|malformed"):
        cms.verify(info.dump(force=True), trust_roots=[root])


def test_tampered_signed_attribute_rejected(identity, root):
    cert, key = identity
    info = asn1_cms.ContentInfo.load(cms.sign(DATA, cert, key))
    si = info["content"]["signer_infos"][0]
    attrs = si["signed_attrs"]
    for a in attrs:
        if a["type"].native == "signing_time":
            a["values"] = [asn1_cms.Time({"utc_time": dt.datetime(2001, 1, 1, tzinfo=dt.UTC)})]
    with pytest.raises(cms.CMSError, match="bad signature"):
        cms.verify(info.dump(force=True), trust_roots=[root])


def test_no_signed_attributes_supported(rsa_identity, rsa_ca):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs7

    cert, key = rsa_identity
    der = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(DATA)
        .add_signer(cert, key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary, pkcs7.PKCS7Options.NoAttributes])
    )
    assert asn1_cms.ContentInfo.load(der)["content"]["signer_infos"][0]["signed_attrs"].native is None
    assert cms.verify(der, trust_roots=[rsa_ca.certificate]).content == DATA


def test_wrong_trust_root_rejected(ec_identity, rsa_ca):
    cert, key = ec_identity
    with pytest.raises(cms.CMSError, match="does not chain"):
        cms.verify(cms.sign(DATA, cert, key), trust_roots=[rsa_ca.certificate])
    with pytest.raises(cms.CMSError, match="no trust roots"):
        cms.verify(cms.sign(DATA, cert, key), trust_roots=[])


def test_same_name_impostor_root_rejected(ec_identity):
    cert, key = ec_identity
    impostor = X.CertificateAuthority.create("Test EC Root", NOW, organization="mdmsim")
    with pytest.raises(cms.CMSError, match="does not chain"):
        cms.verify(cms.sign(DATA, cert, key), trust_roots=[impostor.certificate])


def test_validity_checked_against_injected_now(ec_identity, ec_ca):
    cert, key = ec_identity  # valid NOW .. NOW+30d
    sig = cms.sign(DATA, cert, key)
    cms.verify(sig, trust_roots=[ec_ca.certificate], now=NOW + dt.timedelta(days=29))
    with pytest.raises(cms.CMSError, match="expired"):
        cms.verify(sig, trust_roots=[ec_ca.certificate], now=NOW + dt.timedelta(days=31))
    with pytest.raises(cms.CMSError, match="not yet valid"):
        cms.verify(sig, trust_roots=[ec_ca.certificate], now=NOW - dt.timedelta(days=1))
    # no clock given: validity is not judged
    cms.verify(sig, trust_roots=[ec_ca.certificate])


def test_chain_through_included_intermediate(ec_ca):
    inter_key = X.new_private_key()
    inter_cert = ec_ca.issue(inter_key.public_key(), subject="Intermediate", now=NOW, is_ca=True, days=100)
    inter = X.CertificateAuthority(inter_cert, inter_key)
    leaf_key = X.new_private_key()
    leaf = inter.issue(leaf_key.public_key(), subject="leaf", now=NOW)
    v = cms.verify(cms.sign(DATA, leaf, leaf_key, extra_certs=[inter_cert]), trust_roots=[ec_ca.certificate])
    assert v.chain == [leaf, inter_cert, ec_ca.certificate]
    with pytest.raises(cms.CMSError, match="does not chain"):
        cms.verify(cms.sign(DATA, leaf, leaf_key), trust_roots=[ec_ca.certificate])


def test_non_ca_cannot_act_as_intermediate(ec_ca, ec_identity):
    mid_cert, mid_key = ec_identity  # a leaf, not a CA
    fake = X.CertificateAuthority(mid_cert, mid_key)
    k = X.new_private_key()
    leaf = fake.issue(k.public_key(), subject="x", now=NOW)
    with pytest.raises(cms.CMSError, match="does not chain"):
        cms.verify(cms.sign(DATA, leaf, k, extra_certs=[mid_cert]), trust_roots=[ec_ca.certificate])


def test_self_signed_signer_trusted_directly():
    key = X.new_private_key("rsa")
    cert = X.self_signed(key, "vendor", NOW)
    assert cms.verify(cms.sign(DATA, cert, key), trust_roots=[cert]).chain == [cert]


def test_signed_content_without_verification(ec_identity):
    cert, key = ec_identity
    content, signer = cms.signed_content(cms.sign(DATA, cert, key))
    assert content == DATA and signer == cert
    with pytest.raises(cms.CMSError):
        cms.signed_content(cms.sign(DATA, cert, key, detached=True))


def test_not_signed_data(rsa_identity, ec_ca):
    cert, _ = rsa_identity
    with pytest.raises(cms.CMSError, match="not SignedData"):
        cms.verify(cms.envelope(b"x", cert), trust_roots=[ec_ca.certificate])


# --- envelope -----------------------------------------------------------------------------------


def test_envelope_round_trip(rsa_identity):
    cert, key = rsa_identity
    assert cms.decrypt(cms.envelope(DATA, cert), cert, key) == DATA


def test_envelope_needs_rsa_and_right_key(ec_identity, rsa_identity):
    with pytest.raises(cms.CMSError):
        cms.envelope(b"x", ec_identity[0])
    cert, _ = rsa_identity
    other_key = X.new_private_key("rsa")
    # A wrong RSA key nearly always fails; OpenSSL's implicit rejection (against Bleichenbacher) makes
    # about 1 try in 256 "decrypt" to garbage instead. Either way the content stays secret.
    try:
        opened = cms.decrypt(cms.envelope(b"secret", cert), cert, other_key)
    except cms.CMSError as exc:
        assert "cannot decrypt" in exc.reason
    else:
        assert opened != b"secret"
    with pytest.raises(cms.CMSError):
        cms.decrypt(b"garbage", cert, other_key)


TOKEN = '{"consumer_key":"CK_1","consumer_secret":"CS_1","access_token":"AT_1","access_secret":"AS_1"}'


def test_smime_round_trip_and_headers(rsa_identity):
    cert, key = rsa_identity
    msg = cms.smime_envelope(cms.text_part(TOKEN), cert)
    assert msg.startswith(
        b'Content-Type: application/pkcs7-mime; name="smime.p7m"; smime-type=enveloped-data\r\n'
    )
    inner = cms.smime_decrypt(msg, cert, key)
    assert inner.startswith(b"Content-Type: text/plain;charset=UTF-8\r\n")
    assert cms.parse_text_part(inner) == TOKEN
    assert cms.smime_decrypt(msg.replace(b"\r\n", b"\n"), cert, key) == inner
    with pytest.raises(cms.CMSError):
        cms.smime_decrypt(b"Content-Type: text/plain\r\n\r\nhello", cert, key)


def test_parse_text_part_tolerates_missing_markers_and_headers():
    assert cms.parse_text_part(TOKEN.encode()) == TOKEN
    assert cms.parse_text_part(b"Content-Type: text/plain\n\n" + TOKEN.encode() + b"\n") == TOKEN
    assert (
        cms.parse_text_part(b"-----BEGIN MESSAGE-----\n" + TOKEN.encode() + b"\n-----END MESSAGE-----")
        == TOKEN
    )


@pytest.mark.parametrize("command", ["smime", "cms"])
def test_openssl_decrypts_smime_token(tmp_path, rsa_identity, command):
    cert, key = rsa_identity
    (tmp_path / "key.pem").write_bytes(X.key_to_pem(key))
    (tmp_path / "cert.pem").write_bytes(X.cert_to_pem(cert))
    (tmp_path / "token_smime.p7m").write_bytes(cms.smime_envelope(cms.text_part(TOKEN), cert))
    out = subprocess.run(
        [
            "openssl",
            command,
            "-decrypt",
            "-in",
            str(tmp_path / "token_smime.p7m"),
            "-inkey",
            str(tmp_path / "key.pem"),
            "-recip",
            str(tmp_path / "cert.pem"),
        ],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    assert cms.parse_text_part(out) == TOKEN


def test_openssl_signed_data_verifies(tmp_path, rsa_identity, rsa_ca):
    """A signature made by another implementation (OpenSSL, as on a device) verifies here too."""
    cert, key = rsa_identity
    (tmp_path / "key.pem").write_bytes(X.key_to_pem(key))
    (tmp_path / "cert.pem").write_bytes(X.cert_to_pem(cert))
    (tmp_path / "data").write_bytes(DATA)
    der = subprocess.run(
        [
            "openssl",
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-outform",
            "DER",
            "-in",
            str(tmp_path / "data"),
            "-signer",
            str(tmp_path / "cert.pem"),
            "-inkey",
            str(tmp_path / "key.pem"),
            "-md",
            "sha1",
        ],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    assert cms.verify(der, trust_roots=[rsa_ca.certificate], now=NOW).content == DATA
    # and ours verifies in OpenSSL
    (tmp_path / "ours.der").write_bytes(cms.sign(DATA, cert, key))
    (tmp_path / "ca.pem").write_bytes(X.cert_to_pem(rsa_ca.certificate))
    subprocess.run(
        [
            "openssl",
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            str(tmp_path / "ours.der"),
            "-CAfile",
            str(tmp_path / "ca.pem"),
            "-purpose",
            "any",
            "-attime",
            str(int(NOW.timestamp())),
            "-out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    assert (tmp_path / "out").read_bytes() == DATA


# --- fuzz ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signed_samples(request):
    ec_cert, ec_key = request.getfixturevalue("ec_identity")
    rsa_cert, rsa_key = request.getfixturevalue("rsa_identity")
    return [
        cms.sign(DATA, ec_cert, ec_key),
        cms.sign(DATA, rsa_cert, rsa_key, detached=True),
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.integers(0, 1),
    ops=st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.integers(0, 50),
)
def test_fuzz_mutated_cms_only_raises_cms_error(signed_samples, ec_ca, rsa_ca, which, ops, cut):
    b = bytearray(signed_samples[which])
    for pos, val in ops:
        b[pos % len(b)] = val
    data = bytes(b[: len(b) - cut])
    try:
        cms.verify(data, content=DATA, trust_roots=[ec_ca.certificate, rsa_ca.certificate], now=NOW)
    except cms.CMSError:
        pass
    try:
        cms.signed_content(data)
    except cms.CMSError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400) | st.binary(max_size=300).map(lambda b: b"\x30\x82" + b))
def test_fuzz_random_bytes_only_raise_cms_error(rsa_identity, ec_ca, data):
    cert, key = rsa_identity
    for call in (
        lambda: cms.verify(data, trust_roots=[ec_ca.certificate]),
        lambda: cms.decrypt(data, cert, key),
        lambda: cms.smime_decrypt(data, cert, key),
    ):
        try:
            call()
        except cms.CMSError:
            pass
