"""Setup Assistant: the panes an iPhone or iPad shows from Hello to the Home Screen, and enrollment.

Which panes exist depends on the device (Face ID or Touch ID, cellular, Action Button) and its OS
version (a pane exists from the release its skip key was introduced until it was deprecated,
``simulator.catalog``); which of them are *shown* depends on the cloud configuration's ``SkipSetup``.
Panes before activation (Hello, Language, Region, Keyboard, Dictation, Wi-Fi) appear before the
device has its configuration, so ``SkipSetup`` cannot hide them, as Apple documents for ``Keyboard``.

The transcript records every pane as ``(pane, "shown"|"skipped", time, detail)``; failures are
``"error"`` entries and the device stays on the pane that failed, so the next :func:`run_setup`
(power on again, "Try Again") resumes there. Every change of pane or phase is a move of
:mod:`simulator.device.phases`, checked against its transition table.

The messages of enrollment (MachineInfo, the profile, Authenticate and TokenUpdate) are
:mod:`simulator.device.enrollment`'s; this module decides which pane shows them and what it says.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from mdm.protocol import mobileconfig
from mdm.protocol.plist import PlistError, loads
from mdm.protocol.x509 import cert_to_pem, key_to_pem
from simulator.catalog import load_catalog

from .acme_enroll import IdentityKey, request_attestation, software_key
from .acme_enroll import obtain_identity as obtain_acme_identity
from .enrollment import (
    check_in,
    enrollment_failure,
    enrollment_request,
    enrollment_url,
    install_enrollment_profile,
    machine_info,
    unenroll,
    with_credentials,
)
from .machine import USER_AGENT, Device, Flow, Now, Request
from .phases import POST_ENROLLMENT_ORDER, PRE_ACTIVATION_PANES, Event, Pane, Phase, move
from .scep_enroll import obtain_identity
from .secure_enclave import HardwareKey

__all__ = [
    "PRE_ACTIVATION_PANES",
    "POST_ENROLLMENT_ORDER",
    "applicable_post_panes",
    "erase",
    "pre_activation_panes",
    "run_setup",
    "release_awaiting_configuration",
    "machine_info",
]

_PRE_ACTIVATION_SKIP_KEYS = frozenset({"Keyboard", "SpokenLanguage", "TermsOfAddress"})
#: Languages whose grammar asks for a form of address (the Terms of Address pane).
_TERMS_OF_ADDRESS_LANGUAGES = frozenset({"fr", "es", "it", "de", "pt"})

#: Skip keys that never name a pane of a plain new-device setup (they need a restore, an update or a
#: paired watch first), so they never appear in a transcript.
_CONDITIONAL_KEYS = frozenset({"RestoreCompleted", "UpdateCompleted", "WatchMigration"})

ACTIVATION_CONTENT_TYPE = "application/json"


# -- which panes exist -----------------------------------------------------------------------------------
def _available_keys(device: Device) -> set[str]:
    ident = device.identity
    keys = load_catalog().skip_keys_for(ident.os_version, ident.device_family, include_deprecated=False)
    return {k.key for k in keys}


def _product_major(product_name: str) -> int:
    try:
        return int(product_name.split(",")[0].lstrip("iPhonead"))
    except ValueError:
        return 0


def _has_hardware(device: Device, key: str) -> bool:
    """Panes about hardware only some models have."""
    ident = device.identity
    if key == "HomeButtonSensitivity":
        return ident.device_family == "iPhone" and ident.biometric == "TouchID"
    if key == "ActionButton":  # iPhone 15 Pro (iPhone16,1) and later
        return ident.device_family == "iPhone" and _product_major(ident.product_name) >= 16
    if key == "CameraButton":  # iPhone 16 (iPhone17,x) except the 16e
        return (
            ident.device_family == "iPhone"
            and _product_major(ident.product_name) >= 17
            and ident.product_name != "iPhone17,5"
        )
    if key in ("SIMSetup", "MessagingActivationUsingPhoneNumber"):
        return ident.is_cellular
    return True


def pre_activation_panes(device: Device) -> list[str]:
    """The panes shown before activation, for this device's OS and chosen language."""
    available = _available_keys(device)
    language = device.script.language
    panes: list[str] = []
    for pane in PRE_ACTIVATION_PANES:
        if pane in _PRE_ACTIVATION_SKIP_KEYS and pane not in available:
            continue
        if pane == "TermsOfAddress" and language.split("-")[0] not in _TERMS_OF_ADDRESS_LANGUAGES:
            continue
        panes.append(pane)
    return panes


