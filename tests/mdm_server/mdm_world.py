"""Helpers for the MDM server's tests (fixtures are in conftest.py).

A small world: MDM server + fake APNs + a fake IdP on one WSGI dispatcher.

Devices here are written from Apple's documentation with ``cryptography`` directly (no simulator
device code): they sign bodies with PKCS#7 and talk HTTP through Flask test clients.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import plistlib
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from flask import Flask, Response, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.server import http as mdm_http
from mdm.server.service import MDMService
from mdm.server.store import open_mdm_store
from simulator.apple.apns import http as apns_http
from simulator.apple.apns.service import APNsService, open_apns_store

BASE = "http://mdmsim.test"
START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
IDP_PATH = "/idp/adfs/services/trust/13/UsernameMixed"
IDP_USERS = {"alice@contoso.com": "correct horse"}


# -- crypto written from the docs ----------------------------------------------------------------------
def make_ca(name: str, now: dt.datetime = START) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(
    ca: tuple[x509.Certificate, Any], cn: str, now: dt.datetime = START, days: int = 365
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca[1], hashes.SHA256())
    )
    return cert, key


def pkcs7_sign(data: bytes, cert: x509.Certificate, key: Any, *, detached: bool) -> bytes:
    options = [pkcs7.PKCS7Options.Binary]
    if detached:
        options.append(pkcs7.PKCS7Options.DetachedSignature)
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(data)
        .add_signer(cert, key, hashes.SHA256())
        .sign(serialization.Encoding.DER, options)
    )


def mdm_signature(body: bytes, cert: x509.Certificate, key: Any, *, detached: bool = True) -> str:
    return base64.b64encode(pkcs7_sign(body, cert, key, detached=detached)).decode()


# -- a tiny fake IdP: WS-Trust 1.3 Username/Mixed ------------------------------------------------------
SAML_OK = """<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>
<trust:RequestSecurityTokenResponseCollection xmlns:trust="http://docs.oasis-open.org/ws-sx/ws-trust/200512">
<trust:RequestSecurityTokenResponse><trust:RequestedSecurityToken>
<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:1.0:assertion" MajorVersion="1" MinorVersion="1">
<saml:AttributeStatement><saml:Subject><saml:NameIdentifier>{user}</saml:NameIdentifier></saml:Subject>
<saml:Attribute AttributeName="upn" AttributeNamespace="http://schemas.xmlsoap.org/claims">
<saml:AttributeValue>{user}</saml:AttributeValue></saml:Attribute></saml:AttributeStatement>
</saml:Assertion></trust:RequestedSecurityToken></trust:RequestSecurityTokenResponse>
</trust:RequestSecurityTokenResponseCollection></s:Body></s:Envelope>"""
SOAP_FAULT = """<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault>
<s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value xmlns:a="http://docs.oasis-open.org/ws-sx/ws-trust/200512">
a:FailedAuthentication</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">
ID3242: The security token could not be authenticated or authorized.</s:Text></s:Reason>
</s:Fault></s:Body></s:Envelope>"""


def fake_idp() -> Flask:
    import xml.etree.ElementTree as ET

    app = Flask("fake_idp")
    app.config["requests"] = []

    @app.post("/adfs/services/trust/13/UsernameMixed")
    def username_mixed() -> Response:
        root = ET.fromstring(request.get_data())
        ns = {
            "o": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
            "s": "http://www.w3.org/2003/05/soap-envelope",
        }
        user = root.findtext("s:Header/o:Security/o:UsernameToken/o:Username", namespaces=ns)
        password = root.findtext("s:Header/o:Security/o:UsernameToken/o:Password", namespaces=ns)
        app.config["requests"].append((request.mimetype, user))
        if user in IDP_USERS and IDP_USERS[user] == password:
            return Response(SAML_OK.format(user=user), mimetype="application/soap+xml")
        return Response(SOAP_FAULT, status=500, mimetype="application/soap+xml")

    return app


def fake_webhook() -> Flask:
    app = Flask("fake_webhook")
    app.config["events"] = []

    @app.post("/hook")
    def hook() -> Response:
        app.config["events"].append(request.get_json())
        return Response("", 200)

    return app


# -- the world ----------------------------------------------------------------------------------------
@dataclass
class World:
    clock: Clock
    mdm: MDMService
    apns: APNsService
    wsgi: Any
    http: httpx.Client
    apple_ca: tuple[x509.Certificate, Any]
    idp: Flask
    webhook: Flask
    idp_enabled: list[bool] = field(default_factory=lambda: [True])

    def dump(self) -> list[str]:
        """Every row of the MDM store, to prove a refused request changed nothing."""
        snapshot = self.mdm.store.snapshot()
        try:
            return list(snapshot.iterdump())
        finally:
            snapshot.close()


def build_world(
    tmp_path: Any = None, *, synchronous: bool = True, apns_before: Any = None, seed: int | None = None
) -> World:
    clock = Clock(Store(None, []), start=START, frozen=True)
    store = open_mdm_store(tmp_path / "mdm.db" if tmp_path is not None else None)
    apple_ca = make_ca("Test Apple iPhone Device CA")
    apns = APNsService(open_apns_store(None), clock)
    idp = fake_idp()
    webhook = fake_webhook()
    holder: dict[str, Any] = {}

    def wsgi(environ: Any, start_response: Any) -> Any:
        return holder["app"](environ, start_response)

    http = httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url=BASE)
    world_flags = [True]
    mdm = MDMService(
        store,
        clock,
        trust_roots=[apple_ca[0]],
        http=http,
        base_url=lambda: f"{BASE}/mdm",
        apns_url=lambda: f"{BASE}/apple/apns",
        idp_url=lambda: f"{BASE}{IDP_PATH}" if world_flags[0] else None,
        webhook_urls=lambda: [f"{BASE}/hooks/hook"],
        seed=seed,
        synchronous=synchronous,
    )
    root = Flask("root")
    holder["app"] = DispatcherMiddleware(
        root,
        {
            "/mdm": mdm_http.create_app(mdm),
            "/apple/apns": apns_http.create_app(apns, before=apns_before),
            "/idp": idp,
            "/hooks": webhook,
        },
    )
    return World(clock, mdm, apns, holder["app"], http, apple_ca, idp, webhook, world_flags)


@dataclass
class Device:
    """A device that already holds an MDM identity; speaks check-in and connect with Mdm-Signature."""

    client: Any
    udid: str
    cert: x509.Certificate
    key: Any
    token: bytes = field(default_factory=lambda: os.urandom(32))
    push_magic: str = "PUSH-MAGIC-1"
    serial_number: str = "C02TEST"

    def put(
        self,
        path: str,
        msg: dict[str, Any] | bytes,
        *,
        sign_with: tuple[Any, Any] | None = None,
        signature: str | None = None,
        binary: bool = False,
    ) -> Any:
        body = (
            msg
            if isinstance(msg, bytes)
            else plistlib.dumps(msg, fmt=plistlib.FMT_BINARY if binary else plistlib.FMT_XML)
        )
        cert, key = sign_with or (self.cert, self.key)
        headers = {"Mdm-Signature": signature if signature is not None else mdm_signature(body, cert, key)}
        content_type = (
            "application/x-apple-aspen-mdm-checkin" if path.endswith("checkin") else ("application/xml")
        )
        return self.client.put(path, data=body, headers=headers, content_type=content_type)

    def checkin(self, msg: dict[str, Any], **kw: Any) -> Any:
        return self.put("/mdm/checkin", {"UDID": self.udid, **msg}, **kw)

    def connect(self, status: str = "Idle", command_uuid: str | None = None, **extra: Any) -> Any:
        msg: dict[str, Any] = {"UDID": self.udid, "Status": status, **extra}
        if command_uuid:
            msg["CommandUUID"] = command_uuid
        return self.put("/mdm/connect", msg)

    def authenticate(self, topic: str) -> Any:
        return self.checkin(
            {
                "MessageType": "Authenticate",
                "Topic": topic,
                "SerialNumber": self.serial_number,
                "ProductName": "iPhone15,2",
                "OSVersion": "17.4",
                "BuildVersion": "21E219",
            }
        )

    def token_update(self, topic: str, awaiting: bool = False) -> Any:
        return self.checkin(
            {
                "MessageType": "TokenUpdate",
                "Topic": topic,
                "Token": self.token,
                "PushMagic": self.push_magic,
                "AwaitingConfiguration": awaiting,
                "UnlockToken": b"unlock",
            }
        )

    def enroll(self, topic: str) -> None:
        assert self.authenticate(topic).status_code == 200
        assert self.token_update(topic).status_code == 200


def enqueue(client: Any, udids: list[str], command: dict[str, Any], **extra: Any) -> str:
    response = client.post("/mdm/api/v1/commands", json={"udids": udids, "command": command, **extra})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["command_uuid"]
