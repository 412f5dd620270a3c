"""The rules of Apple's activation service (``iprofiles.apple.com`` on macOS; the iOS endpoint is private).

During Setup Assistant a device asks Apple, by serial number, for its *cloud configuration*: the DEP
profile its organisation assigned, rendered with the organisation's contact details in the keys
``profiles show -type enrollment`` prints on a Mac (``OrganizationName``, ``IsSupervised``,
``SkipSetup``…). Fetching it moves the device's DEP ``profile_status`` to ``pushed``; that is how an
MDM vendor learns the device has started Setup Assistant.

Wire format. Apple documents neither the iOS endpoint nor its format; macOS posts JSON
``{"action": "RequestProfileConfiguration", "sn": "<serial>"}``. The simulator uses that shape for
every device and answers JSON: the record, or ``{}`` when the serial has no configuration (not
assigned to an MDM server, or no profile), after which the device activates unmanaged. Certificates
(``AnchorCertificates``, ``SupervisorHostCertificates``) travel as base64 DER strings, as they do in
the DEP profile.

The attestation CA (:mod:`.attestation`) lives beside the device CA: it attests Secure Enclave keys
for ACME payloads, and its root is published as the device CA is.

The device CA. Real devices carry an identity certificate Apple issued at manufacture, and MDM
servers check that MachineInfo is signed by it. This service owns that CA: one EC P-256 key pair,
kept in Apple's store (:mod:`.store`) so every worker process of one world issues and trusts the same
CA. With a ``seed`` its key derives from the label ``apple-device-ca`` (the label the world has always
used), and each device identity's serial number from the device it is for.

State: Apple's one store, the same the DEP service and the portal use; the cloud-configuration query
is :mod:`.store`'s and marking a profile pushed is :func:`simulator.apple.devices.mark_pushed`, the
device write DEP and the portal share.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from cryptography import x509

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.isotime import iso_from_timestamp
from mdm.protocol.randomness import Randomness
from mdm.protocol.x509 import CertificateAuthority, PublicKey, cert_to_pem

from .. import devices
from ..store import open_apple_store
from . import store as activation_store
from .attestation import AttestationAuthority

__all__ = [
    "ActivationError",
    "ActivationService",
    "CloudConfigurationSource",
    "REQUEST_ACTION",
    "cloud_configuration_record",
]

REQUEST_ACTION = "RequestProfileConfiguration"
DEVICE_CA_NAME = "Apple iPhone Device CA (mdmsim)"
DEVICE_IDENTITY_DAYS = 3650 * 2
#: The MDM protocol version Macs report in their cloud configuration; iOS does not publish one.
MDM_PROTOCOL_VERSION = 1


class ActivationError(ValueError):
    """A request the activation service refuses; ``reason`` is the short 400 body."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CloudConfigurationSource(Protocol):
    """The DEP service as activation's constructor accepts it (``simulator.apple.dep.service.DEPService``);
    activation reads the cloud configuration from Apple's store itself, the DEP service's ``store``."""

    def cloud_configuration_for(self, serial: str) -> dict[str, Any] | None: ...

    def mark_pushed(self, serial: str, now: _dt.datetime | None = None) -> bool: ...


