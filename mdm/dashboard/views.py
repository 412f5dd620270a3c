"""What the dashboard pages show, computed from Graph replies: times, the sync banner, the profile form's body.

Pure functions of their inputs (no request, no HTTP), so the pages and the JSON routes word things
the same way, and tests can call them directly.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from werkzeug.datastructures import FileStorage

__all__ = [
    "MAX_CERT_FILE",
    "NOTICES",
    "PAGE_SIZE",
    "PAIRING_LABELS",
    "SKIP_OPTIONS",
    "format_time",
    "format_wait",
    "parse_time",
    "profile_body",
    "skiptoken_of",
    "sync_state",
]

# The ten Setup Assistant screens Intune's profile form offers, in its order, with its labels.
SKIP_OPTIONS: tuple[tuple[str, str], ...] = (
    ("passCodeDisabled", "Passcode"),
    ("locationDisabled", "Location Services"),
    ("restoreBlocked", "Restore"),
    ("appleIdDisabled", "Apple ID"),
    ("termsAndConditionsDisabled", "Terms and conditions"),
    ("touchIdDisabled", "Touch ID and Face ID"),
    ("applePayDisabled", "Apple Pay"),
    ("zoomDisabled", "Zoom"),
    ("siriDisabled", "Siri"),
    ("diagnosticsDisabled", "Diagnostics Data"),
)
PAIRING_LABELS = {
    "allow": "Allow all",
    "disallow": "Deny all",
    "requiresCertificate": "Allow Apple Configurator by certificate",
}
# Redirect-after-POST notices are codes, so a link cannot make the page say arbitrary things.
NOTICES = {
    "token-created": "Token created. Next: download the public key and upload it to Apple Business Manager.",
    "key-generated": "New public key generated. Upload it to Apple Business Manager before the next token.",
    "token-uploaded": "Token uploaded. Apple accepted it; you can sync devices now.",
    "profile-created": "Profile created and sent to Apple.",
    "push-uploaded": "Apple MDM push certificate uploaded. Devices can be woken for MDM commands.",
    "sync-requested": "Sync requested.",
}
MAX_CERT_FILE = 64 * 1024
PAGE_SIZE = 100
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def format_time(text: str | None) -> str:
    value = parse_time(text)
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def format_wait(seconds: float) -> str:
    """``9 min 58 s``: read aloud well, and what Intune's banner says in words."""
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def sync_state(setting: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Whether Sync may be pressed now, how long until it may, and what to tell the admin.

    Whether a sync may start is the controller's answer (``syncAvailability.canSync``, decided by the
    same rule that refuses a request), never worked out here; a Graph service that does not say is
    asked by pressing Sync, and its refusal is shown. This only words the answer and counts the time
    to ``nextSyncAvailableDateTime`` in the world's ``now`` (not the browser's clock, which a
    simulation may be far from).
    """
    status = setting.get("syncStatus") or "idle"
    available = parse_time(setting.get("nextSyncAvailableDateTime"))
    triggered = parse_time(setting.get("lastSyncTriggeredDateTime"))
    remaining = max(0.0, (available - now).total_seconds()) if available else 0.0
    has_token = setting.get("tokenType") == "dep"
    answer = setting.get("syncAvailability")
    can_sync = bool(answer.get("canSync")) if isinstance(answer, Mapping) else has_token
    running = status == "running"
    waiting = not can_sync and remaining > 0
    fraction = 1.0
    if waiting and triggered is not None and available is not None and available > triggered:
        total = (available - triggered).total_seconds()
        fraction = min(1.0, max(0.0, 1 - remaining / total))
    progress = setting.get("syncProgress") or {}
    count = setting.get("syncedDeviceCount") or 0
    if not has_token:
        message = "Upload a token from Apple Business Manager before syncing."
    elif running:
        message = (
            f"Sync in progress: {progress.get('devices', 0)} devices so far. "
            f"Sync is available again when it finishes, or in {format_wait(remaining)} at the latest."
        )
    elif waiting and status == "failed":
        reason = setting.get("lastSyncErrorMessage") or setting.get("lastSyncErrorReason")
        message = f"The last sync failed: {reason}. You can sync again in {format_wait(remaining)}."
    elif waiting:
        message = f"You can sync again in {format_wait(remaining)}."
    elif setting.get("lastSuccessfulSyncDateTime"):
        kind = setting.get("lastSyncKind") or "sync"
        message = f"Last sync ({kind}) {format_time(setting.get('lastSuccessfulSyncDateTime'))}: {count} devices."
        if status == "failed":
            message += f" The latest attempt failed: {setting.get('lastSyncErrorMessage')}"
    else:
        message = "Not synced yet. Press Sync to fetch the devices Apple lists for this token."
    next_full = parse_time(setting.get("nextFullSyncAvailableDateTime"))
    full_next = bool(has_token and next_full is not None and available is not None and next_full <= available)
    # Which kind the next sync will be is the rules' answer too (nextFullSyncAvailableDateTime is when
    # the next full one may start); here it is only put in words, for the sync blade.
    partial, what = (("delta", "additions, changes and removals since the last sync") if setting.get("syncRules") == "current"
                     else ("limited", "only serial numbers not yet listed are added"))
    if not has_token:
        next_kind_text = ""
    elif full_next:
        next_kind_text = "Next sync: full (every serial number Apple lists for this token)."
    elif next_full is not None:
        next_kind_text = (f"Next sync: {partial} ({what}). "
                          f"A full sync is available from {format_time(setting.get('nextFullSyncAvailableDateTime'))}.")
    else:
        next_kind_text = f"Next sync: {partial} ({what})."
    return {
        "syncStatus": status,
        "canSync": can_sync,
        "nextSyncKind": ("full" if full_next else partial) if has_token else None,
        "nextSyncKindText": next_kind_text,
        "remainingSeconds": int(round(remaining)),
        "remainingText": format_wait(remaining) if remaining > 0 else "",
        "waitFraction": round(fraction, 4),
        "message": message,
        "syncedDeviceCount": count,
        "nextFullSyncAvailableDateTime": setting.get("nextFullSyncAvailableDateTime"),
        "lastSyncErrorCode": setting.get("lastSyncErrorCode"),
        "lastSyncErrorReason": setting.get("lastSyncErrorReason"),
    }


def _yes(form: Mapping[str, str], name: str, default: bool = False) -> bool:
    value = form.get(name)
    return default if value is None else value == "yes"


def _certificates(text: str, uploads: list[FileStorage]) -> tuple[list[dict[str, str]], str]:
    """``managementCertificates`` from pasted PEM and uploaded files (PEM or DER), and the text to keep.

    Uploaded files are folded into the paste box, so a form shown again after an error keeps them
    (a browser never refills a file input).
    """
    pieces = [text.strip()] if text.strip() else []
    for upload in uploads:
        if not upload or not upload.filename:
            continue
        data = upload.read(MAX_CERT_FILE + 1)[:MAX_CERT_FILE]
        if b"-----BEGIN" in data:
            pieces.append(data.decode("ascii", "replace").strip())
        elif data:
            body = base64.encodebytes(data).decode("ascii").strip()
            pieces.append(f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----")
    combined = "\n".join(pieces)
    found = _PEM_CERT.findall(combined)
    if found:
        return [{"certificate": pem} for pem in found], combined
    # Not PEM: maybe base64 DER pasted as is; the API says whether it is a certificate.
    blob = "".join(combined.split())
    return ([{"certificate": blob}] if blob else []), combined


def profile_body(form: Mapping[str, str], uploads: list[FileStorage]) -> tuple[dict[str, Any], str]:
    """The Graph ``depIOSEnrollmentProfile`` body for the submitted form, and the certificate text."""
    pairing = form.get("iTunesPairingMode", "allow")
    certificates, cert_text = _certificates(form.get("managementCertificates", ""), uploads)
    body: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.depIOSEnrollmentProfile",
        "displayName": form.get("displayName", "").strip(),
        "description": form.get("description", "").strip() or None,
        "requiresUserAuthentication": _yes(form, "requiresUserAuthentication"),
        "supervisedModeEnabled": _yes(form, "supervisedModeEnabled", True),
        "profileRemovalDisabled": _yes(form, "profileRemovalDisabled"),
        "awaitDeviceConfiguredConfirmation": _yes(form, "awaitDeviceConfiguredConfirmation"),
        "iTunesPairingMode": pairing,
        "managementCertificates": certificates if pairing == "requiresCertificate" else [],
        "supportDepartment": form.get("supportDepartment", "").strip() or None,
        "supportPhoneNumber": form.get("supportPhoneNumber", "").strip() or None,
        "isDefault": form.get("isDefault") == "yes",
    }
    for name, _label in SKIP_OPTIONS:
        body[name] = form.get(name) == "hide"
    return body, cert_text


def skiptoken_of(next_link: str | None) -> str | None:
    """The ``$skiptoken`` of an ``@odata.nextLink``, for the page's "Next" link."""
    if not next_link:
        return None
    values = parse_qs(urlsplit(next_link).query).get("$skiptoken")
    return values[0] if values else None
