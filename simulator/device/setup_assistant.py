"""Setup Assistant: the panes an iPhone or iPad shows from Hello to the Home Screen, and enrollment.

Which panes exist depends on the device (Face ID or Touch ID, cellular, Action Button) and its OS
version (a pane exists from the release its skip key was introduced until it was deprecated,
``simulator.catalog``); which of them are *shown* depends on the cloud configuration's ``SkipSetup``.
Panes before activation (Hello, Language, Region, Keyboard, Dictation, Wi-Fi) appear before the
device has its configuration, so ``SkipSetup`` cannot hide them, as Apple documents for ``Keyboard``.

The transcript records every pane as ``(pane, "shown"|"skipped", time, detail)``; failures are
``"error"`` entries and the device stays on the pane that failed, so the next :func:`run_setup`
(power on again, "Try Again") resumes there.

Enrollment follows FACTS.md §2–3: MachineInfo signed by the device's Apple identity is POSTed to the
configuration URL; a 401 asking for HTTP Basic shows the Authentication pane; the answer must be a
profile whose CMS signature verifies against the cloud configuration's anchors or the profile's own
root payload; its PKCS#12 identity is installed, and Authenticate + TokenUpdate check in.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from typing import Any

from cryptography import x509

from mdm.protocol import cms, mobileconfig
from mdm.protocol.checkin import Authenticate, TokenUpdate
from mdm.protocol.machineinfo import MachineInfo
from mdm.protocol.plist import PlistError, dumps
from mdm.protocol.x509 import cert_to_pem, key_to_pem
from simulator.catalog import load_catalog

from .machine import USER_AGENT, Device, Flow, Now, Request, Response

__all__ = [
    "PRE_ACTIVATION_PANES",
    "POST_ENROLLMENT_ORDER",
    "applicable_post_panes",
    "pre_activation_panes",
    "run_setup",
    "release_awaiting_configuration",
    "machine_info",
]

#: Panes before the cloud configuration is known. Keyboard, SpokenLanguage and TermsOfAddress are
#: the skip keys Apple marks "not always skippable" for this reason.
PRE_ACTIVATION_PANES = ("Hello", "Language", "Region", "Keyboard", "SpokenLanguage", "TermsOfAddress", "WiFi")
_PRE_ACTIVATION_SKIP_KEYS = frozenset({"Keyboard", "SpokenLanguage", "TermsOfAddress"})
#: Languages whose grammar asks for a form of address (the Terms of Address pane).
_TERMS_OF_ADDRESS_LANGUAGES = frozenset({"fr", "es", "it", "de", "pt"})

#: After enrollment, in the order iOS 17/18 shows them. Every name is an Apple skip key.
POST_ENROLLMENT_ORDER = (
    "Privacy", "DeviceToDeviceMigration", "Biometric", "Passcode", "Restore", "Android", "AppleID",
    "EnableLockdownMode", "TOS", "SoftwareUpdate", "Location", "Siri", "ScreenTime", "Payment",
    "iMessageAndFaceTime", "MessagingActivationUsingPhoneNumber", "SIMSetup", "Diagnostics", "Safety",
    "Intelligence", "ActionButton", "CameraButton", "HomeButtonSensitivity", "DisplayTone", "Zoom",
    "Appearance", "AppStore", "OnBoarding", "Welcome",
)  # fmt: skip

#: Skip keys that never name a pane of a plain new-device setup (they need a restore, an update or a
#: paired watch first), so they never appear in a transcript.
_CONDITIONAL_KEYS = frozenset({"RestoreCompleted", "UpdateCompleted", "WatchMigration"})

ACTIVATION_CONTENT_TYPE = "application/json"
MACHINE_INFO_CONTENT_TYPE = "application/pkcs7-signature"
CHECKIN_CONTENT_TYPE = "application/x-apple-aspen-mdm-checkin"


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
    if st.phase in ("home", "awaiting_configuration"):
        return st.phase
    pre = pre_activation_panes(device)
    if st.pane in pre:
        _run_pre_activation(device, now, pre[pre.index(st.pane) :])
    if st.pane == "Activation":
        ok = yield from _activate(device, now)
        if not ok:
            return "setup"
    if st.pane == "RemoteManagement":
        _remote_management(device, now)
    if st.pane in ("Authentication", "Enrollment"):
        ok = yield from _enroll(device, now)
        if not ok:
            return "setup"
    if st.pane == "AwaitingConfiguration":
        st.phase = "awaiting_configuration"
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
        device.state.pane = pane
        device.record(pane, "shown", now(), detail)
    device.state.pane = "Activation"


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
    if _enrollment_url(device):
        org = config.get("OrganizationName") or "your organisation"
        device.record("Activation", "shown", now(), f"activated; this device is managed by {org}")
        st.pane = "RemoteManagement"
    else:
        device.record("Activation", "shown", now(), "activated; no Remote Management configuration")
        post = applicable_post_panes(device)
        st.pane = post[0] if post else "HomeScreen"
    return True


def _enrollment_url(device: Device) -> str | None:
    st = device.state
    config = st.cloud_config or {}
    if not (config.get("ConfigurationURL") or config.get("ConfigurationWebURL")):
        return None  # no configuration: an override alone does not make a device managed
    return st.mdm_url_override or config.get("ConfigurationURL") or None


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
    device.state.pane = "Enrollment"


def machine_info(device: Device) -> MachineInfo:
    """The MachineInfo this device signs and sends to the enrollment URL."""
    ident = device.identity
    return MachineInfo(
        udid=ident.udid,
        serial=ident.serial_number,
        product=ident.product_name,
        version=ident.build_version,
        os_version=ident.os_version,
        language=device.script.language,
        can_request_software_update=True,
        imei=ident.imei or None,
        meid=ident.meid or None,
    )


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _enroll(device: Device, now: Now) -> Flow[bool]:
    """MachineInfo → profile → identity → Authenticate → TokenUpdate. False leaves the device on the
    pane that failed (Authentication or Enrollment) with an error in the transcript."""
    st = device.state
    config = device.cloud_config
    url = _enrollment_url(device)
    signed_info = device.sign_with_device_identity(machine_info(device).to_plist())
    web = not st.mdm_url_override and not config.get("ConfigurationURL") and config.get("ConfigurationWebURL")
    headers = {"User-Agent": USER_AGENT}
    if web:
        # Web-based enrollment: the web view GETs the page with the signed MachineInfo in a header.
        url = config["ConfigurationWebURL"]
        headers["x-apple-aspen-deviceinfo"] = base64.b64encode(signed_info).decode("ascii")
        request = Request("GET", url, headers, trust=device.mdm_trust())
    else:
        headers["Content-Type"] = MACHINE_INFO_CONTENT_TYPE
        request = Request("POST", str(url), headers, signed_info, trust=device.mdm_trust())
    response = yield request
    user: str | None = None
    if response.status == 401 and "basic" in response.header("www-authenticate").lower():
        script = device.script
        st.pane = "Authentication"
        if not script.username or script.password is None:
            device.record(
                "Authentication",
                "error",
                now(),
                "the server asks for a user name and password; none scripted",
            )
            return False
        device.record("Authentication", "shown", now(), f"user {script.username}")
        headers = {**request.headers, "Authorization": _basic(script.username, script.password)}
        response = yield Request(request.method, request.url, headers, request.body, trust=request.trust)
        if response.status in (401, 403):
            # A server that checks the password with the IdP says 403 for a wrong one, 401 for none.
            device.record(
                "Authentication", "error", now(), f"wrong user name or password ({response.describe()})"
            )
            return False
        user = script.username
        st.pane = "Enrollment"
    if response.status != 200:
        st.pane = "Enrollment"
        device.record(
            "Enrollment", "error", now(), f"could not get the enrollment profile: {_enroll_failure(response)}"
        )
        return False
    try:
        installed = _install_enrollment_profile(device, response.body, now)
    except (ValueError, PlistError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        device.record("Enrollment", "error", now(), f"profile refused: {reason}"[:300])
        return False
    installed["user"] = user
    st.enrollment = installed
    device.forget_cached_keys()
    ok = yield from _check_in(device, now)
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
    if config.get("AwaitDeviceConfigured"):
        st.pane = "AwaitingConfiguration"
    else:
        post = applicable_post_panes(device)
        st.pane = post[0] if post else "HomeScreen"
    return True


def _enroll_failure(response: Response) -> str:
    if response.status == 403:
        try:
            code = json.loads(response.body).get("code")
        except (ValueError, AttributeError, UnicodeDecodeError):
            code = None
        if code:
            return f"HTTP 403 {code}"
    return response.describe()


def _install_enrollment_profile(device: Device, body: bytes, now: Now) -> dict[str, Any]:
    """Verify and install the enrollment profile; returns the enrollment record (not yet committed).

    Trust: the signer must chain to one of the cloud configuration's ``AnchorCertificates`` or to a
    ``com.apple.security.root`` payload of the profile itself (how an MDM server ships its CA). A
    profile whose signature does not verify is refused; an unsigned one is installed as
    "not verified", as iOS does.
    """
    config = device.cloud_config
    if not body:
        raise ValueError("empty answer")
    signed = body[:1] == b"\x30"
    if signed:
        content, claimed = cms.signed_content(body)
        unverified = mobileconfig.parse(content)
    else:
        unverified = mobileconfig.parse(body)
        claimed = None
    roots: list[x509.Certificate] = []
    for b64 in config.get("AnchorCertificates") or []:
        try:
            roots.append(x509.load_der_x509_certificate(base64.b64decode(b64)))
        except ValueError:
            continue
    for payload in unverified.payloads:
        if isinstance(payload, mobileconfig.RootPayload):
            roots.append(payload.certificate())
    verified = False
    if signed:
        if claimed is None:
            raise ValueError("the profile's signer certificate is missing")
        # With no root at all the device still checks the signature itself ("Not Verified").
        v = cms.verify(body, trust_roots=roots or [claimed], now=now())
        verified = bool(roots)
        # The verified bytes are the ones already read (the usual case): no need to parse them twice.
        parsed = unverified if v.content == content else mobileconfig.parse(v.content)
    else:
        parsed = unverified
    profile = parsed.profile
    mdm = profile.payload_of(mobileconfig.MDMPayload)
    if mdm is None:
        raise ValueError("the profile has no com.apple.mdm payload")
    identity_payload = profile.by_uuid(mdm.identity_certificate_uuid)
    if not isinstance(identity_payload, mobileconfig.PKCS12Payload):
        kind = identity_payload.payload_type if identity_payload is not None else "missing"
        raise ValueError(f"identity payload {kind} is not supported by the simulated device (PKCS#12 only)")
    cert, key = identity_payload.load()
    locked = bool(profile.payload_removal_disallowed) or bool(config.get("IsMDMUnremovable"))
    summary = _profile_summary(parsed.data, managed=True, removal_disallowed=locked)
    return {
        "profile_identifier": profile.payload_identifier,
        "server_url": mdm.server_url,
        "check_in_url": mdm.check_in_url or mdm.server_url,
        "topic": mdm.topic,
        "sign_message": bool(mdm.sign_message),
        "access_rights": mdm.access_rights or 0,
        "check_out_when_removed": bool(mdm.check_out_when_removed),
        "identity_cert_pem": cert_to_pem(cert).decode(),
        "identity_key_pem": key_to_pem(key).decode(),
        "removal_disallowed": locked,
        "verified": verified,
        "summary": summary,
    }


def _profile_summary(
    data: dict[str, Any], *, managed: bool, removal_disallowed: bool | None = None
) -> dict[str, Any]:
    """What ProfileList reports about an installed profile (no keys or certificates kept)."""
    content = []
    for item in data.get("PayloadContent") or []:
        if isinstance(item, dict):
            content.append(
                {
                    k: item[k]
                    for k in (
                        "PayloadType",
                        "PayloadIdentifier",
                        "PayloadUUID",
                        "PayloadVersion",
                        "PayloadDisplayName",
                    )
                    if k in item
                }
            )
    summary: dict[str, Any] = {
        k: data[k]
        for k in ("PayloadIdentifier", "PayloadUUID", "PayloadVersion", "PayloadDisplayName",
                  "PayloadOrganization", "PayloadDescription")
        if k in data
    }  # fmt: skip
    summary["PayloadRemovalDisallowed"] = bool(
        data.get("PayloadRemovalDisallowed") if removal_disallowed is None else removal_disallowed
    )
    summary["IsManaged"] = managed
    summary["IsEncrypted"] = False
    summary["HasRemovalPasscode"] = False
    summary["PayloadContent"] = content
    return summary


def profile_summary(data: dict[str, Any], *, managed: bool) -> dict[str, Any]:
    """Public for the agent's InstallProfile."""
    return _profile_summary(data, managed=managed)


