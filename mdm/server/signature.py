"""A fast path for ``Mdm-Signature`` checks, in front of :func:`mdm.protocol.cms.verify`.

Every check-in and every command report carries a CMS signature, so verifying it is the hot path of
the server. ``cms.verify`` is general (any chain, any signer id, lazy asn1crypto ``.native`` views of
whole structures). Devices all sign the same narrow way: one signer, signed attributes, the identity
certificate included, issued directly by our CA. This module reads exactly that shape straight from
the DER and uses ``cryptography`` for every check; whenever anything is unusual it returns None and
the caller falls back to ``cms.verify``, which also words the refusal.
It never accepts what ``cms.verify`` would refuse: digest, signature, issuer and validity are all
checked here too.
"""

from __future__ import annotations

import datetime as _dt
import hmac
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from mdm.protocol.cms import der_length
from mdm.protocol.x509 import is_ca

__all__ = ["fast_verify", "fast_verify_embedded"]



def fast_verify(
    der: bytes,
    content: bytes,
    ca: x509.Certificate,
    now: _dt.datetime,
    issued: dict[tuple[bytes, x509.Certificate], bool] | None = None,
    parsed: dict[bytes, tuple[x509.Certificate, int, bytes, bytes]] | None = None,
) -> x509.Certificate | None:
    """The signer certificate if ``der`` is a detached-or-embedded signature over ``content`` by an
    identity issued by ``ca`` and valid at ``now``; None when the fast path cannot decide.

    ``issued`` memoises "this certificate (by SHA-256 of its DER) was signed by this CA certificate":
    a fact that never changes, and the single most expensive check once the message is parsed.
    ``parsed`` memoises what a certificate's DER parses to (the object, serial, issuer DER, SHA-256):
    a device sends the same identity with every message; nothing is skipped, only not re-parsed."""
    fast = _der_fast_verify(der, content, ca, now, issued, parsed)
    # Anything the DER reader does not recognise goes to ``cms.verify`` (general, and it words refusals).
    return fast[0] if fast is not None else None


def _issued_and_valid(
    signer: x509.Certificate, signer_fp: bytes, ca: x509.Certificate, now: _dt.datetime,
    issued: dict[tuple[bytes, x509.Certificate], bool] | None,
) -> x509.Certificate | None:
    """``signer`` if the CA issued it (checked, or memoised as checked) and both are valid at ``now``.

    Raises InvalidSignature (or ValueError) when the CA did not issue it."""
    memo_key = (signer_fp, ca)  # a certificate hashes and compares by its DER: no digest per request
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


# -- the narrowest shape, read straight from the DER --------------------------------------------------
# What OpenSSL (``cryptography``'s PKCS7SignatureBuilder) and devices emit for a detached SHA-256
# signature: definite lengths, ``data`` content, one SignerInfo by issuer and serial, signed attributes.
_OID_SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")
_OID_DATA = bytes.fromhex("06092a864886f70d010701")
_OID_MESSAGE_DIGEST = bytes.fromhex("06092a864886f70d010904")
_OID_CONTENT_TYPE = bytes.fromhex("06092a864886f70d010903")
_OID_SHA256 = bytes.fromhex("0609608648016503040201")
_OID_ECDSA_SHA256 = bytes.fromhex("06082a8648ce3d040302")
_OID_RSA = bytes.fromhex("06092a864886f70d010101")
_OID_RSA_SHA256 = bytes.fromhex("06092a864886f70d01010b")


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the DER element at ``pos``; ValueError otherwise."""
    if pos + 2 > end:
        raise ValueError("truncated")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("high tag number")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            raise ValueError("indefinite or oversized length")
        length = int.from_bytes(buf[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise ValueError("truncated")
    return tag, pos, pos + length


def _algorithm_oid(buf: bytes, start: int, end: int) -> bytes:
    """The OID element (tag and all) of an AlgorithmIdentifier's contents; parameters must be absent or NULL."""
    tag, s, e = _tlv(buf, start, end)
    if tag != 0x06:
        raise ValueError("not an OID")
    if e != end and buf[e:end] != b"\x05\x00":
        raise ValueError("unexpected parameters")
    return buf[start:e]


def fast_verify_embedded(
    der: bytes, roots: Sequence[x509.Certificate], now: _dt.datetime
) -> tuple[x509.Certificate, bytes] | None:
    """``(signer, content)`` of a SignedData with embedded content by an identity issued directly by one
    of ``roots`` (a CA certificate), valid at ``now``: MachineInfo. None when the fast path cannot
    decide; the caller then asks :func:`mdm.protocol.cms.verify`, which also words a refusal."""
    for root in roots:
        if is_ca(root):
            found = _der_fast_verify(der, None, root, now, None, None)
            if found is not None:
                return found
    return None


