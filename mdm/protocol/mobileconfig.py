"""Configuration profiles (``.mobileconfig``): the enrollment profile and the identities inside it.

The MDM server builds and signs the enrollment profile; the simulated device parses it, checks its
signature, and acts on the payloads it understands (``com.apple.mdm``, an identity, trust anchors).
Payload classes use snake_case attributes that map onto Apple's keys (see each field's plist key);
keys the classes do not model survive in ``raw``.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import NoEncryption
from cryptography.hazmat.primitives.serialization.pkcs12 import (
    load_key_and_certificates,
    serialize_key_and_certificates,
)

from . import cms, pkcs12
from .plist import PlistError, dumps, loads, plist_field, record_fields, record_from_dict, record_to_dict
from .x509 import PrivateKey, cert_to_der

__all__ = [
    "Payload",
    "MDMPayload",
    "PKCS12Payload",
    "RootPayload",
    "SCEPPayload",
    "ACMEPayload",
    "GenericPayload",
    "Profile",
    "ParsedProfile",
    "PAYLOAD_CLASSES",
    "build",
    "sign",
    "parse",
    "pkcs12_identity",
    "load_pkcs12",
    "new_uuid",
]

#: The largest profile we accept; enrollment profiles are a few KB, InstallProfile payloads rarely MBs.
MAX_PROFILE_SIZE = 4 * 1024 * 1024


def new_uuid() -> str:
    """An upper-case UUID string, the form Apple's tools write into PayloadUUID."""
    return str(uuid.uuid4()).upper()


P = TypeVar("P", bound="Payload")


@dataclass(kw_only=True)
class Payload:
    """Keys common to every payload (``CommonPayloadKeys.yaml``)."""

    PAYLOAD_TYPE: ClassVar[str] = ""

    payload_identifier: str = plist_field("PayloadIdentifier", str, required=True)
    payload_uuid: str = plist_field("PayloadUUID", str, required=True, default_factory=new_uuid)
    payload_version: int = plist_field("PayloadVersion", int, default=1)
    payload_display_name: str | None = plist_field("PayloadDisplayName", str)
    payload_description: str | None = plist_field("PayloadDescription", str)
    payload_organization: str | None = plist_field("PayloadOrganization", str)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def payload_type(self) -> str:
        return self.PAYLOAD_TYPE

    def to_dict(self) -> dict[str, Any]:
        """The payload dictionary as it appears in a profile's PayloadContent array."""
        return {**record_to_dict(self), "PayloadType": self.payload_type}

    @classmethod
    def from_dict(cls: type[P], d: Mapping[str, Any]) -> P:
        return record_from_dict(cls, d)


@dataclass(kw_only=True)
class MDMPayload(Payload):
    """``com.apple.mdm``: where the device checks in and which identity it uses to do so."""

    PAYLOAD_TYPE: ClassVar[str] = "com.apple.mdm"

    identity_certificate_uuid: str = plist_field("IdentityCertificateUUID", str, required=True)
    topic: str = plist_field("Topic", str, required=True)
    server_url: str = plist_field("ServerURL", str, required=True)
    check_in_url: str | None = plist_field("CheckInURL", str)
    sign_message: bool | None = plist_field("SignMessage", bool)
    access_rights: int | None = plist_field("AccessRights", int)
    check_out_when_removed: bool | None = plist_field("CheckOutWhenRemoved", bool)
    server_capabilities: list[str] | None = plist_field("ServerCapabilities", list)
    use_development_apns: bool | None = plist_field("UseDevelopmentAPNS", bool)
    enrollment_mode: str | None = plist_field("EnrollmentMode", str)
    managed_apple_id: str | None = plist_field("ManagedAppleID", str)
    assigned_managed_apple_id: str | None = plist_field("AssignedManagedAppleID", str)

    def __post_init__(self) -> None:
        # A device refuses a profile whose AccessRights is outside the 13 defined bits.
        if self.access_rights is not None and not 1 <= self.access_rights <= 8191:
            raise PlistError("AccessRights must be between 1 and 8191")
        if self.server_capabilities is not None and not all(
            isinstance(c, str) for c in self.server_capabilities
        ):
            raise PlistError("ServerCapabilities must be an array of strings")


