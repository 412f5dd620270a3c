"""SCEP (RFC 8894) messages: what a device and an MDM server's certificate authority say to each other.

A ``com.apple.security.scep`` payload sends a device to a SCEP server for its identity. The exchange:

* ``GetCACaps`` → a text list of capabilities (``POSTPKIOperation``, ``AES``, ``SHA-256``, …);
* ``GetCACert`` → the CA certificate (DER), or an RA and the CA as a certs-only PKCS#7;
* ``PKIOperation`` → a *pkiMessage*: a CMS SignedData, signed by the requester (a self-signed
  certificate for a first request, its current identity for a renewal), whose signed attributes
  carry the SCEP fields (messageType, transactionID, senderNonce, …) and whose content is an
  EnvelopedData, encrypted to the CA (or RA), holding the CSR (PKCSReq, RenewalReq) or the
  issuer-and-subject of a pending request (CertPoll, "GetCertInitial");
* the answer, a CertRep pkiMessage signed by the CA (or RA): pkiStatus SUCCESS with the issued
  certificate in a certs-only PKCS#7 enveloped to the requester's certificate, PENDING, or FAILURE
  with a failInfo.

``cryptography`` cannot put attributes of our own into a signature nor open DES-enveloped data
(micromdm's ``scepclient`` and ``scepserver`` envelope with single DES by default), so the structures
are built and read with ``asn1crypto`` and every signature, key transport and cipher is
``cryptography``'s. Every input comes from the network: every failure is a :class:`SCEPError` carrying
the failInfo a server should answer with.
"""

from __future__ import annotations

import functools
import hmac
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import parser as asn1_parser
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AttributeOID

from .cms import CMSError, _check_signature, _digest, _find_signer, _load_certs, der_length
from .x509 import PrivateKey

__all__ = [
    "MessageType",
    "PKIStatus",
    "FailInfo",
    "SCEPError",
    "PKIMessage",
    "DEFAULT_CAPS",
    "MAX_MESSAGE",
    "sign_pki_message",
    "parse_pki_message",
    "envelope",
    "open_envelope",
    "content_cipher",
    "certs_only",
    "parse_certs_only",
    "parse_caps",
    "challenge_password",
    "issuer_and_subject",
    "parse_issuer_and_subject",
    "name_from_der",
    "new_nonce",
    "transaction_id",
]

#: A pkiMessage is a CSR and a certificate or two: a few KB. Anything near this is not one.
MAX_MESSAGE = 256 * 1024

#: What our SCEP service offers (RFC 8894 §3.5.2): POST for PKIOperation, AES and DES3 envelopes,
#: SHA-1/256/512 digests, renewal, and RFC 8894 itself.
DEFAULT_CAPS = ("POSTPKIOperation", "Renewal", "AES", "DES3", "SHA-1", "SHA-256", "SHA-512", "SCEPStandard")


class MessageType(StrEnum):
    """``messageType`` (a PrintableString of a decimal number)."""

    CERT_REP = "3"
    RENEWAL_REQ = "17"
    PKCS_REQ = "19"
    CERT_POLL = "20"  # "GetCertInitial" in the drafts Apple's documentation follows
    GET_CERT = "21"
    GET_CRL = "22"


class PKIStatus(StrEnum):
    SUCCESS = "0"
    FAILURE = "2"
    PENDING = "3"


class FailInfo(StrEnum):
    BAD_ALG = "0"
    BAD_MESSAGE_CHECK = "1"
    BAD_REQUEST = "2"
    BAD_TIME = "3"
    BAD_CERT_ID = "4"

    @property
    def label(self) -> str:
        """RFC 8894's name (``badRequest``), as devices and logs show it."""
        return {"0": "badAlg", "1": "badMessageCheck", "2": "badRequest", "3": "badTime", "4": "badCertId"}[self.value]


