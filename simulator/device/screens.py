"""What a device's screen shows on each Setup Assistant pane, and a device as a live view draws it.

The panes are the transcript's (:mod:`~simulator.device.setup_assistant`): one screen per ``shown``
entry, so a pane the profile skips (``skipped``) is never drawn. :data:`SCREENS` holds each pane's
words as iOS 17/18 shows them, with placeholders filled from the device and the cloud configuration
it fetched: ``{org}`` (``OrganizationName``), ``{department}`` (``OrganizationDepartment``, the
profile's ``department``), ``{phone}`` (``OrganizationSupportPhone``, the profile's
``support_phone_number``), ``{device}`` (iPhone or iPad), ``{model}``, ``{detail}`` (the transcript
entry's detail), ``{user}``, ``{open_hint}``. :func:`render` fills them; a browser does the same with
the catalog it is sent (``GET /_sim/screens``), so a page draws a pane exactly as this module words it.

:func:`live_view` is one device as a live page needs it: model, where it is, what the profile says,
and its transcript since the last erase, each entry numbered (``DeviceState.recorded``) so a page that
saw entry *n* plays only what came after.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from .machine import DeviceState
from .phases import POST_ENROLLMENT_ORDER, PRE_ACTIVATION_PANES, Pane

__all__ = ["SCREENS", "BOOT", "ERASE", "LIVE_ENTRIES", "live_view", "render", "fields_of"]

#: Pseudo-panes a screen shows that are not Setup Assistant panes: the Apple logo while it starts,
#: and the progress bar of Erase All Content and Settings.
BOOT: Final = "Boot"
ERASE: Final = "EraseDevice"
#: Transcript entries sent per device: a walk from Hello to the Home Screen is about forty.
LIVE_ENTRIES: Final = 120

# title, body, rows (label, value), button, icon. The icon names a glyph the page draws.
SCREENS: Final[dict[str, dict[str, Any]]] = {
    BOOT: {"title": "", "body": "", "icon": "apple", "style": "boot"},
    ERASE: {"title": "", "body": "Erasing…", "icon": "apple", "style": "boot"},
    "Hello": {"title": "hello", "body": "{open_hint}", "style": "hello"},
    "Language": {"title": "Language", "body": "Choose the language for your {device}.",
                 "rows": [["English", "✓"], ["Español", ""], ["Français", ""], ["Deutsch", ""]], "icon": "globe"},
    "Region": {"title": "Select Your Country or Region", "body": "",
               "rows": [["United States", "✓"], ["United Kingdom", ""], ["Canada", ""], ["Australia", ""]]},
    "Keyboard": {"title": "Written and Spoken Languages", "body": "Your {device} uses these keyboards and languages.",
                 "rows": [["Keyboards", "English (US), Emoji"], ["Preferred Language", "English (US)"]],
                 "button": "Continue", "icon": "keyboard"},
    "SpokenLanguage": {"title": "Dictation", "body": "Speak to enter text anywhere you can type.",
                       "rows": [["Dictation Language", "English (US)"]], "button": "Continue", "icon": "mic"},
    "TermsOfAddress": {"title": "Terms of Address", "body": "Choose how you would like to be addressed.",
                       "rows": [["Feminine", ""], ["Masculine", ""], ["Neutral", "✓"]], "button": "Continue"},
    "WiFi": {"title": "Choose a Wi-Fi Network", "body": "",
             "rows": [["Contoso-Corp", "✓"], ["Contoso-Guest", ""], ["Other…", ""]], "icon": "wifi"},
    Pane.ACTIVATION.value: {"title": "Activating {device}", "body": "This may take a few minutes.",
                            "icon": "spinner"},
    Pane.REMOTE_MANAGEMENT.value: {
        "title": "Remote Management", "body": "{org} will automatically configure your {device}.",
        "rows": [["About Configuration", "{department}"], ["Need Help?", "{phone}"]],
        "button": "Enroll This {device}", "icon": "gear", "style": "management"},
    Pane.AUTHENTICATION.value: {"title": "Sign In to {org}", "body": "Enter your work account to continue.",
                                "rows": [["User name", "{user}"], ["Password", "••••••••"]], "button": "Next",
                                "icon": "person"},
    Pane.ENROLLMENT.value: {"title": "Remote Management", "body": "Configuring your {device} for {org}…",
                            "icon": "spinner", "style": "management"},
    Pane.AWAITING_CONFIGURATION.value: {
        "title": "Configuring Your {device}", "body": "{org} is setting up this {device}. This may take a few minutes.",
        "icon": "spinner"},
    "Privacy": {"title": "Data & Privacy", "body": "This icon appears when an Apple feature asks to use your "
                "personal information.", "button": "Continue", "icon": "hands"},
    "DeviceToDeviceMigration": {"title": "Quick Start", "body": "Bring your apps and data over wirelessly from "
                                "your other iPhone or iPad.", "button": "Set Up Without Another Device",
                                "icon": "transfer"},
    "Biometric": {"title": "{biometric}", "body": "Use {biometric} to unlock your {device} and make purchases.",
                  "button": "Continue", "icon": "{biometric_icon}"},
    "Passcode": {"title": "Create a Passcode", "body": "A passcode protects your data.", "rows": [["● ● ● ● ● ●", ""]],
                 "icon": "lock"},
    "Restore": {"title": "Transfer Your Apps & Data", "body": "",
                "rows": [["From iCloud Backup", ""], ["From Mac or PC", ""], ["From Android", ""],
                         ["Don’t Transfer Anything", "✓"]], "icon": "transfer"},
    "Android": {"title": "Move Data from Android", "body": "Bring your contacts, photos and more from your "
                "Android device.", "button": "Continue", "icon": "transfer"},
    "AppleID": {"title": "Apple Account", "body": "Sign in to use iCloud, the App Store and more.",
                "rows": [["Email or Phone Number", "{detail}"]], "button": "Continue", "icon": "person"},
    "EnableLockdownMode": {"title": "Lockdown Mode", "body": "An optional, extreme protection for the very few who "
                           "may be targeted by sophisticated cyberattacks.", "button": "Not Now", "icon": "shield"},
    "TOS": {"title": "Terms and Conditions", "body": "Read the iOS Software License Agreement.",
            "button": "Agree", "icon": "doc"},
    "SoftwareUpdate": {"title": "Keep Your {device} Up to Date", "body": "Install updates automatically.",
                       "button": "Continue", "icon": "update"},
    "Location": {"title": "Location Services", "body": "Location Services helps apps like Maps find where you are.",
                 "button": "Enable Location Services", "icon": "location"},
    "Siri": {"title": "Siri", "body": "Siri helps you get things done just by asking.", "button": "Continue",
             "icon": "siri"},
    "ScreenTime": {"title": "Screen Time", "body": "Get weekly reports with insights about your screen time.",
                   "button": "Continue", "icon": "hourglass"},
    "Payment": {"title": "Apple Pay", "body": "Add a card to pay in stores, in apps and on the web.",
                "button": "Set Up Later in Wallet", "icon": "card"},
    "iMessageAndFaceTime": {"title": "iMessage & FaceTime", "body": "Send messages and make FaceTime calls.",
                            "button": "Continue", "icon": "chat"},
    "MessagingActivationUsingPhoneNumber": {"title": "iMessage Activation", "body": "Use your phone number for "
                                            "iMessage and FaceTime.", "button": "Continue", "icon": "chat"},
    "SIMSetup": {"title": "Cellular Setup", "body": "Set up cellular service on this {device}.",
                 "button": "Set Up Later", "icon": "antenna"},
    "Diagnostics": {"title": "{device} Analytics", "body": "Help Apple improve its products and services by "
                    "sharing daily diagnostic and usage data.", "button": "Don’t Share", "icon": "chart"},
    "Safety": {"title": "Emergency SOS", "body": "Call emergency services and notify your emergency contacts.",
               "button": "Continue", "icon": "sos"},
    "Intelligence": {"title": "Apple Intelligence", "body": "Writing tools, image creation and a more capable "
                     "Siri, with privacy built in.", "button": "Continue", "icon": "spark"},
    "ActionButton": {"title": "Action Button", "body": "Choose what the Action Button does.", "button": "Continue",
                     "icon": "action"},
    "CameraButton": {"title": "Camera Control", "body": "Click to open the camera; slide to adjust.",
                     "button": "Continue", "icon": "camera"},
    "HomeButtonSensitivity": {"title": "Home Button", "body": "Choose the click you prefer.",
                              "rows": [["1", ""], ["2", "✓"], ["3", ""]], "button": "Next", "icon": "home"},
    "DisplayTone": {"title": "True Tone Display", "body": "Adapts the display to the light around you.",
                    "button": "Continue", "icon": "sun"},
    "Zoom": {"title": "Display Zoom", "body": "Choose a view for your {device}.",
             "rows": [["Default", "✓"], ["Larger Text", ""]], "button": "Continue", "icon": "zoom"},
    "Appearance": {"title": "Appearance", "body": "Choose Light or Dark.",
                   "rows": [["Light", "✓"], ["Dark", ""], ["Automatic", ""]], "button": "Continue",
                   "icon": "contrast"},
    "AppStore": {"title": "App Store", "body": "Get the apps you love, and keep them up to date automatically.",
                 "button": "Continue", "icon": "bag"},
    "OnBoarding": {"title": "Go Home", "body": "To go Home, swipe up from the bottom of the screen.",
                   "button": "Continue", "icon": "swipe"},
    "Welcome": {"title": "Welcome to {device}", "body": "", "button": "Get Started", "style": "welcome"},
    Pane.HOME_SCREEN.value: {"title": "", "body": "", "style": "home", "badge": "Managed by {org}"},
}  # fmt: skip

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def render(pane: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """The screen of ``pane`` with its placeholders filled (an unknown one is left empty)."""
    screen = SCREENS.get(pane) or {"title": pane, "body": ""}

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return _PLACEHOLDER.sub(lambda m: str(fields.get(m.group(1), "")), value)
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    return {key: fill(value) for key, value in screen.items()}


def fields_of(state: DeviceState, detail: str = "") -> dict[str, str]:
    """The placeholders' values for a device in ``state``."""
    identity = state.identity
    config = state.cloud_config or {}
    family = str(identity.get("device_family") or "iPhone")
    face = identity.get("biometric") == "FaceID"
    return {
        "device": family,
        "model": str(identity.get("model_name") or family),
        "org": str(config.get("OrganizationName") or ""),
        "department": str(config.get("OrganizationDepartment") or ""),
        "phone": str(config.get("OrganizationSupportPhone") or config.get("OrganizationPhone") or ""),
        "user": str(state.user or state.script.get("username") or ""),
        "detail": detail,
        "open_hint": "Swipe up to get started" if face or family == "iPad" else "Press Home to open",
        "biometric": "Face ID" if face else "Touch ID",
        "biometric_icon": "face" if face else "fingerprint",
    }


