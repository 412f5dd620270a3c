"""DEP enrollment as a device written from Apple's documentation sees it, end to end in process."""

from __future__ import annotations

import base64
import plistlib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from mdm_world import IDP_PATH, Device, World, issue, make_ca, pkcs7_sign

from mdm.protocol import cms
from mdm.server.idp import NS, build_rst

#: Sample MachineInfo plists (fixtures/device-payloads/machineinfo/, README.md beside them).
MACHINE_INFOS = sorted((Path(__file__).resolve().parents[2] / "fixtures" / "device-payloads" / "machineinfo").glob("*.plist"))
UDID = "00008101-000A1B2C3D4E5F60"
MACHINE_INFO = {
    "UDID": UDID,
    "SERIAL": "F2LXK0ABCD12",
    "PRODUCT": "iPhone13,2",
    "VERSION": "21E219",
    "OS_VERSION": "17.4",
    "IMEI": "35 441006 123456 7",
    "LANGUAGE": "en",
}


def signed_machine_info(world: World, info: dict[str, Any] | None = None) -> bytes:
    """What the device POSTs: MachineInfo CMS-signed by its Apple-issued device identity."""
    device_cert, device_key = issue(world.apple_ca, "Apple iPhone Device " + UDID)
    return pkcs7_sign(plistlib.dumps(info or MACHINE_INFO), device_cert, device_key, detached=False)


def post_enroll(client: Any, body: bytes, query: str = "", **kw: Any) -> Any:
    return client.post("/mdm/enroll" + query, data=body, content_type="application/pkcs7-signature", **kw)


def open_profile(world: World, data: bytes) -> tuple[dict[str, Any], x509.Certificate, Any]:
    """Verify the profile's signature, read its payloads, install the PKCS#12 identity."""
    ca_pem = world.mdm.ca_certificate_pem()
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    verified = cms.verify(data, trust_roots=[ca_cert], now=world.clock.now())
    profile = plistlib.loads(verified.content)
    assert profile["PayloadType"] == "Configuration"
    by_type = {p["PayloadType"]: p for p in profile["PayloadContent"]}
    root = x509.load_der_x509_certificate(by_type["com.apple.security.root"]["PayloadContent"])
    assert root == ca_cert
    p12 = by_type["com.apple.security.pkcs12"]
    key, cert, _ = pkcs12.load_key_and_certificates(p12["PayloadContent"], p12["Password"].encode())
    assert cert is not None and key is not None
    return by_type, cert, key


def test_doc_written_device_enrolls_and_answers_a_command(world: World, client: Any) -> None:
    response = post_enroll(client, signed_machine_info(world))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/x-apple-aspen-config"
    payloads, cert, key = open_profile(world, response.get_data())

    mdm = payloads["com.apple.mdm"]
    assert mdm["ServerURL"] == "http://mdmsim.test/mdm/connect"
    assert mdm["CheckInURL"] == "http://mdmsim.test/mdm/checkin"
    assert mdm["Topic"] == world.mdm.topic and mdm["Topic"].startswith("com.apple.mgmt.External.")
    assert mdm["SignMessage"] is True and mdm["AccessRights"] == 8191 and mdm["CheckOutWhenRemoved"] is True
    assert mdm["ServerCapabilities"] == [
        "com.apple.mdm.per-user-connections",
        "com.apple.mdm.bootstraptoken",
    ]
    assert mdm["IdentityCertificateUUID"] == payloads["com.apple.security.pkcs12"]["PayloadUUID"]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == UDID

    device = Device(client, UDID, cert, key)
    assert device.authenticate(mdm["Topic"]).status_code == 200
    assert device.token_update(mdm["Topic"]).status_code == 200

    created = client.post(
        "/mdm/api/v1/commands",
        json={"udids": [UDID], "command": {"RequestType": "DeviceInformation", "Queries": ["OSVersion"]}},
    )
    assert created.status_code == 201
    command_uuid = created.get_json()["command_uuid"]

    events = client.get(f"/apple/apns/events?token={device.token.hex()}&wait=0")
    assert events.status_code == 200
    [notification] = events.get_json()["notifications"]
    assert notification["payload"] == {"mdm": device.push_magic}
    assert notification["topic"] == mdm["Topic"]

    fetched = device.connect("Idle")
    assert fetched.status_code == 200
    command = plistlib.loads(fetched.get_data())
    assert command["CommandUUID"] == command_uuid
    assert command["Command"] == {"RequestType": "DeviceInformation", "Queries": ["OSVersion"]}

    done = device.connect("Acknowledged", command_uuid, QueryResponses={"OSVersion": "17.4"})
    assert done.status_code == 200 and done.get_data() == b""

    status = client.get(f"/mdm/api/v1/commands/{command_uuid}").get_json()
    [entry] = status["devices"]
    assert entry["udid"] == UDID and entry["status"] == "Acknowledged"
    assert entry["result"]["payload"]["QueryResponses"] == {"OSVersion": "17.4"}
    assert plistlib.loads(base64.b64decode(entry["result"]["raw"]))["Status"] == "Acknowledged"

    info = client.get(f"/mdm/api/v1/devices/{UDID}").get_json()
    assert info["enrolled"] is True and info["serial_number"] == "F2LXK0ABCD12"
    assert info["push_token_present"] is True and info["push"]["sent"] == 1
    assert [d["udid"] for d in client.get("/mdm/api/v1/devices").get_json()["devices"]] == [UDID]


