"""The portal's JSON API: servers, tokens, devices, assignment; every change reaches sync."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

OPENSSL = "/usr/bin/openssl"


@pytest.fixture
def api(apple: Any) -> Any:
    return apple.portal_app().test_client()


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def test_servers_are_listed_and_created(api: Any, apple: Any) -> None:
    assert _ok(api.get("/api/servers")) == [
        {"server_uuid": apple.server["server_uuid"], "server_name": "mdmsim", "device_count": 0}
    ]
    created = _ok(api.post("/api/servers", json={"server_name": "Intune"}), 201)
    assert created["server_name"] == "Intune" and "consumer_secret" not in created
    apple.portal.generate(3, server_uuid=created["server_uuid"])
    listed = {s["server_name"]: s["device_count"] for s in _ok(api.get("/api/servers"))}
    assert listed == {"mdmsim": 0, "Intune": 3}
    assert api.post("/api/servers", json={"server_name": "Intune"}).status_code == 400
    assert "error" in _ok_error(api.post("/api/servers", json={}), 400)
    assert _ok_error(api.get("/api/servers/NOPE"), 404)["error"].startswith("no MDM server")


def _ok_error(response: Any, status: int) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str)
    return body


def test_depsim_credentials_are_kept_and_idempotent(apple: Any) -> None:
    keys = {
        "consumer_key": "CK_x",
        "consumer_secret": "CS_x",
        "access_token": "AT_x",
        "access_secret": "AS_x",
    }
    first = apple.portal.create_server("depsim", credentials=keys)
    again = apple.portal.create_server("depsim", credentials=keys)
    assert first["server_uuid"] == again["server_uuid"]
    token = apple.dep.credentials(first["server_uuid"])
    assert {k: token[k] for k in keys} == keys
    assert token["access_token_expiry"] == "2027-03-01T09:00:00Z"  # one year after issue, world time


def test_token_p7m_opens_with_the_right_key_only(
    api: Any, apple: Any, rsa_identity: Any, tmp_path: Path
) -> None:
    uuid = apple.server["server_uuid"]
    assert _ok_error(api.get(f"/api/servers/{uuid}/token.p7m"), 400)["error"].startswith("upload")
    key, cert = rsa_identity("vendor")
    wrong_key, _ = rsa_identity("stranger")
    _ok(api.post(f"/api/servers/{uuid}/public-key", data=cert.read_bytes()))
    _ok(api.post(f"/api/servers/{uuid}/public-key", json={"certificate": cert.read_text()}))
    response = api.get(f"/api/servers/{uuid}/token.p7m")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="mdmsim_Token_2026-03-01T09-00-00Z_smime.p7m"'
    )
    p7m = tmp_path / "token_smime.p7m"
    p7m.write_bytes(response.data)
    assert b"application/pkcs7-mime" in response.data and b"enveloped-data" in response.data

    opened = subprocess.run(
        [OPENSSL, "smime", "-decrypt", "-in", str(p7m), "-inkey", str(key)], capture_output=True, check=True
    )
    text = opened.stdout.decode()
    assert "Content-Type: text/plain" in text
    inner = text.split("-----BEGIN MESSAGE-----")[1].split("-----END MESSAGE-----")[0]
    assert json.loads(inner) == _ok(api.get(f"/api/servers/{uuid}/token")) == apple.dep.credentials(uuid)
    stripped = subprocess.run(
        [OPENSSL, "smime", "-decrypt", "-text", "-in", str(p7m), "-inkey", str(key)],
        capture_output=True,
        check=True,
    )
    assert stripped.stdout.startswith(b"-----BEGIN MESSAGE-----")

    refused = subprocess.run(
        [OPENSSL, "smime", "-decrypt", "-in", str(p7m), "-inkey", str(wrong_key)], capture_output=True
    )
    # With a wrong RSA key OpenSSL usually fails, but its Bleichenbacher countermeasure decrypts to a
    # random content key, so about 1 run in 256 "succeeds" with garbage: what matters is the secret.
    assert b"consumer_key" not in refused.stdout
    assert creds_not_in(refused.stdout, apple.dep.credentials(uuid))


def creds_not_in(output: bytes, credentials: dict[str, str]) -> bool:
    return not any(value.encode() in output for value in credentials.values() if isinstance(value, str))


def test_public_key_must_be_an_rsa_certificate(api: Any, apple: Any, rsa_identity: Any) -> None:
    uuid = apple.server["server_uuid"]
    key, _ = rsa_identity("vendor")
    for body in (
        b"hello",
        key.read_bytes(),
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ):
        assert (
            "PEM certificate"
            in _ok_error(api.post(f"/api/servers/{uuid}/public-key", data=body), 400)["error"]
        )
    assert api.post(f"/api/servers/{uuid}/public-key", json={"certificate": 5}).status_code == 400
    assert api.post("/api/servers/NOPE/public-key", data=b"x").status_code in (400, 404)


def test_devices_are_added_listed_and_edited(api: Any, apple: Any) -> None:
    uuid = apple.server["server_uuid"]
    generated = _ok(
        api.post("/api/devices", json={"count": 3, "server_uuid": uuid, "order_number": "PO-7"}), 201
    )
    assert generated["added"] == 3
    named = _ok(api.post("/api/devices", json={"serial_numbers": ["C02XK1ABCDEF", "DMPXYZ123456"]}), 201)
    assert named["serial_numbers"] == ["C02XK1ABCDEF", "DMPXYZ123456"]
    again = _ok(api.post("/api/devices", json={"serial_numbers": ["C02XK1ABCDEF"]}), 201)
    assert again == {"added": 0, "serial_numbers": [], "existing": ["C02XK1ABCDEF"]}
    listed = _ok(api.get("/api/devices?limit=2&offset=1"))
    assert listed["total"] == 5 and len(listed["devices"]) == 2
    mine = _ok(api.get(f"/api/devices?server_uuid={uuid}"))
    assert mine["total"] == 3 and {d["order_number"] for d in mine["devices"]} == {"PO-7"}
    device = _ok(api.get("/api/devices?offset=3"))["devices"][0]
    assert device["model"] and device["device_family"] in ("iPhone", "iPad") and device["server_uuid"] is None

    edited = _ok(api.patch("/api/devices/C02XK1ABCDEF", json={"asset_tag": "A-1", "color": "RED"}))
    assert (edited["asset_tag"], edited["color"]) == ("A-1", "RED")
    assert api.patch("/api/devices/C02XK1ABCDEF", json={"model": "x"}).status_code == 400
    assert api.patch("/api/devices/NOSUCH", json={"color": "x"}).status_code == 404
    for bad in (
        {"count": 0},
        {"count": "5"},
        {"serial_numbers": ["lower-case"]},
        {"serial_numbers": "X"},
        {},
    ):
        _ok_error(api.post("/api/devices", json=bad), 400)
    _ok_error(api.post("/api/devices", json={"count": 1, "server_uuid": "NOPE"}), 404)
    _ok_error(api.get("/api/devices?limit=abc"), 400)


def test_assignments_by_serials_order_and_csv(api: Any, apple: Any) -> None:
    other = apple.portal.create_server("other")["server_uuid"]
    ours = apple.server["server_uuid"]
    serials = apple.portal.generate(6, order_number="PO-9")["serial_numbers"]
    by_order = _ok(api.post("/api/assignments", json={"server_uuid": ours, "order_number": "PO-9"}))
    assert by_order["assigned"] == 6
    csv_body = "Serial Number\n" + "\n".join(serials[:2]) + "\nNOSUCH1\n"
    moved = _ok(api.post(f"/api/assignments?server_uuid={other}", data=csv_body, content_type="text/csv"))
    assert moved == {"assigned": 2, "unchanged": 0, "not_found": ["NOSUCH1"]}
    assert apple.portal.server(other)["device_count"] == 2
    assert apple.portal.serials(other) == serials[:2] and len(apple.portal.serials()) == 6
    unassigned = _ok(api.delete("/api/assignments", json={"serial_numbers": serials[2:4]}))
    assert unassigned["unassigned"] == 2 and apple.portal.server(ours)["device_count"] == 2
    _ok_error(api.post("/api/assignments", json={"serial_numbers": serials}), 400)
    _ok_error(api.post("/api/assignments", json={"server_uuid": ours}), 400)
    _ok_error(api.post("/api/assignments", json={"server_uuid": ours, "order_number": "NONE"}), 404)
    released = _ok(api.post("/api/devices/release", json={"serial_numbers": serials[:1] + ["NOSUCH2"]}))
    assert released == {"released": 1, "not_found": ["NOSUCH2"]}
    assert _ok(api.get("/api/devices"))["total"] == 5


def test_errors_are_json_never_html(api: Any) -> None:
    for response in (
        api.get("/api/nowhere"),
        api.put("/api/servers"),
        api.post("/api/terms", data=b"{oops"),
        api.post("/api/terms", json={"require_acceptance": "yes"}),
        api.post("/api/devices", data=b"x" * 2_000_000),
    ):
        assert response.status_code in (400, 404, 405, 413)
        assert isinstance(response.get_json()["error"], str)
    assert _ok(api.post("/api/terms", json={"require_acceptance": True})) == {"require_acceptance": True}
