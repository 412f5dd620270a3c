"""Intune's DEP enrollment profiles (``depIOSEnrollmentProfile``, ``depMacOSEnrollmentProfile``) and the
Apple DEP profile JSON they become.

Pure functions (no I/O): the service validates a Graph body here, then sends :func:`apple_profile`'s
result to ``POST /profile``. Every writable property of Graph beta's two types is accepted, checked for
its type, stored and returned, so a script can round-trip a profile it read from Intune. Those with an
Apple counterpart reach Apple's profile (and so the device); the rest are kept for what happens after
enrollment (``deviceNameTemplate``: a Settings command) or only stored (the README lists which).
Microsoft publishes no table from settings to Apple keys; the mapping below is by name (FACTS.md §4).

Skip keys: the ``…Disabled`` booleans and ``enabledSkipKeys`` describe the same list twice, so the list
is the truth and the booleans are kept equal to it: a body's ``enabledSkipKeys`` replaces the list,
then each boolean in the body adds or removes its key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

__all__ = [
    "IOS_TYPE",
    "MACOS_TYPE",
    "ODATA_TYPE",
    "PAIRING_MODES",
    "PROPERTY_NAMES",
    "SKIP_SETTINGS",
    "ProfileError",
    "apple_profile",
    "device_name",
    "merge_settings",
    "normalize",
    "profile_type",
]

IOS_TYPE = "#microsoft.graph.depIOSEnrollmentProfile"
MACOS_TYPE = "#microsoft.graph.depMacOSEnrollmentProfile"
ODATA_TYPE = IOS_TYPE
PAIRING_MODES = ("allow", "disallow", "requiresCertificate")
INT32_MAX = 2**31 - 1

# Graph boolean "…Disabled" setting → Apple skip_setup_items key (FACTS.md §4 for the first ten; the
# others by the name of the pane in Apple's skipkeys.yaml).
SKIP_SETTINGS: dict[str, str] = {
    "passCodeDisabled": "Passcode",
    "locationDisabled": "Location",
    "restoreBlocked": "Restore",
    "appleIdDisabled": "AppleID",
    "termsAndConditionsDisabled": "TOS",
    "touchIdDisabled": "Biometric",
    "applePayDisabled": "Payment",
    "zoomDisabled": "Zoom",
    "siriDisabled": "Siri",
    "diagnosticsDisabled": "Diagnostics",
    "screenTimeScreenDisabled": "ScreenTime",
    "displayToneSetupDisabled": "DisplayTone",
    "privacyPaneDisabled": "Privacy",
    "restoreFromAndroidDisabled": "Android",
    "iMessageAndFaceTimeScreenDisabled": "iMessageAndFaceTime",
    "onBoardingScreenDisabled": "OnBoarding",
    "simSetupScreenDisabled": "SIMSetup",
    "softwareUpdateScreenDisabled": "SoftwareUpdate",
    "watchMigrationScreenDisabled": "WatchMigration",
    "appearanceScreenDisabled": "Appearance",
    "deviceToDeviceMigrationDisabled": "DeviceToDeviceMigration",
    "welcomeScreenDisabled": "Welcome",
    "restoreCompletedScreenDisabled": "RestoreCompleted",
    "updateCompleteScreenDisabled": "UpdateCompleted",
    "homeButtonScreenDisabled": "HomeButtonSensitivity",
    # macOS only
    "registrationDisabled": "Registration",
    "fileVaultDisabled": "FileVault",
    "iCloudDiagnosticsDisabled": "iCloudDiagnostics",
    "iCloudStorageDisabled": "iCloudStorage",
    "accessibilityScreenDisabled": "Accessibility",
    "autoUnlockWithWatchDisabled": "UnlockWithWatch",
}
#: Names this project accepted before Graph's ``enabledSkipKeys`` was; a stored profile may hold them.
_LEGACY_SKIPS = {"keyboardDisabled": "Keyboard", "appStoreDisabled": "AppStore", "spokenLanguageDisabled": "SpokenLanguage"}

# A property's kind: ("bool", default), ("str", max length), ("int",), ("enum", choices), or one of the
# structured kinds checked by name below.
_Spec = tuple[Any, ...]
_BASE: dict[str, _Spec] = {  # enrollmentProfile and depEnrollmentBaseProfile
    "displayName": ("str", 125),
    "description": ("str", 1000),
    "requiresUserAuthentication": ("bool", False),
    "configurationEndpointUrl": ("str", 2000),
    "enableAuthenticationViaCompanyPortal": ("bool", False),
    "requireCompanyPortalOnSetupAssistantEnrolledDevices": ("bool", False),
    "isDefault": ("bool", False),
    "supervisedModeEnabled": ("bool", True),
    "supportDepartment": ("str", 125),
    "isMandatory": ("bool", False),
    "supportPhoneNumber": ("str", 50),
    "profileRemovalDisabled": ("bool", False),
    "configurationWebUrl": ("bool", False),
    "deviceNameTemplate": ("str", 63),
    "enabledSkipKeys": ("skipkeys",),
    "enrollmentTimeAzureAdGroupIds": ("guids",),
    "waitForDeviceConfiguredConfirmation": ("bool", False),
    **{name: ("bool", False) for name in (
        "locationDisabled", "restoreBlocked", "appleIdDisabled", "termsAndConditionsDisabled", "touchIdDisabled",
        "applePayDisabled", "siriDisabled", "diagnosticsDisabled", "displayToneSetupDisabled",
        "privacyPaneDisabled", "screenTimeScreenDisabled",
    )},
}  # fmt: skip
_IOS: dict[str, _Spec] = {
    **_BASE,
    "iTunesPairingMode": ("enum", PAIRING_MODES),
    "managementCertificates": ("certificates",),
    "awaitDeviceConfiguredConfirmation": ("bool", False),
    "sharedIPadMaximumUserCount": ("int",),
    "enableSharedIPad": ("bool", False),
    "companyPortalVppTokenId": ("str", 200),
    "enableSingleAppEnrollmentMode": ("bool", False),
    "forceTemporarySession": ("bool", False),
    "temporarySessionTimeoutInSeconds": ("int",),
    "userSessionTimeoutInSeconds": ("int",),
    "passcodeLockGracePeriodInSeconds": ("int",),
    "carrierActivationUrl": ("str", 2000),
    "userlessSharedAadModeEnabled": ("bool", False),
    **{name: ("bool", False) for name in (
        "restoreFromAndroidDisabled", "homeButtonScreenDisabled", "iMessageAndFaceTimeScreenDisabled",
        "onBoardingScreenDisabled", "simSetupScreenDisabled", "softwareUpdateScreenDisabled",
        "watchMigrationScreenDisabled", "appearanceScreenDisabled", "expressLanguageScreenDisabled",
        "preferredLanguageScreenDisabled", "deviceToDeviceMigrationDisabled", "welcomeScreenDisabled",
        "passCodeDisabled", "zoomDisabled", "restoreCompletedScreenDisabled", "updateCompleteScreenDisabled",
    )},
}  # fmt: skip
_MACOS: dict[str, _Spec] = {
    **_BASE,
    "adminAccountUserName": ("str", 200),
    "adminAccountFullName": ("str", 200),
    "adminAccountPassword": ("secret", 200),
    "primaryAccountFullName": ("str", 200),
    "primaryAccountUserName": ("str", 200),
    "depProfileAdminAccountPasswordRotationSetting": ("object",),
    **{name: ("bool", False) for name in (
        "passCodeDisabled", "zoomDisabled", "registrationDisabled", "fileVaultDisabled", "iCloudDiagnosticsDisabled",
        "iCloudStorageDisabled", "chooseYourLockScreenDisabled", "accessibilityScreenDisabled",
        "autoUnlockWithWatchDisabled", "autoAdvanceSetupEnabled", "hideAdminAccount", "skipPrimarySetupAccountCreation",
        "setPrimarySetupAccountAsRegularUser", "dontAutoPopulatePrimaryAccountInfo", "enableRestrictEditing",
        "requestRequiresNetworkTether", "usePlatformSSODuringSetupAssistant",
    )},
}  # fmt: skip
PROPERTIES: dict[str, dict[str, _Spec]] = {IOS_TYPE: _IOS, MACOS_TYPE: _MACOS}
#: Every property either type renders (what ``$select`` and ``$filter`` may name).
PROPERTY_NAMES: tuple[str, ...] = tuple(dict.fromkeys([*_IOS, *_MACOS]))
_TYPE_NAMES = {"depIOSEnrollmentProfile": IOS_TYPE, "depMacOSEnrollmentProfile": MACOS_TYPE}

READ_ONLY = {
    "id",
    "@odata.type",
    "@odata.context",
    "@odata.etag",
    "createdDateTime",
    "lastModifiedDateTime",
    "appleProfileUuid",
    "appleProfile",
    "platform",
}
MAX_CERTIFICATES = 20
MAX_CERTIFICATE_CHARS = 16_384
MAX_LIST = 100
_SKIP_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
#: The tokens Intune's device name template takes.
NAME_TOKENS = ("{{SERIAL}}", "{{DEVICETYPE}}")
_AWAIT = ("awaitDeviceConfiguredConfirmation", "waitForDeviceConfiguredConfirmation")


class ProfileError(ValueError):
    """A setting Intune would refuse; ``message`` is shown to the admin as it is."""


def profile_type(value: Any, current: str | None = None) -> str:
    """The profile's ``@odata.type`` from a body's (absent: the current one, else iOS)."""
    if value is None:
        return current or IOS_TYPE
    if isinstance(value, str):
        name = value.removeprefix("#").removeprefix("microsoft.graph.")
        found = _TYPE_NAMES.get(name)
        if found is not None and (current is None or found == current):
            return found
        if found is not None:
            raise ProfileError(f"a {current.rsplit('.', 1)[-1]} cannot become a {name}")  # type: ignore[union-attr]
    raise ProfileError("@odata.type must be #microsoft.graph.depIOSEnrollmentProfile or "
                       "#microsoft.graph.depMacOSEnrollmentProfile")


def _defaults(kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"@odata.type": kind}
    for name, spec in PROPERTIES[kind].items():
        if spec[0] == "bool":
            out[name] = spec[1]
        elif spec[0] in ("skipkeys", "guids", "certificates"):
            out[name] = []
        elif spec[0] == "enum":
            out[name] = spec[1][0]
        else:
            out[name] = None
    return out


def normalize(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored profile's settings with every property of its type present (a profile stored before a
    property existed gets its default, and its skip keys list from its booleans)."""
    kind = stored.get("@odata.type") if stored.get("@odata.type") in PROPERTIES else IOS_TYPE
    specs = PROPERTIES[kind]
    settings = _defaults(kind)
    settings.update({k: v for k, v in stored.items() if k in specs})
    if "enabledSkipKeys" not in stored:
        keys = [key for name, key in SKIP_SETTINGS.items() if name in specs and stored.get(name)]
        keys += [key for name, key in _LEGACY_SKIPS.items() if stored.get(name)]
        settings["enabledSkipKeys"] = keys
    if "waitForDeviceConfiguredConfirmation" not in stored and kind == IOS_TYPE:
        settings["waitForDeviceConfiguredConfirmation"] = bool(stored.get("awaitDeviceConfiguredConfirmation"))
    return settings


