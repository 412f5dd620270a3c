"""``--seed`` replays Apple: two services built with one seed, each on a fresh store, hand out the same
server UUIDs and OAuth keys, session tokens, profile UUIDs, cursors, push certificate ids and serials,
APNs ids and device CA; without a seed they differ. depsim's preset credentials stay as given."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from oauthlib.oauth1 import Client

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.x509 import new_private_key
from simulator.apple.activation.service import ActivationService
from simulator.apple.apns.service import APNsService, open_apns_store
from simulator.apple.dep.service import DEPService
from simulator.apple.portal.service import PortalService
from simulator.apple.pushcert.service import PushCertificateService, open_pushcert_store
from simulator.apple.store import open_apple_store

START = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
WALL = 1_772_355_600.0  # what the clients below sign with, so the OAuth window always accepts them
TOKEN = "d4" * 32
TOPIC = "com.apple.mgmt.External.11111111-2222-3333-4444-555555555555"
PROFILE = {"profile_name": "Contoso", "url": "https://mdm.example.com/enroll"}


def _apple(seed: int | None) -> dict[str, Any]:
    """One Apple (portal, DEP, activation) on a fresh store; what a seeded run should reproduce."""
    store = open_apple_store(None)
    clock = Clock(Store(None, []), start=START, frozen=True)
    portal = PortalService(store, clock, seed=seed)
    dep = DEPService(store, clock, seed=seed, wall=lambda: WALL)
    activation = ActivationService(store, clock, dep=dep, seed=seed)
    org = portal.ensure_organization(name="Contoso")
    server = portal.create_server("mdmsim")
    serials = portal.generate(3, server_uuid=server["server_uuid"])["serial_numbers"]
    oauth = Client(
        server["consumer_key"],
        client_secret=server["consumer_secret"],
        resource_owner_key=server["access_token"],
        resource_owner_secret=server["access_secret"],
        realm="ADM",
        nonce="fixed-nonce",
        timestamp=str(int(WALL)),
    )
    _, headers, _ = oauth.sign("http://localhost/session")
    token = dep.open_session(url="http://localhost/session", authorization=headers["Authorization"])
    session = dep.authenticate(token)
    profile = dep.define_profile(session, {**PROFILE, "devices": serials}, version=3)["profile_uuid"]
    page = dep.fetch_devices(session, {"limit": 2}, version=3)
    identity = activation.issue_device_identity("UDID-1", serials[0], new_private_key().public_key())
    store.close()
    return {
        "org_id": org["org_id"],
        "server": {k: server[k] for k in ("server_uuid", "consumer_key", "consumer_secret", "access_token", "access_secret")},
        "serials": serials,
        "session": token,
        "profile": profile,
        "page": page,
        "device_ca": activation.device_ca.certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "identity_serial": identity.serial_number,
    }


def test_a_seed_replays_the_portal_dep_and_activation() -> None:
    first, second = _apple(3), _apple(3)
    assert first == second
    assert len(first["server"]["consumer_key"]) == 3 + 128 and first["server"]["server_uuid"].isupper()
    assert len(first["profile"]) == 32 and first["profile"].isupper()
    other = _apple(4)
    for key in first:
        assert other[key] != first[key], key


def test_without_a_seed_nothing_repeats() -> None:
    first, second = _apple(None), _apple(None)
    for key in ("org_id", "server", "session", "profile", "device_ca", "identity_serial", "serials"):
        assert first[key] != second[key], key


def test_depsim_preset_credentials_are_kept_under_a_seed() -> None:
    keys = {k: f"{k}-depsim" for k in ("consumer_key", "consumer_secret", "access_token", "access_secret")}
    portal = PortalService(open_apple_store(None), Clock(Store(None, []), start=START, frozen=True), seed=3)
    server = portal.create_server("depsim", credentials=keys)
    assert {k: server[k] for k in keys} == keys


def _apns_ids(seed: int | None) -> list[str]:
    apns = APNsService(open_apns_store(None), Clock(Store(None, []), start=START, frozen=True), seed=seed)
    headers = {"apns-topic": TOPIC, "apns-push-type": "mdm"}
    return [str(apns.send(TOKEN, b'{"mdm": "M"}', headers).apns_id) for _ in range(2)]


def test_apns_ids_follow_the_seed() -> None:
    assert _apns_ids(3) == _apns_ids(3)
    assert len(set(_apns_ids(3))) == 2  # the second push to a token gets its own id
    assert _apns_ids(None) != _apns_ids(None)


def _csr() -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "push")]))
        .sign(new_private_key("rsa"), hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _push_certificates(seed: int | None) -> list[tuple[str, str, str]]:
    service = PushCertificateService(open_pushcert_store(None), Clock(Store(None, []), start=START, frozen=True), seed=seed)
    created = service.create("admin@contoso.example", _csr())
    renewed = service.renew(created["id"], "admin@contoso.example", _csr())
    return [(c["id"], c["topic"], c["serial"]) for c in (created, renewed)]


def test_push_certificate_ids_and_serials_follow_the_seed() -> None:
    seeded = _push_certificates(3)
    assert seeded == _push_certificates(3)
    assert seeded[0][1] == seeded[1][1] and seeded[0][0] != seeded[1][0] and seeded[0][2] != seeded[1][2]
    unseeded = _push_certificates(None)
    assert unseeded[0][0] != _push_certificates(None)[0][0]
