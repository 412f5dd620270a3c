"""The codecs (JWS, the attestation object, Apple's extensions, the chain walk), the ACME payload, Apple's
attestation service's refusals, and the key rules a device applies to a payload before any request."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Iterator

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mdm.protocol import acme, cms, mobileconfig
from mdm.protocol.acme import ACMEProblem
from mdm.protocol.plist import dumps
from mdm.protocol.x509 import CertificateAuthority
from simulator import World
from simulator.device.acme_enroll import obtain_identity

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def test_a_jws_verifies_with_its_key_and_algorithm_and_nothing_else() -> None:
    p256, p384 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1())
    signed = acme.parse_jws(acme.sign_jws(b'{"a":1}', p384, nonce="n", url="https://x/acme/new-order"))
    assert (signed.alg, signed.nonce, signed.url, signed.kid) == ("ES384", "n", "https://x/acme/new-order", None)
    assert signed.json_payload() == {"a": 1}
    acme.verify_jws(signed, acme.jwk_of(p384))
    with pytest.raises(ACMEProblem, match="signature"):
        acme.verify_jws(signed, acme.jwk_of(ec.generate_private_key(ec.SECP384R1())))
    with pytest.raises(ACMEProblem) as mismatch:
        acme.verify_jws(signed, acme.jwk_of(p256))  # ES384 with a P-256 key
    assert mismatch.value.kind == "badSignatureAlgorithm" and mismatch.value.to_dict()["algorithms"]
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    acme.verify_jws(acme.parse_jws(acme.sign_jws(b"", rsa_key, nonce="n", url="u", kid="k")), acme.jwk_of(rsa_key))
    private_jwk = dict(acme.jwk_of(p256), d=acme.b64url(p256.private_numbers().private_value.to_bytes(32, "big")))
    with pytest.raises(ACMEProblem, match="no private parameters"):
        acme.jwk_thumbprint(private_jwk)
    assert acme.jwk_thumbprint(acme.jwk_of(p256)) == acme.jwk_thumbprint(json.loads(json.dumps(acme.jwk_of(p256))))
    for body in (b"", b"[]", b'{"signatures": []}', b'{"protected": "e30", "payload": "", "signature": "", "header": {"a": 1}}',
                 b'{"protected": "***", "payload": "", "signature": ""}'):
        with pytest.raises(ACMEProblem):
            acme.parse_jws(body)


def _ca(name: str, key: ec.EllipticCurvePrivateKey | None = None) -> CertificateAuthority:
    return CertificateAuthority.create(name, NOW - dt.timedelta(days=1), key=key or ec.generate_private_key(ec.SECP384R1()))


def test_apple_extensions_are_raw_bytes_and_the_chain_walk_needs_a_trusted_root_and_valid_dates() -> None:
    root, other = _ca("root"), _ca("other")
    key = ec.generate_private_key(ec.SECP256R1())
    extensions = acme.attestation_extensions(serial_number="F2LXJ7ABCDEF", udid="00008110-0001", os_version="17.4",
                                             sepos_version="17.4", freshness=acme.freshness_code("tok"))
    builder = x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(root.certificate.subject).public_key(
        key.public_key()).serial_number(7).not_valid_before(NOW - dt.timedelta(minutes=1)).not_valid_after(
        NOW + dt.timedelta(days=7))
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    leaf = builder.sign(root.key, hashes.SHA384())
    der = leaf.public_bytes(serialization.Encoding.DER)
    # step-ca reads string(ext.Value): the extnValue OCTET STRING holds the serial itself, no inner ASN.1
    oid_der = bytes.fromhex("060a2a864886f763640809 01".replace(" ", ""))
    assert oid_der + b"\x04\x0cF2LXJ7ABCDEF" in der
    attested = acme.read_device_attestation(leaf)
    assert (attested.serial_number, attested.udid, attested.os_version, attested.sepos_version) == (
        "F2LXJ7ABCDEF", "00008110-0001", "17.4", "17.4")
    assert attested.freshness_code == acme.freshness_code("tok") == hashlib.sha256(b"tok").digest()
    assert attested.key_sha256 == acme.public_key_sha256(key.public_key())
    assert acme.verify_chain([leaf], [other.certificate, root.certificate], NOW) == root.certificate
    for roots, at, why in (([other.certificate], NOW, "trusted attestation root"),
                           ([root.certificate], NOW + dt.timedelta(days=8), "not valid")):
        with pytest.raises(ACMEProblem, match=why) as refused:
            acme.verify_chain([leaf], roots, at)
        assert refused.value.kind == "badAttestationStatement"
    assert acme.read_attestation_object(acme.attestation_object([der, der])) == [leaf, leaf]


@pytest.mark.parametrize("blob", [
    b"", b"\xff", cbor2.dumps([1, 2]), cbor2.dumps({"fmt": "packed"}), cbor2.dumps({"fmt": "apple"}),
    cbor2.dumps({"fmt": "apple", "attStmt": {"x5c": ["text"]}}), cbor2.dumps({"fmt": "apple", "attStmt": {"x5c": [b"x"] * 9}}),
    b"\x9f" * 5000, b"\x5b\x7f\xff\xff\xff\xff\xff\xff\xff",  # deep nesting; a byte string claiming 2^63 bytes
])
def test_anything_but_an_apple_attestation_object_is_a_bad_attestation_statement(blob: bytes) -> None:
    with pytest.raises(ACMEProblem) as refused:
        acme.read_attestation_object(blob)
    assert refused.value.kind == "badAttestationStatement"


def test_the_acme_payload_round_trips_with_apples_top_level_keys() -> None:
    payload = mobileconfig.ACMEPayload(
        payload_identifier="p.acme", directory_url="https://mdm.example/acme/directory", client_identifier="cid",
        key_size=384, key_type="ECSECPrimeRandom", hardware_bound=True, attest=True, subject=[[["CN", "u"]]],
        usage_flags=1, extended_key_usage=["1.3.6.1.5.5.7.3.2"], subject_alt_name={"dNSName": "d.example"})
    data = payload.to_dict()
    assert data["PayloadType"] == "com.apple.security.acme" and "PayloadContent" not in data
    assert {data[k] for k in ("DirectoryURL", "ClientIdentifier", "KeyType")} == {
        "https://mdm.example/acme/directory", "cid", "ECSECPrimeRandom"}
    assert data["HardwareBound"] is True and data["Attest"] is True and data["KeySize"] == 384
    assert mobileconfig.ACMEPayload.from_dict(data) == payload


@pytest.mark.parametrize(("kind", "bits", "bound", "attest", "why"), [
    ("RSA", 2048, True, False, "cannot be hardware-bound"),
    ("RSA", 1000, False, False, "multiple of 8"),
    ("ECSECPrimeRandom", 521, True, True, "(256, 384)"),
    ("ECSECPrimeRandom", 256, False, True, "Attest needs HardwareBound"),
    ("DSA", 1024, False, False, "KeyType"),
])
def test_a_device_refuses_a_key_apple_does_not_allow_before_sending_anything(kind: str, bits: int, bound: bool,
                                                                             attest: bool, why: str) -> None:
    payload = mobileconfig.ACMEPayload(payload_identifier="p", directory_url="https://x/acme/directory",
                                       client_identifier="c", key_size=bits, key_type=kind, hardware_bound=bound,
                                       attest=attest, subject=[[["CN", "u"]]])
    flow = obtain_identity(payload, now=lambda: NOW, account_key=ec.generate_private_key(ec.SECP256R1()),
                           make_key=lambda *a: pytest.fail("no key for a refused payload"),
                           attest=lambda *a: pytest.fail("no attestation"), default_cn="u")
    with pytest.raises(StopIteration) as stopped:
        next(flow)
    assert stopped.value.value.status == "failed" and why in stopped.value.value.reason


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with World(devices=2, seed=50, push_certificate=False) as world:
        yield world


def _request(world: World, serial: str, *, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
             proof_key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    device = world.fleet.get(serial) or world.fleet.add(world.identity(serial))
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    signer = proof_key or key
    proof = signer.sign(b"f" * 32 + spki, ec.ECDSA(hashes.SHA256())) if isinstance(signer, ec.EllipticCurvePrivateKey) else b""
    return device.sign_with_device_identity(dumps({"PublicKey": spki, "FreshnessCode": b"f" * 32, "OSVersion": "17.4",
                                                   "sepOSVersion": "17.4", "KeyProof": proof}))


def test_apple_attests_only_a_key_its_device_holds_and_names_the_signing_device(world: World) -> None:
    serial = world.serials[0]
    key = ec.generate_private_key(ec.SECP256R1())
    ok = world.http.post("/apple/activation/attestation", content=_request(world, serial, key=key))
    assert ok.status_code == 200
    leaf = x509.load_der_x509_certificate(base64.b64decode(ok.json()["x5c"][0]))
    assert acme.read_device_attestation(leaf).serial_number == serial
    for body, code in [
        (b"", "ATTESTATION_REQUEST_NOT_SIGNED"),
        (_request(world, serial, key=key, proof_key=ec.generate_private_key(ec.SECP256R1())), "KEY_PROOF_INVALID"),
        (_request(world, serial, key=rsa.generate_private_key(public_exponent=65537, key_size=2048)), "UNSUPPORTED_KEY"),
        (cms.sign(b"<plist/>", *_self_signed()), "DEVICE_IDENTITY_NOT_TRUSTED"),
    ]:
        refused = world.http.post("/apple/activation/attestation", content=body)
        assert (refused.status_code, refused.text) == (400, code)


def _self_signed() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca = _ca("not Apple", ec.generate_private_key(ec.SECP256R1()))
    return ca.certificate, ca.key  # type: ignore[return-value]