@dataclass(kw_only=True)
class PKCS12Payload(Payload):
    """``com.apple.security.pkcs12``: an identity (certificate and key) delivered inside the profile."""

    PAYLOAD_TYPE: ClassVar[str] = "com.apple.security.pkcs12"

    payload_content: bytes = plist_field("PayloadContent", bytes, required=True)
    password: str | None = plist_field("Password", str)
    payload_certificate_file_name: str | None = plist_field("PayloadCertificateFileName", str)
    allow_all_apps_access: bool | None = plist_field("AllowAllAppsAccess", bool)
    key_is_extractable: bool | None = plist_field("KeyIsExtractable", bool)

    def load(self) -> tuple[x509.Certificate, PrivateKey]:
        """The identity inside, using the payload's password."""
        return load_pkcs12(self.payload_content, self.password or "")


@dataclass(kw_only=True)
class RootPayload(Payload):
    """``com.apple.security.root``: a trust anchor (DER certificate), e.g. the MDM server's CA."""

    PAYLOAD_TYPE: ClassVar[str] = "com.apple.security.root"

    payload_content: bytes = plist_field("PayloadContent", bytes, required=True)
    payload_certificate_file_name: str | None = plist_field("PayloadCertificateFileName", str)

    @classmethod
    def for_certificate(cls, cert: x509.Certificate, **kw: Any) -> RootPayload:
        return cls(payload_content=cert_to_der(cert), **kw)

    def certificate(self) -> x509.Certificate:
        try:
            return x509.load_der_x509_certificate(self.payload_content)
        except ValueError:
            raise PlistError("PayloadContent is not a DER certificate") from None


@dataclass(kw_only=True)
class SCEPPayload(Payload):
    """``com.apple.security.scep``: the device makes a key and enrolls for a certificate over SCEP.

    The SCEP settings live in a nested ``PayloadContent`` dictionary (note Apple's spaces in
    ``Key Type`` and ``Key Usage``); this class flattens them.
    """

    PAYLOAD_TYPE: ClassVar[str] = "com.apple.security.scep"
    _CONTENT_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {
            "url",
            "name",
            "subject",
            "challenge",
            "keysize",
            "key_type",
            "key_usage",
            "ca_fingerprint",
            "retries",
            "retry_delay",
            "subject_alt_name",
        }
    )

    url: str = plist_field("URL", str, required=True)
    name: str | None = plist_field("Name", str)
    subject: list[Any] | None = plist_field("Subject", list)
    challenge: str | None = plist_field("Challenge", str)
    keysize: int | None = plist_field("Keysize", int)
    key_type: str | None = plist_field("Key Type", str)
    key_usage: int | None = plist_field("Key Usage", int)
    ca_fingerprint: bytes | None = plist_field("CAFingerprint", bytes)
    retries: int | None = plist_field("Retries", int)
    retry_delay: int | None = plist_field("RetryDelay", int)
    subject_alt_name: dict[str, Any] | None = plist_field("SubjectAltName", dict)

    def to_dict(self) -> dict[str, Any]:
        outer: dict[str, Any] = {"PayloadType": self.payload_type}
        content: dict[str, Any] = dict(self.raw.get("PayloadContent") or {})
        for f in record_fields(type(self)):
            value = getattr(self, f.name)
            key = f.metadata["plist_key"]
            if f.name in self._CONTENT_FIELDS:
                if value is not None:
                    content[key] = value
            elif value is not None:
                outer[key] = value
        known = {
            f.metadata["plist_key"] for f in record_fields(type(self)) if f.name not in self._CONTENT_FIELDS
        }
        extras = {
            k: v for k, v in self.raw.items() if k not in known and k not in ("PayloadType", "PayloadContent")
        }
        return {**extras, **outer, "PayloadContent": content}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SCEPPayload:
        content = d.get("PayloadContent")
        if not isinstance(content, dict):
            raise PlistError("SCEP PayloadContent must be a dictionary")
        outer = {k: v for k, v in d.items() if k != "PayloadContent"}
        return record_from_dict(cls, {**content, **outer}, raw=dict(d))


