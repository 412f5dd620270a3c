"""CMS (PKCS#7) for Apple device management: signed profiles, MachineInfo, ``Mdm-Signature``, the token.

Signing and enveloping use ``cryptography``; verifying uses ``asn1crypto`` to take SignedData apart and
``cryptography`` to check each signature, because ``cryptography`` has no public CMS verify. Every input
comes from the network, so every failure is a :class:`CMSError` with a short ``reason``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from asn1crypto import algos as asn1_algos
from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from .x509 import PrivateKey, fingerprint_sha256, is_ca, verify_issued_by

__all__ = [
    "CMSError",
    "der_length",
    "Verified",
    "sign",
    "verify",
    "signed_content",
    "envelope",
    "decrypt",
    "smime_envelope",
    "smime_decrypt",
    "text_part",
    "parse_text_part",
]

DEFAULT_MAX_SIZE = 4 * 1024 * 1024
MAX_CHAIN = 8


class CMSError(ValueError):
    """CMS that cannot be accepted; ``reason`` is short enough for a 400/403 body or a log line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Verified:
    """What a verified SignedData proves: this ``content`` was signed by ``signer``, which chains
    (``chain[0]`` is the signer, ``chain[-1]`` a trust root) to one of the given roots."""

    content: bytes
    signer: x509.Certificate
    chain: list[x509.Certificate] = field(default_factory=list)


# --- signing --------------------------------------------------------------------------------------


def sign(
    data: bytes,
    cert: x509.Certificate,
    key: PrivateKey,
    *,
    detached: bool = False,
    extra_certs: Sequence[x509.Certificate] = (),
) -> bytes:
    """DER SignedData over ``data`` (SHA-256, signed attributes), with the signer's certificate and
    ``extra_certs`` (intermediates) included so a verifier can build the chain.

    ``Binary`` keeps the bytes exactly as given: without it OpenSSL would rewrite newlines as in S/MIME
    text, and the digest would no longer match a plist someone else hashes.
    """
    builder = pkcs7.PKCS7SignatureBuilder().set_data(data).add_signer(cert, key, hashes.SHA256())
    for c in extra_certs:
        builder = builder.add_certificate(c)
    options = [pkcs7.PKCS7Options.Binary]
    if detached:
        options.append(pkcs7.PKCS7Options.DetachedSignature)
    return builder.sign(serialization.Encoding.DER, options)


# --- verification ---------------------------------------------------------------------------------

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def _hash(name: str) -> hashes.HashAlgorithm:
    try:
        return _HASHES[name]()
    except KeyError:
        raise CMSError(f"unsupported digest algorithm {name}") from None


def _digest(name: str, data: bytes) -> bytes:
    h = hashes.Hash(_hash(name))
    h.update(data)
    return h.finalize()


def der_length(n: int) -> bytes:
    """The DER length octets for ``n`` content bytes (short form below 128, long form above)."""
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _utc(t: _dt.datetime) -> _dt.datetime:
    return t.replace(tzinfo=_dt.UTC) if t.tzinfo is None else t.astimezone(_dt.UTC)


def verify(
    der: bytes,
    *,
    content: bytes | None = None,
    trust_roots: Sequence[x509.Certificate],
    now: _dt.datetime | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
) -> Verified:
    """Check a DER SignedData and return what it proves, or raise :class:`CMSError`.

    ``content`` is the signed data for a detached signature (``Mdm-Signature`` over a check-in body);
    when the content is also embedded the two must be identical. The signer must chain, through the
    certificates carried in the message, to one of ``trust_roots``; with ``now`` every certificate in
    that chain must be valid at that instant.
    """
    if not trust_roots:
        raise CMSError("no trust roots configured")
    if not isinstance(der, bytes | bytearray):
        raise CMSError("CMS must be bytes")
    if len(der) > max_size:
        raise CMSError(f"CMS larger than {max_size} bytes")
    der = bytes(der)
    fast = _verify_common(der, content, trust_roots, now)
    if fast is not None:
        return fast
    try:
        return _verify(der, content, trust_roots, now)
    except CMSError:
        raise
    except RecursionError:
        raise CMSError("malformed CMS (nested too deeply)") from None
    except Exception as e:  # asn1crypto parses lazily: malformed input surfaces as many exception types
        raise CMSError(f"malformed CMS ({type(e).__name__})") from None