def checkin_request(device: Device, message: dict[str, Any]) -> Request:
    """A check-in PUT to CheckInURL with ``Mdm-Signature`` when the profile asks for signed messages."""
    enrollment = device.state.enrollment or {}
    body = dumps(message)
    headers = {"Content-Type": CHECKIN_CONTENT_TYPE, "User-Agent": USER_AGENT}
    signature = device.mdm_signature(body)
    if signature:
        headers["Mdm-Signature"] = signature
    return Request("PUT", enrollment.get("check_in_url") or enrollment.get("server_url", ""), headers, body,
                   trust=device.mdm_trust())


def _check_in(device: Device, now: Now) -> Flow[bool]:
    st = device.state
    ident = device.identity
    enrollment = st.enrollment or {}
    auth = Authenticate(
        udid=ident.udid,
        topic=enrollment["topic"],
        serial_number=ident.serial_number,
        os_version=ident.os_version,
        build_version=ident.build_version,
        product_name=ident.product_name,
        model=ident.model_number,
        model_name=ident.model_name,
        imei=ident.imei,
        meid=ident.meid,
    )
    response = yield checkin_request(device, auth.to_dict())
    if response.status != 200:
        device.record("Enrollment", "error", now(), f"Authenticate refused: {response.describe()}")
        return False
    token = os.urandom(32)
    push_magic = str(uuid.uuid4()).upper()
    unlock = os.urandom(48)
    update = TokenUpdate(
        udid=ident.udid,
        topic=enrollment["topic"],
        token=token,
        push_magic=push_magic,
        unlock_token=unlock,
        awaiting_configuration=bool(device.cloud_config.get("AwaitDeviceConfigured")),
    )
    response = yield checkin_request(device, update.to_dict())
    if response.status != 200:
        device.record("Enrollment", "error", now(), f"TokenUpdate refused: {response.describe()}")
        return False
    st.push_token = token.hex()
    st.push_magic = push_magic
    st.unlock_token = unlock.hex()
    return True


def release_awaiting_configuration(device: Device, now: Now) -> None:
    """DeviceConfigured arrived: leave the Awaiting Configuration pane and finish the local panes."""
    st = device.state
    if st.phase != "awaiting_configuration":
        return
    device.record("AwaitingConfiguration", "released", now(), "DeviceConfigured received")
    st.phase = "setup"
    post = applicable_post_panes(device)
    st.pane = post[0] if post else "HomeScreen"
    _run_post_panes(device, now)


def _run_post_panes(device: Device, now: Now) -> None:
    """The local panes after enrollment: shown unless skipped, each choice taken from the script."""
    st = device.state
    skip = set(device.cloud_config.get("SkipSetup") or [])
    panes = applicable_post_panes(device)
    start = panes.index(st.pane) if st.pane in panes else (len(panes) if st.pane == "HomeScreen" else 0)
    script = device.script
    ident = device.identity
    for pane in panes[start:]:
        st.pane = pane
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
    st.pane = "HomeScreen"
    st.phase = "home"
    org = device.cloud_config.get("OrganizationName")
    device.record(
        "HomeScreen", "shown", now(), f"managed by {org}" if device.enrolled and org else "setup complete"
    )
