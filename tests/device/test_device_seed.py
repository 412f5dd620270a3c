"""One seed reproduces a device: its Apple identity key, push token, PushMagic and unlock token, whatever
order a fleet's devices run in; an erase gives new tokens; no seed means fresh randomness."""

from __future__ import annotations

from device_stack import Stack, build_stack

from mdm.protocol.commands import parse_command
from mdm.protocol.plist import dumps
from mdm.protocol.x509 import key_to_pem, seeded_key
from simulator.device.commands import handle
from simulator.device.machine import Device
from simulator.device.setup_assistant import erase
from simulator.device.store import DeviceFleetService, open_device_store


def _enroll_in_order(order: list[int], seed: int | None) -> dict[str, tuple[str, ...]]:
    """Two devices of a fresh stack (same identities every time) powered on in ``order``."""
    stack = build_stack()
    try:
        devices = [stack.new_device(seed=seed), stack.new_device(seed=seed)]
        stack.define_profile([d.serial for d in devices])
        driver = stack.driver()
        for i in order:
            assert driver.run_until_home(devices[i]) == "home"
        return {d.serial: _secrets(d) for d in devices}
    finally:
        stack.mdm.close()
        stack.http.close()


def _secrets(device: Device) -> tuple[str, ...]:
    st = device.state
    assert st.push_token and st.push_magic and st.unlock_token
    return (st.device_key_pem, st.push_token, st.push_magic, st.unlock_token)


def test_a_seed_reproduces_keys_and_tokens_whatever_the_order() -> None:
    first = _enroll_in_order([0, 1], seed=2024)
    again = _enroll_in_order([1, 0], seed=2024)
    assert first == again
    a, b = first.values()
    assert all(x != y for x, y in zip(a, b, strict=True))  # each device has its own
    other = _enroll_in_order([0, 1], seed=2025)
    assert first.keys() == other.keys()  # same identities (the stack's own factory)...
    assert all(first[s][i] != other[s][i] for s in first for i in range(4))  # ...other keys and tokens


def test_without_a_seed_every_run_differs() -> None:
    first = _enroll_in_order([0, 1], seed=None)
    again = _enroll_in_order([0, 1], seed=None)
    assert first.keys() == again.keys()
    assert all(first[s][i] != again[s][i] for s in first for i in range(4))


def test_an_erase_brings_new_tokens_and_keeps_the_hardware_key(stack: Stack) -> None:
    device = stack.new_device(seed=7)
    stack.define_profile([device.serial])
    driver = stack.driver()
    driver.run_until_home(device)
    before = _secrets(device)
    erase(device, stack.clock.now)
    assert device.state.push_token is None
    driver.run_until_home(device)
    after = _secrets(device)
    assert after[0] == before[0]  # the Apple identity key belongs to the hardware
    assert all(x != y for x, y in zip(after[1:], before[1:], strict=True))
    assert device.label("push-token", per_erase=True) == f"device:{device.serial}:erase-1:push-token"


def test_activation_lock_bypass_code_follows_the_seed_and_the_command(stack: Stack) -> None:
    device = stack.new_device()
    device.state.cloud_config = {"IsSupervised": True}

    def code(seed: int | None, command_uuid: str) -> str:
        device.state.seed = seed
        body = dumps({"CommandUUID": command_uuid, "Command": {"RequestType": "ActivationLockBypassCode"}})
        status, extra, _ = handle(device, parse_command(body), stack.clock.now)
        assert status == "Acknowledged"
        value = str(extra["ActivationLockBypassCode"])
        assert len(value) == 29 and value.count("-") == 4
        return value

    a = code(5, "A")
    assert code(5, "A") == a
    assert code(5, "B") != a
    assert code(6, "A") != a
    assert code(None, "A") != code(None, "A")


def test_fleet_devices_take_the_fleet_seed_and_the_world_bundles_key(stack: Stack) -> None:
    fleet = DeviceFleetService(open_device_store(None), stack.clock, apple_url=stack.apple_url,
                               issue_identity=stack.activation.issue_device_identity, seed=9)  # fmt: skip
    identity = stack.identities.one()
    device = fleet.add(identity)
    # The label the world's identity bundle uses for a device not yet powered on.
    expected = key_to_pem(seeded_key(9, f"device:{identity.serial_number}")).decode()
    assert device.state.device_key_pem == expected
    revived = fleet.get(identity.serial_number)
    assert revived is not None and revived.state.seed == 9
