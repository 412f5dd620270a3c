"""The MDM agent: wakes on a push (or polls), connects to ServerURL and answers each command.

Answers are consistent with the device's identity and state, so an MDM server sees what it would see
from real hardware: ``IsSupervised`` follows the cloud configuration, the MDM profile is
``PayloadRemovalDisallowed`` when enrollment is locked, an app that needs an Apple Account waits
(``NotNow``) while the device asks its user to sign in, the Company Portal fails without user
affinity. Unknown request types get ``Error`` with the ``ErrorChain`` iOS sends (MCMDMErrorDomain
12021); a command whose keys have the wrong types gets ``CommandFormatError``.

The NotNow rule mirrors NanoMDM's server side: after ``NotNow`` the server offers the next command
and re-offers the deferred one after the device's next ``Idle``; a device therefore answers the
same command at most once per round.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mdm.protocol import mobileconfig
from mdm.protocol.checkin import CheckOut
from mdm.protocol.commands import COMMAND_SCHEMAS, Command, CommandError, parse_command
from mdm.protocol.plist import PlistError, dumps
from mdm.protocol.x509 import cert_from_der

from .machine import USER_AGENT, Device, Flow, Now, Request
from .setup_assistant import checkin_request, profile_summary, release_awaiting_configuration

__all__ = [
    "AgentRound",
    "COMPANY_PORTAL_BUNDLE_ID",
    "COMPANY_PORTAL_STORE_ID",
    "agent_round",
    "erase",
    "pair_with_host",
    "remove_mdm_profile",
]

COMPANY_PORTAL_BUNDLE_ID = "com.microsoft.CompanyPortal"
COMPANY_PORTAL_STORE_ID = 719171358
#: Apps the simulated App Store knows by iTunesStoreID.
KNOWN_STORE_APPS: dict[int, tuple[str, str]] = {
    COMPANY_PORTAL_STORE_ID: (COMPANY_PORTAL_BUNDLE_ID, "Intune Company Portal"),
    586447913: ("com.microsoft.Office.Word", "Microsoft Word"),
    586683407: ("com.microsoft.Office.Outlook", "Microsoft Outlook"),
    1113153706: ("com.microsoft.skype.teams", "Microsoft Teams"),
}
MAX_COMMANDS_PER_ROUND = 200
RESULT_CONTENT_TYPE = "application/x-apple-aspen-mdm"
MDM_ERROR_DOMAIN = "MCMDMErrorDomain"
PROFILE_ERROR_DOMAIN = "MCProfileErrorDomain"
INSTALL_ERROR_DOMAIN = "MCInstallationErrorDomain"


@dataclass
class AgentRound:
    """What one wake-up did: whether a push was waiting and each ``(RequestType, Status)`` sent."""

    pushed: bool = False
    connected: bool = False
    commands: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None


def _error_chain(code: int, domain: str, text: str) -> list[dict[str, Any]]:
    return [
        {"ErrorCode": code, "ErrorDomain": domain, "LocalizedDescription": text, "USEnglishDescription": text}
    ]


def _result_request(device: Device, result: dict[str, Any]) -> Request:
    enrollment = device.state.enrollment or {}
    body = dumps(result)
    headers = {"Content-Type": RESULT_CONTENT_TYPE, "User-Agent": USER_AGENT}
    signature = device.mdm_signature(body)
    if signature:
        headers["Mdm-Signature"] = signature
    return Request("PUT", enrollment.get("server_url", ""), headers, body, trust=device.mdm_trust())


# -- the round -------------------------------------------------------------------------------------------
def agent_round(
    device: Device, now: Now, *, poll_push: bool = True, connect: bool = True
) -> Flow[AgentRound]:
    """Poll the push gateway, then (when pushed, or always with ``connect``) drain the command queue."""
    report = AgentRound()
    st = device.state
    if not st.powered or st.enrollment is None:
        return report
    _resolve_prompts(device, now)
    if poll_push and st.push_token:
        response = yield Request(
            "GET",
            f"{st.apple_url}/apns/events?token={st.push_token}&wait=0",
            {"Accept": "application/json", "User-Agent": USER_AGENT},
        )
        if response.status == 200:
            try:
                notes = json.loads(response.body or b"{}").get("notifications") or []
            except (ValueError, AttributeError, UnicodeDecodeError):
                notes = []
            report.pushed = any(_is_our_push(n, st.push_magic) for n in notes)
    if not (report.pushed or connect):
        return report
    report.connected = True
    yield from _connect(device, now, report)
    return report


def _is_our_push(note: Any, push_magic: str | None) -> bool:
    if not isinstance(note, dict):
        return False
    payload = note.get("payload", note)
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return False
    magic = payload.get("mdm") if isinstance(payload, dict) else None
    # PushMagic is a shared secret: compared in constant time, like every secret in mdmsim.
    return isinstance(magic, str) and isinstance(push_magic, str) and hmac.compare_digest(magic.encode(), push_magic.encode())


def _connect(device: Device, now: Now, report: AgentRound) -> Flow[None]:
    udid = device.udid
    answered_not_now: set[str] = set()
    after: Callable[[], None] | None = None
    request = _result_request(device, {"UDID": udid, "Status": "Idle"})
    for _ in range(MAX_COMMANDS_PER_ROUND):
        response = yield request
        if after is not None:
            after()  # erase / shut down / restart happen once the server has our Acknowledged
            return
        if response.status != 200:
            report.error = response.describe()
            if response.status == 401 or (response.status == 403 and b"unrecognized.device" in response.body):
                device.record(
                    "MDM",
                    "error",
                    now(),
                    f"the server no longer knows this device ({report.error}); unenrolled",
                )
                _unenroll(device)
            else:
                device.record("MDM", "error", now(), f"connect failed: {report.error}")
            return
        if not response.body.strip():
            return
        try:
            command = parse_command(response.body)
        except (CommandError, PlistError) as exc:
            uuid_ = _command_uuid(response.body)
            report.commands.append(("?", "CommandFormatError"))
            device.log_command(now(), "?", "CommandFormatError", uuid_)
            result: dict[str, Any] = {"UDID": udid, "Status": "CommandFormatError", "CommandUUID": uuid_}
            device.record("MDM", "error", now(), f"malformed command: {getattr(exc, 'reason', exc)}"[:200])
            request = _result_request(device, result)
            continue
        if command.command_uuid in answered_not_now:
            return  # the server re-offered a deferred command in the same round: try again next wake-up
        status, extra, effect = _handle(device, command, now)
        if status == "NotNow":
            answered_not_now.add(command.command_uuid)
        report.commands.append((command.request_type, status))
        device.log_command(now(), command.request_type, status, command.command_uuid)
        result = {"UDID": udid, "Status": status, "CommandUUID": command.command_uuid, **extra}
        after = effect
        request = _result_request(device, result)


def _command_uuid(body: bytes) -> str:
    try:
        import plistlib

        value = plistlib.loads(body).get("CommandUUID")
        return value if isinstance(value, str) else ""
    except Exception:  # a body that is not even a plist still deserves a reply
        return ""


def _resolve_prompts(device: Device, now: Now) -> None:
    """Between rounds the user answers the "Sign in to the App Store" prompt as scripted."""
    st = device.state
    for command_uuid, ident in list(st.prompts.items()):
        if ident.startswith("answered:"):
            continue
        if device.script.apple_id_prompt == "sign_in":
            if not st.apple_id:
                st.apple_id = device.script.apple_id_account or f"{device.serial.lower()}@icloud.example"
            device.record(
                "AppleIDPrompt", "info", now(), f"user signed in as {st.apple_id} to install {ident}"
            )
            st.prompts[command_uuid] = f"answered:sign_in:{ident}"
        else:
            device.record(
                "AppleIDPrompt", "info", now(), f"user cancelled the Apple Account prompt for {ident}"
            )
            st.prompts[command_uuid] = f"answered:cancel:{ident}"


# -- command handlers ------------------------------------------------------------------------------------
Handled = tuple[str, dict[str, Any], Callable[[], None] | None]


def _handle(device: Device, command: Command, now: Now) -> Handled:
    handler = _HANDLERS.get(command.request_type)
    if handler is None:
        text = (
            f"“{command.request_type}” is not a valid request type."
            if command.request_type not in COMMAND_SCHEMAS
            else f"“{command.request_type}” is not supported by this simulated device."
        )
        return "Error", {"ErrorChain": _error_chain(12021, MDM_ERROR_DOMAIN, text)}, None
    return handler(device, command, now)


def _ack(extra: dict[str, Any] | None = None, effect: Callable[[], None] | None = None) -> Handled:
    return "Acknowledged", extra or {}, effect


def _err(code: int, domain: str, text: str) -> Handled:
    return "Error", {"ErrorChain": _error_chain(code, domain, text)}, None


def _device_information(device: Device, command: Command, now: Now) -> Handled:
    answers = _query_responses(device)
    queries = command.params.get("Queries") or list(answers)
    return _ack({"QueryResponses": {q: answers[q] for q in queries if q in answers}})


def _query_responses(device: Device) -> dict[str, Any]:
    st = device.state
    ident = device.identity
    supervised = device.is_supervised
    capacity = float(ident.capacity_gb)
    answers: dict[str, Any] = {
        "UDID": ident.udid,
        "SerialNumber": ident.serial_number,
        "DeviceName": st.device_name or ident.device_name,
        "Model": ident.model_number,
        "ModelName": ident.device_family,
        "ModelNumber": ident.model_number,
        "ProductName": ident.product_name,
        "OSVersion": ident.os_version,
        "BuildVersion": ident.build_version,
        "IsSupervised": supervised,
        "AwaitingConfiguration": device.awaiting_configuration,
        "IsActivationLockEnabled": (not supervised) and bool(st.apple_id),
        "IsDeviceLocatorServiceEnabled": bool(st.apple_id),
        "IsCloudBackupEnabled": False,
        "IsMDMLostModeEnabled": False,
        "IsMultiUser": bool(device.cloud_config.get("IsMultiUser")),
        "IsDoNotDisturbInEffect": False,
        "ITunesStoreAccountIsActive": bool(st.apple_id),
        "WiFiMAC": ident.wifi_mac,
        "BluetoothMAC": ident.bluetooth_mac,
        "DeviceCapacity": capacity,
        "AvailableDeviceCapacity": round(capacity * 0.82, 2),
        "BatteryLevel": 0.87,
        "CellularTechnology": (3 if ident.meid else 1) if ident.imei else 0,
        "IsRoaming": False,
        "PasscodePresent": st.passcode_set,
        "LocationServicesEnabled": st.location_services,
        "SupplementalBuildVersion": ident.build_version,
        "OrganizationInfo": {
            k: v
            for k, v in (
                ("OrganizationName", device.cloud_config.get("OrganizationName")),
                ("OrganizationDepartment", device.cloud_config.get("OrganizationDepartment")),
                ("OrganizationPhone", device.cloud_config.get("OrganizationSupportPhone")),
                ("OrganizationEmail", device.cloud_config.get("OrganizationEmail")),
            )
            if v
        },
    }
    if ident.imei:
        answers["IMEI"] = ident.imei
        answers["ModemFirmwareVersion"] = "1.00.00"
    if ident.meid:
        answers["MEID"] = ident.meid
    return answers


def _security_info(device: Device, command: Command, now: Now) -> Handled:
    st = device.state
    return _ack(
        {
            "SecurityInfo": {
                "HardwareEncryptionCaps": 3,
                "PasscodePresent": st.passcode_set,
                "PasscodeCompliant": True,
                "PasscodeCompliantWithProfiles": True,
                "PasscodeLockGracePeriodEnforced": 0,
                "ManagementStatus": {
                    "EnrolledViaDEP": True,
                    "IsUserEnrollment": False,
                    "IsActivationLockManageable": device.is_supervised,
                },
            }
        }
    )


def _profile_list(device: Device, command: Command, now: Now) -> Handled:
    profiles = device.state.profiles
    if command.params.get("ManagedOnly"):
        profiles = [p for p in profiles if p.get("IsManaged")]
    return _ack({"ProfileList": [dict(p) for p in profiles]})


def _install_profile(device: Device, command: Command, now: Now) -> Handled:
    st = device.state
    if st.locked and st.passcode_set:
        return "NotNow", {}, None  # profiles with keychain items wait for the user to unlock
    try:
        parsed = mobileconfig.parse(command.params["Payload"])
    except (ValueError, PlistError) as exc:
        return _err(
            1000, PROFILE_ERROR_DOMAIN, f"The profile could not be read: {getattr(exc, 'reason', exc)}"[:200]
        )
    if parsed.profile.payload_of(mobileconfig.MDMPayload) is not None:
        return _err(4001, PROFILE_ERROR_DOMAIN, "A device can have only one MDM profile.")
    summary = profile_summary(parsed.data, managed=True)
    st.profiles = [p for p in st.profiles if p.get("PayloadIdentifier") != summary.get("PayloadIdentifier")]
    st.profiles.append(summary)
    return _ack()


def _remove_profile(device: Device, command: Command, now: Now) -> Handled:
    st = device.state
    ident = command.params["Identifier"]
    if st.enrollment and ident == st.enrollment.get("profile_identifier"):
        return _err(12013, MDM_ERROR_DOMAIN, f"The profile “{ident}” cannot be removed with RemoveProfile.")
    found = [p for p in st.profiles if p.get("PayloadIdentifier") == ident]
    if not found:
        return _err(1003, PROFILE_ERROR_DOMAIN, f"The profile “{ident}” is not installed.")
    if not found[0].get("IsManaged"):
        return _err(12013, MDM_ERROR_DOMAIN, f"The profile “{ident}” is not managed by MDM.")
    st.profiles = [p for p in st.profiles if p.get("PayloadIdentifier") != ident]
    return _ack()


def _installed_application_list(device: Device, command: Command, now: Now) -> Handled:
    wanted = command.params.get("Identifiers")
    apps = [a for a in device.state.apps if not wanted or a["Identifier"] in wanted]
    return _ack({"InstalledApplicationList": [dict(a) for a in apps]})


def _managed_application_list(device: Device, command: Command, now: Now) -> Handled:
    wanted = command.params.get("Identifiers")
    return _ack(
        {
            "ManagedApplicationList": {
                a["Identifier"]: {"Status": "Managed", "ManagementFlags": 0}
                for a in device.state.apps
                if not wanted or a["Identifier"] in wanted
            }
        }
    )


def _app_identity(command: Command) -> tuple[str, str]:
    params = command.params
    store_id = params.get("iTunesStoreID")
    if isinstance(store_id, int) and store_id in KNOWN_STORE_APPS:
        return KNOWN_STORE_APPS[store_id]
    if params.get("Identifier"):
        ident = str(params["Identifier"])
        return ident, ident.rsplit(".", 1)[-1]
    if isinstance(store_id, int):
        return f"app.store.{store_id}", f"App {store_id}"
    url = str(params.get("ManifestURL", ""))
    return f"enterprise.{abs(hash(url)) % 10**8}", "Enterprise App"


def _install_application(device: Device, command: Command, now: Now) -> Handled:
    st = device.state
    bundle_id, name = _app_identity(command)
    if bundle_id == COMPANY_PORTAL_BUNDLE_ID and not st.user:
        return _err(
            12064,
            INSTALL_ERROR_DOMAIN,
            "The Company Portal needs a user: this device enrolled without user affinity.",
        )
    options = command.params.get("Options") or {}
    needs_apple_id = "ManifestURL" not in command.params and options.get("PurchaseMethod") != 1
    if needs_apple_id and not st.apple_id:
        answer = st.prompts.get(command.command_uuid)
        if answer is None:
            st.prompts[command.command_uuid] = bundle_id
            device.record(
                "AppleIDPrompt", "info", now(), f"asks the user to sign in to the App Store for {name}"
            )
            return "NotNow", {}, None
        if answer.startswith("answered:cancel"):
            st.prompts.pop(command.command_uuid, None)
            return _err(1008, INSTALL_ERROR_DOMAIN, f"The user cancelled the installation of {name}.")
        if not answer.startswith("answered:sign_in"):
            return "NotNow", {}, None  # still prompting
    st.prompts.pop(command.command_uuid, None)
    st.apps = [a for a in st.apps if a["Identifier"] != bundle_id]
    st.apps.append(
        {"Identifier": bundle_id, "Name": name, "ShortVersion": "1.0", "Version": "1",
         "BundleSize": 52_428_800, "IsValidated": True}
    )  # fmt: skip
    return _ack({"Identifier": bundle_id, "State": "Managed"})


def _remove_application(device: Device, command: Command, now: Now) -> Handled:
    ident = command.params["Identifier"]
    before = len(device.state.apps)
    device.state.apps = [a for a in device.state.apps if a["Identifier"] != ident]
    if len(device.state.apps) == before:
        return _err(12029, MDM_ERROR_DOMAIN, f"The app “{ident}” is not managed.")
    return _ack()


def _device_lock(device: Device, command: Command, now: Now) -> Handled:
    device.state.locked = True
    device.record("LockScreen", "info", now(), "locked by MDM")
    return _ack()


def _erase_device(device: Device, command: Command, now: Now) -> Handled:
    return _ack(effect=lambda: erase(device, now, reason="EraseDevice command"))


def _restart_device(device: Device, command: Command, now: Now) -> Handled:
    def restart() -> None:
        device.state.locked = device.state.passcode_set
        device.record("Boot", "info", now(), "restarted by MDM")

    return _ack(effect=restart)


def _shut_down_device(device: Device, command: Command, now: Now) -> Handled:
    def shut_down() -> None:
        device.state.powered = False
        device.record("Boot", "info", now(), "shut down by MDM")

    return _ack(effect=shut_down)


def _device_configured(device: Device, command: Command, now: Now) -> Handled:
    # Released at once: the remaining panes are local, and the round goes on with the next command.
    release_awaiting_configuration(device, now)
    return _ack()


def _settings(device: Device, command: Command, now: Now) -> Handled:
    results = []
    for item in command.params.get("Settings") or []:
        if not isinstance(item, dict) or not isinstance(item.get("Item"), str):
            return "CommandFormatError", {}, None
        if item["Item"] == "DeviceName" and isinstance(item.get("DeviceName"), str):
            if not device.is_supervised:
                results.append({"Item": "DeviceName", "Status": "Error"})
                continue
            device.state.device_name = item["DeviceName"]
        results.append({"Item": item["Item"], "Status": "Acknowledged"})
    return _ack({"Settings": results})


def _clear_passcode(device: Device, command: Command, now: Now) -> Handled:
    token = command.params["UnlockToken"]
    if device.state.unlock_token is None or token.hex() != device.state.unlock_token:
        return _err(12018, MDM_ERROR_DOMAIN, "The unlock token is invalid.")
    device.state.passcode_set = False
    device.state.locked = False
    return _ack()


def _activation_lock_bypass_code(device: Device, command: Command, now: Now) -> Handled:
    if not device.is_supervised:
        return _err(
            12078, MDM_ERROR_DOMAIN, "Activation Lock bypass codes are available on supervised devices only."
        )
    alphabet = "0123456789ACDEFGHJKLMNPQRTUVWXYZ"
    raw = "".join(secrets.choice(alphabet) for _ in range(25))
    code = "-".join(raw[i : i + 5] for i in range(0, 25, 5))
    return _ack({"ActivationLockBypassCode": code})


def _empty_list(key: str) -> Callable[[Device, Command, Now], Handled]:
    def handler(device: Device, command: Command, now: Now) -> Handled:
        return _ack({key: []})

    return handler


def _certificate_list(device: Device, command: Command, now: Now) -> Handled:
    items = []
    identity = device.mdm_identity()
    if identity is not None:
        from mdm.protocol.x509 import cert_to_der

        cert = identity[0]
        items.append(
            {"CommonName": cert.subject.rfc4514_string(), "Data": cert_to_der(cert), "IsIdentity": True}
        )
    return _ack({"CertificateList": items})


_HANDLERS: dict[str, Callable[[Device, Command, Now], Handled]] = {
    "DeviceInformation": _device_information,
    "SecurityInfo": _security_info,
    "ProfileList": _profile_list,
    "InstallProfile": _install_profile,
    "RemoveProfile": _remove_profile,
    "InstalledApplicationList": _installed_application_list,
    "ManagedApplicationList": _managed_application_list,
    "InstallApplication": _install_application,
    "RemoveApplication": _remove_application,
    "DeviceLock": _device_lock,
    "EraseDevice": _erase_device,
    "RestartDevice": _restart_device,
    "ShutDownDevice": _shut_down_device,
    "DeviceConfigured": _device_configured,
    "Settings": _settings,
    "ClearPasscode": _clear_passcode,
    "ActivationLockBypassCode": _activation_lock_bypass_code,
    "CertificateList": _certificate_list,
    "ProvisioningProfileList": _empty_list("ProvisioningProfileList"),
    "AvailableOSUpdates": _empty_list("AvailableOSUpdates"),
}


# -- life-cycle events -----------------------------------------------------------------------------------
def _unenroll(device: Device) -> None:
    st = device.state
    st.enrollment = None
    st.push_token = st.push_magic = st.unlock_token = None
    st.profiles = [p for p in st.profiles if not p.get("IsManaged")]
    st.apps = []
    st.prompts = {}
    device.forget_cached_keys()


def erase(device: Device, now: Now, *, reason: str = "erased") -> None:
    """Erase All Content and Settings: back to Hello with only the hardware identity kept.

    The next activation asks Apple again, so a profile assigned since then takes effect now.
    """
    st = device.state
    device.record("EraseDevice", "info", now(), reason)
    _unenroll(device)
    st.phase = "setup"
    st.pane = "Hello"
    st.powered = True
    st.cloud_config = None
    st.profiles = []
    st.user = st.apple_id = st.device_name = None
    st.passcode_set = st.location_services = st.locked = False
    st.erase_count += 1


def remove_mdm_profile(device: Device, now: Now) -> Flow[bool]:
    """Settings → General → VPN & Device Management → Remove Management."""
    st = device.state
    enrollment = st.enrollment
    if enrollment is None:
        device.record("RemoveManagement", "error", now(), "no MDM profile installed")
        return False
    if enrollment.get("removal_disallowed"):
        device.record(
            "RemoveManagement", "error", now(),
            f"the profile “{enrollment['profile_identifier']}” cannot be removed: enrollment is locked",
        )  # fmt: skip
        return False
    if enrollment.get("check_out_when_removed"):
        message = CheckOut(udid=device.udid, topic=enrollment.get("topic")).to_dict()
        response = yield checkin_request(device, message)
        if response.status != 200:
            device.record("RemoveManagement", "info", now(), f"CheckOut not delivered: {response.describe()}")
    _unenroll(device)
    device.record("RemoveManagement", "shown", now(), "MDM profile removed by the user")
    return True


def pair_with_host(device: Device, cert_der: bytes | None, now: Now) -> bool:
    """A host asks to pair: refused unless AllowPairing, and, with SupervisorHostCertificates, unless
    the host presents one of them."""
    config = device.cloud_config
    if config and not config.get("AllowPairing", True):
        device.record("HostPairing", "error", now(), "pairing is not allowed by the organisation")
        return False
    allowed = config.get("SupervisorHostCertificates") or []
    if allowed:
        import base64

        wanted = {base64.b64decode(c) for c in allowed}
        if cert_der is None or bytes(cert_der) not in wanted:
            subject = ""
            if cert_der:
                try:
                    subject = cert_from_der(bytes(cert_der)).subject.rfc4514_string()
                except ValueError:
                    subject = "an unreadable certificate"
            device.record(
                "HostPairing",
                "error",
                now(),
                f"host {subject or 'without a certificate'} is not a supervising host",
            )
            return False
    device.record("HostPairing", "shown", now(), "paired with host")
    return True