def _der_fast_verify(
    der: bytes,
    content: bytes | None,
    ca: x509.Certificate,
    now: _dt.datetime,
    issued: dict[tuple[bytes, x509.Certificate], bool] | None,
    parsed: dict[bytes, tuple[x509.Certificate, int, bytes, bytes]] | None,
) -> tuple[x509.Certificate, bytes] | None:
    """``(signer, signed content)`` for the narrowest shape, read without asn1crypto; None otherwise.

    ``content`` is the detached content (it must equal any embedded copy); None: it must be embedded."""
    try:
        n = len(der)
        tag, s, e = _tlv(der, 0, n)
        if tag != 0x30 or e != n:
            return None
        if der[s : s + len(_OID_SIGNED_DATA)] != _OID_SIGNED_DATA:
            return None
        tag, s, e = _tlv(der, s + len(_OID_SIGNED_DATA), e)  # [0] EXPLICIT
        if tag != 0xA0:
            return None
        tag, s, sd_end = _tlv(der, s, e)  # SignedData
        if tag != 0x30:
            return None
        tag, _, pos = _tlv(der, s, sd_end)  # version
        if tag != 0x02:
            return None
        tag, _, pos = _tlv(der, pos, sd_end)  # digestAlgorithms
        if tag != 0x31:
            return None
        tag, s, pos = _tlv(der, pos, sd_end)  # encapContentInfo
        if tag != 0x30 or der[s : s + len(_OID_DATA)] != _OID_DATA:
            return None
        inner = s + len(_OID_DATA)
        data = content
        if inner != pos:  # embedded content: [0] EXPLICIT OCTET STRING, equal to any given content
            tag, s, e = _tlv(der, inner, pos)
            if tag != 0xA0 or e != pos:
                return None
            tag, s, e = _tlv(der, s, e)
            if tag != 0x04 or e != pos or (content is not None and der[s:e] != content):
                return None
            data = der[s:e]
        if data is None:
            return None
        certificates: list[bytes] = []
        tag, s, e = _tlv(der, pos, sd_end)
        if tag == 0xA0:  # [0] IMPLICIT certificates
            p = s
            while p < e:
                ctag, _, cend = _tlv(der, p, e)
                if ctag == 0x30:
                    certificates.append(der[p:cend])
                p = cend
            pos = e
            tag, s, e = _tlv(der, pos, sd_end)
        if tag == 0xA1:  # crls: not in the narrow shape
            return None
        if tag != 0x31 or e != sd_end:  # signerInfos, the last field
            return None
        tag, s, si_end = _tlv(der, s, e)  # the one SignerInfo
        if tag != 0x30 or si_end != e:
            return None
        tag, _, pos = _tlv(der, s, si_end)  # version
        if tag != 0x02:
            return None
        tag, s, pos = _tlv(der, pos, si_end)  # sid: IssuerAndSerialNumber
        if tag != 0x30:
            return None
        tag, _, issuer_end = _tlv(der, s, pos)
        if tag != 0x30:
            return None
        issuer_der = der[s:issuer_end]
        tag, s, e = _tlv(der, issuer_end, pos)
        if tag != 0x02 or e != pos:
            return None
        serial = int.from_bytes(der[s:e], "big", signed=True)
        tag, s, e = _tlv(der, pos, si_end)  # digestAlgorithm
        if tag != 0x30 or _algorithm_oid(der, s, e) != _OID_SHA256:
            return None
        tag, attrs_start, attrs_end = _tlv(der, e, si_end)  # [0] IMPLICIT signedAttrs
        if tag != 0xA0:
            return None
        digest = None
        p = attrs_start
        while p < attrs_end:
            tag, s, a_end = _tlv(der, p, attrs_end)
            if tag != 0x30:
                return None
            tag, _, oid_end = _tlv(der, s, a_end)
            if tag != 0x06:
                return None
            oid = der[s:oid_end]
            tag, vs, ve = _tlv(der, oid_end, a_end)
            if tag != 0x31 or ve != a_end:
                return None
            if oid in (_OID_MESSAGE_DIGEST, _OID_CONTENT_TYPE):
                vtag, v_s, v_e = _tlv(der, vs, ve)
                if v_e != ve:  # exactly one value
                    return None
                if oid == _OID_MESSAGE_DIGEST:
                    if digest is not None or vtag != 0x04:
                        return None
                    digest = der[v_s:v_e]
                elif der[vs:ve] != _OID_DATA:
                    return None
            p = a_end
        tag, s, e = _tlv(der, attrs_end, si_end)  # signatureAlgorithm
        if tag != 0x30:
            return None
        sig_oid = _algorithm_oid(der, s, e)
        tag, s, e = _tlv(der, e, si_end)  # signature
        if tag != 0x04 or e != si_end:  # unsigned attributes: not in the narrow shape
            return None
        signature = der[s:e]
        h = hashes.Hash(hashes.SHA256())
        h.update(data)
        if digest is None or not hmac.compare_digest(digest, h.finalize()):
            return None
        signer = None
        signer_fp = b""
        for cert_der in certificates:
            known = parsed.get(cert_der) if parsed is not None else None
            if known is None:
                cert = x509.load_der_x509_certificate(cert_der)
                known = (cert, cert.serial_number, cert.issuer.public_bytes(), cert.fingerprint(hashes.SHA256()))
                if parsed is not None:
                    if len(parsed) > 20_000:  # bounded: a parse is cheap to redo, memory is not
                        parsed.clear()
                    parsed[cert_der] = known
            if known[1] == serial and known[2] == issuer_der:
                signer, signer_fp = known[0], known[3]
                break
        if signer is None:
            return None
        signed = b"\x31" + der_length(attrs_end - attrs_start) + der[attrs_start:attrs_end]
        pub = signer.public_key()
        if isinstance(pub, ec.EllipticCurvePublicKey) and sig_oid == _OID_ECDSA_SHA256:
            pub.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
        elif isinstance(pub, rsa.RSAPublicKey) and sig_oid in (_OID_RSA, _OID_RSA_SHA256):
            pub.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        else:
            return None
        if _issued_and_valid(signer, signer_fp, ca, now, issued) is None:
            return None
        return signer, data
    except Exception:  # malformed, a bad signature, a CA that did not issue it: the careful path decides
        return None
