"""Bad form input gets a message a person can act on, with a 4xx, never a 500 or a JSON page.

Plain HTTP against the served pages (no browser needed): these are the requests a confused admin,
a stale tab or a crawler sends, and each must come back as the page with its error shown.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from browser_stack import Env

FAKE_CERT = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"


@pytest.fixture
def web(env: Env) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=env.url, timeout=15.0) as client:
        yield client


def _page_error(reply: httpx.Response, status: int, text: str) -> None:
    assert reply.status_code == status, reply.text[:500]
    assert reply.headers["content-type"].startswith("text/html")
    assert text in reply.text, reply.text[:2000]


def test_token_forms(env: Env, web: httpx.Client) -> None:
    _page_error(web.post("/intune/enrollment/tokens", data={"tokenName": "x" * 300}), 400, "at most 200")
    sid = env.graph.post("/depOnboardingSettings", json={}).json()["id"]
    base = f"/intune/enrollment/tokens/{sid}"
    no_key = {"depToken": ("token.p7m", b"MIME-Version: 1.0\n\nnot cms", "application/pkcs7-mime")}
    _page_error(web.post(f"{base}/upload", files=no_key), 400, "generate the encryption public key first")
    assert web.post(f"{base}/key").status_code == 302
    base = f"/intune/enrollment/tokens/{sid}"
    _page_error(web.post(f"{base}/upload", data={"appleId": "a@b.c"}), 400, "Choose the token file")
    binary = {"depToken": ("token.p7m", b"\xff\xfe\x00garbage", "application/octet-stream")}
    _page_error(web.post(f"{base}/upload", files=binary), 400, "not a token")
    text = {"depToken": ("token.p7m", b"MIME-Version: 1.0\n\nnot cms", "application/pkcs7-mime")}
    _page_error(web.post(f"{base}/upload", files=text), 400, "could not be decrypted")
    _page_error(web.get("/intune/enrollment/tokens/no-such-token"), 404, "was not found")
    _page_error(web.post("/intune/enrollment/serials/sync", params={"token": sid}), 400, "upload a DEP token")


def test_push_certificate_form(web: httpx.Client) -> None:
    assert web.get("/intune/enrollment/push-certificate").status_code == 200
    _page_error(web.post("/intune/enrollment/push-certificate", data={}), 400, "Choose the certificate")
    bogus = {"certificate": ("push.pem", FAKE_CERT.encode(), "application/x-pem-file")}
    reply = web.post("/intune/enrollment/push-certificate", data={"appleIdentifier": "a@b.c"}, files=bogus)
    assert reply.status_code == 400 and 'role="alert"' in reply.text
    assert 'value="a@b.c"' in reply.text


def test_profile_form(env: Env, web: httpx.Client) -> None:
    sid = env.onboard()
    url = f"/intune/enrollment/profiles/new?token={sid}"
    _page_error(web.post(url, data={}), 400, "displayName is required")
    _page_error(web.post(url, data={"displayName": "P", "iTunesPairingMode": "sometimes"}), 400, "iTunesPairingMode must be")
    _page_error(
        web.post(url, data={"displayName": "P", "iTunesPairingMode": "requiresCertificate"}),
        400,
        "needs at least one entry in managementCertificates",
    )
    reply = web.post(
        url, data={"displayName": "P", "iTunesPairingMode": "requiresCertificate", "managementCertificates": FAKE_CERT}
    )
    _page_error(reply, 400, "is not a certificate")
    assert "bm90IGEgY2VydGlmaWNhdGU=" in reply.text  # the pasted text is kept for fixing
    _page_error(web.post(url, data={"displayName": "P" * 200}), 400, "at most 125")
    _page_error(web.post("/intune/enrollment/profiles/new?token=nope", data={}), 404, "Not Found")


def test_assignment_form(env: Env, web: httpx.Client) -> None:
    sid = env.onboard()
    url = f"/intune/enrollment/serials/assign?token={sid}"
    _page_error(web.post(url, data={"profile": "x"}), 400, "Select at least one serial")
    _page_error(web.post(url, data={"serial": "ABCD1234"}), 400, "Choose the profile")
    _page_error(web.post(url, data={"serial": "ABCD1234", "profile": "nope"}), 400, "was not found")


def test_portal_forms(env: Env, web: httpx.Client) -> None:
    _page_error(web.post("/apple/portal/servers", data={"server_name": " "}), 400, "enter a name")
    _page_error(web.post("/apple/portal/servers", data={"server_name": "mdmsim"}), 400, "already exists")
    server = env.world.default_server_uuid
    key = {"public_key": ("key.pem", b"hello", "application/x-pem-file")}
    _page_error(web.post(f"/apple/portal/servers/{server}/public-key", files=key), 400, "not a PEM certificate")
    _page_error(web.get("/apple/portal/servers/NOPE/token"), 404, "no MDM server NOPE")
    devices = "/apple/portal/devices"
    _page_error(web.post(devices, data={"source": "carrier-pigeon"}), 400, "choose devices by")
    order = {"source": "order", "order_number": "PO-1", "server_uuid": server}
    _page_error(web.post(devices, data=order), 404, "no devices in order")
    serial = env.serials()[0]
    assign = {"source": "serials", "serial_numbers": serial, "action": "assign"}
    _page_error(web.post(devices, data=assign), 400, "choose the MDM server")
    _page_error(web.post(devices, data={**assign, "server_uuid": "NOPE"}), 404, "no MDM server NOPE")
    _page_error(web.post(devices, data={**assign, "action": "shred"}), 400, "Assign to Server or Unassign")
    csv = {"csv_file": ("d.csv", b"\xff\xfe\x00\x01", "text/csv")}
    _page_error(web.post(devices, data={"source": "csv"}, files=csv), 400, "not UTF-8")
    _page_error(web.post(devices, data={"source": "csv"}), 400, "choose a CSV file")
