"""The simulated Secure Enclave: it signs with hardware-bound keys and no public API of the device, the
world, their HTTP surfaces or their stores hands out the private key, in any encoding."""

from __future__ import annotations

import base64
import copy
import dataclasses
import inspect
import json
import os
import pickle
import threading
from pathlib import Path
from typing import Any

import pytest
from acme_world import acme_serials, acme_world
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mdm.protocol import acme
from simulator.device.secure_enclave import HardwareKey, SecureEnclave, load_fuse, new_fuse


def test_an_enclave_signs_with_keys_it_wraps_and_refuses_anothers_items() -> None:
    enclave = SecureEnclave(new_fuse(), "F2LXJ7ABCDEF")
    key = enclave.create_key(384, tag="t")
    signature = key.sign(b"hello")
    key.public_key().verify(signature, b"hello", ec.ECDSA(hashes.SHA256()))
    assert key.key_size == 384 and isinstance(key.curve, ec.SECP384R1)
    assert set(key.item) == {"kind", "bits", "tag", "public_key", "wrapped"}
    again = enclave.key(json.loads(json.dumps(key.item)))  # what a device store gives back
    again.public_key().verify(again.sign(b"x"), b"x", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(ValueError, match="not a key of this Secure Enclave"):
        SecureEnclave(new_fuse(), "F2LXJ7ABCDEF").key(key.item)  # another world's enclave
    with pytest.raises(ValueError, match="not a key of this Secure Enclave"):
        SecureEnclave(new_fuse(), "OTHERSERIAL1").key(key.item)
    tampered = dict(key.item, tag="other")  # the wrapped key is bound to its item
    with pytest.raises(ValueError):
        enclave.key(tampered)
    with pytest.raises(ValueError):
        enclave.create_key(521)  # the Secure Enclave makes P-256 and P-384 only


def test_neither_the_enclave_nor_a_key_handle_can_be_read_copied_or_pickled() -> None:
    enclave = SecureEnclave(new_fuse(), "F2LXJ7ABCDEF")
    key = enclave.create_key(256)
    for attempt in (key.private_bytes, key.private_numbers, lambda: pickle.dumps(key), lambda: pickle.dumps(enclave),
                    lambda: copy.deepcopy(key), lambda: copy.copy(enclave)):
        with pytest.raises(TypeError, match="never leaves the Secure Enclave"):
            attempt()
    assert "wrap" not in repr(enclave) and "wrapped" not in repr(key)


def test_the_fuse_file_is_made_once_owner_only_even_by_racing_processes(tmp_path: Path) -> None:
    path = tmp_path / "w" / "secure-enclave.fuse"
    found: list[bytes] = []
    threads = [threading.Thread(target=lambda: found.append(load_fuse(path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == 1 and len(found[0]) == 32
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_fuse(path) == found[0] and sorted(p.name for p in path.parent.iterdir()) == ["secure-enclave.fuse"]
    assert load_fuse(None) != load_fuse(None)


# -- no public API returns the key -------------------------------------------------------------------------------
#: Methods that end or rewind the world, or serve it: called by nobody's "read" and not part of the sweep.
_NOT_READS = {"close", "reset", "serve", "setup_push_certificate", "renew_push_certificate", "build_party_apps",
              "run_depsim_schedules", "forget_cached_keys", "user_unlock"}


class _Secrets:
    """Every encoding of one private key a leak could take."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        scalar = key.private_numbers().private_value
        raw = scalar.to_bytes((key.curve.key_size + 7) // 8, "big")
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        self.scalar = scalar
        self.needles = [raw, raw.hex().encode(), raw.hex().upper().encode(), str(scalar).encode(),
                        base64.b64encode(raw), acme.b64url(raw).encode(), der, base64.b64encode(der)[:64],
                        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())[30:90]]

    def check(self, value: Any, where: str, depth: int = 0) -> None:
        """Fail if ``value`` is the key or holds an encoding of it (in bytes, text, JSON, containers)."""
        if depth > 6:
            return
        if isinstance(value, ec.EllipticCurvePrivateKey):
            assert value.private_numbers().private_value != self.scalar, where
            return
        if isinstance(value, x509.Certificate):
            value = value.public_bytes(serialization.Encoding.DER)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        elif hasattr(value, "to_dict") and callable(value.to_dict):
            value = value.to_dict()
        if isinstance(value, dict):
            for k, v in value.items():
                self.check(v, f"{where}[{k!r}]", depth + 1)
            value = json.dumps(value, default=repr).encode()
        elif isinstance(value, list | tuple | set):
            for i, v in enumerate(value):
                self.check(v, f"{where}[{i}]", depth + 1)
            value = repr(value).encode()
        blob = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
        for needle in self.needles:
            assert needle not in blob, f"{where} holds the private key"


def _public_reads(obj: Any) -> list[tuple[str, Any]]:
    """Every public attribute of ``obj`` and every public method that needs no argument, called."""
    found = []
    for name in dir(obj):
        if name.startswith("_") or name in _NOT_READS:
            continue
        try:
            value = getattr(obj, name)
        except Exception:  # a property that needs a state the object is not in
            continue
        if inspect.ismethod(value) or inspect.isfunction(value):
            try:
                required = [p for p in inspect.signature(value).parameters.values()
                            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            except (TypeError, ValueError):
                continue
            if required:
                continue
            try:
                value = value()
            except TypeError as exc:
                assert "never leaves the Secure Enclave" in str(exc)
                continue
        found.append((name, value))
    return found


def test_no_public_api_of_the_device_or_the_world_returns_the_hardware_bound_key() -> None:
    with acme_world(devices=6, seed=48) as world:
        serial = acme_serials(world)[0]
        udid = world.identity(serial).udid
        assert world.devices.power_on(serial).phase == "home"
        device = world.devices.get(serial)
        cert, key = device.mdm_identity()
        assert isinstance(key, HardwareKey)
        secrets = _Secrets(device.secure_enclave._unwrap(key.item))  # what only code reaching past the API can do
        assert key.same_key(cert)

        # the device: its state, every public read of it, of its identity handle and of its enclave
        for name, value in _public_reads(device):
            secrets.check(value, f"device.{name}")
        for name, value in _public_reads(key):
            secrets.check(value, f"key.{name}")
        for name, value in _public_reads(device.secure_enclave):
            secrets.check(value, f"enclave.{name}")
        secrets.check(json.dumps(device.state.to_dict()), "the device state's JSON")
        assert device.state.enrollment["identity_key_item"]["wrapped"]
        assert device.state.enrollment.get("identity_key_pem") is None
        with pytest.raises(TypeError):
            pickle.dumps(device)  # the enclave inside refuses
        # the world: its public reads, the device views in Python and over HTTP, the stores' rows
        for name, value in _public_reads(world):
            secrets.check(value, f"world.{name}")
        for read in (world.devices.describe, world.devices.identity_bundle, world.devices.get, world.fleet.describe):
            secrets.check(read(serial), f"{read.__qualname__}({serial})")
        secrets.check(world.devices.list(), "world.devices.list()")
        secrets.check(world.mdm.device(udid), "world.mdm.device()")
        for path in ("/_sim/", f"/_sim/devices/{serial}", f"/_sim/devices/{serial}/identity", "/_sim/devices",
                     f"/mdm/api/v1/devices/{udid}", "/mdm/api/v1/devices"):
            secrets.check(world.http.get(path).content, f"GET {path}")
        with world.fleet.devices.store.read() as db:
            secrets.check([tuple(r) for r in db.execute("SELECT * FROM devices")], "the device store's rows")
        # and the key still signs: an agent round is answered with an Mdm-Signature from the enclave
        world.http.post("/mdm/api/v1/commands", json={"udids": [udid], "command": {"RequestType": "DeviceInformation",
                                                                                     "Queries": ["UDID"]}})
        world.devices.run_agent(serial)
        assert any(c[1] == "DeviceInformation" and c[2] == "Acknowledged" for c in world.devices.get(serial).state.commands)
