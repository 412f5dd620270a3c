"""The push certificate's life as an MDM admin lives it: CSR → Apple → controller → MDM server → devices.

Expiry, renewal (same topic: devices keep working) and replacement (new topic: devices are cut off
until they enroll again) are driven by moving the world clock.
"""

from __future__ import annotations

import plistlib
from datetime import timedelta

from cryptography import x509
from cryptography.x509.oid import NameOID
from pushcert_stack import APPLE_ID, PUSH, START, Stack

from mdm.protocol.x509 import UID_OID
from simulator.apple.pushcert.service import CA_NAME


def _subject(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    return str(cert.subject.get_attributes_for_oid(oid)[0].value)


def test_enrollment_profiles_need_an_uploaded_push_certificate(stack: Stack) -> None:
    sid = stack.onboard_dep()
    refused = stack.create_profile(sid)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "applePushNotificationCertificateRequired"
    assert "Upload an Apple MDM push certificate before creating enrollment profiles" in error["message"]

    state = stack.push_certificate()
    assert state["certificateUploadStatus"] == "notUploaded" and state["topicIdentifier"] is None
    assert any("Upload an Apple MDM push certificate" in w for w in state["warnings"])

    issued = stack.create_at_apple(stack.csr())
    assert stack.upload(issued["certificate"]).status_code == 200
    assert stack.create_profile(sid).status_code == 201


def test_push_certificate_from_csr_to_device_through_expiry_renewal_and_a_new_topic(stack: Stack) -> None:
    # 1. The controller's CSR, the same one until a certificate is uploaded.
    csr = stack.csr()
    assert stack.csr() == csr
    assert x509.load_pem_x509_csr(csr.encode()).public_key().key_size == 2048

    # 2. Apple issues the push certificate: UID = topic, CN = APSP:<uuid>, one year of world time.
    issued = stack.create_at_apple(csr)
    cert = x509.load_pem_x509_certificate(issued["certificate"].encode())
    topic = _subject(cert, UID_OID)
    assert topic.startswith("com.apple.mgmt.External.") and issued["topic"] == topic
    assert _subject(cert, NameOID.COMMON_NAME) == "APSP:" + topic.removeprefix("com.apple.mgmt.External.")
    assert str(cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value) == CA_NAME
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=365)
    assert cert.not_valid_before_utc == START

    # 3. Uploaded to the controller, which hands it to the MDM server: the topic is the certificate's UID.
    uploaded = stack.upload(issued["certificate"])
    assert uploaded.status_code == 200, uploaded.text
    state = uploaded.json()
    assert state["topicIdentifier"] == topic and state["appleIdentifier"] == APPLE_ID
    assert state["certificateSerialNumber"] == format(cert.serial_number, "x")
    assert state["certificateUploadStatus"] == "success" and state["topicChanged"] is False
    assert state["expired"] is False and state["expiryWarning"] is False
    assert stack.mdm.topic == topic
    assert stack.mdm_api("GET", "/push-certificate").json()["topic"] == topic

    # 4. DEP: a profile, a device assigned, the device enrolls with that topic.
    sid = stack.onboard_dep()
    assert stack.create_profile(sid).status_code == 201
    serial = stack.portal.serials(stack.server_uuid)[0]
    device, mdm_payload = stack.enroll(serial)
    assert mdm_payload["Topic"] == topic
    assert stack.imported(sid, serial)["enrollmentState"] == "enrolled"

    # 5. A command wakes the device by push: APNs delivers it for the certificate's topic.
    command = stack.command(device)
    [notification] = stack.notifications(device)
    assert notification["topic"] == topic and notification["payload"] == {"mdm": device.push_magic}
    assert plistlib.loads(device.connect("Idle").get_data())["CommandUUID"] == command
    device.connect("Acknowledged", command)

    # 6. A year later the certificate has expired: APNs refuses with Apple's reason; the controller says so.
    stack.clock.advance(days=366)
    late = stack.command(device)
    assert stack.notifications(device) == []
    push = stack.push_state(device)
    assert push["failed"] == 1 and push["last_error"] == "403 Forbidden"
    state = stack.push_certificate()
    assert state["expired"] is True and state["daysUntilExpiration"] is None
    assert any("expired" in w and APPLE_ID in w for w in state["warnings"])
    assert stack.apple("GET", "/api/certificates").json()["certificates"][0]["status"] == "expired"
    # The device is not woken, but a device that polls by itself still gets its command.
    assert plistlib.loads(device.connect("Idle").get_data())["CommandUUID"] == late
    device.connect("Acknowledged", late)

    # 7. Renewed with the same Apple ID: same topic, new serial and expiry; pushes work without re-enrolling.
    assert stack.renew_at_apple(issued["id"], stack.csr(), apple_id="someone-else@contoso.example").status_code == 403
    renewal = stack.renew_at_apple(issued["id"], stack.csr())
    assert renewal.status_code == 201, renewal.text
    renewed = renewal.json()
    assert renewed["topic"] == topic and renewed["serial"] != issued["serial"]
    assert renewed["not_after"] > issued["not_after"]
    listed = {c["id"]: c["status"] for c in stack.apple("GET", "/api/certificates").json()["certificates"]}
    assert listed == {issued["id"]: "replaced", renewed["id"]: "active"}
    state = stack.upload(renewed["certificate"]).json()
    assert state["topicIdentifier"] == topic and state["topicChanged"] is False and state["expired"] is False
    stack.command(device)
    [notification] = stack.notifications(device)
    assert notification["topic"] == topic
    assert stack.push_state(device)["last_status"] == 200

    # 8. A new certificate instead of a renewal: a new topic. The old device cannot be reached, and
    #    the controller says so, until it enrolls again.
    replacement = stack.create_at_apple(stack.csr())
    new_topic = replacement["topic"]
    assert new_topic != topic
    state = stack.upload(replacement["certificate"]).json()
    assert state["topicIdentifier"] == new_topic and state["topicChanged"] is True
    assert state["previousTopicIdentifier"] == topic and state["devicesRequiringReenrollmentCount"] == 1
    assert any("enroll again" in w for w in state["warnings"])
    assert stack.imported(sid, serial)["reenrollmentRequired"] is True
    assert stack.push_certificate()["devicesRequiringReenrollmentCount"] == 1

    stack.command(device)
    assert stack.notifications(device) == []
    assert stack.push_state(device)["last_error"] == "400 DeviceTokenNotForTopic"

    # Enrolling again (a new profile, a new token for the new topic) makes the device reachable.
    again, mdm_payload = stack.enroll(serial, udid=device.udid)
    assert mdm_payload["Topic"] == new_topic
    stack.command(again)
    [notification] = stack.notifications(again)
    assert notification["topic"] == new_topic
    assert stack.imported(sid, serial)["reenrollmentRequired"] is False
    state = stack.push_certificate()
    assert state["devicesRequiringReenrollmentCount"] == 0 and state["topicChanged"] is False