def merge_settings(current: dict[str, Any] | None, patch: Any) -> dict[str, Any]:
    """Validate ``patch`` (a Graph body) over ``current`` (or the defaults) and return the full settings."""
    if not isinstance(patch, dict):
        raise ProfileError("the body must be a JSON object")
    kind = profile_type(patch.get("@odata.type"), current.get("@odata.type") if current else None)
    specs = PROPERTIES[kind]
    settings = normalize(current) if current is not None else _defaults(kind)
    short = kind.rsplit(".", 1)[-1]
    for name, value in patch.items():
        if name in READ_ONLY or "@" in name:
            continue  # annotations (``@odata.…``, ``name@odata.type``) and server-made properties a client sends back
        spec = specs.get(name)
        if spec is None:
            raise ProfileError(f"unknown property {name[:80]!r} of {short}")
        settings[name] = _checked(name, spec, value)
    _sync_await(settings, patch)
    _sync_skip_keys(settings, patch, specs)
    _check_combinations(settings)
    return settings


def _checked(name: str, spec: _Spec, value: Any) -> Any:
    kind = spec[0]
    if kind == "bool":
        if not isinstance(value, bool):
            raise ProfileError(f"{name} must be true or false")
        return value
    if kind in ("str", "secret"):
        if value is not None and not isinstance(value, str):
            raise ProfileError(f"{name} must be a string")
        if isinstance(value, str) and len(value) > spec[1]:
            raise ProfileError(f"{name} must be at most {spec[1]} characters")
        if name == "deviceNameTemplate" and value:
            _check_name_template(value)
        return None if kind == "secret" else value  # a password is accepted, never kept or shown
    if kind == "int":
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= INT32_MAX):
            raise ProfileError(f"{name} must be an integer from 0 to {INT32_MAX}")
        return value
    if kind == "enum":
        if value not in spec[1]:
            raise ProfileError(f"{name} must be one of {', '.join(spec[1])}")
        return value
    if kind == "certificates":
        return _certificates(value)
    if kind == "skipkeys":
        return _skip_keys(value)
    if kind == "guids":
        if value is None:
            return []
        if not isinstance(value, list) or len(value) > MAX_LIST or not all(
            isinstance(v, str) and _GUID.match(v) for v in value
        ):
            raise ProfileError(f"{name} must be a list of at most {MAX_LIST} GUIDs")
        return [v.lower() for v in value]
    # "object": kept as given, if small
    if value is not None and (not isinstance(value, dict) or len(repr(value)) > 4096):
        raise ProfileError(f"{name} must be an object (at most 4 KB)")
    return value


