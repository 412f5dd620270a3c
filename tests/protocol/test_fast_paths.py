"""The fast paths of signature checking decide exactly as the careful path does, and are taken.

``cms.verify`` tries a cheap check of the common shape (MachineInfo, signed profiles) first, and the MDM
server's ``fast_verify`` reads ``Mdm-Signature`` straight from the DER. Both must accept what the
careful path accepts, refuse what it refuses, and fall back (never guess) for anything unusual.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from mdm.protocol import cms
from mdm.protocol.x509 import CertificateAuthority, seeded_key
from mdm.server import signature

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def pki() -> tuple[CertificateAuthority, CertificateAuthority]:
    return (CertificateAuthority.create("Fast CA", NOW, key=seeded_key(7, "fast-ca")),
            CertificateAuthority.create("Other CA", NOW, key=seeded_key(7, "other-ca")))


def _identity(ca: CertificateAuthority, kind: str = "ec", days: int = 30) -> tuple[x509.Certificate, object]:
    key = seeded_key(7, f"leaf-{kind}") if kind == "ec" else rsa.generate_private_key(65537, 2048)
    return ca.issue(key.public_key(), subject=f"DEV-{kind}", now=NOW, days=days), key


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_cms_fast_path_is_taken_and_agrees(pki, kind: str) -> None:
    ca, _ = pki
    cert, key = _identity(ca, kind)
    der = cms.sign(b"<plist>machine info</plist>", cert, key)
    fast = cms._verify_common(der, None, [ca.certificate], NOW)
    careful = cms._verify(der, None, [ca.certificate], NOW)
    assert fast is not None
    assert (fast.content, fast.signer, fast.chain) == (careful.content, careful.signer, careful.chain)
    # a profile signed by the very root the device trusts: a chain of one
    signed_by_root = cms.sign(b"profile", ca.certificate, ca.key)
    assert cms._verify_common(signed_by_root, None, [ca.certificate], NOW).chain == [ca.certificate]


def test_cms_refusals_keep_their_reasons(pki) -> None:
    ca, other = pki
    cert, key = _identity(ca)
    der = cms.sign(b"data", cert, key)
    detached = cms.sign(b"data", cert, key, detached=True)
    cases = [
        (dict(der=der, trust_roots=[other.certificate], now=NOW), "signer does not chain to a trusted root"),
        (dict(der=der, trust_roots=[ca.certificate], now=NOW + dt.timedelta(days=40)), "certificate expired"),
        (dict(der=detached, content=b"tampered", trust_roots=[ca.certificate], now=NOW), "content digest mismatch"),
        (dict(der=der, content=b"other", trust_roots=[ca.certificate], now=NOW), "embedded content differs"),
    ]
    for kwargs, reason in cases:
        assert cms._verify_common(kwargs["der"], kwargs.get("content"), kwargs["trust_roots"], kwargs["now"]) is None
        with pytest.raises(cms.CMSError) as refused:
            cms.verify(**kwargs)
        assert reason in refused.value.reason


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_mdm_signature_is_read_straight_from_der(pki, kind: str) -> None:
    ca, other = pki
    cert, key = _identity(ca, kind)
    body = b"<plist><dict><key>Status</key><string>Idle</string></dict></plist>"
    der = cms.sign(body, cert, key, detached=True)
    issued: dict[bytes, bool] = {}
    parsed: dict = {}
    assert signature._der_fast_verify(der, body, ca.certificate, NOW, issued, parsed) == (cert, body)
    assert signature._der_fast_verify(der, body, ca.certificate, NOW, issued, parsed) == (cert, body)  # memoised
    assert len(parsed) == 1 and len(issued) == 1
    # every refusal falls through, and the whole fast path refuses too
    for args in [(der, body + b" ", ca.certificate, NOW), (der, body, other.certificate, NOW),
                 (der, body, ca.certificate, NOW + dt.timedelta(days=40)),
                 (der[:-1] + bytes([der[-1] ^ 1]), body, ca.certificate, NOW), (der[:40], body, ca.certificate, NOW)]:
        assert signature._der_fast_verify(*args, {}, {}) is None
        assert signature.fast_verify(*args) is None
    # an embedded copy of the same content is the same signature; a different one is not accepted here
    embedded = cms.sign(body, cert, key)
    assert signature._der_fast_verify(embedded, body, ca.certificate, NOW, None, None) == (cert, body)
    assert signature._der_fast_verify(embedded, b"other", ca.certificate, NOW, None, None) is None


def test_machine_info_fast_path_agrees_with_cms_verify(pki) -> None:
    ca, other = pki
    cert, key = _identity(ca)
    der = cms.sign(b"<plist>machine info</plist>", cert, key)
    content = b"<plist>machine info</plist>"
    assert signature.fast_verify_embedded(der, [other.certificate, ca.certificate], NOW) == (cert, content)
    assert cms.verify(der, trust_roots=[ca.certificate], now=NOW).content == b"<plist>machine info</plist>"
    for roots, now in [([other.certificate], NOW), ([ca.certificate], NOW + dt.timedelta(days=40))]:
        assert signature.fast_verify_embedded(der, roots, now) is None
        with pytest.raises(cms.CMSError):
            cms.verify(der, trust_roots=roots, now=now)
    detached = cms.sign(b"x", cert, key, detached=True)
    assert signature.fast_verify_embedded(detached, [ca.certificate], NOW) is None  # nothing embedded
