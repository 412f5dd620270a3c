"""What the simulated device answers to each MDM command: one handler per ``RequestType``.

Answers are consistent with the device's identity and state, so an MDM server sees what it would see
from real hardware: ``IsSupervised`` follows the cloud configuration, the MDM profile is
``PayloadRemovalDisallowed`` when enrollment is locked, an app that needs an Apple Account waits
(``NotNow``) while the device asks its user to sign in, the Company Portal fails without user
affinity. Unknown request types get ``Error`` with the ``ErrorChain`` iOS sends (MCMDMErrorDomain
12021). A handler returns the status, the extra keys of the result and, for commands that end the
session (erase, restart, shut down), an effect the agent runs once the server has the answer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from mdm.protocol import mobileconfig
from mdm.protocol.commands import COMMAND_SCHEMAS, Command
from mdm.protocol.plist import PlistError
from mdm.protocol.x509 import cert_to_der

from .enrollment import profile_summary
from .machine import Device, Now
from .setup_assistant import erase, release_awaiting_configuration

__all__ = [
    "COMPANY_PORTAL_BUNDLE_ID",
    "COMPANY_PORTAL_STORE_ID",
    "KNOWN_STORE_APPS",
    "Handled",
    "MDM_ERROR_DOMAIN",
    "error_chain",
    "handle",
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
MDM_ERROR_DOMAIN = "MCMDMErrorDomain"
PROFILE_ERROR_DOMAIN = "MCProfileErrorDomain"
INSTALL_ERROR_DOMAIN = "MCInstallationErrorDomain"
#: The alphabet of Activation Lock bypass codes (no I, O, S or B, which read as digits).
_BYPASS_ALPHABET = "0123456789ACDEFGHJKLMNPQRTUVWXYZ"

#: ``(Status, extra keys of the result, effect to run after the server has the answer)``.
Handled = tuple[str, dict[str, Any], Callable[[], None] | None]


def error_chain(code: int, domain: str, text: str) -> list[dict[str, Any]]:
    """An ``ErrorChain`` as iOS sends it (one entry, the text in both languages)."""
    return [
        {"ErrorCode": code, "ErrorDomain": domain, "LocalizedDescription": text, "USEnglishDescription": text}
    ]


def handle(device: Device, command: Command, now: Now) -> Handled:
    """The answer to one well-formed command."""
    handler = _HANDLERS.get(command.request_type)
    if handler is None:
        text = (
            f"“{command.request_type}” is not a valid request type."
            if command.request_type not in COMMAND_SCHEMAS
            else f"“{command.request_type}” is not supported by this simulated device."
        )
        return "Error", {"ErrorChain": error_chain(12021, MDM_ERROR_DOMAIN, text)}, None
    return handler(device, command, now)


def _ack(extra: dict[str, Any] | None = None, effect: Callable[[], None] | None = None) -> Handled:
    return "Acknowledged", extra or {}, effect


def _err(code: int, domain: str, text: str) -> Handled:
    return "Error", {"ErrorChain": error_chain(code, domain, text)}, None


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
    if ident.imei:
        # The cellular subscription of the one SIM slot: the same IMEI, MEID and eSIM EID that Apple's
        # DEP record of the device lists (simulator.authorities.dep_record).
        subscription: dict[str, Any] = {
            "Slot": "CTSubscriptionSlotOne", "Label": "Primary", "IsDataPreferred": True,
            "IsVoicePreferred": True, "IsRoaming": False, "IMEI": ident.imei, "EID": ident.eid,
        }
        if ident.meid:
            subscription["MEID"] = ident.meid
        answers["ServiceSubscriptions"] = [subscription]
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
    # Named from the manifest URL with a hash that is the same in every process (``hash()`` is salted).
    url = str(params.get("ManifestURL", ""))
    digest = int.from_bytes(hashlib.sha256(url.encode()).digest()[:8], "big")
    return f"enterprise.{digest % 10**8}", "Enterprise App"


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
    known = device.state.unlock_token
    if known is None or not hmac.compare_digest(token.hex().encode(), known.encode()):  # a secret
        return _err(12018, MDM_ERROR_DOMAIN, "The unlock token is invalid.")
    device.state.passcode_set = False
    device.state.locked = False
    return _ack()


def _activation_lock_bypass_code(device: Device, command: Command, now: Now) -> Handled:
    if not device.is_supervised:
        return _err(
            12078, MDM_ERROR_DOMAIN, "Activation Lock bypass codes are available on supervised devices only."
        )
    # 32 symbols: a byte modulo 32 picks each one without bias.
    drawn = device.randomness.bytes(25, device.label(f"activation-lock-bypass:{command.command_uuid}"))
    raw = "".join(_BYPASS_ALPHABET[b % 32] for b in drawn)
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