_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_OID_DATA = "1.2.840.113549.1.7.1"
_OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"


def _verify_common(
    der: bytes,
    content: bytes | None,
    trust_roots: Sequence[x509.Certificate],
    now: _dt.datetime | None,
) -> Verified | None:
    """The common shape, checked cheaply; None whenever anything is unusual (or wrong).

    Every SignedData Apple devices and this project make looks alike: ``data`` content, one signer
    named by issuer and serial, signed attributes, the signer certificate included and either a trust
    root itself (a profile signed by the CA it installs) or issued directly by one (MachineInfo).
    This path checks exactly that shape with the same checks as :func:`_verify` (content digest,
    signature, issuer, CA flag, validity) but without asn1crypto's ``.native`` views of whole
    structures or parsing every carried certificate twice. It never raises: a refusal, or any other
    shape, goes to :func:`_verify`, which decides and words the reason.
    """
    try:
        info = asn1_cms.ContentInfo.load(der, strict=True)
        if info["content_type"].dotted != _OID_SIGNED_DATA:
            return None
        sd = info["content"]
        encap = sd["encap_content_info"]
        if encap["content_type"].dotted != _OID_DATA:
            return None
        embedded = encap["content"].native
        if embedded is not None and not isinstance(embedded, bytes):
            return None
        if embedded is not None and content is not None and embedded != content:
            return None
        data = embedded if embedded is not None else content
        if data is None:
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
            tbs = choice.chosen["tbs_certificate"]
            if tbs["serial_number"].native == serial and tbs["issuer"].dump() == issuer_der:
                signer = x509.load_der_x509_certificate(choice.chosen.dump())
                break
        if signer is None:
            return None
        digest_name = si["digest_algorithm"]["algorithm"].native
        hash_cls = _HASHES.get(digest_name)
        if hash_cls is None:
            return None
        sig_algo = si["signature_algorithm"]
        try:
            sig_hash = sig_algo.hash_algo
        except ValueError:
            sig_hash = digest_name
        if sig_hash != digest_name:
            return None
        attrs = si["signed_attrs"]
        if attrs.contents is None or len(attrs) == 0:
            return None
        digest = None
        for attr in attrs:
            kind = attr["type"].dotted
            if kind == _OID_MESSAGE_DIGEST:
                if digest is not None or len(attr["values"]) != 1:
                    return None
                digest = attr["values"][0].native
            elif kind == _OID_CONTENT_TYPE:
                if len(attr["values"]) != 1 or attr["values"][0].dotted != _OID_DATA:
                    return None
        h = hashes.Hash(hash_cls())
        h.update(data)
        if not isinstance(digest, bytes) or not hmac.compare_digest(digest, h.finalize()):
            return None
        inner = attrs.contents
        signed = b"\x31" + der_length(len(inner)) + inner
        algo = sig_algo.signature_algo
        pub = signer.public_key()
        if isinstance(pub, ec.EllipticCurvePublicKey) and algo == "ecdsa":
            pub.verify(si["signature"].native, signed, ec.ECDSA(hash_cls()))
        elif isinstance(pub, rsa.RSAPublicKey) and algo == "rsassa_pkcs1v15":
            pub.verify(si["signature"].native, signed, padding.PKCS1v15(), hash_cls())
        else:
            return None
        signer_fp = signer.fingerprint(hashes.SHA256())
        chain = None
        if any(root.fingerprint(hashes.SHA256()) == signer_fp for root in trust_roots):
            chain = [signer]
        else:
            for root in trust_roots:
                if is_ca(root) and verify_issued_by(signer, root):
                    chain = [signer, root]
                    break
        if chain is None:
            return None
        if now is not None:
            t = _utc(now)
            for c in chain:
                if not c.not_valid_before_utc <= t <= c.not_valid_after_utc:
                    return None
        return Verified(content=data, signer=signer, chain=chain)
    except Exception:  # malformed input, a bad signature, asn1crypto's lazy parsing: the careful path
        return None


