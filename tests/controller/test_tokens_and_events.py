"""Token keys and upload of the portal's real .p7m; Graph error shapes; enrollment state from MDM events."""

from __future__ import annotations

import base64
import plistlib

import httpx
from controller_stack import BASE, Stack
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from mdm.protocol import cms
from mdm.protocol import x509 as mx509

SETTINGS = "/deviceManagement/depOnboardingSettings"


def test_public_key_is_rsa_2048_and_persisted(stack: Stack) -> None:
    sid = stack.api.post(SETTINGS, json={}).json()["id"]
    made = stack.api.post(f"{SETTINGS}/{sid}/generateEncryptionPublicKey").json()["value"]
    cert = x509.load_pem_x509_certificate(made.encode())
    assert isinstance(cert.public_key(), rsa.RSAPublicKey) and cert.public_key().key_size == 2048
    again = stack.make_controller().get_encryption_key(sid)  # a restarted controller: same key
    assert stack.api.get(f"{SETTINGS}/{sid}/getEncryptionPublicKey").json()["value"] == made == again


def test_upload_of_the_portals_p7m_stores_the_token(onboarded) -> None:
    stack, sid = onboarded
    setting = stack.setting(sid)
    creds = stack.dep.credentials(stack.server_uuid)
    assert setting["tokenType"] == "dep"
    assert setting["tokenName"] == "Contoso Intune"  # the MDM server's name in the portal
    assert setting["appleIdentifier"] == "admin@contoso.example"
    assert setting["appleServerUuid"] == stack.server_uuid
    assert setting["organizationName"] == "Contoso Pharmaceuticals"
    assert setting["tokenExpirationDateTime"] == creds["access_token_expiry"]
    listed = stack.api.get(SETTINGS).json()["value"]
    assert [s["id"] for s in listed] == [sid]


def _p7m(stack: Stack, payload: str, cert_pem: str) -> str:
    cert = mx509.cert_from_pem(cert_pem)
    return cms.smime_envelope(cms.text_part(payload), cert).decode()


def test_token_errors_are_graph_400s(stack: Stack) -> None:
    sid = stack.api.post(SETTINGS, json={"tokenName": "T"}).json()["id"]
    upload = f"{SETTINGS}/{sid}/uploadDepToken"
    no_key = stack.api.post(upload, json={"appleId": "a@b.c", "depToken": "x"})
    assert (no_key.status_code, no_key.json()["error"]["code"]) == (400, "encryptionKeyMissing")

    pem = stack.api.get(f"{SETTINGS}/{sid}/getEncryptionPublicKey").json()["value"]
    garbage = stack.api.post(upload, json={"appleId": "a@b.c", "depToken": "not a p7m"})
    assert (garbage.status_code, garbage.json()["error"]["code"]) == (400, "invalidDepToken")

    other_key = mx509.new_private_key("rsa")
    other = mx509.cert_to_pem(mx509.self_signed(other_key, "someone else", stack.clock.now())).decode()
    wrong = stack.api.post(upload, json={"depToken": _p7m(stack, '{"consumer_key":"x"}', other)})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (400, "invalidDepToken")

    expired = dict(stack.dep.credentials(stack.server_uuid), access_token_expiry="2020-01-01T00:00:00Z")
    import json

    old = stack.api.post(upload, json={"depToken": _p7m(stack, json.dumps(expired), pem)})
    assert (old.status_code, old.json()["error"]["code"]) == (400, "depTokenExpired")
    assert stack.setting(sid)["tokenType"] == "none"

    sync = stack.sync(sid)
    assert (sync.status_code, sync.json()["error"]["code"]) == (400, "depTokenRequired")