def applicable_post_panes(device: Device) -> list[str]:
    """The panes after enrollment (or after activation, unmanaged) that exist on this device.

    Panes that depend on an earlier choice (Android lives inside Restore; Lockdown Mode is offered
    only with an Apple Account) are decided in :func:`_run_post_panes`, not here.
    """
    available = _available_keys(device)
    return [
        p for p in POST_ENROLLMENT_ORDER
        if p in available and p not in _CONDITIONAL_KEYS and _has_hardware(device, p)
    ]  # fmt: skip


def _first_local_pane(device: Device) -> str:
    """Where the local panes start on this device (the Home Screen when it has none)."""
    post = applicable_post_panes(device)
    return post[0] if post else Pane.HOME_SCREEN


# -- the flow --------------------------------------------------------------------------------------------
def run_setup(device: Device, now: Now) -> Flow[str]:
    """Walk Setup Assistant from ``device.pane``; returns the phase it stopped in.

    ``"home"``: done. ``"awaiting_configuration"``: enrolled and held until DeviceConfigured.
    ``"setup"``: stopped on a pane with an error (see the transcript); run again to retry.
    """
    st = device.state
    if not st.powered:
        st.powered = True
        device.record("Boot", "info", now(), "powered on")
    if st.phase in (Phase.HOME, Phase.AWAITING_CONFIGURATION):
        return st.phase
    pre = pre_activation_panes(device)
    if st.pane in pre:
        _run_pre_activation(device, now, pre[pre.index(st.pane) :])
    if st.pane == Pane.ACTIVATION:
        ok = yield from _activate(device, now)
        if not ok:
            return st.phase
    if st.pane == Pane.REMOTE_MANAGEMENT:
        _remote_management(device, now)
    if st.pane in (Pane.AUTHENTICATION, Pane.ENROLLMENT):
        ok = yield from _enroll(device, now)
        if not ok:
            return st.phase
    if st.pane == Pane.AWAITING_CONFIGURATION:
        device.record(
            "AwaitingConfiguration",
            "shown",
            now(),
            "Remote Management is configuring this device; waiting for DeviceConfigured",
        )
        return st.phase
    _run_post_panes(device, now)
    return st.phase


def _run_pre_activation(device: Device, now: Now, panes: list[str]) -> None:
    ident = device.identity
    script = device.script
    for pane in panes:
        if pane == "Hello":
            detail = f"{ident.model_name}, {ident.os} {ident.os_version} ({ident.build_version})"
        elif pane == "Language":
            detail = script.language
        elif pane == "Region":
            detail = script.region
        elif pane == "WiFi":
            detail = "connected to a network"
        else:
            detail = "appears before the cloud configuration is fetched, so SkipSetup cannot hide it"
        move(device.state, Event.SHOW_PANE, pane)
        device.record(pane, "shown", now(), detail)
    move(device.state, Event.CONNECTED)


def _activate(device: Device, now: Now) -> Flow[bool]:
    """Ask Apple for the cloud configuration (macOS iprofiles shape; see the activation service)."""
    st = device.state
    body = json.dumps({"action": "RequestProfileConfiguration", "sn": device.serial}).encode()
    response = yield Request(
        "POST",
        f"{st.apple_url}/activation/profile",
        {"Content-Type": ACTIVATION_CONTENT_TYPE, "User-Agent": USER_AGENT},
        body,
    )
    if response.status != 200:
        device.record("Activation", "error", now(), f"could not activate: {response.describe()}")
        return False
    try:
        config = json.loads(response.body or b"{}")
    except (UnicodeDecodeError, ValueError):
        config = None
    if not isinstance(config, dict):
        device.record("Activation", "error", now(), "could not activate: the answer is not a JSON object")
        return False
    st.cloud_config = config
    if enrollment_url(device):
        org = config.get("OrganizationName") or "your organisation"
        device.record("Activation", "shown", now(), f"activated; this device is managed by {org}")
        move(st, Event.ACTIVATED_MANAGED)
    else:
        device.record("Activation", "shown", now(), "activated; no Remote Management configuration")
        move(st, Event.ACTIVATED_UNMANAGED, _first_local_pane(device))
    return True


