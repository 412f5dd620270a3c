"""Rules that moved into the service's parts: the command API's body shape, the push certificate body,
the check-in dispatch table, and the one random source (``seed``) behind every value the server makes."""

from __future__ import annotations

import plistlib
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask import Response
from mdm_world import Device, World, build_world, issue, pkcs7_sign
from werkzeug.test import Client

from mdm.protocol import cms
from mdm.protocol.checkin import MESSAGE_TYPES
from mdm.server.checkin import CheckinService
from mdm.server.service import MDMError

#: The device that enrolls over DEP in the seed tests.
MACHINE_INFO_UDID = "00008101-000A1B2C3D4E5F60"


def _refused(call: Any, status: int, words: str) -> None:
    with pytest.raises(MDMError) as caught:
        call()
    assert caught.value.status == status and words in caught.value.reason, caught.value.reason


# -- the command API's body ---------------------------------------------------------------------------
def test_command_api_body_shape_is_a_rule_of_the_service(world: World, make_device: Any) -> None:
    device = make_device()
    before = world.dump()
    cases = [
        (["not", "an", "object"], "body must be a JSON object {udids, command}"),
        ({"command": {"RequestType": "SecurityInfo"}}, "udids must be a non-empty array of strings"),
        ({"udids": device.udid, "command": {"RequestType": "SecurityInfo"}}, "udids must be a non-empty array"),
        ({"udids": [device.udid]}, "command must be an object with a RequestType"),
        ({"udids": [device.udid], "command": ["RequestType"]}, "command must be an object with a RequestType"),
        ({"udids": [device.udid], "command": {"RequestType": "SecurityInfo"}, "priority": "high"}, "priority"),
        ({"udids": [1], "command": {"RequestType": "SecurityInfo"}}, "udids must be a non-empty array of strings"),
    ]
    for body, words in cases:
        _refused(lambda body=body: world.mdm.enqueue_request(body), 400, words)
    assert world.dump() == before  # a refused request changes nothing
    command_uuid = world.mdm.enqueue_request(
        {"udids": [device.udid], "command": {"RequestType": "SecurityInfo"}, "priority": 3}
    )
    status = world.mdm.command_status(command_uuid)
    assert status is not None and status["priority"] == 3 and status["request_type"] == "SecurityInfo"


def test_push_certificate_body_shape_is_a_rule_of_the_service(world: World) -> None:
    _refused(lambda: world.mdm.set_push_certificate_request("PEM"), 400, "body must be a JSON object")
    _refused(lambda: world.mdm.set_push_certificate_request({"certificate": "x"}), 400, "must be PEM strings")
    _refused(
        lambda: world.mdm.set_push_certificate_request({"certificate": "x", "key": "y"}),
        400,
        "certificate is not a PEM X.509 certificate",
    )
    assert world.mdm.push_certificate() is None


# -- check-in dispatch --------------------------------------------------------------------------------
def test_every_message_type_has_a_method_but_get_token(world: World) -> None:
    assert isinstance(world.mdm.checkins, CheckinService)
    assert set(world.mdm.checkins.handlers) == set(MESSAGE_TYPES) - {"GetToken"}


def test_an_unsupported_message_type_is_refused_before_any_write(world: World, make_device: Any) -> None:
    device = make_device()
    world.clock.advance(seconds=60)  # a write would move last_seen
    before = world.dump()
    response = device.checkin({"MessageType": "GetToken", "TokenServiceType": "com.apple.maid"})
    assert response.status_code == 400 and "GetToken is not supported" in response.get_data(as_text=True)
    assert world.dump() == before


# -- seeds --------------------------------------------------------------------------------------------
@pytest.fixture
def seeded_pair() -> Iterator[tuple[World, World]]:
    worlds = (build_world(seed=7), build_world(seed=7))
    yield worlds
    for w in worlds:
        w.mdm.close()
        w.http.close()


def _pem(key: Any) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def _profile(world: World) -> dict[str, Any]:
    """Enroll over DEP (service call) and read the profile's random parts."""
    device_cert, device_key = issue(world.apple_ca, "Apple iPhone Device " + MACHINE_INFO_UDID)
    info = plistlib.dumps({"UDID": MACHINE_INFO_UDID, "SERIAL": "F2LXK0ABCD12", "PRODUCT": "iPhone13,2"})
    profile = world.mdm.enroll(pkcs7_sign(info, device_cert, device_key, detached=False))
    verified = cms.verify(profile.signed, trust_roots=[world.mdm.ca_certificate()], now=world.clock.now())
    content = plistlib.loads(verified.content)
    payloads = {p["PayloadType"]: p for p in content["PayloadContent"]}
    return {
        "profile_uuid": content["PayloadUUID"],
        "payload_uuids": sorted(p["PayloadUUID"] for p in content["PayloadContent"]),
        "password": payloads["com.apple.security.pkcs12"]["Password"],
        "identity_serial": profile.certificate.serial_number,
        "identity_key": profile.certificate.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
    }


def _server_values(world: World) -> dict[str, Any]:
    client = Client(world.wsgi, Response)
    cert, key = world.mdm.issue_identity("SEED-1")
    device = Device(client, "SEED-1", cert, key, token=b"\x01" * 32)  # the device's own values fixed too
    device.enroll(world.mdm.topic)
    first = world.mdm.enqueue(["SEED-1"], {"RequestType": "SecurityInfo"})
    second = world.mdm.enqueue(["SEED-1"], {"RequestType": "SecurityInfo"})  # same command, same instant
    assert world.mdm.wait_for_outbound(10)
    return {
        "topic": world.mdm.topic,
        "ca_key": _pem(world.mdm.certificate_authority().key),
        "identity": (cert.serial_number, _pem(key)),
        "command_uuids": (first, second),
        "event_ids": [e["event_id"] for e in world.webhook.config["events"]],
        **_profile(world),
    }


def test_a_seed_replays_every_value_the_server_makes(seeded_pair: tuple[World, World]) -> None:
    a, b = (_server_values(w) for w in seeded_pair)
    assert a == b
    first, second = a["command_uuids"]
    assert first != second  # a seeded draw that meets a stored CommandUUID is drawn again
    assert len(set(a["event_ids"])) == len(a["event_ids"]) == 2  # Authenticate, TokenUpdate


def test_without_a_seed_the_values_differ(world: World) -> None:
    other = build_world()
    try:
        a, b = _server_values(world), _server_values(other)
    finally:
        other.mdm.close()
        other.http.close()
    for name in ("topic", "ca_key", "identity", "event_ids", "profile_uuid", "password", "identity_serial"):
        assert a[name] != b[name], name
    assert set(a["command_uuids"]).isdisjoint(b["command_uuids"])


def test_a_given_command_uuid_is_never_replaced(world: World, make_device: Any) -> None:
    device = make_device()
    command = {"CommandUUID": "given-1", "Command": {"RequestType": "SecurityInfo"}}
    assert world.mdm.enqueue([device.udid], command) == "given-1"
    _refused(lambda: world.mdm.enqueue([device.udid], command), 400, "CommandUUID given-1 already used")