@dataclass(kw_only=True)
class ACMEPayload(Payload):
    """``com.apple.security.acme`` (iOS 16+): the device makes a key, hardware-bound and attested if
    asked, and gets its certificate from an ACME server (FACTS-apple-2025 §C.4).

    Unlike SCEP's, the settings are top-level keys. ``ClientIdentifier`` is the value of the order's
    ``permanent-identifier``; ``Subject`` and ``SubjectAltName`` take SCEP's formats.
    """

    PAYLOAD_TYPE: ClassVar[str] = "com.apple.security.acme"

    directory_url: str = plist_field("DirectoryURL", str, required=True)
    client_identifier: str = plist_field("ClientIdentifier", str, required=True)
    key_size: int = plist_field("KeySize", int, required=True)
    key_type: str = plist_field("KeyType", str, required=True)
    hardware_bound: bool = plist_field("HardwareBound", bool, required=True)
    subject: list[Any] = plist_field("Subject", list, required=True)
    attest: bool | None = plist_field("Attest", bool)
    subject_alt_name: dict[str, Any] | None = plist_field("SubjectAltName", dict)
    usage_flags: int | None = plist_field("UsageFlags", int)
    extended_key_usage: list[str] | None = plist_field("ExtendedKeyUsage", list)


@dataclass(kw_only=True)
class GenericPayload(Payload):
    """A payload type this module does not model; its dictionary is kept whole in ``raw``."""

    type_name: str = ""

    @property
    def payload_type(self) -> str:
        return self.type_name

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GenericPayload:
        return record_from_dict(cls, d, type_name=d.get("PayloadType", ""))


PAYLOAD_CLASSES: Mapping[str, type[Payload]] = {
    c.PAYLOAD_TYPE: c for c in (MDMPayload, PKCS12Payload, RootPayload, SCEPPayload, ACMEPayload)
}


@dataclass(kw_only=True)
class Profile:
    """A configuration profile (``TopLevel.yaml``), type ``Configuration``."""

    payload_identifier: str = plist_field("PayloadIdentifier", str, required=True)
    payload_uuid: str = plist_field("PayloadUUID", str, required=True, default_factory=new_uuid)
    payload_display_name: str | None = plist_field("PayloadDisplayName", str)
    payload_description: str | None = plist_field("PayloadDescription", str)
    payload_organization: str | None = plist_field("PayloadOrganization", str)
    payload_removal_disallowed: bool | None = plist_field("PayloadRemovalDisallowed", bool)
    payload_scope: str | None = plist_field("PayloadScope", str)
    payload_version: int = plist_field("PayloadVersion", int, default=1)
    payloads: list[Payload] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def payload_of(self, cls: type[P]) -> P | None:
        """The first payload of class ``cls`` (e.g. the profile's :class:`MDMPayload`), or None."""
        return next((p for p in self.payloads if isinstance(p, cls)), None)

    def by_uuid(self, payload_uuid: str) -> Payload | None:
        """The payload with this PayloadUUID, to resolve ``IdentityCertificateUUID``."""
        return next((p for p in self.payloads if p.payload_uuid == payload_uuid), None)

    def to_dict(self) -> dict[str, Any]:
        d = record_to_dict(self)
        d.pop("PayloadContent", None)
        return {
            "PayloadContent": [p.to_dict() for p in self.payloads],
            **d,
            "PayloadType": "Configuration",
        }


@dataclass(frozen=True)
class ParsedProfile:
    """A profile as received: the plist dict, the typed view, and who signed it (None if unsigned).

    ``verified`` is True only when the signature was checked against trust roots.
    """

    data: dict[str, Any]
    profile: Profile
    signer: x509.Certificate | None
    signed: bool
    verified: bool

    @property
    def payloads(self) -> list[Payload]:
        return self.profile.payloads


def build(profile: Profile) -> bytes:
    """The profile as an XML plist, ready to sign or serve as ``application/x-apple-aspen-config``."""
    return dumps(profile.to_dict())


