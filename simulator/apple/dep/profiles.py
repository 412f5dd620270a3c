"""DEP profiles as Apple checks and returns them (``POST /profile``, ``GET /profile``). Pure code, no I/O.

Invalid base64/DER certificates → ``ANCHOR_CERTS_INVALID`` / ``SUPERVISING_HOST_CERTS_INVALID``; a
non-boolean flag → ``FLAGS_INVALID``; a bad support e-mail → ``SUPPORT_EMAIL_INVALID`` (choices where
Apple documents the string but not the check).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from cryptography import x509

from .errors import bad_request
from .requests import malformed, serial_list

__all__ = ["validate_profile", "render_profile"]

_PROFILE_FLAGS = (
    "allow_pairing",
    "is_supervised",
    "is_mandatory",
    "is_mdm_removable",
    "is_multi_user",
    "await_device_configured",
    "auto_advance_setup",
    "do_not_use_profile_from_backup",
    "is_return_to_service",
)
_PROFILE_DEFAULTS: dict[str, Any] = {
    "allow_pairing": True,
    "is_supervised": False,
    "is_mandatory": False,
    "is_mdm_removable": True,
    "is_multi_user": False,
    "await_device_configured": False,
    "auto_advance_setup": False,
    "org_magic": "",
}
_V2_PROFILE_KEYS = ("auto_advance_setup", "await_device_configured", "is_multi_user", "support_email_address")
_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$", re.IGNORECASE)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}$")
_REGION = re.compile(r"^[A-Za-z]{2}$")


def _check_string(body: Mapping[str, Any], key: str, max_len: int, code: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise bad_request(code)
    return value


def _check_certs(body: Mapping[str, Any], key: str, code: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise bad_request(code)
    for item in value:
        if not isinstance(item, str):
            raise bad_request(code)
        try:
            x509.load_der_x509_certificate(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise bad_request(code) from None
    return list(value)


def validate_profile(body: Any) -> tuple[dict[str, Any], list[str] | None]:
    """Check a ``POST /profile`` body the way Apple does; returns (stored profile, serials or None).

    The stored profile holds every documented key with Apple's defaults filled in, so that the
    activation service can hand it to a device as it is.
    """
    if not isinstance(body, dict):
        malformed()
    name = body.get("profile_name")
    if name is None or name == "":
        raise bad_request("CONFIG_NAME_REQUIRED")
    if not isinstance(name, str) or len(name) > 125 or not name.strip():
        raise bad_request("CONFIG_NAME_INVALID")
    url = body.get("url")
    if url is None or url == "":
        raise bad_request("CONFIG_URL_REQUIRED")
    if not isinstance(url, str) or len(url) > 2000 or not _URL.match(url):
        raise bad_request("CONFIG_URL_INVALID")
    profile: dict[str, Any] = {"profile_name": name, "url": url}
    web_url = body.get("configuration_web_url")
    if web_url not in (None, ""):
        if not isinstance(web_url, str) or len(web_url) > 2000 or not _URL.match(web_url):
            raise bad_request("CONFIG_URL_INVALID")
        profile["configuration_web_url"] = web_url
    for flag in _PROFILE_FLAGS:
        value = body.get(flag, _PROFILE_DEFAULTS.get(flag))
        if value is None:
            continue
        if not isinstance(value, bool):
            raise bad_request("FLAGS_INVALID")
        profile[flag] = value
    if profile["is_mdm_removable"] is False and profile["is_supervised"] is not True:
        raise bad_request("FLAGS_INVALID")
    for key, max_len, code in (
        ("support_phone_number", 50, "SUPPORT_PHONE_INVALID"),
        ("support_email_address", 250, "SUPPORT_EMAIL_INVALID"),
        ("department", 125, "DEPARTMENT_INVALID"),
        ("org_magic", 256, "MAGIC_INVALID"),
        ("language", 3, "LOCALE_INVALID"),
        ("region", 2, "LOCALE_INVALID"),
    ):
        value = _check_string(body, key, max_len, code)
        if value is not None:
            profile[key] = value
    email = profile.get("support_email_address")
    if email and not _EMAIL.match(email):
        raise bad_request("SUPPORT_EMAIL_INVALID")
    if profile.get("language") and not _LANGUAGE.match(profile["language"]):
        raise bad_request("LOCALE_INVALID")
    if profile.get("region") and not _REGION.match(profile["region"]):
        raise bad_request("LOCALE_INVALID")
    profile.setdefault("org_magic", "")
    for key, code in (
        ("anchor_certs", "ANCHOR_CERTS_INVALID"),
        ("supervising_host_certs", "SUPERVISING_HOST_CERTS_INVALID"),
    ):
        certs = _check_certs(body, key, code)
        if certs is not None:
            profile[key] = certs
    skip = body.get("skip_setup_items")
    if skip is not None:
        if not isinstance(skip, list) or not all(isinstance(s, str) for s in skip):
            malformed()
        profile["skip_setup_items"] = list(skip)
    serials = None
    if body.get("devices") is not None:
        serials = serial_list(body["devices"], required=False)
    return profile, serials


def render_profile(profile: dict[str, Any], profile_uuid: str, version: int) -> dict[str, Any]:
    """A stored profile as ``GET /profile`` returns it: keys added in protocol v2 only from v2."""
    out = {k: v for k, v in profile.items() if version >= 2 or k not in _V2_PROFILE_KEYS}
    out["profile_uuid"] = profile_uuid
    return out