class ActivationService:
    """Cloud configurations by serial, and the device CA.

    ``store`` is Apple's store (:func:`simulator.apple.store.open_apple_store`); ``None`` means the
    store of ``dep`` (the DEP service's, which is Apple's), or without one a fresh in-memory Apple
    store. ``device_ca`` pins the CA (a world that builds it from a seed); otherwise the stored one is
    used, or a new one is made and stored on first use.
    """

    def __init__(
        self,
        store: Store | None,
        clock: Clock,
        *,
        dep: CloudConfigurationSource | None = None,
        device_ca: CertificateAuthority | None = None,
        seed: int | None = None,
        settle: Callable[[], None] | None = None,
    ) -> None:
        # Work scheduled on the world clock and due now (the Business API's device activities), done
        # before a device's cloud configuration is read, so a device moved a moment ago gets the new one.
        self.settle: Callable[[], None] = settle or (lambda: None)
        if store is None:
            store = getattr(dep, "store", None) or open_apple_store(None)
        self.store: Store = store
        self.clock = clock
        self.dep = dep
        self.random = Randomness(seed)
        with self.store.transaction() as db:
            stored = activation_store.device_ca(db)
            if device_ca is not None:
                activation_store.save_device_ca(db, *device_ca.to_pem())
            elif stored is None:
                device_ca = CertificateAuthority.create(
                    DEVICE_CA_NAME, clock.now(), key=self.random.ec_key("apple-device-ca"), organization="Apple Inc."
                )
                activation_store.save_device_ca(db, *device_ca.to_pem())
            else:
                device_ca = CertificateAuthority.from_pem(*stored)
        self.device_ca: CertificateAuthority = device_ca
        #: Apple's Enterprise Attestation CA: attests devices' Secure Enclave keys (Managed Device Attestation)
        self.attestation = AttestationAuthority(self.store, clock, device_ca=device_ca.certificate, seed=seed)

    def keep_device_ca(self) -> None:
        """Store this service's device CA and attestation CA again (after its store was wiped: devices
        already hold identities the one issued, and MDM and ACME servers trust both)."""
        with self.store.transaction() as db:
            activation_store.save_device_ca(db, *self.device_ca.to_pem())
        self.attestation.keep()

    # -- cloud configuration ---------------------------------------------------------------------------
    def request_profile_configuration(self, body: Any) -> dict[str, Any]:
        """``POST /profile``: validate the macOS-shaped request, answer the record or ``{}``."""
        if not isinstance(body, Mapping):
            raise ActivationError("MALFORMED_REQUEST_BODY")
        if body.get("action") != REQUEST_ACTION:
            raise ActivationError("INVALID_ACTION")
        serial = body.get("sn")
        if not isinstance(serial, str) or not serial.strip() or len(serial) > 64:
            raise ActivationError("SERIAL_NUMBER_REQUIRED")
        return self.profile_for(serial.strip())

    def profile_for(self, serial: str) -> dict[str, Any]:
        """The cloud configuration for ``serial`` (and mark it pushed), or ``{}`` for "no configuration"."""
        self.settle()
        with self.store.read() as db:
            found = activation_store.cloud_configuration(db, serial)
        if not found or not found.get("profile"):
            return {}
        with self.store.transaction() as db:
            devices.mark_pushed(db, serial, iso_from_timestamp(self.clock.timestamp()))
        return cloud_configuration_record(found)

    # -- device identities -----------------------------------------------------------------------------
    def device_ca_certificate(self) -> x509.Certificate:
        return self.device_ca.certificate

    def device_ca_certificate_pem(self) -> bytes:
        """Published so MDM servers can check MachineInfo signatures (``GET /device-ca.pem``)."""
        return cert_to_pem(self.device_ca.certificate)

    def issue_device_identity(
        self, udid: str, serial: str, public_key: PublicKey, *, now: _dt.datetime | None = None
    ) -> x509.Certificate:
        """The identity Apple gives a device at manufacture: CN = UDID, serial number in the subject.

        The world calls this and hands the certificate to the device; the device never asks Apple.
        """
        subject = x509.Name(
            [
                x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, udid),
                x509.NameAttribute(x509.oid.NameOID.SERIAL_NUMBER, serial),
                x509.NameAttribute(x509.oid.NameOID.ORGANIZATION_NAME, "Apple Inc."),
            ]
        )
        issued_at = (now or self.clock.now()) - _dt.timedelta(days=1)  # manufactured before it is sold
        label = f"activation:device-identity:{udid}:{serial}:{issued_at.timestamp()!r}:serial"
        return self.device_ca.issue(
            public_key,
            subject=subject,
            now=issued_at,
            days=DEVICE_IDENTITY_DAYS,
            serial=int.from_bytes(self.random.bytes(20, label), "big") >> 1,  # as x509.random_serial_number
        )


def cloud_configuration_record(found: Mapping[str, Any]) -> dict[str, Any]:
    """Render DEP's ``cloud_configuration_for`` answer as the record a device receives.

    Department and support phone fall back to the organisation's own when the profile has none,
    because the Remote Management pane always shows something under "About Configuration" and
    "Need Help".
    """
    profile: Mapping[str, Any] = found.get("profile") or {}
    org_phone = found.get("org_phone") or ""
    record: dict[str, Any] = {
        "AllowPairing": bool(profile.get("allow_pairing", True)),
        "AnchorCertificates": list(profile.get("anchor_certs") or []),
        "AwaitDeviceConfigured": bool(profile.get("await_device_configured", False)),
        "ConfigurationURL": profile.get("url", ""),
        "IsMDMUnremovable": not bool(profile.get("is_mdm_removable", True)),
        "IsMandatory": bool(profile.get("is_mandatory", False)),
        "IsMultiUser": bool(profile.get("is_multi_user", False)),
        "IsSupervised": bool(profile.get("is_supervised", False)),
        "MDMProtocolVersion": MDM_PROTOCOL_VERSION,
        "OrganizationName": found.get("org_name") or "",
        "OrganizationDepartment": profile.get("department") or found.get("org_name") or "",
        "OrganizationEmail": profile.get("support_email_address") or found.get("org_email") or "",
        "OrganizationPhone": org_phone,
        "OrganizationSupportPhone": profile.get("support_phone_number") or org_phone,
        "OrganizationAddress": found.get("org_address") or "",
        "OrganizationMagic": profile.get("org_magic") or "",
        "SkipSetup": list(profile.get("skip_setup_items") or []),
        "SupervisorHostCertificates": list(profile.get("supervising_host_certs") or []),
        "AutoAdvanceSetup": bool(profile.get("auto_advance_setup", False)),
        "ProfileName": profile.get("profile_name", ""),
        "ProfileUUID": found.get("profile_uuid", ""),
    }
    if profile.get("configuration_web_url"):
        record["ConfigurationWebURL"] = profile["configuration_web_url"]
    if profile.get("language"):
        record["Language"] = profile["language"]
    if profile.get("region"):
        record["Region"] = profile["region"]
    return record
