"""A fast path for ``Mdm-Signature`` checks, in front of :func:`mdm.protocol.cms.verify`.

Every check-in and every command report carries a CMS signature, so verifying it is the hot path of
the server. ``cms.verify`` is general (any chain, any signer id, lazy asn1crypto ``.native`` views of
whole structures) and costs ~2 ms. Devices all sign the same narrow way: one signer, signed attributes,
the identity certificate included, issued directly by our CA. This module accepts exactly that shape,
using asn1crypto only to split the DER and ``cryptography`` for every check; whenever anything is
unusual it returns None and the caller falls back to ``cms.verify``, which also words the refusal.
It never accepts what ``cms.verify`` would refuse: digest, signature, issuer and validity are all
checked here too.
"""

from __future__ import annotations

import datetime as _dt
import hmac

from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

__all__ = ["fast_verify"]

_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512, "sha1": hashes.SHA1}


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def fast_verify(
    der: bytes,
    content: bytes,
    ca: x509.Certificate,
    now: _dt.datetime,
    issued: dict[bytes, bool] | None = None,
) -> x509.Certificate | None:
    """The signer certificate if ``der`` is a detached-or-embedded signature over ``content`` by an
    identity issued by ``ca`` and valid at ``now``; None when the fast path cannot decide.

    ``issued`` memoises "this certificate (by SHA-256 of its DER and the CA's) was signed by the CA":
    a fact that never changes, and the single most expensive check once the message is parsed."""
    try:
        info = asn1_cms.ContentInfo.load(der, strict=True)
        if info["content_type"].dotted != "1.2.840.113549.1.7.2":
            return None
        sd = info["content"]
        encap = sd["encap_content_info"]
        if encap["content_type"].dotted != "1.2.840.113549.1.7.1":
            return None
        embedded = encap["content"]
        if embedded.contents is not None and len(embedded.contents) and embedded.native != content:
            return None
        signer_infos = sd["signer_infos"]
        if len(signer_infos) != 1:
            return None
        si = signer_infos[0]
        sid = si["sid"]
        if sid.name != "issuer_and_serial_number":
            return None
        serial = sid.chosen["serial_number"].native
        issuer_der = sid.chosen["issuer"].dump()
        signer = None
        for choice in sd["certificates"]:
            if choice.name != "certificate":
                continue
            cert = x509.load_der_x509_certificate(choice.chosen.dump())
            if cert.serial_number == serial and cert.issuer.public_bytes() == issuer_der:
                signer = cert
                break
        if signer is None:
            return None
        hash_cls = _HASHES.get(si["digest_algorithm"]["algorithm"].native)
        if hash_cls is None:
            return None
        attrs = si["signed_attrs"]
        if len(attrs) == 0:
            return None
        digest = None
        for attr in attrs:
            kind = attr["type"].dotted
            if kind == "1.2.840.113549.1.9.4":  # messageDigest
                if len(attr["values"]) != 1 or digest is not None:
                    return None
                digest = attr["values"][0].native
            elif kind == "1.2.840.113549.1.9.3":  # contentType
                if attr["values"][0].dotted != "1.2.840.113549.1.7.1":
                    return None
        h = hashes.Hash(hash_cls())
        h.update(content)
        if not isinstance(digest, bytes) or not hmac.compare_digest(digest, h.finalize()):
            return None
        inner = attrs.contents
        signed = b"\x31" + _der_length(len(inner)) + inner
        signature = si["signature"].native
        algo = si["signature_algorithm"].signature_algo
        pub = signer.public_key()
        if isinstance(pub, ec.EllipticCurvePublicKey) and algo == "ecdsa":
            pub.verify(signature, signed, ec.ECDSA(hash_cls()))
        elif isinstance(pub, rsa.RSAPublicKey) and algo == "rsassa_pkcs1v15":
            pub.verify(signature, signed, padding.PKCS1v15(), hash_cls())
        else:
            return None
        memo_key = signer.fingerprint(hashes.SHA256()) + ca.fingerprint(hashes.SHA256())
        if issued is None or not issued.get(memo_key):
            signer.verify_directly_issued_by(ca)
            if issued is not None:
                if len(issued) > 100_000:
                    issued.clear()
                issued[memo_key] = True
        t = now.astimezone(_dt.UTC)
        for c in (signer, ca):
            if not c.not_valid_before_utc <= t <= c.not_valid_after_utc:
                return None
        return signer
    except (InvalidSignature, ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError):
        return None
    except Exception:  # asn1crypto's lazy parsing: anything odd goes to the careful path
        return None
