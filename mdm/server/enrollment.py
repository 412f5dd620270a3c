"""DEP enrollment pieces without I/O: the push topic, device identity keys, the enrollment profile.

Kept apart from :mod:`mdm.server.identity` so the rules of "what a profile contains" can be read (and
tested) without a store or a clock. Every random value comes from the caller's
:class:`~mdm.protocol.randomness.Randomness`, so ``--seed`` replays a profile's identity, password and
payload UUIDs.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.x509.oid import NameOID

from mdm.protocol import mobileconfig
from mdm.protocol.randomness import Randomness
from mdm.protocol.x509 import CertificateAuthority, PrivateKey

__all__ = [
    "new_topic",
    "new_identity_key",
    "new_identity_serial",
    "identity_owner",
    "EnrollmentProfile",
    "build_enrollment_profile",
    "SCEPIdentity",
    "ACMEIdentity",
    "ACME_MIN_OS",
    "acme_capable",
    "SERVER_CAPABILITIES",
    "ACCESS_RIGHTS_ALL",
    "PROFILE_SUBJECT",
]

#: NanoMDM's capabilities: user channels (macOS, Shared iPad) and Bootstrap Token escrow.
SERVER_CAPABILITIES = ["com.apple.mdm.per-user-connections", "com.apple.mdm.bootstraptoken"]
#: Every AccessRights bit (1..4096): the server may do everything a DEP-enrolled device allows.
ACCESS_RIGHTS_ALL = 8191
PROFILE_IDENTIFIER = "com.mdmsim.mdm.enrollment"
#: The subject of an identity asked for by a profile made before its device is known (profile-based
#: enrollment: no MachineInfo, so no UDID): it belongs to the first device that authenticates with it.
PROFILE_SUBJECT = "mdmsim profile-based enrollment"


def new_topic(random: Randomness) -> str:
    """A push topic shaped like Apple's (``com.apple.mgmt.External.<uuid>``), until a real push
    certificate supplies one. (Label ``topic``: the one seeded worlds have always used.)"""
    return f"com.apple.mgmt.External.{random.uuid('topic')}"


def identity_owner(cert: x509.Certificate) -> str | None:
    """The UDID a device identity was issued for: its subject CN (how this server issues them)."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    return value if isinstance(value, str) else None


def new_identity_key(kind: Literal["ec", "rsa"], random: Randomness, udid: str) -> PrivateKey:
    """The key of ``udid``'s identity: one per device and seed (label ``identity:<udid>``, as before),
    so a seeded device re-enrolling keeps its key."""
    if kind == "ec":
        return random.ec_key(f"identity:{udid}")
    return random.rsa_key(f"identity:{udid}")


def new_identity_serial(random: Randomness, udid: str, now: _dt.datetime) -> int:
    """A certificate serial as ``x509.random_serial_number`` makes it (159 random bits), per issuance:
    the label names the device and the instant, so two identities of one device differ."""
    label = f"mdm:{udid}:identity:{now.timestamp()!r}:serial" if random.seeded else ""  # unseeded: unused
    return int.from_bytes(random.bytes(20, label), "big") >> 1


@dataclass(frozen=True)
class EnrollmentProfile:
    """The signed profile and what the service must remember about it."""

    signed: bytes
    udid: str
    certificate: x509.Certificate | None  # None: the device gets its identity over SCEP
    user: str | None


@dataclass(frozen=True)
class SCEPIdentity:
    """Where the enrollment profile sends the device for its identity: a SCEP server, a one-time
    challenge, the subject to ask for (CN = the UDID, which the server checks at every check-in)."""

    url: str
    challenge: str
    subject_cn: str
    keysize: int = 2048
    ca_fingerprint: bytes | None = None


#: ``com.apple.security.acme`` exists from iOS and iPadOS 16; an older device gets SCEP (Intune's rule).
ACME_MIN_OS = 16


def acme_capable(os_version: str | None) -> bool:
    """Whether a device that reported ``os_version`` in its MachineInfo can act on an ACME payload."""
    try:
        return int((os_version or "").split(".")[0]) >= ACME_MIN_OS
    except ValueError:
        return False


@dataclass(frozen=True)
class ACMEIdentity:
    """Where the profile sends the device for its identity over ACME: the directory, the one-time
    ClientIdentifier of this enrollment, the subject (CN = the UDID) and the key the device must make:
    P-384 in the Secure Enclave, attested by Apple (every device in the catalog has an A11 or later)."""

    directory_url: str
    client_identifier: str
    subject_cn: str
    key_type: str = "ECSECPrimeRandom"
    key_size: int = 384
    hardware_bound: bool = True
    attest: bool = True