def _load_certs(signed_data: asn1_cms.SignedData) -> list[tuple[x509.Certificate, asn1_x509.Certificate]]:
    """The certificates carried in the message, parsed by both libraries (one to match, one to check)."""
    out: list[tuple[x509.Certificate, asn1_x509.Certificate]] = []
    certs = signed_data["certificates"]
    if isinstance(certs, asn1_core.Void):  # absent (not ``.native``: that would decode every certificate)
        return out
    for choice in certs:
        if choice.name != "certificate":
            continue
        asn1_cert = choice.chosen
        out.append((x509.load_der_x509_certificate(asn1_cert.dump()), asn1_cert))
    return out


def _find_signer(
    sid: asn1_cms.SignerIdentifier, certs: list[tuple[x509.Certificate, asn1_x509.Certificate]]
) -> x509.Certificate:
    if sid.name == "issuer_and_serial_number":
        issuer = sid.chosen["issuer"]
        serial = sid.chosen["serial_number"].native
        for cert, asn1_cert in certs:
            if asn1_cert.serial_number == serial and (
                asn1_cert.issuer.dump() == issuer.dump() or asn1_cert.issuer == issuer  # bytes first: cheap
            ):
                return cert
    elif sid.name == "subject_key_identifier":
        ski = sid.chosen.native
        for cert, asn1_cert in certs:
            if asn1_cert.key_identifier == ski:
                return cert
    raise CMSError("signer certificate not included")


def _check_signature(
    signer: x509.Certificate,
    signature: bytes,
    signed: bytes,
    sig_algo: asn1_algos.SignedDigestAlgorithm,
    digest_name: str,
) -> None:
    algo = sig_algo.signature_algo
    try:
        hash_name = sig_algo.hash_algo
    except ValueError:  # bare "rsassa_pkcs1v15"/"ecdsa": the hash is the signer info's digest algorithm
        hash_name = digest_name
    pub = signer.public_key()
    try:
        if isinstance(pub, rsa.RSAPublicKey) and algo == "rsassa_pkcs1v15":
            pub.verify(signature, signed, padding.PKCS1v15(), _hash(hash_name))
        elif isinstance(pub, rsa.RSAPublicKey) and algo == "rsassa_pss":
            params = sig_algo["parameters"]
            pss_hash = _hash(params["hash_algorithm"]["algorithm"].native)
            mgf = padding.MGF1(_hash(params["mask_gen_algorithm"]["parameters"]["algorithm"].native))
            pub.verify(signature, signed, padding.PSS(mgf, params["salt_length"].native), pss_hash)
        elif isinstance(pub, ec.EllipticCurvePublicKey) and algo == "ecdsa":
            pub.verify(signature, signed, ec.ECDSA(_hash(hash_name)))
        else:
            raise CMSError(f"unsupported signature algorithm {algo} for {type(pub).__name__}")
    except InvalidSignature:
        raise CMSError("bad signature") from None


def _build_chain(
    signer: x509.Certificate, pool: list[x509.Certificate], roots: Sequence[x509.Certificate]
) -> list[x509.Certificate]:
    root_fps = {fingerprint_sha256(r): r for r in roots}
    chain = [signer]
    current = signer
    for _ in range(MAX_CHAIN):
        if fingerprint_sha256(current) in root_fps:
            return chain
        for root in roots:
            if is_ca(root) and verify_issued_by(current, root):
                chain.append(root)
                return chain
        seen = {fingerprint_sha256(c) for c in chain}
        for cand in pool:
            if fingerprint_sha256(cand) not in seen and is_ca(cand) and verify_issued_by(current, cand):
                chain.append(cand)
                current = cand
                break
        else:
            raise CMSError("signer does not chain to a trusted root")
    raise CMSError("certificate chain too long")


