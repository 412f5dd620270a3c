"""Intune's ``depIOSEnrollmentProfile`` settings and the Apple DEP profile JSON they become.

Pure functions (no I/O): the service validates a Graph body here, then sends :func:`apple_profile`'s
result to ``POST /profile``. Microsoft publishes no table from settings to Apple keys; the mapping
below is the one in FACTS.md §4, by name.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

__all__ = [
    "ODATA_TYPE",
    "PAIRING_MODES",
    "SKIP_SETTINGS",
    "ProfileError",
    "apple_profile",
    "merge_settings",
]

ODATA_TYPE = "#microsoft.graph.depIOSEnrollmentProfile"
PAIRING_MODES = ("allow", "disallow", "requiresCertificate")

# Graph boolean "…Disabled" setting → Apple skip_setup_items key (FACTS.md §4; the optional ones after
# the first ten follow the same naming in Graph beta).
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
    "keyboardDisabled": "Keyboard",
    "appStoreDisabled": "AppStore",
    "spokenLanguageDisabled": "SpokenLanguage",
}

BOOL_SETTINGS = (
    "requiresUserAuthentication",
    "supervisedModeEnabled",
    "profileRemovalDisabled",
    "awaitDeviceConfiguredConfirmation",
    "isMandatory",
    "isDefault",
    *SKIP_SETTINGS,
)
STRING_SETTINGS = {  # name → longest value accepted (Apple's limits where it has one)
    "displayName": 125,
    "description": 1000,
    "supportDepartment": 125,
    "supportPhoneNumber": 50,
    "configurationEndpointUrl": 2000,
}
DEFAULTS: dict[str, Any] = {
    "displayName": None,
    "description": None,
    "requiresUserAuthentication": False,
    "configurationEndpointUrl": None,
    "supervisedModeEnabled": True,
    "profileRemovalDisabled": False,
    "iTunesPairingMode": "allow",
    "managementCertificates": [],
    "supportDepartment": None,
    "supportPhoneNumber": None,
    "awaitDeviceConfiguredConfirmation": False,
    "isMandatory": False,
    "isDefault": False,
    **{name: False for name in SKIP_SETTINGS},
}
READ_ONLY = {
    "id",
    "@odata.type",
    "@odata.context",
    "createdDateTime",
    "lastModifiedDateTime",
    "appleProfileUuid",
    "appleProfile",
}
MAX_CERTIFICATES = 20
MAX_CERTIFICATE_CHARS = 16_384


class ProfileError(ValueError):
    """A setting Intune would refuse; ``message`` is shown to the admin as it is."""


def merge_settings(current: dict[str, Any] | None, patch: Any) -> dict[str, Any]:
    """Validate ``patch`` (a Graph body) over ``current`` (or the defaults) and return the full settings."""
    if not isinstance(patch, dict):
        raise ProfileError("the body must be a JSON object")
    settings = dict(current if current is not None else DEFAULTS)
    for name, value in patch.items():
        if name in READ_ONLY:
            continue
        if name in BOOL_SETTINGS:
            if not isinstance(value, bool):
                raise ProfileError(f"{name} must be true or false")
        elif name in STRING_SETTINGS:
            if value is not None and not isinstance(value, str):
                raise ProfileError(f"{name} must be a string")
            limit = STRING_SETTINGS[name]
            if isinstance(value, str) and len(value) > limit:
                raise ProfileError(f"{name} must be at most {limit} characters")
        elif name == "iTunesPairingMode":
            if value not in PAIRING_MODES:
                raise ProfileError("iTunesPairingMode must be one of allow, disallow, requiresCertificate")
        elif name == "managementCertificates":
            value = _certificates(value)
        else:
            raise ProfileError(f"unknown property {name!r} of depIOSEnrollmentProfile")
        settings[name] = value
    if not settings.get("displayName") or not str(settings["displayName"]).strip():
        raise ProfileError("displayName is required")
    if settings["profileRemovalDisabled"] and not settings["supervisedModeEnabled"]:
        raise ProfileError(
            "profileRemovalDisabled (locked enrollment) requires supervisedModeEnabled: "
            "Apple only lets supervised devices keep the MDM profile from being removed"
        )
    if settings["iTunesPairingMode"] == "requiresCertificate" and not settings["managementCertificates"]:
        raise ProfileError(
            "iTunesPairingMode requiresCertificate needs at least one entry in managementCertificates"
        )
    return settings


def _certificates(value: Any) -> list[dict[str, str]]:
    """Each ``{"certificate": base64 DER or PEM}`` is checked to be a certificate and kept as given."""
    if not isinstance(value, list) or len(value) > MAX_CERTIFICATES:
        raise ProfileError(f"managementCertificates must be a list of at most {MAX_CERTIFICATES} entries")
    out = []
    for index, entry in enumerate(value):
        text = entry.get("certificate") if isinstance(entry, dict) else None
        if not isinstance(text, str) or len(text) > MAX_CERTIFICATE_CHARS:
            raise ProfileError(f"managementCertificates[{index}] needs a certificate (base64 DER or PEM)")
        der_b64(text, index)
        out.append({"certificate": text})
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
    url = enroll_url
    if settings.get("requiresUserAuthentication"):
        url += ("&" if "?" in url else "?") + "auth=user"
    pairing = settings.get("iTunesPairingMode", "allow")
    profile: dict[str, Any] = {
        "profile_name": settings["displayName"],
        "url": url,
        "allow_pairing": pairing == "allow",
        "is_supervised": bool(settings.get("supervisedModeEnabled")),
        "is_mandatory": bool(settings.get("isMandatory")),
        "is_mdm_removable": not settings.get("profileRemovalDisabled"),
        "await_device_configured": bool(settings.get("awaitDeviceConfiguredConfirmation")),
    }
    if settings.get("configurationEndpointUrl"):
        profile["configuration_web_url"] = settings["configurationEndpointUrl"]
    if settings.get("supportDepartment"):
        profile["department"] = settings["supportDepartment"]
    if settings.get("supportPhoneNumber"):
        profile["support_phone_number"] = settings["supportPhoneNumber"]
    if pairing == "requiresCertificate":
        profile["supervising_host_certs"] = [
            der_b64(c["certificate"], i) for i, c in enumerate(settings.get("managementCertificates") or [])
        ]
    profile["skip_setup_items"] = [key for name, key in SKIP_SETTINGS.items() if settings.get(name)]
    return profile
