"""The ACME server's rules, request by request (RFC 8555 written by hand with ``mdm.protocol.acme``): nonces,
JWS, accounts, identifiers, ownership, bounds and problem documents. Never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator

import cbor2
import pytest
from acme_world import JWSClient, acme_serials, acme_world, csr_for, enroll_for_payload, problem
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from mdm.protocol import acme
from simulator import World


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with acme_world(devices=10, seed=49) as world:
        yield world


def _client(world: World) -> JWSClient:
    client = JWSClient(world.http, f"{world.mdm_url}/acme/directory")
    assert client.account().status_code == 201
    return client


def test_the_directory_and_nonces(world: World) -> None:
    reply = world.http.get("/mdm/acme/directory")
    assert reply.status_code == 200 and reply.headers["Cache-Control"] == "no-store"
    directory = reply.json()
    assert {k: directory[k] for k in ("newNonce", "newAccount", "newOrder")} == {
        "newNonce": f"{world.mdm_url}/acme/new-nonce", "newAccount": f"{world.mdm_url}/acme/new-account",
        "newOrder": f"{world.mdm_url}/acme/new-order"}
    head, get = world.http.head("/mdm/acme/new-nonce"), world.http.get("/mdm/acme/new-nonce")
    assert (head.status_code, get.status_code) == (200, 204)
    assert head.headers["Replay-Nonce"] != get.headers["Replay-Nonce"]
    assert acme.b64url_decode(head.headers["Replay-Nonce"])  # base64url, as certbot decodes it


def test_a_nonce_is_good_once_and_a_refusal_carries_the_next(world: World) -> None:
    client = JWSClient(world.http, f"{world.mdm_url}/acme/directory")
    nonce = client.fresh_nonce()
    first = client.post(client.directory["newAccount"], {"termsOfServiceAgreed": True}, nonce=nonce, jwk=True)
    assert first.status_code == 201
    again = client.post(client.directory["newAccount"], {"termsOfServiceAgreed": True}, nonce=nonce, jwk=True)
    assert problem(again)[:2] == (400, "badNonce") and again.headers["Replay-Nonce"]
    made_up = client.post(client.directory["newAccount"], {}, nonce="bm90LWEtbm9uY2U", jwk=True)
    assert problem(made_up)[:2] == (400, "badNonce")
    world.clock.advance(seconds=3601)
    stale = client.post(client.directory["newAccount"], {}, nonce=client.nonce, jwk=True)
    assert problem(stale)[:2] == (400, "badNonce")  # nonces expire with world time


def test_accounts_are_named_by_key_and_requests_sign_as_rfc_8555_says(world: World) -> None:
    client = JWSClient(world.http, f"{world.mdm_url}/acme/directory")
    created = client.account()
    assert created.status_code == 201 and created.json()["status"] == "valid"
    again = client.account()  # the same key: the same account
    assert again.status_code == 200 and again.headers["Location"] == created.headers["Location"]
    stranger = JWSClient(world.http, f"{world.mdm_url}/acme/directory")
    missing = stranger.post(stranger.directory["newAccount"], {"onlyReturnExisting": True}, jwk=True)
    assert problem(missing)[:2] == (400, "accountDoesNotExist")
    unknown_kid = stranger.post(stranger.directory["newOrder"], {}, kid=f"{world.mdm_url}/acme/account/nope")
    assert problem(unknown_kid)[:2] == (400, "accountDoesNotExist")
    assert problem(client.post(client.directory["newOrder"], {}, jwk=True))[1] == "malformed"  # jwk after newAccount
    assert problem(client.post(client.directory["newAccount"], {}))[1] == "malformed"  # kid before it
    assert problem(client.post(client.directory["newOrder"], {"identifiers": []}))[:2] == (400, "malformed")
    signed = acme.sign_jws(b"{}", client.key, nonce=client.fresh_nonce(), url=f"{world.mdm_url}/acme/elsewhere",
                           kid=client.kid)
    mismatch = world.http.post(client.directory["newOrder"], content=signed,
                               headers={"Content-Type": acme.JOSE_CONTENT_TYPE})
    assert problem(mismatch)[:2] == (403, "unauthorized")
    tampered = json.loads(acme.sign_jws(b"{}", client.key, nonce=client.fresh_nonce(), url=client.directory["newOrder"],
                                        kid=client.kid))
    tampered["payload"] = acme.b64url(b'{"identifiers":[]}')
    forged = world.http.post(client.directory["newOrder"], content=json.dumps(tampered),
                             headers={"Content-Type": acme.JOSE_CONTENT_TYPE})
    assert problem(forged)[:2] == (400, "malformed") and "signature" in forged.json()["detail"]
    none_alg = {"protected": acme.b64url(json.dumps({"alg": "none", "nonce": "x", "url": "y", "kid": "z"}).encode()),
                "payload": "", "signature": ""}
    assert problem(world.http.post(client.directory["newOrder"], content=json.dumps(none_alg),
                                   headers={"Content-Type": acme.JOSE_CONTENT_TYPE}))[1] == "badSignatureAlgorithm"
    plain = world.http.post(client.directory["newOrder"], content=b"{}", headers={"Content-Type": "application/json"})
    assert problem(plain)[:2] == (415, "malformed")


def test_identifiers_are_one_time_client_identifiers_of_this_server(world: World) -> None:
    client = _client(world)
    dns = client.order("device.example", kind="dns")
    assert problem(dns)[:2] == (400, "unsupportedIdentifier")
    unknown = client.order("not-one-of-ours")
    status, kind, document = problem(unknown)
    assert (status, kind) == (400, "rejectedIdentifier") and document["identifier"]["value"] == "not-one-of-ours"
    serial = acme_serials(world)[0]
    payload = enroll_for_payload(world, serial)
    order = client.order(payload.client_identifier)
    assert order.status_code == 201 and order.json()["status"] == "pending"
    assert order.json()["identifiers"] == [{"type": acme.PERMANENT_IDENTIFIER, "value": payload.client_identifier}]
    thief = _client(world)  # another account: the identifier is taken, the order is not theirs
    assert problem(thief.order(payload.client_identifier))[1] == "rejectedIdentifier"
    assert problem(thief.post(order.headers["Location"], None))[:2] == (403, "unauthorized")
    assert problem(thief.post(order.json()["authorizations"][0], None))[:2] == (403, "unauthorized")
    early = client.finalize(order, csr_for(ec.generate_private_key(ec.SECP256R1()), world.identity(serial).udid))
    assert problem(early)[:2] == (403, "orderNotReady")
    assert client.post(order.headers["Location"], None).json()["status"] == "pending"  # POST-as-GET reads it
    late = enroll_for_payload(world, acme_serials(world)[1])
    world.clock.advance(seconds=3601)
    client.nonce = None  # the one it holds expired too
    assert problem(client.order(late.client_identifier))[1] == "rejectedIdentifier"  # expired with world time


def test_a_challenge_answer_that_is_not_an_apple_attestation_is_refused(world: World) -> None:
    serial = acme_serials(world)[2]
    client = _client(world)
    for att_obj, why in [
        ("!!", "base64url"),
        (acme.b64url(b"\xff\x00garbage"), "CBOR"),
        (acme.b64url(cbor2.dumps({"fmt": "tpm", "attStmt": {}})), "format"),
        (acme.b64url(cbor2.dumps({"fmt": "apple", "attStmt": {"x5c": []}})), "x5c"),
        (acme.b64url(cbor2.dumps({"fmt": "apple", "attStmt": {"x5c": [b"\x30\x00"]}})), "DER"),
    ]:
        order = client.order(enroll_for_payload(world, serial).client_identifier)
        challenge = client.challenge_of(order)
        status, kind, document = problem(client.post(challenge["url"], {"attObj": att_obj}))
        assert (status, kind) == (400, "badAttestationStatement") and why in document["detail"], document
        after = client.post(order.headers["Location"], None).json()
        assert after["status"] == "invalid" and after["error"]["type"].endswith("badAttestationStatement")
    order = client.order(enroll_for_payload(world, serial).client_identifier)
    missing = client.post(client.challenge_of(order)["url"], {})
    assert problem(missing)[:2] == (400, "malformed")  # and the challenge may still be answered
    assert client.challenge_of(order)["status"] == "pending"


def test_an_issued_certificate_is_downloaded_by_its_account_only(world: World) -> None:
    serial = acme_serials(world)[3]
    udid = world.identity(serial).udid
    client = _client(world)
    order = client.order(enroll_for_payload(world, serial).client_identifier)
    challenge = client.challenge_of(order)
    attested = world.devices.attest_key(serial, challenge["token"], bits=256)
    answered = client.post(challenge["url"], attested.challenge_response())
    assert answered.status_code == 200 and answered.json()["status"] == "valid"
    assert f'<{order.json()["authorizations"][0]}>;rel="up"' in answered.headers["Link"]
    bad_cn = client.finalize(order, csr_for(attested.key, "someone-else"))
    assert problem(bad_cn)[1] == "badCSR"
    # A CSR may ask for more than a device identity is for: the server gives it client authentication only.
    asked = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.CLIENT_AUTH]
    done = client.finalize(order, csr_for(attested.key, udid, asked))
    assert done.status_code == 200 and done.json()["status"] == "valid"
    certificate = client.post(done.json()["certificate"], None)
    assert certificate.headers["Content-Type"] == acme.CERT_CHAIN_CONTENT_TYPE
    assert certificate.text.count("BEGIN CERTIFICATE") == 2
    issued = x509.load_pem_x509_certificate(certificate.text.encode())
    assert list(issued.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert problem(client.finalize(order, csr_for(attested.key, udid)))[:2] == (403, "orderNotReady")
    assert problem(_client(world).post(done.json()["certificate"], None))[:2] == (403, "unauthorized")


def test_wrong_methods_unknown_objects_and_large_bodies_are_problems_too(world: World) -> None:
    assert problem(world.http.get("/mdm/acme/new-order"))[:2] == (405, "malformed")
    assert problem(world.http.get("/mdm/acme/nothing-here"))[:2] == (404, "malformed")
    client = _client(world)
    assert problem(client.post(f"{world.mdm_url}/acme/order/0000", None))[:2] == (404, "malformed")
    big = world.http.post("/mdm/acme/new-order", content=b" " * 70_000, headers={"Content-Type": acme.JOSE_CONTENT_TYPE})
    assert problem(big)[:2] == (413, "malformed") and big.headers["Replay-Nonce"]
    garbage = world.http.post("/mdm/acme/new-order", content=b"\x00{", headers={"Content-Type": acme.JOSE_CONTENT_TYPE})
    assert problem(garbage)[:2] == (400, "malformed")
