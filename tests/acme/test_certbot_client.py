"""certbot's ``acme`` library (a standard ACME client from PyPI, unmodified) against ``/mdm/acme/directory``
over real sockets: an account, a ``permanent-identifier`` order, ``device-attest-01`` answered with an
attestation the world's simulated device produced, and the finalize. Then what it must be refused:
a wrong nonce, another device's serial, a chain to another root, a CSR for another key; nothing issued.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import josepy as jose
import pytest
from acme import challenges, client, messages
from acme_world import acme_serials, acme_world, csr_for, enroll_for_payload
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mdm.protocol import acme
from simulator import World
from simulator.device.acme_enroll import KeyAttestation

PERMANENT = messages.IdentifierType(acme.PERMANENT_IDENTIFIER)  # certbot knows dns and ip; this registers it


@challenges.ChallengeResponse.register
class DeviceAttest01Response(challenges.ChallengeResponse):
    """draft-ietf-acme-device-attest's answer: ``{"attObj": base64url(CBOR)}``."""

    typ = acme.DEVICE_ATTEST_01
    att_obj: str = jose.field("attObj")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[World, Any]]:
    with acme_world(devices=8, seed=43) as world, world.serve() as served:
        yield world, served


@pytest.fixture(autouse=True)
def _no_poll_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """certbot sleeps a second before its first poll of a finalized order; ours is valid at once."""
    monkeypatch.setattr(client.time, "sleep", lambda seconds: None)


def _certbot(world: World) -> client.ClientV2:
    key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(key, alg=jose.ES256, user_agent="certbot-acme-test")
    directory = client.ClientV2.get_directory(f"{world.mdm_url}/acme/directory", net)
    acme_client = client.ClientV2(directory, net)
    acme_client.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    return acme_client


def _order(acme_client: client.ClientV2, client_identifier: str) -> tuple[messages.OrderResource, messages.ChallengeBody]:
    """newOrder for the permanent-identifier (certbot's ``new_order`` only builds dns/ip from a CSR)."""
    directory = acme_client.directory
    placed = acme_client.net.post(directory["newOrder"], messages.NewOrder(
        identifiers=[messages.Identifier(typ=PERMANENT, value=client_identifier)]), new_nonce_url=directory["newNonce"])
    order = messages.Order.from_json(placed.json())
    authz_url = order.authorizations[0]
    authz = messages.Authorization.from_json(
        acme_client.net.post(authz_url, None, new_nonce_url=directory["newNonce"]).json())
    challb = next(c for c in authz.challenges if c.chall.to_partial_json().get("type") == acme.DEVICE_ATTEST_01)
    resource = messages.OrderResource(body=order, uri=placed.headers["Location"],
                                      authorizations=[messages.AuthorizationResource(body=authz, uri=authz_url)])
    return resource, challb


def _token(challb: messages.ChallengeBody) -> str:
    return str(challb.chall.to_partial_json()["token"])


def _answer(attestation: KeyAttestation) -> DeviceAttest01Response:
    return DeviceAttest01Response(att_obj=attestation.challenge_response()["attObj"])


def _deadline() -> dt.datetime:
    return dt.datetime.now() + dt.timedelta(seconds=20)


def test_certbot_orders_attests_and_finalizes_for_the_attested_key(served: tuple[World, Any]) -> None:
    world, _ = served
    serial = acme_serials(world)[0]
    udid = world.identity(serial).udid
    payload = enroll_for_payload(world, serial)
    assert payload.hardware_bound and payload.attest and payload.key_type == "ECSECPrimeRandom"
    acme_client = _certbot(world)
    orderr, challb = _order(acme_client, payload.client_identifier)
    assert orderr.body.status == messages.STATUS_PENDING

    attested = world.devices.attest_key(serial, _token(challb))  # the world's device makes and attests the key
    challr = acme_client.answer_challenge(challb, _answer(attested))
    assert challr.body.status == messages.STATUS_VALID

    csr = csr_for(attested.key, udid)  # signed inside the device's Secure Enclave
    orderr = orderr.update(csr_pem=csr.public_bytes(serialization.Encoding.PEM))
    done = acme_client.finalize_order(orderr, _deadline())
    chain = x509.load_pem_x509_certificates(done.fullchain_pem.encode())
    leaf, ca = chain
    assert ca == world.mdm.ca_certificate()
    leaf.verify_directly_issued_by(ca)
    assert attested.key.same_key(leaf) and attested.key.same_key(attested.certificates[0])  # the attested key
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == udid
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert acme.permanent_identifier_name(payload.client_identifier) in list(names)
    # the MDM server recorded it as that device's identity, with what Apple attested
    identity = world.http.get(f"/mdm/api/v1/devices/{udid}").json()["identity"]
    assert identity["key_sha256"] == attested.key.fingerprint() and identity["attested"] is True
    assert identity["attestation"]["serial_number"] == serial and identity["attestation"]["udid"] == udid
    # the ClientIdentifier was one-time
    with pytest.raises(messages.Error) as used:
        _order(acme_client, payload.client_identifier)
    assert used.value.code == "rejectedIdentifier"


