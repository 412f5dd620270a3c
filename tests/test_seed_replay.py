"""``--seed`` replays a run: the demo told twice with one seed makes the same identities, tokens,
keys, UDIDs, server UUIDs and credentials; another seed makes none of them again."""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.hazmat.primitives import serialization
from rich.console import Console

from mdm.protocol.x509 import cert_from_pem
from simulator.demo import Demo
from simulator.world import World

DEVICES = 4


def _public(key_or_cert: Any) -> str:
    """A public key's fingerprint (certificates carry issue times, which a replay does not repeat)."""
    public = key_or_cert.public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:24]


def _everything(world: World) -> dict[str, Any]:
    """Every identity, token, key, UDID and credential of a world after the demo, as plain values."""
    out: dict[str, Any] = {}
    servers = world.portal_service.servers()
    out["servers"] = [(s["server_name"], s["server_uuid"]) for s in servers]
    keys = ("consumer_key", "consumer_secret", "access_token", "access_secret")  # not the expiry: a time
    out["dep_credentials"] = [
        {k: world.portal_service.server_token(s["server_uuid"])[k] for k in keys} for s in servers
    ]
    out["cas"] = {
        "apple_device": _public(world.device_ca.certificate),
        "mdm": _public(world.mdm.certificate_authority().certificate),
        "tls": _public(world.tls_ca.certificate),
    }
    out["mdm_topic"] = world.mdm.topic
    settings = world.controller.list_settings()
    out["controller_tokens"] = [(s["id"], s.get("tokenName")) for s in settings]
    out["controller_token_keys"] = [_public(cert_from_pem(world.controller.get_encryption_key(s["id"]))) for s in settings]
    out["controller_profiles"] = sorted(
        (p["id"], p.get("displayName")) for s in settings for p in world.controller.list_profiles(s["id"])
    )
    out["controller_devices"] = sorted(
        (d["id"], d["serialNumber"]) for s in settings for d in world.controller.list_devices(s["id"], top="999")[0]
    )
    devices = {}
    for serial in world.serials:
        device = world.fleet.get(serial)
        if device is None:
            continue
        state = device.state
        identity = device.identity
        enrolled = world.mdm.device(identity.udid) or {}
        devices[serial] = {
            "udid": identity.udid,
            "imei": identity.imei,
            "device_key": _public(device.device_key()),
            "push_token": state.push_token,
            "push_magic": state.push_magic,
            "unlock_token": state.unlock_token,
            "mdm_identity": _public(device.mdm_identity()[0]) if device.mdm_identity() else None,
            "enrolled_with_topic": (enrolled.get("enrollment_state"), enrolled.get("topic")),
        }
    out["devices"] = devices
    return out


def _demo(seed: int | None) -> dict[str, Any]:
    with World(devices=0, seed=seed, push_certificate=False) as world, world.serve() as served:
        result = Demo(world, served.url, Console(quiet=True), user_affinity=False, quiet=True).run(DEVICES)
        assert result.enrolled == DEVICES, result.failures
        return _everything(world)


def test_one_seed_replays_every_identity_token_key_udid_and_credential() -> None:
    first, second = _demo(41), _demo(41)
    assert len(first["devices"]) == DEVICES and all(d["push_magic"] for d in first["devices"].values())
    for part in first:
        assert first[part] == second[part], part
    other = _demo(42)
    for part in ("servers", "dep_credentials", "cas", "mdm_topic", "controller_tokens", "devices"):
        assert other[part] != first[part], part