class SCEPError(ValueError):
    """A message that cannot be accepted; ``fail_info`` is what a CertRep FAILURE should say."""

    def __init__(self, reason: str, fail_info: FailInfo = FailInfo.BAD_REQUEST) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fail_info = fail_info


# -- the SCEP attributes, registered with asn1crypto so signed attributes parse into typed values ----

_OIDS = {
    "2.16.840.1.113733.1.9.2": "scep_message_type",
    "2.16.840.1.113733.1.9.3": "scep_pki_status",
    "2.16.840.1.113733.1.9.4": "scep_fail_info",
    "2.16.840.1.113733.1.9.5": "scep_sender_nonce",
    "2.16.840.1.113733.1.9.6": "scep_recipient_nonce",
    "2.16.840.1.113733.1.9.7": "scep_transaction_id",
}


class _SetOfPrintable(asn1_core.SetOf):
    _child_spec = asn1_core.PrintableString


# asn1crypto's documented way to teach it attribute types: extend the OID map and the value specs.
asn1_cms.CMSAttributeType._map.update(_OIDS)
asn1_cms.CMSAttributeType._reverse_map = None  # rebuilt from _map on next use
for _name in ("scep_message_type", "scep_pki_status", "scep_fail_info", "scep_transaction_id"):
    asn1_cms.CMSAttribute._oid_specs[_name] = _SetOfPrintable
for _name in ("scep_sender_nonce", "scep_recipient_nonce"):
    asn1_cms.CMSAttribute._oid_specs[_name] = asn1_cms.SetOfOctetString


@dataclass
class PKIMessage:
    """A parsed and signature-checked pkiMessage. ``content`` is the encapsulated bytes (an
    EnvelopedData for requests and successful CertReps; empty for PENDING and FAILURE)."""

    message_type: MessageType
    transaction_id: str
    sender_nonce: bytes | None
    signer: x509.Certificate
    content: bytes = b""
    recipient_nonce: bytes | None = None
    pki_status: PKIStatus | None = None
    fail_info: FailInfo | None = None
    digest_algorithm: str = "sha256"
    #: every certificate the message carried (the requester's, or the CA/RA chain of a CertRep)
    certificates: list[x509.Certificate] = field(default_factory=list)


# -- helpers -------------------------------------------------------------------------------------------


def new_nonce() -> bytes:
    """A senderNonce: 16 random bytes (RFC 8894 §3.2.1.5)."""
    return os.urandom(16)