def _check_name_template(text: str) -> None:
    leftover = text
    for token in NAME_TOKENS:
        leftover = leftover.replace(token, "")
    if "{" in leftover or "}" in leftover:
        raise ProfileError("deviceNameTemplate takes the tokens {{SERIAL}} and {{DEVICETYPE}} only")
    if not leftover.strip() and not any(t in text for t in NAME_TOKENS):
        raise ProfileError("deviceNameTemplate must not be blank")


def _skip_keys(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise ProfileError(f"enabledSkipKeys must be a list of at most {MAX_LIST} skip keys")
    for key in value:
        if not isinstance(key, str) or not _SKIP_KEY.match(key):
            raise ProfileError("enabledSkipKeys holds Apple skip keys (letters and digits, as `Siri`, `TOS`)")
    return list(dict.fromkeys(value))


def _sync_await(settings: dict[str, Any], patch: dict[str, Any]) -> None:
    """The iOS type has the base type's ``waitForDeviceConfiguredConfirmation`` and its own older
    ``awaitDeviceConfiguredConfirmation``: one setting, so setting either sets both."""
    given = [name for name in _AWAIT if name in patch and name in settings]
    if len(given) == 2 and patch[_AWAIT[0]] != patch[_AWAIT[1]]:
        raise ProfileError(
            "awaitDeviceConfiguredConfirmation and waitForDeviceConfiguredConfirmation are one setting: "
            "send the same value, or only one of them"
        )
    if len(given) == 1:
        for name in _AWAIT:
            if name in settings:
                settings[name] = patch[given[0]]


def _sync_skip_keys(settings: dict[str, Any], patch: dict[str, Any], specs: Mapping[str, _Spec]) -> None:
    keys: list[str] = list(settings.get("enabledSkipKeys") or [])
    for name, value in patch.items():
        key = SKIP_SETTINGS.get(name)
        if key is None or name not in specs:
            continue
        if value and key not in keys:
            keys.append(key)
        elif not value and key in keys:
            keys.remove(key)
    settings["enabledSkipKeys"] = keys
    for name, key in SKIP_SETTINGS.items():
        if name in specs:
            settings[name] = key in keys


def _check_combinations(settings: dict[str, Any]) -> None:
    if not settings.get("displayName") or not str(settings["displayName"]).strip():
        raise ProfileError("displayName is required")
    supervised = settings.get("supervisedModeEnabled")
    if settings.get("profileRemovalDisabled") and not supervised:
        raise ProfileError(
            "profileRemovalDisabled (locked enrollment) requires supervisedModeEnabled: "
            "Apple only lets supervised devices keep the MDM profile from being removed"
        )
    if settings.get("iTunesPairingMode") == "requiresCertificate" and not settings.get("managementCertificates"):
        raise ProfileError(
            "iTunesPairingMode requiresCertificate needs at least one entry in managementCertificates"
        )
    if settings.get("enableSharedIPad"):
        if not supervised:
            raise ProfileError("enableSharedIPad requires supervisedModeEnabled: Shared iPad is for supervised iPads")
        if settings.get("requiresUserAuthentication"):
            raise ProfileError("enableSharedIPad requires enrollment without user affinity (requiresUserAuthentication false)")
    if settings.get("companyPortalVppTokenId") and not settings.get("enableAuthenticationViaCompanyPortal"):
        raise ProfileError("companyPortalVppTokenId needs enableAuthenticationViaCompanyPortal")
    if settings.get("enableSingleAppEnrollmentMode") and not (
        settings.get("enableAuthenticationViaCompanyPortal") and settings.get("companyPortalVppTokenId")
    ):
        raise ProfileError(
            "enableSingleAppEnrollmentMode needs enableAuthenticationViaCompanyPortal and companyPortalVppTokenId"
        )


def _certificates(value: Any) -> list[dict[str, str]]:
    """Each ``{"certificate": base64 DER or PEM}`` is checked to be a certificate and kept as given,
    with its ``thumbprint`` (SHA-1, upper-case hex, as Graph's ``managementCertificateWithThumbprint``)."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_CERTIFICATES:
        raise ProfileError(f"managementCertificates must be a list of at most {MAX_CERTIFICATES} entries")
    out = []
    for index, entry in enumerate(value):
        text = entry.get("certificate") if isinstance(entry, dict) else None
        if not isinstance(text, str) or len(text) > MAX_CERTIFICATE_CHARS:
            raise ProfileError(f"managementCertificates[{index}] needs a certificate (base64 DER or PEM)")
        der = base64.b64decode(der_b64(text, index))
        out.append({"thumbprint": hashlib.sha1(der).hexdigest().upper(), "certificate": text})  # noqa: S324
    return out


def der_b64(text: str, index: int = 0) -> str:
    """A certificate given as PEM or base64 DER → base64 DER, as Apple's ``supervising_host_certs`` wants."""
    try:
        if "-----BEGIN" in text:
            cert = x509.load_pem_x509_certificate(text.encode())
        else:
            cert = x509.load_der_x509_certificate(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error):
        raise ProfileError(f"managementCertificates[{index}] is not a certificate") from None
    return base64.b64encode(cert.public_bytes(Encoding.DER)).decode("ascii")


def apple_profile(settings: dict[str, Any], enroll_url: str) -> dict[str, Any]:
    """The ``POST /profile`` body for these settings; ``enroll_url`` is the MDM server's enroll URL."""
    settings = normalize(settings)
    url = enroll_url
    if settings.get("requiresUserAuthentication"):
        url += ("&" if "?" in url else "?") + "auth=user"
    pairing = settings.get("iTunesPairingMode", "allow")
    awaits = bool(settings.get("awaitDeviceConfiguredConfirmation") or settings.get("waitForDeviceConfiguredConfirmation"))
    profile: dict[str, Any] = {
        "profile_name": settings["displayName"],
        "url": url,
        "allow_pairing": pairing == "allow",
        "is_supervised": bool(settings.get("supervisedModeEnabled")),
        "is_mandatory": bool(settings.get("isMandatory")),
        "is_mdm_removable": not settings.get("profileRemovalDisabled"),
        "await_device_configured": awaits,
    }
    if settings.get("configurationWebUrl"):
        # Setup Assistant with modern authentication: the device opens the enrollment page in a web view.
        profile["configuration_web_url"] = url
    if settings.get("enableSharedIPad"):
        profile["is_multi_user"] = True
    if settings.get("autoAdvanceSetupEnabled"):
        profile["auto_advance_setup"] = True
    if settings.get("supportDepartment"):
        profile["department"] = settings["supportDepartment"]
    if settings.get("supportPhoneNumber"):
        profile["support_phone_number"] = settings["supportPhoneNumber"]
    if pairing == "requiresCertificate":
        profile["supervising_host_certs"] = [
            der_b64(c["certificate"], i) for i, c in enumerate(settings.get("managementCertificates") or [])
        ]
    profile["skip_setup_items"] = list(settings.get("enabledSkipKeys") or [])
    return profile


def device_name(template: str, serial: str, device_type: str | None) -> str:
    """The name ``deviceNameTemplate`` gives a device (``{{SERIAL}}``, ``{{DEVICETYPE}}``: iPhone, iPad…)."""
    name = template.replace("{{SERIAL}}", serial).replace("{{DEVICETYPE}}", device_type or "Device")
    return name.strip()[:63]