def test_graph_errors_never_leak_html_or_500(stack: Stack) -> None:
    for method, path, status in [
        ("GET", f"{SETTINGS}/nope", 404),
        ("POST", f"{SETTINGS}/nope/syncWithAppleDeviceEnrollmentProgram", 404),
        ("GET", "/deviceManagement/nothingHere", 404),
        ("PUT", SETTINGS, 405),
    ]:
        sent_id = f"script-{method}-{status}"
        reply = stack.api.request(method, path, headers={"client-request-id": sent_id})
        assert reply.status_code == status
        error = reply.json()["error"]
        assert set(error) == {"code", "message", "innerError"}
        # what scripts quote when they report a Graph failure: the ids (ours and theirs, echoed) and when
        inner = error["innerError"]
        assert inner["client-request-id"] == reply.headers["client-request-id"] == sent_id
        assert inner["request-id"] == reply.headers["request-id"] != sent_id
        assert inner["date"] == stack.clock.now().strftime("%Y-%m-%dT%H:%M:%S")
    bad_json = stack.api.post(SETTINGS, content=b"{nope", headers={"Content-Type": "application/json"})
    assert (bad_json.status_code, bad_json.json()["error"]["code"]) == (400, "badRequest")


def test_a_second_setting_cannot_take_the_same_mdm_server(onboarded) -> None:
    stack, sid = onboarded
    reply_sid = stack.api.post(SETTINGS, json={}).json()["id"]
    pem = stack.api.get(f"{SETTINGS}/{reply_sid}/getEncryptionPublicKey").json()["value"]
    portal = httpx.Client(transport=httpx.WSGITransport(app=stack.wsgi), base_url=f"{BASE}/apple/portal")
    portal.post(f"/api/servers/{stack.server_uuid}/public-key", content=pem)
    p7m = portal.get(f"/api/servers/{stack.server_uuid}/token.p7m").text
    reply = stack.api.post(f"{SETTINGS}/{reply_sid}/uploadDepToken", json={"depToken": p7m})
    assert (reply.status_code, reply.json()["error"]["code"]) == (409, "tokenAlreadyUploaded")
    assert stack.api.delete(f"{SETTINGS}/{sid}").status_code == 204
    assert stack.api.post(f"{SETTINGS}/{reply_sid}/uploadDepToken", json={"depToken": p7m}).status_code == 204


def _event(topic: str, payload: dict, **extra: object) -> dict:
    raw = base64.b64encode(plistlib.dumps(payload)).decode()
    key = "acknowledge_event" if topic == "mdm.Connect" else "checkin_event"
    return {"topic": topic, "event_id": "e1", key: {"udid": payload.get("UDID"), "raw_payload": raw, **extra}}


def test_mdm_events_drive_enrollment_state(onboarded) -> None:
    stack, sid = onboarded
    stack.sync(sid)
    serial = stack.devices(sid)[7]["serialNumber"]
    udid = "00008030-001A2B3C4D5E6F70"
    hook = "/webhooks/mdm"

    def state() -> dict:
        return stack.devices(sid, **{"$filter": f"serialNumber eq '{serial}'"})[0]

    authenticate = {
        "MessageType": "Authenticate",
        "UDID": udid,
        "SerialNumber": serial,
        "Topic": "com.apple.mgmt.x",
    }
    assert stack.api.post(hook, json=_event("mdm.Authenticate", authenticate)).status_code == 204
    assert state()["enrollmentState"] == "notContacted"
    assert state()["lastContactedDateTime"] == "2026-03-02T09:00:00Z"

    stack.clock.advance(minutes=3)
    token_update = {"MessageType": "TokenUpdate", "UDID": udid, "Token": b"t", "PushMagic": "m"}
    stack.api.post(hook, json=_event("mdm.TokenUpdate", token_update))
    assert state()["enrollmentState"] == "enrolled"
    assert state()["lastContactedDateTime"] == "2026-03-02T09:03:00Z"

    erase = {"UDID": udid, "Status": "Acknowledged", "CommandUUID": "c1"}
    stack.api.post(hook, json=_event("mdm.Connect", erase, request_type="EraseDevice", status="Acknowledged"))
    assert state()["enrollmentState"] == "pendingReset"

    stack.api.post(hook, json=_event("mdm.TokenUpdate", token_update))
    stack.controller.handle_mdm_event(_event("mdm.CheckOut", {"MessageType": "CheckOut", "UDID": udid}))
    assert state()["enrollmentState"] == "unknown"

    assert (
        stack.api.post(
            hook, json={"topic": "mdm.Authenticate", "checkin_event": {"raw_payload": "%%"}}
        ).status_code
        == 400
    )
    assert stack.api.post(hook, json=[1]).status_code == 400