def _verify(
    der: bytes,
    content: bytes | None,
    trust_roots: Sequence[x509.Certificate],
    now: _dt.datetime | None,
) -> Verified:
    info = asn1_cms.ContentInfo.load(der, strict=True)
    if info["content_type"].native != "signed_data":
        raise CMSError(f"not SignedData ({info['content_type'].native})")
    sd = info["content"]
    encap = sd["encap_content_info"]
    embedded = encap["content"].native if encap["content"].native is not None else None
    if embedded is not None and not isinstance(embedded, bytes):
        embedded = encap["content"].parsed.dump()  # non-"data" content types: the encoded value
    if embedded is not None and content is not None and embedded != content:
        raise CMSError("embedded content differs from the given content")
    data = embedded if embedded is not None else content
    if data is None:
        raise CMSError("detached signature but no content given")

    signer_infos = sd["signer_infos"]
    if len(signer_infos) == 0:
        raise CMSError("no signer")
    si = signer_infos[0]
    certs = _load_certs(sd)
    signer = _find_signer(si["sid"], certs)

    digest_name = si["digest_algorithm"]["algorithm"].native
    attrs = si["signed_attrs"]
    if attrs.native is not None and len(attrs) > 0:
        by_type = {a["type"].native: a["values"] for a in attrs}
        if "message_digest" not in by_type or len(by_type["message_digest"]) != 1:
            raise CMSError("signed attributes lack messageDigest")
        md = by_type["message_digest"][0].native
        if not isinstance(md, bytes) or not hmac.compare_digest(md, _digest(digest_name, data)):
            raise CMSError("content digest mismatch")
        ctype = by_type.get("content_type")
        if ctype is not None and ctype[0].native != encap["content_type"].native:
            raise CMSError("contentType attribute does not match the content")
        # The signature covers the attributes DER-encoded as a SET OF (tag 0x31), not as the [0]
        # IMPLICIT field they are stored in. Re-tag the original bytes rather than re-encode them,
        # so a signer's non-canonical ordering still verifies.
        inner = attrs.contents
        signed = b"\x31" + der_length(len(inner)) + inner
    else:
        signed = data
    _check_signature(signer, si["signature"].native, signed, si["signature_algorithm"], digest_name)

    chain = _build_chain(signer, [c for c, _ in certs], trust_roots)
    if now is not None:
        t = _utc(now)
        for c in chain:
            if t < c.not_valid_before_utc:
                raise CMSError(f"certificate not yet valid: {c.subject.rfc4514_string()}"[:200])
            if t > c.not_valid_after_utc:
                raise CMSError(f"certificate expired: {c.subject.rfc4514_string()}"[:200])
    return Verified(content=data, signer=signer, chain=chain)


