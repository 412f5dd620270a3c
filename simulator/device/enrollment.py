"""Enrollment as the device speaks it: MachineInfo, the enrollment profile and the first check-ins.

FACTS.md §2–3: MachineInfo signed by the device's Apple identity goes to the configuration URL (POSTed,
or for web enrollment in a header of a GET); the answer must be a profile whose CMS signature verifies
against the cloud configuration's anchors or the profile's own root payload; its PKCS#12 identity is
installed, and Authenticate + TokenUpdate check in. Which pane shows what while this happens is
Setup Assistant's business (:mod:`simulator.device.setup_assistant`); this module builds the messages,
checks the profile and keeps the enrollment record, so the MDM agent shares the check-in code.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography import x509

from mdm.protocol import cms, mobileconfig
from mdm.protocol.checkin import Authenticate, TokenUpdate
from mdm.protocol.machineinfo import MachineInfo
from mdm.protocol.plist import dumps
from mdm.protocol.x509 import cert_to_pem, key_to_pem

from .machine import USER_AGENT, Device, Flow, Now, Request, Response

__all__ = [
    "CHECKIN_CONTENT_TYPE",
    "MACHINE_INFO_CONTENT_TYPE",
    "checkin_request",
    "check_in",
    "enrollment_failure",
    "enrollment_request",
    "enrollment_url",
    "install_enrollment_profile",
    "machine_info",
    "profile_summary",
    "unenroll",
    "with_credentials",
]

MACHINE_INFO_CONTENT_TYPE = "application/pkcs7-signature"
#: The first iOS and iPadOS release that acts on a com.apple.security.acme payload.
ACME_MIN_OS = 16
CHECKIN_CONTENT_TYPE = "application/x-apple-aspen-mdm-checkin"
_SUMMARY_KEYS = ("PayloadIdentifier", "PayloadUUID", "PayloadVersion", "PayloadDisplayName", "PayloadOrganization",
                 "PayloadDescription")  # fmt: skip
_CONTENT_SUMMARY_KEYS = ("PayloadType", "PayloadIdentifier", "PayloadUUID", "PayloadVersion", "PayloadDisplayName")


def enrollment_url(device: Device) -> str | None:
    """Where the device enrolls, or None when its cloud configuration does not make it managed."""
    st = device.state
    config = st.cloud_config or {}
    if not (config.get("ConfigurationURL") or config.get("ConfigurationWebURL")):
        return None  # no configuration: an override alone does not make a device managed
    return st.mdm_url_override or config.get("ConfigurationURL") or None


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


def enrollment_request(device: Device) -> Request:
    """MachineInfo, signed by the device's Apple identity, to the enrollment URL.

    Web-based enrollment (a ``ConfigurationWebURL``, which Setup Assistant prefers to the
    ``ConfigurationURL`` when the profile has both): the web view GETs the page with the signed
    MachineInfo in a header; otherwise it is POSTed as the body.
    """
    st = device.state
    config = device.cloud_config
    url = enrollment_url(device)
    signed_info = device.sign_with_device_identity(machine_info(device).to_plist())
    web = not st.mdm_url_override and config.get("ConfigurationWebURL")
    headers = {"User-Agent": USER_AGENT}
    if web:
        headers["x-apple-aspen-deviceinfo"] = base64.b64encode(signed_info).decode("ascii")
        return Request("GET", config["ConfigurationWebURL"], headers, trust=device.mdm_trust())
    headers["Content-Type"] = MACHINE_INFO_CONTENT_TYPE
    return Request("POST", str(url), headers, signed_info, trust=device.mdm_trust())


def with_credentials(request: Request, username: str, password: str) -> Request:
    """The same request again with HTTP Basic credentials (the Authentication pane's answer)."""
    basic = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    headers = {**request.headers, "Authorization": basic}
    return Request(request.method, request.url, headers, request.body, trust=request.trust)


def enrollment_failure(response: Response) -> str:
    """Why the server did not hand out a profile, with the ``code`` of a 403 when it names one."""
    if response.status == 403:
        try:
            code = json.loads(response.body).get("code")
        except (ValueError, AttributeError, UnicodeDecodeError):
            code = None
        if code:
            return f"HTTP 403 {code}"
    return response.describe()


def install_enrollment_profile(device: Device, body: bytes, now: Now) -> dict[str, Any]:
    """Verify and install the enrollment profile; returns the enrollment record (not yet committed).

    Trust: the signer must chain to one of the cloud configuration's ``AnchorCertificates`` or to a
    ``com.apple.security.root`` payload of the profile itself (how an MDM server ships its CA). A
    profile whose signature does not verify is refused; an unsigned one is installed as
    "not verified", as iOS does. Raises ``ValueError`` (or ``PlistError``) with the reason.
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
    identity: dict[str, Any]
    if isinstance(identity_payload, mobileconfig.PKCS12Payload):
        cert, key = identity_payload.load()
        identity = {"identity_cert_pem": cert_to_pem(cert).decode(), "identity_key_pem": key_to_pem(key).decode()}
    elif isinstance(identity_payload, mobileconfig.ACMEPayload):
        # iOS and iPadOS know com.apple.security.acme from 16; an older device cannot install the profile
        if _major(device.identity.os_version) < ACME_MIN_OS:
            raise ValueError(f"identity payload {identity_payload.payload_type} needs iOS {ACME_MIN_OS} or later "
                             f"(this device runs {device.identity.os_version})")
        identity = {"identity_cert_pem": None, "identity_key_pem": None,
                    "acme": dumps(identity_payload.to_dict()).decode()}  # the exchange runs next, as SCEP's
    elif isinstance(identity_payload, mobileconfig.SCEPPayload):
        # the identity comes from the SCEP server next (setup_assistant runs the exchange)
        # kept as plist text: the device's state is JSON, and CAFingerprint is data
        scep_plist = dumps(identity_payload.to_dict()).decode()
        identity = {"identity_cert_pem": None, "identity_key_pem": None, "scep": scep_plist}
    else:
        kind = identity_payload.payload_type if identity_payload is not None else "missing"
        raise ValueError(f"identity payload {kind} is not supported (PKCS#12, SCEP or ACME)")
    locked = bool(profile.payload_removal_disallowed) or bool(config.get("IsMDMUnremovable"))
    summary = profile_summary(parsed.data, managed=True, removal_disallowed=locked)
    return {
        "profile_identifier": profile.payload_identifier,
        "server_url": mdm.server_url,
        "check_in_url": mdm.check_in_url or mdm.server_url,
        "topic": mdm.topic,
        "sign_message": bool(mdm.sign_message),
        "access_rights": mdm.access_rights or 0,
        "check_out_when_removed": bool(mdm.check_out_when_removed),
        **identity,
        "removal_disallowed": locked,
        "verified": verified,
        "summary": summary,
    }


def _major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def profile_summary(
    data: dict[str, Any], *, managed: bool, removal_disallowed: bool | None = None
) -> dict[str, Any]:
    """What ProfileList reports about an installed profile (no keys or certificates kept)."""
    content = [
        {k: item[k] for k in _CONTENT_SUMMARY_KEYS if k in item}
        for item in data.get("PayloadContent") or []
        if isinstance(item, dict)
    ]
    summary: dict[str, Any] = {k: data[k] for k in _SUMMARY_KEYS if k in data}
    summary["PayloadRemovalDisallowed"] = bool(
        data.get("PayloadRemovalDisallowed") if removal_disallowed is None else removal_disallowed
    )
    summary["IsManaged"] = managed
    summary["IsEncrypted"] = False
    summary["HasRemovalPasscode"] = False
    summary["PayloadContent"] = content
    return summary


def checkin_request(device: Device, message: dict[str, Any]) -> Request:
    """A check-in PUT to CheckInURL with ``Mdm-Signature`` when the profile asks for signed messages."""
    enrollment = device.state.enrollment or {}
    url = enrollment.get("check_in_url") or enrollment.get("server_url", "")
    return device.signed_put(url, CHECKIN_CONTENT_TYPE, message)


def check_in(device: Device, now: Now) -> Flow[bool]:
    """Authenticate, then TokenUpdate with a new push token, PushMagic and unlock token.

    The three come from the device's random source under labels that name the device and its erase
    count, so a seeded device sends the same ones in every run and new ones after an erase.
    """
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
    random = device.randomness
    token = random.bytes(32, device.label("push-token", per_erase=True))
    push_magic = random.uuid(device.label("push-magic", per_erase=True)).upper()
    unlock = random.bytes(48, device.label("unlock-token", per_erase=True))
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


def unenroll(device: Device) -> None:
    """Forget the MDM: its profile, identity, tokens, managed profiles and apps, pending prompts."""
    st = device.state
    st.enrollment = None
    st.push_token = st.push_magic = st.unlock_token = None
    st.profiles = [p for p in st.profiles if not p.get("IsManaged")]
    st.apps = []
    st.prompts = {}
    device.forget_cached_keys()