def _remote_management(device: Device, now: Now) -> None:
    config = device.cloud_config
    org = config.get("OrganizationName", "")
    dept = config.get("OrganizationDepartment", "")
    phone = config.get("OrganizationSupportPhone") or config.get("OrganizationPhone", "")
    mandatory = "mandatory" if config.get("IsMandatory") else "optional"
    device.record(
        "RemoteManagement",
        "shown",
        now(),
        f"{org} — {dept}; About Configuration: {dept}; Need Help: {phone}; {mandatory}",
    )
    move(device.state, Event.MANAGEMENT_ACCEPTED)


def _enroll(device: Device, now: Now) -> Flow[bool]:
    """MachineInfo → profile → identity → Authenticate → TokenUpdate. False leaves the device on the
    pane that failed (Authentication or Enrollment) with an error in the transcript."""
    st = device.state
    if st.scep_pending is not None:  # a SCEP request answered PENDING: poll, do not enroll again
        installed = st.scep_pending["installed"]
        return (yield from _finish_enrollment(device, now, installed, installed.get("user")))
    request = enrollment_request(device)
    response = yield request
    user: str | None = None
    if response.status == 401 and "basic" in response.header("www-authenticate").lower():
        script = device.script
        move(st, Event.CREDENTIALS_REQUIRED)
        if not script.username or script.password is None:
            device.record(
                "Authentication",
                "error",
                now(),
                "the server asks for a user name and password; none scripted",
            )
            return False
        device.record("Authentication", "shown", now(), f"user {script.username}")
        response = yield with_credentials(request, script.username, script.password)
        if response.status in (401, 403):
            # A server that checks the password with the IdP says 403 for a wrong one, 401 for none.
            device.record(
                "Authentication", "error", now(), f"wrong user name or password ({response.describe()})"
            )
            return False
        user = script.username
        move(st, Event.AUTHENTICATED)
    if response.status != 200:
        move(st, Event.ENROLLMENT_FAILED)
        device.record(
            "Enrollment", "error", now(), f"could not get the enrollment profile: {enrollment_failure(response)}"
        )
        return False
    try:
        installed = install_enrollment_profile(device, response.body, now)
    except (ValueError, PlistError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        device.record("Enrollment", "error", now(), f"profile refused: {reason}"[:300])
        return False
    installed["user"] = user
    return (yield from _finish_enrollment(device, now, installed, user))


def _finish_enrollment(device: Device, now: Now, installed: dict[str, Any], user: str | None) -> Flow[bool]:
    """The identity (from the profile, over SCEP or over ACME), then Authenticate and TokenUpdate."""
    st = device.state
    if installed.get("scep") is not None:
        ok = yield from _scep_identity(device, now, installed)
        if not ok:
            return False
    if installed.get("acme") is not None:
        ok = yield from _acme_identity(device, now, installed)
        if not ok:
            return False
    st.enrollment = installed
    device.forget_cached_keys()
    ok = yield from check_in(device, now)
    if not ok:
        st.enrollment = None
        device.forget_cached_keys()
        return False
    st.user = user
    st.profiles = [
        p for p in st.profiles if p.get("PayloadIdentifier") != installed["summary"]["PayloadIdentifier"]
    ]
    st.profiles.insert(0, installed["summary"])
    trust = "verified" if installed["verified"] else "not verified"
    who = f"; user {user}" if user else ""
    device.record(
        "Enrollment",
        "shown",
        now(),
        f"enrolled: {installed['summary'].get('PayloadDisplayName', '')} ({trust}){who}",
    )
    if device.cloud_config.get("AwaitDeviceConfigured"):
        move(st, Event.ENROLLED_AWAITING)
    else:
        move(st, Event.ENROLLED, _first_local_pane(device))
    return True


def scep_key(device: Device, which: str, bits: int) -> Any:
    """An RSA key for a SCEP request: from the device's key source (a load run's pool), fresh, or in a
    seeded world derived from the device and ``which``."""
    if device.scep_key_source is not None:
        return device.scep_key_source(bits)
    return device.randomness.rsa_key(device.label(f"scep-key:{which}", per_erase=True), bits)


def _scep_identity(device: Device, now: Now, installed: dict[str, Any]) -> Flow[bool]:
    """Get the identity the profile's SCEP payload names. PENDING and FAILURE leave the device on the
    Remote Management pane, as iOS does; a pending request is polled when Setup Assistant runs again
    after the payload's RetryDelay of world time."""
    st = device.state
    pending = st.scep_pending or {"installed": installed, "progress": {}, "keys": 0}
    payload = mobileconfig.SCEPPayload.from_dict(loads(installed["scep"].encode()))

    def make_key(bits: int) -> Any:
        pending["keys"] += 1  # a new request after a failure gets a new key, in a seeded world too
        return scep_key(device, f"{bits}:{pending['keys']}", bits)

    trust = device.mdm_trust()  # our SCEP service shares the MDM server's TLS certificate
    result = yield from obtain_identity(
        payload, now=now, progress=pending["progress"], make_key=make_key, default_cn=device.identity.udid, trust=trust,
    )
    if result.status == "issued":
        assert result.certificate is not None and result.key is not None
        st.scep_pending = None
        installed["scep_payload"] = installed.pop("scep")  # kept: the agent renews the identity with it
        installed["identity_cert_pem"] = cert_to_pem(result.certificate).decode()
        installed["identity_key_pem"] = key_to_pem(result.key).decode()
        installed["identity_issuer"] = result.issuer
        device.record("Enrollment", "info", now(), f"identity from SCEP, issued by {result.issuer}"[:300])
        return True
    move(st, Event.IDENTITY_NOT_ISSUED)
    if result.status == "pending":
        st.scep_pending = pending
        when = result.retry_at.isoformat() if result.retry_at else "later"
        device.record("RemoteManagement", "info", now(), f"waiting for the SCEP server (PENDING); next poll at {when}")
    else:
        st.scep_pending = None
        device.record("RemoteManagement", "error", now(), f"enrollment failed: no identity: {result.reason}"[:300])
    return False


def acme_key(device: Device, key_type: str, bits: int, hardware_bound: bool, tag: str) -> IdentityKey:
    """The key an ACME payload asks for: in the Secure Enclave when hardware-bound (never seeded: see
    :mod:`~simulator.device.secure_enclave`), else in software (RSA from the key source like SCEP's, EC
    derived from the device's seed)."""
    if hardware_bound:
        return device.secure_enclave.create_key(bits, tag=tag)
    curves = {192: ec.SECP192R1(), 256: ec.SECP256R1(), 384: ec.SECP384R1(), 521: ec.SECP521R1()}
    return software_key(
        key_type, bits, lambda n: scep_key(device, f"acme:{tag}:{n}", n),
        lambda n: device.randomness.ec_key(device.label(f"acme-key:{tag}", per_erase=True), curves[n])
        if device.randomness.seeded and n in (256, 384) else ec.generate_private_key(curves[n]),
    )


def _acme_identity(device: Device, now: Now, installed: dict[str, Any]) -> Flow[bool]:
    """Get the identity the profile's ACME payload names. A failure leaves the device on the Remote
    Management pane with the ACME server's problem in the transcript, as SCEP's FAILURE does."""
    st = device.state
    payload = mobileconfig.ACMEPayload.from_dict(loads(installed["acme"].encode()))
    tag = f"acme:{payload.payload_uuid}"
    result = yield from obtain_acme_identity(
        payload, now=now, trust=device.mdm_trust(), default_cn=device.identity.udid,
        account_key=device.randomness.ec_key(device.label("acme-account", per_erase=True)),
        make_key=lambda kind, bits, bound: acme_key(device, kind, bits, bound, tag),
        attest=lambda key, freshness: request_attestation(device, key, freshness),
    )
    if result.status != "issued":
        move(st, Event.IDENTITY_NOT_ISSUED)
        device.record("RemoteManagement", "error", now(), f"enrollment failed: no identity: {result.reason}"[:300])
        return False
    assert result.certificate is not None and result.key is not None
    installed["acme_payload"] = installed.pop("acme")
    installed["identity_cert_pem"] = cert_to_pem(result.certificate).decode()
    if isinstance(result.key, HardwareKey):
        installed["identity_key_item"] = result.key.item  # public key and the wrapped private key only
    else:
        installed["identity_key_pem"] = key_to_pem(result.key).decode()
    installed["identity_issuer"] = result.issuer
    installed["identity_method"] = "acme"
    installed["hardware_bound"] = result.hardware_bound
    installed["attested"] = result.attested
    installed["attestation_pem"] = [cert_to_pem(x509.load_der_x509_certificate(c)).decode() for c in result.attestation]
    how = ", ".join(w for w, on in (("hardware-bound", result.hardware_bound), ("attested", result.attested)) if on)
    device.record("Enrollment", "info", now(), f"identity from ACME ({how or 'software key'}), "
                                                f"issued by {result.issuer}"[:300])
    return True


def release_awaiting_configuration(device: Device, now: Now) -> None:
    """DeviceConfigured arrived: leave the Awaiting Configuration pane and finish the local panes."""
    st = device.state
    if st.phase != Phase.AWAITING_CONFIGURATION:
        return
    device.record("AwaitingConfiguration", "released", now(), "DeviceConfigured received")
    move(st, Event.DEVICE_CONFIGURED, _first_local_pane(device))
    _run_post_panes(device, now)


def _run_post_panes(device: Device, now: Now) -> None:
    """The local panes after enrollment: shown unless skipped, each choice taken from the script."""
    st = device.state
    skip = set(device.cloud_config.get("SkipSetup") or [])
    panes = applicable_post_panes(device)
    start = panes.index(st.pane) if st.pane in panes else (len(panes) if st.pane == Pane.HOME_SCREEN else 0)
    script = device.script
    ident = device.identity
    for pane in panes[start:]:
        move(st, Event.SHOW_PANE, pane)
        if pane == "Android" and "Restore" in skip:
            continue  # "Move Data from Android" is an option of the Apps & Data pane
        if pane == "EnableLockdownMode" and not st.apple_id:
            continue  # offered only once an Apple Account is signed in
        if pane in skip:
            device.record(pane, "skipped", now(), "SkipSetup")
            if pane == "Passcode":
                st.passcode_set = False
            elif pane == "Location":
                st.location_services = False
            continue
        detail = ""
        if pane == "Passcode":
            st.passcode_set = script.set_passcode
            detail = "passcode set" if script.set_passcode else "Don't Use Passcode"
        elif pane == "Biometric":
            detail = "Face ID set up" if ident.biometric == "FaceID" else "Touch ID set up"
        elif pane == "Location":
            st.location_services = True
            detail = "Location Services on"
        elif pane == "Restore":
            detail = "Don't Transfer Apps & Data"
        elif pane == "AppleID":
            if script.apple_id == "sign_in":
                st.apple_id = script.apple_id_account or f"{ident.serial_number.lower()}@icloud.example"
                detail = f"signed in as {st.apple_id}"
            else:
                detail = "Set Up Later in Settings"
        device.record(pane, "shown", now(), detail)
    move(st, Event.SETUP_COMPLETE)
    org = device.cloud_config.get("OrganizationName")
    device.record(
        "HomeScreen", "shown", now(), f"managed by {org}" if device.enrolled and org else "setup complete"
    )


def erase(device: Device, now: Now, *, reason: str = "erased") -> None:
    """Erase All Content and Settings: back to Hello with only the hardware identity kept.

    The next activation asks Apple again, so a profile assigned since then takes effect now.
    """
    st = device.state
    device.record("EraseDevice", "info", now(), reason)
    unenroll(device)
    move(st, Event.ERASE)
    st.powered = True
    st.cloud_config = None
    st.profiles = []
    st.user = st.apple_id = st.device_name = None
    st.passcode_set = st.location_services = st.locked = False
    st.erase_count += 1