def test_configuration_web_url_form_with_deviceinfo_header(world: World, client: Any) -> None:
    header = base64.b64encode(signed_machine_info(world)).decode()
    response = client.get("/mdm/enroll", headers={"x-apple-aspen-deviceinfo": header})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-apple-aspen-config"
    open_profile(world, response.get_data())


def test_found_the_sample_machine_infos() -> None:
    assert len(MACHINE_INFOS) >= 3
    infos = [plistlib.loads(p.read_bytes()) for p in MACHINE_INFOS]
    assert any("IMEI" in i and "OS_VERSION" in i for i in infos)  # an iPhone on iOS 17 or later
    assert any("OS_VERSION" not in i for i in infos)  # a device from before OS_VERSION existed


@pytest.mark.parametrize("path", MACHINE_INFOS, ids=lambda p: p.name)
def test_sample_machine_info_payload_is_accepted(world: World, client: Any, path: Path) -> None:
    info = plistlib.loads(path.read_bytes())
    response = post_enroll(client, signed_machine_info(world, info))
    assert response.status_code == 200, response.get_data(as_text=True)
    device = world.mdm.device(info["UDID"])
    assert device["serial_number"] == info["SERIAL"]
    assert device["product"] == info["PRODUCT"] and device["os_version"] == info.get("OS_VERSION")


def test_untrusted_or_unsigned_machine_info_is_refused(world: World, client: Any) -> None:
    before = world.dump()
    rogue_ca = make_ca("Not Apple")
    rogue_cert, rogue_key = issue(rogue_ca, "rogue")
    cases = {
        "unsigned": plistlib.dumps(MACHINE_INFO),
        "other CA": pkcs7_sign(plistlib.dumps(MACHINE_INFO), rogue_cert, rogue_key, detached=False),
        "garbage": b"\x30\x03\x02\x01\x00",
        "empty": b"",
    }
    for name, body in cases.items():
        response = post_enroll(client, body)
        assert response.status_code == 403, name
        assert response.mimetype == "text/plain" and "MachineInfo" in response.get_data(as_text=True), name
    signed = bytearray(signed_machine_info(world))
    at = bytes(signed).find(b"F2LXK0ABCD12")
    signed[at] ^= 1
    response = post_enroll(client, bytes(signed))
    assert response.status_code == 403 and "digest" in response.get_data(as_text=True)
    response = client.get("/mdm/enroll", headers={"x-apple-aspen-deviceinfo": "%%%"})
    assert response.status_code == 403
    assert world.dump() == before


def test_user_affinity_asks_the_idp_over_ws_trust(world: World, client: Any) -> None:
    body = signed_machine_info(world)
    before = world.dump()
    response = post_enroll(client, body, "?auth=user")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="mdmsim"'

    response = post_enroll(client, body, "?auth=user", auth=("alice@contoso.com", "wrong"))
    assert response.status_code == 403
    assert response.get_data(as_text=True).strip() == "invalid user credentials"
    assert world.dump() == before

    response = post_enroll(client, body, "?auth=user", auth=("alice@contoso.com", "correct horse"))
    assert response.status_code == 200
    assert world.idp.config["requests"][-1] == ("application/soap+xml", "alice@contoso.com")
    assert client.get(f"/mdm/api/v1/devices/{UDID}").get_json()["user"] == "alice@contoso.com"

    world.idp_enabled[0] = False
    response = post_enroll(client, body, "?auth=user", auth=("alice@contoso.com", "correct horse"))
    assert response.status_code == 503


def test_identity_from_another_ca_cannot_check_in(world: World, client: Any) -> None:
    other_ca = make_ca("Someone else's MDM CA")
    cert, key = issue(other_ca, UDID)
    device = Device(client, UDID, cert, key)
    topic, _ = world.mdm.topic, world.mdm.ca_certificate()
    before = world.dump()
    response = device.authenticate(topic)
    assert response.status_code == 403
    assert "does not chain" in response.get_data(as_text=True)
    assert world.dump() == before


def test_rst_sent_to_idp_is_soap12_username_token(world: World) -> None:
    root = ET.fromstring(build_rst("http://x" + IDP_PATH, "bob", "p<w>&", world.clock.now()))
    assert root.tag == f"{{{NS['s']}}}Envelope"
    token = root.find("s:Header/o:Security/o:UsernameToken", NS)
    assert token is not None and token.findtext("o:Password", namespaces=NS) == "p<w>&"
    assert root.find("s:Body/trust:RequestSecurityToken", NS) is not None
