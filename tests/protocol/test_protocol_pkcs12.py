"""The PKCS#12 writer: files that ``cryptography`` (OpenSSL's reading rules) opens, in Apple's legacy shape."""

from __future__ import annotations

import pytest
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12

from mdm.protocol.pkcs12 import pkcs12_kdf, serialize_identity

# RFC 7292 appendix B.2 with SHA-1: the vectors OpenSSL's and Bouncy Castle's own tests use.
KDF_VECTORS = [
    ("smeg", "0A58CF64530D823F", 1, 1, 24, "8AAAE6297B6CB04642AB5B077851284EB7128F1A2A7FBCA3"),
    ("smeg", "0A58CF64530D823F", 2, 1, 8, "79993DFE048D3B76"),
    ("smeg", "642B99AB44FB4B1F", 1, 1, 24, "F3A95FEC48D7711E985CFE67908C5AB79FA3D7C5CAA5D966"),
    ("smeg", "642B99AB44FB4B1F", 2, 1, 8, "C0A38D64A79BEA1D"),
    ("smeg", "3D83C0E4546AC140", 3, 1, 20, "8D967D88F6CAA9D714800AB3D48051D63F73A312"),
    ("queeg", "05DEC959ACFF72F7", 1, 1000, 24, "ED2034E36328830FF09DF1E1A07DD357185DAC0D4F9EB3D4"),
    ("queeg", "05DEC959ACFF72F7", 2, 1000, 8, "11DEDAD7758D4860"),
]


@pytest.mark.parametrize(("password", "salt", "diversifier", "iterations", "size", "expected"), KDF_VECTORS)
def test_key_derivation_matches_published_vectors(password, salt, diversifier, iterations, size, expected):
    assert pkcs12_kdf(password, bytes.fromhex(salt), diversifier, iterations, size).hex().upper() == expected


@pytest.mark.parametrize("identity", ["ec_identity", "rsa_identity"])
@pytest.mark.parametrize("password", ["secret", "pässwörd with ümlauts and a long tail " * 3], ids=["ascii", "long-unicode"])
def test_round_trips_through_cryptography(request, identity, password, ec_ca):
    cert, key = request.getfixturevalue(identity)
    data = serialize_identity(cert, key, password, "MDM identity", cas=[ec_ca.certificate])
    loaded = crypto_pkcs12.load_pkcs12(data, password.encode())
    assert loaded.cert is not None and loaded.key is not None
    assert loaded.cert.certificate == cert
    assert loaded.cert.friendly_name == b"MDM identity"
    assert loaded.key.private_numbers() == key.private_numbers()
    assert [c.certificate for c in loaded.additional_certs] == [ec_ca.certificate]


def test_wrong_password_and_tampering_are_refused(ec_identity):
    cert, key = ec_identity
    data = serialize_identity(cert, key, "right")
    with pytest.raises(ValueError):
        crypto_pkcs12.load_key_and_certificates(data, b"wrong")
    tampered = bytearray(data)
    tampered[len(data) // 2] ^= 0x01  # inside the MACed AuthenticatedSafe
    with pytest.raises(ValueError):
        crypto_pkcs12.load_key_and_certificates(bytes(tampered), b"right")


def test_legacy_shape_with_one_iteration(ec_identity):
    """3DES and a SHA-1 MAC (what Apple's installer reads), one iteration everywhere, canonical DER."""
    cert, key = ec_identity
    data = serialize_identity(cert, key, "secret", "id")
    pfx = asn1_pkcs12.Pfx.load(data)
    assert pfx["version"].native == "v3"
    assert pfx["mac_data"]["mac"]["digest_algorithm"]["algorithm"].native == "sha1"
    assert pfx["mac_data"]["iterations"].native == 1
    safes = asn1_pkcs12.AuthenticatedSafe.load(pfx["auth_safe"]["content"].native)
    assert [ci["content_type"].native for ci in safes] == ["encrypted_data", "data"]
    cert_algorithm = safes[0]["content"]["encrypted_content_info"]["content_encryption_algorithm"]
    (key_bag,) = asn1_pkcs12.SafeContents.load(safes[1]["content"].native)
    key_algorithm = key_bag["bag_value"]["encryption_algorithm"]
    for algorithm in (cert_algorithm, key_algorithm):
        assert algorithm["algorithm"].native == "pkcs12_sha1_tripledes_3key"
        assert algorithm["parameters"]["iterations"].native == 1
    assert pfx.dump(force=True) == data  # re-encoding by asn1crypto changes nothing: DER as written
    assert data != serialize_identity(cert, key, "secret", "id")  # fresh salts every time


def test_a_password_is_required(ec_identity):
    cert, key = ec_identity
    with pytest.raises(ValueError, match="password"):
        serialize_identity(cert, key, "")