def build_enrollment_profile(
    *,
    ca: CertificateAuthority,
    topic: str,
    base_url: str,
    identity: x509.Certificate | None = None,
    identity_key: PrivateKey | None = None,
    scep: SCEPIdentity | None = None,
    acme: ACMEIdentity | None = None,
    udid: str | None = None,
    organization: str = "mdmsim",
    extra_certs: Sequence[x509.Certificate] = (),
    random: Randomness | None = None,
) -> bytes:
    """The ``application/x-apple-aspen-config`` body: root CA + identity payload + com.apple.mdm, signed.

    The identity payload is ACME (``acme``: a hardware-bound, attested key and a certificate from the
    ACME server, iOS 16+), SCEP (``scep``: the device makes its key and asks the SCEP server, as
    every production MDM server has it do) or PKCS#12 (``identity`` and ``identity_key``: enrollment
    in one round trip, with a random per-profile password in the payload's ``Password`` key, as
    Apple's schema allows). Passwords and PayloadUUIDs are labelled by the identity's serial (or, for
    SCEP, the UDID and challenge): one set per profile issued.
    """
    random = random if random is not None else Randomness(None)
    if scep is None and acme is None and (identity is None or identity_key is None):
        raise ValueError("an enrollment profile needs a PKCS#12, SCEP or ACME identity payload")
    # Unseeded, labels are not used: not worth formatting on every enrollment of a fleet.
    if not random.seeded:
        label = ""
    elif acme is not None:
        label = f"mdm:{udid or acme.subject_cn}:profile:acme:{acme.client_identifier}"
    elif scep is not None:
        label = f"mdm:{udid or scep.subject_cn}:profile:scep:{scep.challenge}"
    else:
        assert identity is not None
        label = f"mdm:{identity_owner(identity)}:profile:{identity.serial_number:x}"

    def payload_uuid(name: str) -> str:  # upper case, as mobileconfig.new_uuid and Apple's tools write it
        return random.uuid(f"{label}:payload-uuid:{name}").upper()

    identity_uuid = payload_uuid("identity")
    root = mobileconfig.RootPayload.for_certificate(
        ca.certificate,
        payload_uuid=payload_uuid("root"),
        payload_identifier=f"{PROFILE_IDENTIFIER}.root",
        payload_display_name="MDM CA",
        payload_certificate_file_name="mdm-ca.cer",
    )
    identity_payload: mobileconfig.Payload
    if acme is not None:
        identity_payload = mobileconfig.ACMEPayload(
            payload_identifier=f"{PROFILE_IDENTIFIER}.acme",
            payload_uuid=identity_uuid,
            payload_display_name="Device identity (ACME)",
            directory_url=acme.directory_url,
            client_identifier=acme.client_identifier,
            key_type=acme.key_type,
            key_size=acme.key_size,
            hardware_bound=acme.hardware_bound,
            attest=acme.attest,
            subject=[[["CN", acme.subject_cn]], [["O", organization]]],
            usage_flags=1,  # digital signature: an EC key signs (Mdm-Signature, TLS client auth)
            extended_key_usage=["1.3.6.1.5.5.7.3.2"],  # clientAuth
        )
    elif scep is not None:
        identity_payload = mobileconfig.SCEPPayload(
            payload_identifier=f"{PROFILE_IDENTIFIER}.scep",
            payload_uuid=identity_uuid,
            payload_display_name="Device identity (SCEP)",
            url=scep.url,
            name="mdmsim",
            subject=[[["CN", scep.subject_cn]], [["O", organization]]],
            challenge=scep.challenge,
            keysize=scep.keysize,
            key_type="RSA",
            key_usage=5,  # signing and encryption, as Intune's and NanoMDM's profiles ask
            ca_fingerprint=scep.ca_fingerprint,
            retries=3,
            retry_delay=10,
        )
    else:
        assert identity is not None and identity_key is not None
        password = random.urlsafe(18, f"{label}:pkcs12-password")
        identity_payload = mobileconfig.PKCS12Payload(
            payload_identifier=f"{PROFILE_IDENTIFIER}.identity",
            payload_uuid=identity_uuid,
            payload_display_name="Device identity",
            payload_content=mobileconfig.pkcs12_identity(identity, identity_key, password, "MDM identity"),
            password=password,
            payload_certificate_file_name="identity.p12",
        )
    base = base_url.rstrip("/")
    mdm = mobileconfig.MDMPayload(
        payload_uuid=payload_uuid("mdm"),
        payload_identifier=f"{PROFILE_IDENTIFIER}.mdm",
        payload_display_name="Mobile Device Management",
        identity_certificate_uuid=identity_uuid,
        topic=topic,
        server_url=f"{base}/connect",
        check_in_url=f"{base}/checkin",
        sign_message=True,
        access_rights=ACCESS_RIGHTS_ALL,
        check_out_when_removed=True,
        server_capabilities=list(SERVER_CAPABILITIES),
    )
    profile = mobileconfig.Profile(
        payload_uuid=payload_uuid("profile"),
        payload_identifier=PROFILE_IDENTIFIER,
        payload_display_name="MDM Enrollment",
        payload_organization=organization,
        payloads=[root, identity_payload, mdm],
    )
    return mobileconfig.sign(mobileconfig.build(profile), ca.certificate, ca.key, extra_certs=extra_certs)