def signed_content(der: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> tuple[bytes, x509.Certificate | None]:
    """The embedded content of a SignedData and its claimed signer, WITHOUT checking anything.

    For places that show or store a signed blob whose trust is decided elsewhere (a device reading its
    own profile, a log); anything that grants access must use :func:`verify`.
    """
    if not isinstance(der, bytes | bytearray) or len(der) > max_size:
        raise CMSError(f"CMS must be bytes no larger than {max_size}")
    try:
        info = asn1_cms.ContentInfo.load(bytes(der), strict=True)
        if info["content_type"].native != "signed_data":
            raise CMSError(f"not SignedData ({info['content_type'].native})")
        sd = info["content"]
        embedded = sd["encap_content_info"]["content"].native
        if not isinstance(embedded, bytes):
            raise CMSError("SignedData has no embedded content")
        signer = None
        if len(sd["signer_infos"]) > 0:
            try:
                signer = _find_signer(sd["signer_infos"][0]["sid"], _load_certs(sd))
            except CMSError:
                signer = None
        return embedded, signer
    except CMSError:
        raise
    except RecursionError:
        raise CMSError("malformed CMS (nested too deeply)") from None
    except Exception as e:
        raise CMSError(f"malformed CMS ({type(e).__name__})") from None


# --- enveloping -----------------------------------------------------------------------------------


def envelope(data: bytes, recipient: x509.Certificate) -> bytes:
    """DER EnvelopedData of ``data`` for an RSA ``recipient`` (key transport, AES-256-CBC), as the
    portal does for the server token."""
    if not isinstance(recipient.public_key(), rsa.RSAPublicKey):
        raise CMSError("recipient certificate must have an RSA key")
    return (
        pkcs7.PKCS7EnvelopeBuilder()
        .set_data(data)
        .add_recipient(recipient)
        .set_content_encryption_algorithm(algorithms.AES256)
        .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )


def decrypt(der: bytes, cert: x509.Certificate, key: PrivateKey) -> bytes:
    """Open DER EnvelopedData addressed to ``cert``; any failure (wrong key, garbage) is a CMSError."""
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CMSError("decryption needs an RSA key")
    try:
        return pkcs7.pkcs7_decrypt_der(bytes(der), cert, key, [])
    except Exception as e:  # ValueError for bad DER, wrong recipient; UnsupportedAlgorithm...
        raise CMSError(f"cannot decrypt: {e}"[:200]) from None


SMIME_HEADERS = (
    'Content-Type: application/pkcs7-mime; name="smime.p7m"; smime-type=enveloped-data\r\n'
    "Content-Transfer-Encoding: base64\r\n"
    'Content-Disposition: attachment; filename="smime.p7m"\r\n'
    "Content-Description: S/MIME Encrypted Message\r\n"
)


def smime_envelope(data: bytes, recipient: x509.Certificate) -> bytes:
    """The ``…_smime.p7m`` file the portal hands out: MIME headers and base64 EnvelopedData.

    ``data`` is the already-built inner MIME part (see :func:`text_part`); ``openssl smime -decrypt``
    reads the result.
    """
    b64 = base64.b64encode(envelope(data, recipient)).decode("ascii")
    lines = "\r\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    return (SMIME_HEADERS + "\r\n" + lines + "\r\n").encode("ascii")


_HEADER_END = re.compile(rb"\r?\n\r?\n")


def smime_decrypt(message: bytes, cert: x509.Certificate, key: PrivateKey) -> bytes:
    """Inverse of :func:`smime_envelope`; also accepts the bare base64 or DER body."""
    if not isinstance(message, bytes | bytearray):
        raise CMSError("S/MIME message must be bytes")
    message = bytes(message)
    if message[:1] == b"\x30":
        return decrypt(message, cert, key)
    body = message
    head = message.lstrip()[:64].lower()
    if head.startswith((b"content-", b"mime-version")):
        parts = _HEADER_END.split(message, maxsplit=1)
        if len(parts) != 2:
            raise CMSError("S/MIME message has no body")
        headers, body = parts
        ctype = next((h for h in headers.splitlines() if h.lower().startswith(b"content-type:")), b"").lower()
        if b"pkcs7-mime" not in ctype:
            raise CMSError("not an application/pkcs7-mime message")
    try:
        der = base64.b64decode(b"".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CMSError("S/MIME body is not base64") from None
    return decrypt(der, cert, key)


def text_part(s: str) -> bytes:
    """The inner ``text/plain`` MIME part of Apple's server token, wrapping ``s`` (the JSON)."""
    return (
        "Content-Type: text/plain;charset=UTF-8\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n"
        "-----BEGIN MESSAGE-----\r\n"
        f"{s}\r\n"
        "-----END MESSAGE-----\r\n"
    ).encode()


def parse_text_part(b: bytes) -> str:
    """The payload of a token's ``text/plain`` part; headers and BEGIN/END markers are optional."""
    try:
        text = bytes(b).decode("utf-8")
    except UnicodeDecodeError:
        raise CMSError("token part is not UTF-8") from None
    if text.lstrip().lower().startswith(("content-", "mime-version")):
        parts = re.split(r"\r?\n\r?\n", text, maxsplit=1)
        text = parts[1] if len(parts) == 2 else ""
    begin, end = "-----BEGIN MESSAGE-----", "-----END MESSAGE-----"
    if begin in text:
        text = text.split(begin, 1)[1]
        text = text.split(end, 1)[0]
    return text.strip()