def test_expiry_warning_in_the_last_thirty_days(stack: Stack) -> None:
    stack.upload(stack.create_at_apple(stack.csr())["certificate"])
    stack.clock.advance(days=340)
    state = stack.push_certificate()
    assert state["expiryWarning"] is True and state["expired"] is False
    assert state["daysUntilExpiration"] == 25
    assert any("expires in 25 day(s)" in w for w in state["warnings"])


def test_upload_errors_are_graph_400s_and_recorded(stack: Stack) -> None:
    other = stack.pushcert.create(APPLE_ID, _foreign_csr())
    refused = stack.upload(other["certificate"])
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "certificateDoesNotMatchRequest"
    state = stack.push_certificate()
    assert state["certificateUploadStatus"] == "failed"
    assert "certificate signing request" in state["certificateUploadFailureReason"]

    assert stack.upload("not a certificate").json()["error"]["code"] == "invalidCertificate"
    missing_id = stack.graph("PATCH", PUSH, json={"certificate": other["certificate"]})
    assert missing_id.status_code == 400 and "appleIdentifier" in missing_id.json()["error"]["message"]

    issued = stack.create_at_apple(stack.csr())
    stack.clock.advance(days=400)
    expired = stack.upload(issued["certificate"])
    assert expired.status_code == 400 and expired.json()["error"]["code"] == "certificateExpired"
    assert stack.mdm_api("GET", "/push-certificate").status_code == 404  # nothing reached the MDM server


def test_mdm_server_refuses_a_certificate_without_its_key(stack: Stack) -> None:
    issued = stack.create_at_apple(stack.csr())
    from mdm.protocol.x509 import key_to_pem, new_private_key

    reply = stack.mdm_api(
        "PUT",
        "/push-certificate",
        json={"certificate": issued["certificate"], "key": key_to_pem(new_private_key("ec")).decode()},
    )
    assert reply.status_code == 400 and reply.json() == {"error": "push certificate and key do not match"}


def _foreign_csr() -> str:
    """A CSR made elsewhere (another tenant's key)."""
    from cryptography.hazmat.primitives import hashes, serialization

    from mdm.protocol.x509 import new_private_key

    key = new_private_key("rsa")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "elsewhere")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()
