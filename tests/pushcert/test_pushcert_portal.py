"""Apple's side alone: the Push Certificates Portal's API and page, and APNs checking provider certificates."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pushcert_stack import APPLE_ID, BASE, Stack, der_b64

from mdm.protocol.x509 import UID_OID, CertificateAuthority, new_private_key

TOKEN = "c3" * 32


def _csr(key: Any = None) -> str:
    key = key or new_private_key("rsa")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Contoso MDM push")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _tampered(pem: str) -> str:
    """The same CSR with one byte of its signature changed: it still parses, but does not verify."""
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0xFF
    return x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()


def _push(stack: Stack, topic: str, cert_header: str | None) -> Any:
    headers = {"apns-topic": topic, "apns-push-type": "mdm"}
    if cert_header is not None:
        headers["X-Mdmsim-Client-Cert"] = cert_header
    return stack.http.post(f"{BASE}/apple/apns/3/device/{TOKEN}", json={"mdm": "MAGIC"}, headers=headers)


def test_csrs_apple_refuses_say_why(stack: Stack) -> None:
    cases = [
        ({"apple_id": APPLE_ID, "csr": "hello"}, "not a certificate signing request"),
        ({"apple_id": APPLE_ID, "csr": _tampered(_csr())}, "signature does not verify"),
        ({"apple_id": APPLE_ID, "csr": _csr(ec.generate_private_key(ec.SECP256R1()))}, "RSA key"),
        ({"apple_id": "not-an-apple-id", "csr": _csr()}, "apple_id"),
        ({"apple_id": APPLE_ID}, "no certificate signing request"),
    ]
    for body, words in cases:
        reply = stack.apple("POST", "/api/certificates", json=body)
        assert reply.status_code == 400, body
        assert words in reply.json()["error"]
    assert stack.apple("POST", "/api/certificates", content=b"[1]").status_code == 400
    assert stack.apple("GET", "/api/certificates/nope").status_code == 404
    assert stack.apple("GET", "/api/certificates").json() == {"certificates": []}


def test_download_list_and_revoke(stack: Stack) -> None:
    issued = stack.create_at_apple(_csr())
    pem = stack.apple("GET", f"/api/certificates/{issued['id']}.pem")
    assert pem.status_code == 200 and pem.headers["content-type"] == "application/x-pem-file"
    assert pem.text == issued["certificate"]
    assert "attachment" in pem.headers["content-disposition"]
    [listed] = stack.apple("GET", "/api/certificates", params={"apple_id": APPLE_ID}).json()["certificates"]
    assert {k: listed[k] for k in ("apple_id", "topic", "serial", "not_after", "status")} == {
        "apple_id": APPLE_ID,
        "topic": issued["topic"],
        "serial": issued["serial"],
        "not_after": issued["not_after"],
        "status": "active",
    }
    assert stack.apple("GET", "/api/certificates", params={"apple_id": "x@y.z"}).json()["certificates"] == []

    cert = x509.load_pem_x509_certificate(issued["certificate"].encode())
    assert stack.pushcert.is_current(cert) == (True, f"current: current push certificate for {issued['topic']}")
    revoked = stack.apple("POST", f"/api/certificates/{issued['id']}/revoke").json()
    assert revoked["status"] == "revoked" and revoked["revoked_at"] is not None
    ok, why = stack.pushcert.is_current(cert)
    assert not ok and why.startswith("revoked:")
    assert _push(stack, issued["topic"], der_b64(cert)).json() == {"reason": "Forbidden"}
    renew = stack.renew_at_apple(issued["id"], _csr())
    assert renew.status_code == 409 and "create a new certificate" in renew.json()["error"]


def test_apns_accepts_only_a_current_certificate_for_its_own_topic(stack: Stack) -> None:
    issued = stack.create_at_apple(_csr())
    cert = x509.load_pem_x509_certificate(issued["certificate"].encode())
    topic = issued["topic"]

    assert _push(stack, topic, None).json() == {"reason": "MissingProviderToken"}
    assert _push(stack, topic, "!!not base64").json() == {"reason": "BadCertificate"}
    other_topic = "com.apple.mgmt.External.00000000-0000-0000-0000-000000000000"
    wrong = _push(stack, other_topic, der_b64(cert))
    assert (wrong.status_code, wrong.json()) == (400, {"reason": "TopicDisallowed"})

    # A look-alike certificate with the same UID, not issued by Apple's push CA.
    fake_ca = CertificateAuthority.create("Not Apple", dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    fake = fake_ca.issue(new_private_key("rsa").public_key(), subject="APSP:fake", uid=topic, now=stack.clock.now())
    forged = _push(stack, topic, der_b64(fake))
    assert (forged.status_code, forged.json()) == (403, {"reason": "BadCertificate"})
    assert stack.pushcert.is_current(fake)[1].startswith("untrusted:")

    accepted = _push(stack, topic, der_b64(cert))
    assert accepted.status_code == 200 and accepted.headers["apns-id"]
    assert stack.apns.token_topic(TOKEN) == topic  # learnt from the first accepted push

    # After a renewal the old certificate is replaced: only the newest one may push.
    renewed = stack.renew_at_apple(issued["id"], _csr()).json()
    assert _push(stack, topic, der_b64(cert)).json() == {"reason": "Forbidden"}
    assert stack.pushcert.is_current(cert)[1].startswith("replaced:")
    new_cert = x509.load_pem_x509_certificate(renewed["certificate"].encode())
    assert new_cert.subject.get_attributes_for_oid(UID_OID)[0].value == topic
    assert _push(stack, topic, der_b64(new_cert)).status_code == 200
    # Revoked after it pushed: APNs's next look at it must see the revocation.
    stack.apple("POST", f"/api/certificates/{renewed['id']}/revoke")
    assert _push(stack, topic, der_b64(new_cert)).json() == {"reason": "Forbidden"}
    assert stack.pushcert.is_current(new_cert)[1].startswith("revoked:")


def test_device_registers_its_token_for_a_topic(stack: Stack) -> None:
    first = stack.create_at_apple(_csr())
    second = stack.create_at_apple(_csr())
    assert first["topic"] != second["topic"]  # a new certificate is a new topic
    registered = stack.http.post(f"{BASE}/apple/apns/devices/{TOKEN}/register", json={"topic": second["topic"]})
    assert registered.json() == {"token": TOKEN, "unregistered": False, "topic": second["topic"]}
    first_cert = x509.load_pem_x509_certificate(first["certificate"].encode())
    refused = _push(stack, first["topic"], der_b64(first_cert))
    assert (refused.status_code, refused.json()) == (400, {"reason": "DeviceTokenNotForTopic"})
    bad = stack.http.post(f"{BASE}/apple/apns/devices/{TOKEN}/register", json={"topic": 7})
    assert bad.status_code == 400


def test_the_page_uploads_a_csr_and_offers_the_download(stack: Stack) -> None:
    page = stack.apple("GET", "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for control in ('<label for="apple_id">', '<label for="csr_file">', '<label for="csr_text">'):
        assert control in page.text

    upload = stack.apple(
        "POST", "/", data={"apple_id": APPLE_ID}, files={"csr_file": ("push.csr", _csr().encode(), "text/plain")}
    )
    assert upload.status_code == 303
    location = upload.headers["location"]
    assert location.startswith("/apple/portal/push-certificates/?notice=created")
    shown = stack.http.get(BASE + location)
    [issued] = stack.apple("GET", "/api/certificates").json()["certificates"]
    assert issued["topic"] in shown.text and f"/api/certificates/{issued['id']}.pem" in shown.text
    assert 'role="status"' in shown.text

    refused = stack.apple("POST", "/", data={"apple_id": APPLE_ID, "csr_text": "garbage"})
    assert refused.status_code == 400 and 'role="alert"' in refused.text
    assert "not a certificate signing request" in refused.text

    renewed = stack.apple(
        "POST",
        f"/{issued['id']}/renew",
        data={"apple_id": APPLE_ID},
        files={"csr_file": ("renew.csr", _csr().encode(), "text/plain")},
    )
    assert renewed.status_code == 303
    statuses = sorted(c["status"] for c in stack.apple("GET", "/api/certificates").json()["certificates"])
    assert statuses == ["active", "replaced"]


def test_json_is_also_accepted_as_multipart_on_the_api(stack: Stack) -> None:
    reply = stack.apple("POST", "/api/certificates", data={"apple_id": APPLE_ID}, files={"csr": ("a.csr", _csr().encode())})
    assert reply.status_code == 201 and reply.json()["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert json.loads(stack.apple("GET", f"/api/certificates/{reply.json()['id']}").text)["status"] == "active"
