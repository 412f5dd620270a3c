"""A simulated Secure Enclave: keys a device can sign with but nobody can read.

A hardware-bound key (an ACME payload with ``HardwareBound``) is made here and its private half never
leaves: no method returns it, in any form. What the rest of the device holds is a *keychain item*, a
JSON-safe dict with the public key and the private scalar **wrapped** (AES-256-GCM) under a key only
this enclave derives, the way a real Secure Enclave stores its keys on flash wrapped by its fused UID
key. The device state (and so the device store) keeps the item; to use it, the device asks its
enclave to sign, and the enclave unwraps the key for that one operation.

Where the wrapping secret lives. Each enclave's wrap key is derived (HKDF-SHA256) from a *fuse*
secret and the device's serial number, so one device's items are useless to another's enclave. The
fuse belongs to the device side of a world (:class:`~simulator.device.store.DeviceFleetService`):
random in memory for an in-memory world; for a world on disk, a file beside the device store
(``secure-enclave.fuse``, mode 0600, made once with an atomic create), because every worker process
of a served world must use the same devices' keys. It is never derived from ``--seed``: a seed is a
replay recipe anyone may hold, and a key derived from it would be extractable by construction. So,
unlike every other key of a seeded world, hardware-bound keys differ from run to run. A device made
on its own (a load run, ``mdmsim device power-on``) gets a fuse of its own in memory: its hardware-bound
keys work for as long as that device object lives, as a real device's do until it is erased.

What keeps the key unreachable through the public API: :class:`SecureEnclave` and :class:`HardwareKey`
offer signing (raw ECDSA, CSR, CMS) and public keys only; ``private_bytes`` and ``private_numbers``
raise; neither can be pickled or copied (a copy would be a second enclave with the same fuse);
``repr`` shows nothing secret; the wrap key sits in a name-mangled slot. Python cannot stop code that
reaches into private attributes of objects in its own process, and this module does not pretend to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path
from typing import Any, NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mdm.protocol import cms

__all__ = ["HardwareKey", "SecureEnclave", "load_fuse", "new_fuse", "FUSE_FILE"]

FUSE_FILE = "secure-enclave.fuse"
_CURVES = {256: ec.SECP256R1, 384: ec.SECP384R1}
_ITEM_KIND = "secure-enclave"


def new_fuse() -> bytes:
    """A fresh fuse secret (32 random bytes)."""
    return os.urandom(32)


def load_fuse(path: Path | None) -> bytes:
    """The fuse secret kept at ``path`` (made there on first use, owner-only), or a fresh one for
    ``None``. Made with an atomic link so two processes starting at once agree on one."""
    if path is None:
        return new_fuse()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, new_fuse())
        finally:
            os.close(fd)
        try:
            os.link(scratch, path)
        except FileExistsError:
            pass  # another process made it first: theirs is the fuse
        finally:
            scratch.unlink(missing_ok=True)
    fuse = path.read_bytes()
    if len(fuse) != 32:
        raise ValueError(f"{path} is not a Secure Enclave fuse file (32 bytes)")
    return fuse


def _refuse(*_: Any, **__: Any) -> NoReturn:
    raise TypeError("a hardware-bound key never leaves the Secure Enclave")


class SecureEnclave:
    """One device's enclave: makes P-256/P-384 keys and signs with them; never hands one out."""

    __slots__ = ("__wrap", "__device")

    def __init__(self, fuse: bytes, device: str) -> None:
        if len(fuse) != 32:
            raise ValueError("a fuse is 32 bytes")
        wrap = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=b"mdmsim secure enclave key wrap:" + device.encode()).derive(fuse)
        self.__wrap = AESGCM(wrap)
        self.__device = device

    def __repr__(self) -> str:
        return f"<SecureEnclave of {self.__device}>"

    __reduce__ = __reduce_ex__ = __copy__ = __deepcopy__ = __getstate__ = _refuse

    # -- keys ----------------------------------------------------------------------------------------------
    def create_key(self, bits: int = 256, *, tag: str = "") -> HardwareKey:
        """A new key of ``bits`` (256 or 384, what the Secure Enclave makes), from OS randomness."""
        curve = _CURVES.get(bits)
        if curve is None:
            raise ValueError("the Secure Enclave makes EC P-256 and P-384 keys")
        key = ec.generate_private_key(curve())
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        nonce = os.urandom(12)
        secret = key.private_numbers().private_value.to_bytes(bits // 8, "big")
        wrapped = self.__wrap.encrypt(nonce, secret, self._aad(bits, tag, spki))
        item = {"kind": _ITEM_KIND, "bits": bits, "tag": tag, "public_key": base64.b64encode(spki).decode(),
                "wrapped": base64.b64encode(nonce + wrapped).decode()}
        return HardwareKey(self, item)

    def key(self, item: dict[str, Any]) -> HardwareKey:
        """The key a keychain item names (it must be one of this enclave's)."""
        self._secret(item)  # refuses another enclave's item now, not at its first use (and derives nothing)
        return HardwareKey(self, item)

    @staticmethod
    def _aad(bits: int, tag: str, spki: bytes) -> bytes:
        return f"{_ITEM_KIND}:{bits}:{tag}:".encode() + hashlib.sha256(spki).digest()

    def _secret(self, item: dict[str, Any]) -> tuple[int, int]:
        """``(bits, private scalar)`` of an item, once its wrapping authenticates under this enclave."""
        try:
            bits, tag = int(item["bits"]), str(item["tag"])
            spki = base64.b64decode(item["public_key"])
            blob = base64.b64decode(item["wrapped"])
            secret = self.__wrap.decrypt(blob[:12], blob[12:], self._aad(bits, tag, spki))
            if bits not in _CURVES:
                raise ValueError(bits)
        except Exception:
            raise ValueError("this keychain item is not a key of this Secure Enclave") from None
        return bits, int.from_bytes(secret, "big")

    def _unwrap(self, item: dict[str, Any]) -> ec.EllipticCurvePrivateKey:
        bits, scalar = self._secret(item)
        return ec.derive_private_key(scalar, _CURVES[bits]())

    # -- operations (the key is unwrapped for each one and dropped) -------------------------------------------
    def _sign(self, item: dict[str, Any], data: bytes) -> bytes:
        return self._unwrap(item).sign(data, ec.ECDSA(hashes.SHA256()))

    def _sign_csr(self, item: dict[str, Any], builder: x509.CertificateSigningRequestBuilder) -> x509.CertificateSigningRequest:
        return builder.sign(self._unwrap(item), hashes.SHA256())

    def _sign_cms(self, item: dict[str, Any], data: bytes, cert: x509.Certificate, detached: bool) -> bytes:
        return cms.sign(data, cert, self._unwrap(item), detached=detached)


class HardwareKey:
    """A handle on one Secure Enclave key: its public key, and signing. The private key is not here."""

    __slots__ = ("_enclave", "item")

    def __init__(self, enclave: SecureEnclave, item: dict[str, Any]) -> None:
        self._enclave = enclave
        #: the keychain item: public key and wrapped private key (what the device state keeps)
        self.item = dict(item)

    def __repr__(self) -> str:
        return f"<HardwareKey P-{self.key_size} {self.fingerprint()[:16]}…>"

    __reduce__ = __reduce_ex__ = __copy__ = __deepcopy__ = __getstate__ = _refuse
    private_bytes = private_numbers = _refuse

    @property
    def key_size(self) -> int:
        return int(self.item["bits"])

    @property
    def curve(self) -> ec.EllipticCurve:
        return _CURVES[self.key_size]()

    def public_key(self) -> ec.EllipticCurvePublicKey:
        key = serialization.load_der_public_key(base64.b64decode(self.item["public_key"]))
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key

    def fingerprint(self) -> str:
        """Hex SHA-256 of the public key's SubjectPublicKeyInfo."""
        return hashlib.sha256(base64.b64decode(self.item["public_key"])).hexdigest()

    def sign(self, data: bytes) -> bytes:
        """ECDSA-SHA256 (DER) over ``data``."""
        return self._enclave._sign(self.item, data)

    def sign_csr(self, builder: x509.CertificateSigningRequestBuilder) -> x509.CertificateSigningRequest:
        return self._enclave._sign_csr(self.item, builder)

    def sign_cms(self, data: bytes, cert: x509.Certificate, *, detached: bool = False) -> bytes:
        """CMS SignedData by ``cert`` with this key (how Mdm-Signature is made with an ACME identity)."""
        return self._enclave._sign_cms(self.item, data, cert, detached)

    def same_key(self, other: Any) -> bool:
        """True if ``other`` (a public key, a certificate, or a handle) holds this key's public half."""
        public = other.public_key() if hasattr(other, "public_key") else other
        spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return hmac.compare_digest(hashlib.sha256(spki).hexdigest(), self.fingerprint())