def transaction_id(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    """The transactionID a requester derives from its key (hex SHA-256 of the public key's DER)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    der = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    h = hashes.Hash(hashes.SHA256())
    h.update(der)
    return h.finalize().hex().upper()


def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    from cryptography.hazmat.primitives.serialization import Encoding

    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


def _issuer_serial(cert: asn1_x509.Certificate) -> asn1_cms.IssuerAndSerialNumber:
    return asn1_cms.IssuerAndSerialNumber({"issuer": cert.issuer, "serial_number": cert.serial_number})


def parse_caps(text: str) -> set[str]:
    """GetCACaps' answer: one capability a line (case-insensitive names kept as sent)."""
    return {line.strip() for line in text.splitlines() if line.strip()}


# -- certs-only PKCS#7 (GetCACert with an RA, the issued certificate in a CertRep) -------------------


def certs_only(certs: Sequence[x509.Certificate]) -> bytes:
    """A "degenerate" SignedData carrying only certificates (no content, no signers)."""
    return _signed_data(None, b"", [c.public_bytes(Encoding.DER) for c in certs], [])


def parse_certs_only(der: bytes) -> list[x509.Certificate]:
    """The certificates of a certs-only SignedData; SCEPError if it is not one."""
    try:
        info = asn1_cms.ContentInfo.load(bytes(der))
        if info["content_type"].native != "signed_data":
            raise SCEPError("not a PKCS#7 SignedData")
        return [cert for cert, _ in _load_certs(info["content"])]
    except SCEPError:
        raise
    except Exception as exc:  # asn1crypto parses lazily: malformed input surfaces as many types
        raise SCEPError(f"malformed certs-only PKCS#7 ({type(exc).__name__})") from None


# -- EnvelopedData ---------------------------------------------------------------------------------------

_CIPHERS = {
    # name: (algorithm OID, key bytes, block cipher)
    "aes128": ("2.16.840.1.101.3.4.1.2", 16, algorithms.AES),
    "aes256": ("2.16.840.1.101.3.4.1.42", 32, algorithms.AES),
    "des3": ("1.2.840.113549.3.7", 24, TripleDES),
}


def envelope(data: bytes, recipients: Iterable[x509.Certificate], cipher: str = "aes128") -> bytes:
    """EnvelopedData of ``data`` for RSA ``recipients`` (key transport with PKCS#1 v1.5, as SCEP uses),
    with ``cipher`` one of ``aes128``, ``aes256``, ``des3`` in CBC mode."""
    try:
        cipher_oid, key_len, block = _CIPHERS[cipher]
    except KeyError:
        raise SCEPError(f"unknown content cipher {cipher}", FailInfo.BAD_ALG) from None
    cek, iv = os.urandom(key_len), os.urandom(block.block_size // 8)
    padder = sym_padding.PKCS7(block.block_size).padder()
    encryptor = Cipher(block(cek), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()
    infos = []
    for cert in recipients:
        public = cert.public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            raise SCEPError("SCEP envelopes need an RSA recipient certificate", FailInfo.BAD_ALG)
        issuer_and_serial = _tlv(0x30, cert.issuer.public_bytes() + _integer(cert.serial_number))
        infos.append(_tlv(0x30, (  # KeyTransRecipientInfo, version 0
            _integer(0) + issuer_and_serial + _tlv(0x30, _oid(_OID_RSA) + _NULL)
            + _tlv(0x04, public.encrypt(cek, padding.PKCS1v15()))
        )))
    if not infos:
        raise SCEPError("no recipient for the envelope")
    encrypted_content_info = _tlv(0x30, (
        _oid(_OID_DATA_DER)
        + _tlv(0x30, _oid(cipher_oid) + _tlv(0x04, iv))
        + _tlv(0x80, ciphertext)  # [0] IMPLICIT OCTET STRING
    ))
    enveloped = _tlv(0x30, _integer(0) + _set_of(infos) + encrypted_content_info)
    return _tlv(0x30, _oid(_OID_ENVELOPED_DATA) + _tlv(0xA0, enveloped))


def content_cipher(der: bytes) -> str:
    """The cipher an EnvelopedData was made with, as :func:`envelope` names it, so an answer can use
    what the asker evidently supports (single DES is answered with DES3; anything unknown with AES)."""
    try:
        info = asn1_cms.ContentInfo.load(bytes(der))
        name = info["content"]["encrypted_content_info"]["content_encryption_algorithm"]["algorithm"].native
    except Exception:
        return "aes128"
    return {"aes256_cbc": "aes256", "tripledes_3key": "des3", "des": "des3"}.get(name, "aes128")


def _elements(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """The TLVs one after another in ``data``: (class, constructed, tag, contents)."""
    out, offset = [], 0
    while offset < len(data):
        class_, constructed, tag, header, body, trailer = asn1_parser.parse(data[offset:], strict=False)
        out.append((class_, constructed, tag, body))
        offset += len(header) + len(body) + len(trailer)
    return out


def _constructed_content(contents: bytes) -> bytes:
    """The encryptedContent of an EncryptedContentInfo whose ``[0]`` is constructed: the
    concatenation of the OCTET STRING segments inside it (X.690 §8.7.3)."""
    for class_, constructed, tag, body in _elements(contents):
        if class_ == 2 and tag == 0:  # context-specific [0]
            if not constructed:
                return body
            segments = _elements(body)
            if any(segment_tag != 4 for _, _, segment_tag, _ in segments):
                raise ValueError("encryptedContent segments must be OCTET STRINGs")
            return b"".join(segment for _, _, _, segment in segments)
    return b""


def open_envelope(der: bytes, cert: x509.Certificate, key: PrivateKey) -> bytes:
    """Decrypt EnvelopedData addressed to ``cert``: AES-128/192/256-CBC, DES-EDE3-CBC or DES-CBC (what
    micromdm's SCEP tools send by default). A message not for us, or that will not decrypt, is a
    SCEPError with badMessageCheck; an algorithm we do not know, badAlg."""
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SCEPError("SCEP decryption needs an RSA key", FailInfo.BAD_ALG)
    try:
        info = asn1_cms.ContentInfo.load(bytes(der))
        if info["content_type"].native != "enveloped_data":
            raise SCEPError("the pkiMessage content is not an EnvelopedData")
        enveloped = info["content"]
        mine = _issuer_serial(_asn1_cert(cert)).dump()
        encrypted_key = None
        for recipient in enveloped["recipient_infos"]:
            if recipient.name != "ktri":
                continue
            rid = recipient.chosen["rid"]
            if rid.name == "issuer_and_serial_number" and rid.chosen.dump() == mine:
                encrypted_key = recipient.chosen["encrypted_key"].native
        if encrypted_key is None:
            raise SCEPError("the envelope is not addressed to this certificate", FailInfo.BAD_MESSAGE_CHECK)
        content_info = enveloped["encrypted_content_info"]
        algorithm = content_info["content_encryption_algorithm"]
        name = algorithm["algorithm"].native
        try:
            ciphertext = content_info["encrypted_content"].native or b""
        except ValueError:  # a constructed [0] (BER), as go.mozilla.org/pkcs7 writes it: micromdm's tools
            ciphertext = _constructed_content(content_info.contents)
    except SCEPError:
        raise
    except Exception as exc:
        raise SCEPError(f"malformed EnvelopedData ({type(exc).__name__})") from None
    if name in ("aes128_cbc", "aes192_cbc", "aes256_cbc"):
        block, key_len = algorithms.AES, {"aes128_cbc": 16, "aes192_cbc": 24, "aes256_cbc": 32}[name]
    elif name == "tripledes_3key":
        block, key_len = TripleDES, 24
    elif name == "des":
        block, key_len = TripleDES, 8  # single DES is 3DES with one key three times
    else:
        raise SCEPError(f"unsupported content encryption {name}", FailInfo.BAD_ALG)
    try:
        iv = algorithm["parameters"].native
        cek = key.decrypt(encrypted_key, padding.PKCS1v15())
        if len(cek) != key_len or not isinstance(iv, bytes) or len(iv) != block.block_size // 8:
            raise ValueError("key or IV length")
        if name == "des":
            cek = cek * 3  # DES-EDE with K1 = K2 = K3 is single DES
        decryptor = Cipher(block(cek), modes.CBC(iv)).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = sym_padding.PKCS7(block.block_size).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except Exception:  # wrong key (implicit rejection gives a random key), bad padding, bad IV
        raise SCEPError("the envelope could not be decrypted", FailInfo.BAD_MESSAGE_CHECK) from None


# -- pkiMessage ----------------------------------------------------------------------------------------------

_DIGESTS = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha512": hashes.SHA512}


# -- writing DER directly ---------------------------------------------------------------------------------
# A server answers every enrollment with a signed CertRep, and a device signs every request: built with
# asn1crypto's classes a message cost ~1.5 ms of CPU, most of a SCEP exchange after the RSA operations.
# These few structures are written directly instead (measured: ~0.15 ms); the tests check the bytes
# against asn1crypto's and have OpenSSL and micromdm's tools read them.

def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + der_length(len(content)) + content


@functools.lru_cache(maxsize=64)
def _oid(dotted: str) -> bytes:
    first, second, *rest = (int(part) for part in dotted.split("."))
    body = bytearray([40 * first + second])
    for number in rest:
        chunk = [number & 0x7F]
        number >>= 7
        while number:
            chunk.append(0x80 | (number & 0x7F))
            number >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _set_of(items: Iterable[bytes]) -> bytes:
    """A DER SET OF: its elements sorted by their encodings (X.690 §11.6)."""
    return _tlv(0x31, b"".join(sorted(items)))


_NULL = b"\x05\x00"
_DIGEST_OIDS = {"sha1": "1.3.14.3.2.26", "sha256": "2.16.840.1.101.3.4.2.1", "sha512": "2.16.840.1.101.3.4.2.3"}
_OID_DATA_DER = "1.2.840.113549.1.7.1"
_OID_SIGNED_DATA_DER = "1.2.840.113549.1.7.2"
_OID_RSA = "1.2.840.113549.1.1.1"
_OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
_ATTRIBUTE_OIDS = {
    "content_type": "1.2.840.113549.1.9.3",
    "message_digest": "1.2.840.113549.1.9.4",
    **{name: oid for oid, name in _OIDS.items()},
}


def _attribute_der(name: str, value: bytes) -> bytes:
    return _tlv(0x30, _oid(_ATTRIBUTE_OIDS[name]) + _tlv(0x31, value))


def _signed_data(digest: str | None, content: bytes, certificates: Iterable[bytes], signer_infos: Iterable[bytes]) -> bytes:
    algorithms = [_tlv(0x30, _oid(_DIGEST_OIDS[digest]) + _NULL)] if digest else []
    encap = _oid(_OID_DATA_DER) + (_tlv(0xA0, _tlv(0x04, content)) if content else b"")
    body = (
        _integer(1)
        + _set_of(algorithms)
        + _tlv(0x30, encap)
        + _tlv(0xA0, b"".join(sorted(certificates)))  # [0] IMPLICIT SET OF Certificate
        + _set_of(signer_infos)
    )
    return _tlv(0x30, _oid(_OID_SIGNED_DATA_DER) + _tlv(0xA0, _tlv(0x30, body)))


def sign_pki_message(
    *,
    message_type: MessageType,
    transaction_id: str,
    signer_cert: x509.Certificate,
    signer_key: PrivateKey,
    content: bytes = b"",
    sender_nonce: bytes | None = None,
    recipient_nonce: bytes | None = None,
    pki_status: PKIStatus | None = None,
    fail_info: FailInfo | None = None,
    digest: str = "sha256",
    extra_certs: Sequence[x509.Certificate] = (),
) -> bytes:
    """A pkiMessage: SignedData over ``content`` (an EnvelopedData, or nothing) with the SCEP attributes
    signed, the signer's certificate (and ``extra_certs``) included. RSA signers only: SCEP's are."""
    if digest not in _DIGESTS:
        raise SCEPError(f"unsupported digest {digest}", FailInfo.BAD_ALG)
    if not isinstance(signer_key, rsa.RSAPrivateKey):
        raise SCEPError("SCEP messages are signed with RSA keys", FailInfo.BAD_ALG)
    try:
        printable = [_tlv(0x13, value.encode("ascii")) for value in (MessageType(message_type).value, transaction_id)]
    except UnicodeEncodeError:
        raise SCEPError("a transactionID is printable ASCII") from None
    attrs = [
        _attribute_der("content_type", _oid(_OID_DATA_DER)),
        _attribute_der("message_digest", _tlv(0x04, _digest(digest, content))),
        _attribute_der("scep_message_type", printable[0]),
        _attribute_der("scep_transaction_id", printable[1]),
    ]
    if sender_nonce is not None:
        attrs.append(_attribute_der("scep_sender_nonce", _tlv(0x04, sender_nonce)))
    if recipient_nonce is not None:
        attrs.append(_attribute_der("scep_recipient_nonce", _tlv(0x04, recipient_nonce)))
    if pki_status is not None:
        attrs.append(_attribute_der("scep_pki_status", _tlv(0x13, PKIStatus(pki_status).value.encode())))
    if fail_info is not None:
        attrs.append(_attribute_der("scep_fail_info", _tlv(0x13, FailInfo(fail_info).value.encode())))
    signed_attrs = _set_of(attrs)  # the DER that is signed (RFC 5652 §5.4); [0] IMPLICIT in the SignerInfo
    signature = signer_key.sign(signed_attrs, padding.PKCS1v15(), _DIGESTS[digest]())
    issuer_and_serial = _tlv(0x30, signer_cert.issuer.public_bytes() + _integer(signer_cert.serial_number))
    signer_info = _tlv(0x30, (
        _integer(1)
        + issuer_and_serial
        + _tlv(0x30, _oid(_DIGEST_OIDS[digest]) + _NULL)
        + b"\xa0" + signed_attrs[1:]
        + _tlv(0x30, _oid(_OID_RSA) + _NULL)
        + _tlv(0x04, signature)
    ))
    certificates = [c.public_bytes(Encoding.DER) for c in (signer_cert, *extra_certs)]
    return _signed_data(digest, content, certificates, [signer_info])


def _one(attrs: dict[str, object], name: str) -> object | None:
    values = attrs.get(name)
    return values[0] if values else None


def parse_pki_message(der: bytes, *, max_size: int = MAX_MESSAGE) -> PKIMessage:
    """Parse a pkiMessage and check its signature against the certificate it names as signer.

    Whether that signer may ask (a self-signed requester, a current identity renewing, the CA or RA
    answering) is the caller's rule; this checks that the message is intact and well-formed.
    """
    if not isinstance(der, bytes | bytearray) or not der:
        raise SCEPError("empty pkiMessage")
    if len(der) > max_size:
        raise SCEPError(f"pkiMessage larger than {max_size} bytes")
    try:
        info = asn1_cms.ContentInfo.load(bytes(der))
        if info["content_type"].native != "signed_data":
            raise SCEPError("a pkiMessage is a CMS SignedData")
        signed = info["content"]
        certs = _load_certs(signed)
        signer_infos = list(signed["signer_infos"])
        if len(signer_infos) != 1:
            raise SCEPError("a pkiMessage has exactly one signer", FailInfo.BAD_MESSAGE_CHECK)
        signer_info = signer_infos[0]
        signer = _find_signer(signer_info["sid"], certs)
        digest_name = signer_info["digest_algorithm"]["algorithm"].native
        if digest_name not in ("sha1", "sha224", "sha256", "sha384", "sha512"):
            raise SCEPError(f"unsupported digest {digest_name}", FailInfo.BAD_ALG)
        encap = signed["encap_content_info"]
        content = encap["content"].native if encap["content"].native is not None else b""
        if not isinstance(content, bytes):
            content = encap["content"].parsed.dump() if hasattr(encap["content"], "parsed") else b""
        signed_attrs = signer_info["signed_attrs"]
        if isinstance(signed_attrs, asn1_core.Void):
            raise SCEPError("a pkiMessage signs its attributes", FailInfo.BAD_MESSAGE_CHECK)
        attrs: dict[str, object] = {}
        for attr in signed_attrs:
            attrs[attr["type"].native] = [v.native if hasattr(v, "native") else v for v in attr["values"]]
        message_digest = _one(attrs, "message_digest")
        if not isinstance(message_digest, bytes) or not hmac.compare_digest(
            message_digest, _digest(digest_name, content)
        ):
            raise SCEPError("the message digest does not match the content", FailInfo.BAD_MESSAGE_CHECK)
        # The signature covers the attributes as the signer encoded them, re-tagged as a SET (RFC 5652
        # §5.4): not re-encoded, since a signer need not sort them as DER would (go's pkcs7 does not).
        raw_attrs = signed_attrs.contents
        to_verify = b"\x31" + der_length(len(raw_attrs)) + raw_attrs
        _check_signature(signer, signer_info["signature"].native, to_verify, signer_info["signature_algorithm"], digest_name)
        message_type = _one(attrs, "scep_message_type")
        transaction = _one(attrs, "scep_transaction_id")
        if not isinstance(message_type, str) or not isinstance(transaction, str):
            raise SCEPError("messageType and transactionID are required")
        try:
            kind = MessageType(message_type)
        except ValueError:
            raise SCEPError(f"unknown messageType {message_type[:10]}") from None
        status = _one(attrs, "scep_pki_status")
        fail = _one(attrs, "scep_fail_info")
        sender_nonce = _one(attrs, "scep_sender_nonce")
        recipient_nonce = _one(attrs, "scep_recipient_nonce")
        return PKIMessage(
            message_type=kind,
            transaction_id=transaction,
            sender_nonce=sender_nonce if isinstance(sender_nonce, bytes) else None,
            recipient_nonce=recipient_nonce if isinstance(recipient_nonce, bytes) else None,
            pki_status=PKIStatus(status) if isinstance(status, str) else None,
            fail_info=FailInfo(fail) if isinstance(fail, str) else None,
            signer=signer,
            content=content,
            digest_algorithm=digest_name,
            certificates=[cert for cert, _ in certs],
        )
    except SCEPError:
        raise
    except CMSError as exc:
        raise SCEPError(exc.reason, FailInfo.BAD_MESSAGE_CHECK) from None
    except Exception as exc:  # asn1crypto parses lazily: malformed input surfaces as many types
        raise SCEPError(f"malformed pkiMessage ({type(exc).__name__})") from None


# -- CSR and CertPoll contents ------------------------------------------------------------------------------


def challenge_password(csr: x509.CertificateRequest) -> str | None:
    """The CSR's challengePassword attribute (how SCEP carries the one-time challenge), if any."""
    try:
        value = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
    except x509.AttributeNotFound:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class _IssuerAndSubject(asn1_core.Sequence):
    _fields = [("issuer", asn1_x509.Name), ("subject", asn1_x509.Name)]


def issuer_and_subject(issuer: x509.Name, subject: x509.Name) -> bytes:
    """CertPoll's content: the CA's name and the subject asked for (RFC 8894 §3.3.3)."""
    return _IssuerAndSubject({
        "issuer": asn1_x509.Name.load(issuer.public_bytes()),
        "subject": asn1_x509.Name.load(subject.public_bytes()),
    }).dump()


def parse_issuer_and_subject(der: bytes) -> tuple[x509.Name, x509.Name]:
    """The names of a CertPoll, as ``cryptography`` Names (compared with ``==``)."""
    try:
        parsed = _IssuerAndSubject.load(bytes(der))
        return _name(parsed["issuer"]), _name(parsed["subject"])
    except Exception as exc:
        raise SCEPError(f"malformed IssuerAndSubject ({type(exc).__name__})") from None


def name_from_der(der: bytes) -> x509.Name:
    """A DER Name (as ``x509.Name.public_bytes()`` writes one) read back as a ``cryptography`` Name."""
    try:
        return _name(asn1_x509.Name.load(bytes(der)))
    except Exception as exc:
        raise SCEPError(f"malformed Name ({type(exc).__name__})") from None


def _name(name: asn1_x509.Name) -> x509.Name:
    rdns = []
    for rdn in name.chosen:
        attrs = [
            x509.NameAttribute(x509.ObjectIdentifier(tv["type"].dotted), str(tv["value"].native)) for tv in rdn
        ]
        rdns.append(x509.RelativeDistinguishedName(attrs))
    return x509.Name(rdns)
