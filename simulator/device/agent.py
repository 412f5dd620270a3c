"""The MDM agent: wakes on a push (from its stream, or polled), connects to ServerURL and answers each command.

What it answers to each command is :mod:`simulator.device.commands`'s; this module runs the session
(push poll, ``Idle``, one result per command, the effect of an erase or restart once the server has
the answer) and the user's own acts on management (removing the profile, pairing with a Mac). A
command whose keys have the wrong types gets ``CommandFormatError``.

The NotNow rule mirrors NanoMDM's server side: after ``NotNow`` the server offers the next command
and re-offers the deferred one after the device's next ``Idle``; a device therefore answers the
same command at most once per round.
"""

from __future__ import annotations

import base64
import hmac
import json
import plistlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mdm.protocol.checkin import CheckOut
from mdm.protocol.commands import CommandError, parse_command
from mdm.protocol.mobileconfig import SCEPPayload
from mdm.protocol.plist import PlistError
from mdm.protocol.plist import loads as plist_loads
from mdm.protocol.x509 import cert_from_der, cert_to_pem, key_to_pem

from .commands import COMPANY_PORTAL_BUNDLE_ID, COMPANY_PORTAL_STORE_ID, handle
from .enrollment import checkin_request, unenroll
from .machine import USER_AGENT, Device, Flow, Now, Request
from .scep_enroll import obtain_identity
from .setup_assistant import erase, scep_key

__all__ = [
    "AgentRound",
    "COMPANY_PORTAL_BUNDLE_ID",
    "COMPANY_PORTAL_STORE_ID",
    "agent_round",
    "erase",
    "pair_with_host",
    "remove_mdm_profile",
]

MAX_COMMANDS_PER_ROUND = 200
RESULT_CONTENT_TYPE = "application/x-apple-aspen-mdm"


@dataclass
class AgentRound:
    """What one wake-up did: whether a push was waiting and each ``(RequestType, Status)`` sent."""

    pushed: bool = False
    connected: bool = False
    commands: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None


def _result_request(device: Device, result: dict[str, Any]) -> Request:
    enrollment = device.state.enrollment or {}
    return device.signed_put(enrollment.get("server_url", ""), RESULT_CONTENT_TYPE, result)


# -- the round -------------------------------------------------------------------------------------------
def agent_round(
    device: Device,
    now: Now,
    *,
    poll_push: bool = True,
    connect: bool = True,
    notifications: Sequence[Any] | None = None,
) -> Flow[AgentRound]:
    """Learn whether the device was pushed, then (when pushed, or always with ``connect``) drain the
    command queue.

    ``notifications`` are what a driver received on the device's push stream
    (:mod:`~simulator.device.push_stream`) since the last round: that is how a device over sockets
    learns of a push, as a real one does. Without them the round asks the gateway once
    (``GET {apple_url}/apns/events?wait=0``, skipped with ``poll_push=False``): the simulation's
    convenience for in-process worlds, where there is no socket to hold a stream on.
    """
    report = AgentRound()
    st = device.state
    if not st.powered or st.enrollment is None:
        return report
    _resolve_prompts(device, now)
    if notifications is not None:
        report.pushed = any(_is_our_push(n, st.push_magic) for n in notifications)
    elif poll_push and st.push_token:
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
    yield from _renew_identity_if_due(device, now)
    if not (report.pushed or connect):
        return report
    report.connected = True
    yield from _connect(device, now, report)
    return report


#: A SCEP identity is renewed once less than this share of its lifetime is left (a fifth: 146 days of
#: a two-year identity), with a RenewalReq signed by the identity itself, so no new challenge is needed.
RENEW_WHEN_LEFT = 0.2


def _renew_identity_if_due(device: Device, now: Now) -> Flow[None]:
    st = device.state
    enrollment = st.enrollment
    if enrollment is None or not enrollment.get("scep_payload"):
        return
    identity = device.mdm_identity()
    if identity is None:
        return
    cert, key = identity
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    if cert.not_valid_after_utc - now() > lifetime * RENEW_WHEN_LEFT:
        return
    payload = SCEPPayload.from_dict(plist_loads(enrollment["scep_payload"].encode()))
    generation = enrollment.get("renewals", 0) + 1
    result = yield from obtain_identity(
        payload, now=now, progress={}, default_cn=device.identity.udid, trust=device.mdm_trust(),
        make_key=lambda bits: scep_key(device, f"renewal-{generation}:{bits}", bits), renew_with=(cert, key),
    )
    if result.status != "issued" or result.certificate is None or result.key is None:
        device.record("MDM", "error", now(), f"identity renewal failed: {result.reason}"[:300])
        return
    enrollment["identity_cert_pem"] = cert_to_pem(result.certificate).decode()
    enrollment["identity_key_pem"] = key_to_pem(result.key).decode()
    enrollment["renewals"] = generation
    device.forget_cached_keys()
    until = result.certificate.not_valid_after_utc
    device.record("MDM", "info", now(), f"identity renewed over SCEP; valid until {until:%Y-%m-%d}")


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
                unenroll(device)
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
        status, extra, effect = handle(device, command, now)
        if status == "NotNow":
            answered_not_now.add(command.command_uuid)
        report.commands.append((command.request_type, status))
        device.log_command(now(), command.request_type, status, command.command_uuid)
        result = {"UDID": udid, "Status": status, "CommandUUID": command.command_uuid, **extra}
        after = effect
        request = _result_request(device, result)


def _command_uuid(body: bytes) -> str:
    try:
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


# -- life-cycle events -----------------------------------------------------------------------------------
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
    unenroll(device)
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