def sign(
    profile_bytes: bytes,
    cert: x509.Certificate,
    key: PrivateKey,
    *,
    extra_certs: Sequence[x509.Certificate] = (),
) -> bytes:
    """CMS SignedData with the profile embedded, as devices expect profiles to be signed."""
    return cms.sign(profile_bytes, cert, key, extra_certs=extra_certs)


def _profile_from_dict(d: Mapping[str, Any]) -> Profile:
    if d.get("PayloadType") != "Configuration":
        raise PlistError(f"PayloadType must be Configuration, not {d.get('PayloadType')!r}"[:200])
    content = d.get("PayloadContent", [])
    if not isinstance(content, list):
        raise PlistError("PayloadContent must be an array")
    payloads: list[Payload] = []
    for item in content:
        if not isinstance(item, dict):
            raise PlistError("PayloadContent items must be dictionaries")
        ptype = item.get("PayloadType")
        if not isinstance(ptype, str):
            raise PlistError("payload without a PayloadType string")
        payloads.append(PAYLOAD_CLASSES.get(ptype, GenericPayload).from_dict(item))
    return record_from_dict(Profile, d, payloads=payloads)


def parse(
    data: bytes,
    *,
    trust_roots: Sequence[x509.Certificate] | None = None,
    now: _dt.datetime | None = None,
    max_size: int = MAX_PROFILE_SIZE,
) -> ParsedProfile:
    """Read a signed (DER CMS) or unsigned (XML/binary plist) profile.

    With ``trust_roots`` the signature must verify and chain to one of them (an unsigned profile is then
    refused); without, a signed profile's content is read and its claimed signer reported unverified.
    Raises :class:`PlistError` or :class:`cms.CMSError`, both ``ValueError``.
    """
    if not isinstance(data, bytes | bytearray):
        raise PlistError("profile must be bytes")
    data = bytes(data)
    signed = data[:1] == b"\x30"
    signer: x509.Certificate | None = None
    if signed:
        if trust_roots is not None:
            v = cms.verify(data, trust_roots=trust_roots, now=now, max_size=max_size)
            content, signer = v.content, v.signer
        else:
            content, signer = cms.signed_content(data, max_size=max_size)
    else:
        if trust_roots is not None:
            raise cms.CMSError("profile is not signed")
        content = data
    d = loads(content, max_size=max_size)
    return ParsedProfile(
        data=d,
        profile=_profile_from_dict(d),
        signer=signer,
        signed=signed,
        verified=signed and trust_roots is not None,
    )


def pkcs12_identity(
    cert: x509.Certificate,
    key: PrivateKey,
    password: str,
    friendly_name: str | None = None,
    *,
    cas: Sequence[x509.Certificate] = (),
) -> bytes:
    """A PKCS#12 file for a ``com.apple.security.pkcs12`` payload.

    Encrypted with PBE-SHA1-3DES and a SHA-1 MAC rather than OpenSSL 3's AES/PBKDF2 default, because
    Apple's profile installer has long only read the legacy format; one iteration of the key
    derivation and of the MAC, because the password travels in the same payload
    (:mod:`mdm.protocol.pkcs12` says why that file is written there). Without a password: no
    encryption, as ``cryptography`` writes it.
    """
    if password:
        return pkcs12.serialize_identity(cert, key, password, friendly_name, cas)
    return serialize_key_and_certificates(
        friendly_name.encode() if friendly_name else None, key, cert, list(cas) or None, NoEncryption()
    )


def load_pkcs12(data: bytes, password: str) -> tuple[x509.Certificate, PrivateKey]:
    """The certificate and key in a PKCS#12 file; ValueError for a wrong password or missing parts."""
    try:
        key, cert, _ = load_key_and_certificates(data, password.encode() if password else None)
    except Exception as e:
        raise ValueError(f"cannot read PKCS#12: {e}"[:200]) from None
    if cert is None or key is None:
        raise ValueError("PKCS#12 lacks a certificate or key")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("PKCS#12 key must be RSA or EC")
    return cert, key