def live_view(state: DeviceState) -> dict[str, Any]:
    """One device as a live page draws it (JSON-safe): what it is, where it is, what its profile says,
    and its transcript since the last erase as ``[number, pane, outcome, time, detail]``."""
    identity = state.identity
    entries = state.transcript
    start = 0
    for index in range(len(entries) - 1, -1, -1):
        if entries[index][0] == ERASE:
            start = index
            break
    first = max(state.recorded, len(entries)) - len(entries)
    numbered = [[first + i, *entries[i]] for i in range(max(start, len(entries) - LIVE_ENTRIES), len(entries))]
    config = state.cloud_config or {}
    fields = fields_of(state)
    return {
        "serial_number": identity.get("serial_number"),
        "model": fields["model"],
        "family": fields["device"],
        "product": identity.get("product_name"),
        "color": identity.get("color"),
        "biometric": identity.get("biometric"),
        "os": f"{identity.get('os', '')} {identity.get('os_version', '')}".strip(),
        "phase": state.phase if state.powered else "off",
        "pane": state.pane,
        "powered": state.powered,
        "enrolled": state.enrollment is not None,
        "supervised": bool(config.get("IsSupervised")),
        "managed": bool(config.get("ConfigurationURL") or config.get("url")),
        "fields": {k: v for k, v in fields.items() if k != "detail"},
        "skip": sorted(str(k) for k in config.get("SkipSetup") or []),
        "erase_count": state.erase_count,
        "recorded": first + len(entries),
        "entries": numbered,
    }


def _check_catalog() -> None:
    """Every pane a device can show has a screen (a new pane in phases.py needs its words here)."""
    panes = {*PRE_ACTIVATION_PANES, *POST_ENROLLMENT_ORDER, *(p.value for p in Pane)}
    missing = panes - SCREENS.keys()
    if missing:  # pragma: no cover - a programming error caught on import
        raise RuntimeError(f"no screen for {sorted(missing)}")


_check_catalog()