def _refused(world: World, serial: str, attest: Any) -> messages.Error:
    """Order with ``serial``'s ClientIdentifier, answer with ``attest(token)``; the refusal certbot raises."""
    payload = enroll_for_payload(world, serial)
    acme_client = _certbot(world)
    orderr, challb = _order(acme_client, payload.client_identifier)
    with pytest.raises(messages.Error) as refused:
        acme_client.answer_challenge(challb, _answer(attest(_token(challb))))
    # nothing is issued: the order is invalid, finalizing it is refused, the device has no ACME identity
    csr = csr_for(ec.generate_private_key(ec.SECP384R1()), world.identity(serial).udid)
    with pytest.raises(messages.Error) as finalize:
        acme_client.begin_finalization(orderr.update(csr_pem=csr.public_bytes(serialization.Encoding.PEM)))
    assert finalize.value.code == "orderNotReady"
    assert world.mdm.acme.identity_of(world.identity(serial).udid) is None
    return refused.value


def test_an_attestation_for_another_token_is_refused(served: tuple[World, Any]) -> None:
    world, _ = served
    serial = acme_serials(world)[1]
    error = _refused(world, serial, lambda token: world.devices.attest_key(serial, token + "x"))
    assert error.typ == acme.ERROR_PREFIX + "badAttestationStatement" and "freshness code" in error.detail


def test_an_attestation_of_another_device_is_refused_as_a_rejected_identifier(served: tuple[World, Any]) -> None:
    world, _ = served
    serial, other = acme_serials(world)[2:4]
    error = _refused(world, serial, lambda token: world.devices.attest_key(other, token))
    assert error.typ == acme.ERROR_PREFIX + "badAttestationStatement"
    assert [sub.typ for sub in error.subproblems] == [acme.ERROR_PREFIX + "rejectedIdentifier"]


def test_an_attestation_chained_to_another_root_is_refused(served: tuple[World, Any]) -> None:
    world, _ = served
    serial = acme_serials(world)[4]

    def forged(token: str) -> KeyAttestation:
        """The same leaf contents (serial, UDID, freshness), issued by a CA of the attacker's own."""
        real = world.devices.attest_key(serial, token)
        leaf = real.certificates[0]
        fake_key = ec.generate_private_key(ec.SECP384R1())
        fake_ca = x509.CertificateBuilder().subject_name(real.certificates[1].subject).issuer_name(
            real.certificates[1].issuer).public_key(fake_key.public_key()).serial_number(x509.random_serial_number()
            ).not_valid_before(leaf.not_valid_before_utc).not_valid_after(leaf.not_valid_after_utc).add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(fake_key, hashes.SHA384())
        builder = x509.CertificateBuilder().subject_name(leaf.subject).issuer_name(fake_ca.subject).public_key(
            leaf.public_key()).serial_number(leaf.serial_number).not_valid_before(leaf.not_valid_before_utc
            ).not_valid_after(leaf.not_valid_after_utc)
        for extension in leaf.extensions:
            builder = builder.add_extension(extension.value, extension.critical)
        fake_leaf = builder.sign(fake_key, hashes.SHA384())
        der = serialization.Encoding.DER
        return KeyAttestation(real.key, [fake_leaf.public_bytes(der), fake_ca.public_bytes(der)])

    error = _refused(world, serial, forged)
    assert error.typ == acme.ERROR_PREFIX + "badAttestationStatement" and "trusted attestation root" in error.detail


def test_a_csr_for_another_key_is_refused_and_nothing_is_issued(served: tuple[World, Any]) -> None:
    world, _ = served
    serial = acme_serials(world)[5]
    udid = world.identity(serial).udid
    payload = enroll_for_payload(world, serial)
    acme_client = _certbot(world)
    orderr, challb = _order(acme_client, payload.client_identifier)
    attested = world.devices.attest_key(serial, _token(challb))
    acme_client.answer_challenge(challb, _answer(attested))
    other = csr_for(ec.generate_private_key(ec.SECP384R1()), udid)
    with pytest.raises(messages.Error) as refused:
        acme_client.begin_finalization(orderr.update(csr_pem=other.public_bytes(serialization.Encoding.PEM)))
    assert refused.value.code == "badCSR" and "attested key" in refused.value.detail
    assert world.mdm.acme.identity_of(udid) is None
    # the order is still ready: the device's own CSR, for the attested key, is then issued
    mine = csr_for(attested.key, udid)
    done = acme_client.finalize_order(orderr.update(csr_pem=mine.public_bytes(serialization.Encoding.PEM)), _deadline())
    assert attested.key.same_key(x509.load_pem_x509_certificates(done.fullchain_pem.encode())[0])
