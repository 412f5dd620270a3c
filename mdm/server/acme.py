"""The MDM server's ACME service (RFC 8555 with ``device-attest-01``), at ``/mdm/acme/directory``.

How a device gets its identity when the enrollment profile carries ``com.apple.security.acme``
(iOS 16+, the way Intune enrolls iOS 16 and later): the profile names this directory and a
**ClientIdentifier** made for that one enrollment; the device orders a certificate for the
``permanent-identifier`` of that value, answers ``device-attest-01`` with Apple's attestation of its
Secure Enclave key, and finalizes with a CSR for that key. The certificate comes from the MDM CA and
is recorded as the enrolling device's identity, so its first check-in is recognised.

Rules, all here:

* a ClientIdentifier is one-time and expires; the first account that orders with it owns it; it is
  spent when the certificate is issued (Apple: "the server uses this as a nonce to prevent issuing
  multiple certificates"). Unknown, used, expired or another account's → ``rejectedIdentifier``;
* the attestation must chain to the world's Enterprise Attestation root (trusted roots are given),
  carry SHA-256 of the challenge token as its freshness code, and name the serial number or UDID of
  the DEP device the ClientIdentifier was made for (else ``badAttestationStatement``, with a
  ``rejectedIdentifier`` subproblem for another device, as step-ca words it);
* the CSR's key must be the attested key, and its CN, if any, the device's UDID or serial (``badCSR``);
* nonces are one-time and expire (``badNonce``, with a fresh one to retry with); the JWS url must be
  the URL requested; accounts sign with ``kid`` after ``newAccount``; an account sees only its own
  orders (``unauthorized``); an unknown object is a 404 problem.

Every answer is a problem document on failure, never a 500. Random values (ids, nonces, tokens,
ClientIdentifiers, certificate serials) come from the server's :class:`Randomness`, named by row.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol import acme
from mdm.protocol.acme import ACMEProblem
from mdm.protocol.isotime import iso_from_timestamp
from mdm.protocol.randomness import Randomness
from mdm.protocol.x509 import CertificateAuthority, cert_to_pem

from . import acme_store as q

#: Extended key usages a device's identity may carry; others a CSR asks for are left out.
_IDENTITY_USAGES = frozenset({ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION})

__all__ = ["ACMEService", "ACMEReply", "CLIENT_IDENTIFIER_TTL", "MAX_ACME_BODY"]

#: A ClientIdentifier lives as long as a SCEP challenge: the device uses it right after the profile.
CLIENT_IDENTIFIER_TTL = 3600.0
ORDER_TTL = 3600.0
NONCE_TTL = 3600.0
#: A JWS with an attestation (two certificates) is ~3 KB; 64 KB bounds what a hostile client sends.
MAX_ACME_BODY = 65_536
CERTIFICATE_CONTENT_TYPE = acme.CERT_CHAIN_CONTENT_TYPE


@dataclass(frozen=True)
class ACMEReply:
    """An answer of the ACME service: status, a JSON body (or bytes) and the headers ACME needs."""

    status: int
    body: dict[str, Any] | bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def _digest(client_identifier: str) -> str:
    return hashlib.sha256(client_identifier.encode("utf-8")).hexdigest()


def _not_found(what: str) -> ACMEProblem:
    return ACMEProblem("malformed", f"no such {what}", 404)


def _common_name(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = values[0].value if values else None
    return value if isinstance(value, str) else None


class ACMEService:
    """ACME over one store and clock, issuing from the MDM CA for attested Secure Enclave keys.

    ``attestation_roots()`` are the roots an attestation must chain to (the world's Enterprise
    Attestation root); ``on_issued(db, cert, udid, now)`` records an issued identity in the same
    transaction as the issuance.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        ca: Callable[[], CertificateAuthority],
        attestation_roots: Callable[[], Sequence[x509.Certificate]],
        base_url: Callable[[], str],
        on_issued: Callable[..., None] | None = None,
        identity_days: float = 365,
        client_identifier_ttl: float = CLIENT_IDENTIFIER_TTL,
        seed: int | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self._ca = ca
        self.attestation_roots = attestation_roots
        self._base_url = base_url
        self._on_issued = on_issued
        self.identity_days = identity_days
        self.client_identifier_ttl = client_identifier_ttl
        self.random = Randomness(seed)

    # -- URLs --------------------------------------------------------------------------------------------
    def url(self, *parts: str) -> str:
        return "/".join([self._base_url().rstrip("/"), "acme", *parts])

    def directory(self) -> dict[str, Any]:
        return {
            "newNonce": self.url("new-nonce"),
            "newAccount": self.url("new-account"),
            "newOrder": self.url("new-order"),
            "meta": {"externalAccountRequired": False},
        }

    def _links(self, up: str | None = None) -> dict[str, str]:
        link = f'<{self.url("directory")}>;rel="index"'
        if up is not None:
            link += f', <{up}>;rel="up"'
        return {"Link": link}

    # -- ClientIdentifiers (the enrollment side) -----------------------------------------------------------
    def new_client_identifier(self, udid: str, serial_number: str | None) -> str:
        """A one-time ClientIdentifier for the enrollment of ``udid`` (placed in its profile)."""
        now = self.clock.timestamp()
        with self.store.transaction() as db:
            for n in range(q.count_client_identifiers(db), 1_000_000):
                value = self.random.urlsafe(24, f"mdm:acme-client-identifier:{udid}:{n}")
                if q.get_client_identifier(db, _digest(value)) is None:
                    break
            q.insert_client_identifier(db, _digest(value), udid, serial_number, now, now + self.client_identifier_ttl)
        return value

    # -- nonces --------------------------------------------------------------------------------------------
    def new_nonce(self) -> str:
        """A fresh nonce (also sent with every answer, as Replay-Nonce)."""
        now = self.clock.timestamp()
        with self.store.transaction() as db:
            q.prune_nonces(db, now)
            return q.insert_named(db, "acme_nonces", {"expires_at": now + NONCE_TTL},
                                  lambda seq: self.random.urlsafe(16, f"mdm:acme:nonce:{seq}"))

    def problem(self, problem: ACMEProblem) -> ACMEReply:
        """A problem document as the answer, with the index link (the HTTP layer adds the nonce)."""
        return ACMEReply(problem.status, problem.to_dict(), acme.PROBLEM_CONTENT_TYPE, self._links())

    # -- requests -------------------------------------------------------------------------------------------
    def post(self, resource: str, object_id: str | None, body: bytes, url: str) -> ACMEReply:
        """One JWS POST to ``resource`` (``new-account``, ``order``…) at ``url`` (as requested)."""
        request = acme.parse_jws(body)
        if request.url != url:
            raise ACMEProblem("unauthorized", "the JWS url is not the URL this request was sent to", 403)
        now = self.clock.timestamp()
        if resource == "new-account":
            if request.jwk is None:
                raise ACMEProblem("malformed", "newAccount is signed with jwk, not kid")
            acme.verify_jws(request, request.jwk)
            self._use_nonce(request.nonce, now)
            return self._new_account(request)
        if request.kid is None:
            raise ACMEProblem("malformed", "requests after newAccount are signed with kid, not jwk")
        account = self._account_of_kid(request.kid)
        acme.verify_jws(request, json.loads(account["jwk"]))
        self._use_nonce(request.nonce, now)
        if account["status"] != "valid":
            raise ACMEProblem("unauthorized", f"the account is {account['status']}", 403)
        handlers: dict[str, Callable[[Any, acme.SignedRequest, str], ACMEReply]] = {
            "account": self._account, "new-order": lambda a, r, _i: self._new_order(a, r),
            "order": self._order, "finalize": self._finalize, "authz": self._authorization,
            "challenge": self._challenge, "certificate": self._certificate,
        }
        handler = handlers.get(resource)
        if handler is None:
            raise _not_found("ACME resource")
        return handler(account, request, object_id or "")

    def _use_nonce(self, nonce: str, now: float) -> None:
        with self.store.transaction() as db:
            fresh = q.take_nonce(db, nonce, now)
        if not fresh:
            raise ACMEProblem("badNonce", "the nonce is not one this server gave out, or it was used or expired")

    def _account_of_kid(self, kid: str) -> Any:
        prefix = "/acme/account/"
        at = kid.rfind(prefix)
        account_id = kid[at + len(prefix):] if at >= 0 else ""
        with self.store.read() as db:
            account = q.get_account(db, account_id) if account_id else None
        if account is None:
            raise ACMEProblem("accountDoesNotExist", "kid names no account of this server")
        return account

    # -- accounts --------------------------------------------------------------------------------------------
    def _account_json(self, row: Any) -> dict[str, Any]:
        return {"status": row["status"], "contact": json.loads(row["contact"])}

    def _new_account(self, request: acme.SignedRequest) -> ACMEReply:
        assert request.jwk is not None
        payload = request.json_payload()
        thumbprint = acme.jwk_thumbprint(request.jwk)
        contact = _contact(payload.get("contact", []))
        with self.store.transaction() as db:
            existing = q.get_account_by_thumbprint(db, thumbprint)
            if existing is not None:
                location = self.url("account", existing["id"])
                return ACMEReply(200, self._account_json(existing), headers={"Location": location, **self._links()})
            if payload.get("onlyReturnExisting") is True:
                raise ACMEProblem("accountDoesNotExist", "no account has this key")
            account_id = q.insert_named(db, "acme_accounts", {
                "thumbprint": thumbprint, "jwk": json.dumps(request.jwk), "status": "valid",
                "contact": json.dumps(contact), "created_at": self.clock.timestamp(),
            }, lambda seq: self.random.hex(16, f"mdm:acme:account:{seq}"))
            row = q.get_account(db, account_id)
        return ACMEReply(201, self._account_json(row), headers={"Location": self.url("account", account_id),
                                                                **self._links()})

    def _account(self, account: Any, request: acme.SignedRequest, account_id: str) -> ACMEReply:
        if account_id != account["id"]:
            raise ACMEProblem("unauthorized", "an account may only read and change itself", 403)
        payload = request.json_payload()
        status, contact = account["status"], account["contact"]
        if "contact" in payload:
            contact = json.dumps(_contact(payload["contact"]))
        if "status" in payload:
            if payload["status"] != "deactivated":
                raise ACMEProblem("malformed", 'an account\'s status can only be set to "deactivated"')
            status = "deactivated"
        if (status, contact) != (account["status"], account["contact"]):
            with self.store.transaction() as db:
                q.update_account(db, account_id, status=status, contact=contact)
        with self.store.read() as db:
            row = q.get_account(db, account_id)
        return ACMEReply(200, self._account_json(row), headers={"Location": self.url("account", account_id),
                                                                **self._links()})

    # -- orders ----------------------------------------------------------------------------------------------
    def _new_order(self, account: Any, request: acme.SignedRequest) -> ACMEReply:
        payload = request.json_payload()
        identifiers = payload.get("identifiers")
        if not isinstance(identifiers, list) or not identifiers:
            raise ACMEProblem("malformed", "an order needs identifiers")
        if len(identifiers) != 1 or not isinstance(identifiers[0], dict):
            raise ACMEProblem("malformed", "an order here names exactly one permanent-identifier")
        identifier = identifiers[0]
        kind, value = identifier.get("type"), identifier.get("value")
        if not isinstance(kind, str) or not isinstance(value, str):
            raise ACMEProblem("malformed", "an identifier has a type and a value, both strings")
        if kind != acme.PERMANENT_IDENTIFIER:
            raise ACMEProblem("unsupportedIdentifier", f"only {acme.PERMANENT_IDENTIFIER} identifiers are issued here "
                                                       f"(the ClientIdentifier of an enrollment profile)")
        if "notBefore" in payload or "notAfter" in payload:
            raise ACMEProblem("malformed", "notBefore and notAfter are not supported")
        shown = {"type": kind, "value": value[:200]}
        now = self.clock.timestamp()
        digest = _digest(value)
        with self.store.transaction() as db:
            row = q.get_client_identifier(db, digest) if 0 < len(value) <= 256 else None
            if row is None:
                raise ACMEProblem("rejectedIdentifier", "not a ClientIdentifier this server gave out", identifier=shown)
            if row["used_at"] is not None:
                raise ACMEProblem("rejectedIdentifier", "this ClientIdentifier was used already", identifier=shown)
            if row["expires_at"] <= now:
                raise ACMEProblem("rejectedIdentifier", "this ClientIdentifier has expired", identifier=shown)
            if not q.bind_client_identifier(db, digest, account["id"]):
                raise ACMEProblem("rejectedIdentifier", "this ClientIdentifier belongs to another account",
                                  identifier=shown)
            expires = min(now + ORDER_TTL, row["expires_at"])
            order_id = q.insert_named(db, "acme_orders", {
                "account_id": account["id"], "status": "pending", "identifier": value, "client_digest": digest,
                "expires_at": expires, "created_at": now,
            }, lambda seq: self.random.hex(16, f"mdm:acme:order:{seq}"))
            q.insert_named(db, "acme_authorizations", {
                "order_id": order_id, "status": "pending",
                "token": self.random.urlsafe(32, f"mdm:acme:token:{order_id}"),
                "challenge_id": self.random.hex(16, f"mdm:acme:challenge:{order_id}"),
                "challenge_status": "pending", "expires_at": expires,
            }, lambda seq: self.random.hex(16, f"mdm:acme:authz:{seq}"))
            order = q.get_order(db, order_id)
        return ACMEReply(201, self._order_json(order), headers={"Location": self.url("order", order_id), **self._links()})

    def _owned_order(self, account: Any, order_id: str) -> Any:
        with self.store.read() as db:
            order = q.get_order(db, order_id)
        if order is None:
            raise _not_found("order")
        if order["account_id"] != account["id"]:
            raise ACMEProblem("unauthorized", "this order belongs to another account", 403)
        return order

    def _order_status(self, order: Any) -> str:
        if order["status"] in ("pending", "ready") and order["expires_at"] <= self.clock.timestamp():
            return "invalid"
        return str(order["status"])

    def _order_json(self, order: Any) -> dict[str, Any]:
        with self.store.read() as db:
            authz = q.get_authorization_of_order(db, order["id"])
        out: dict[str, Any] = {
            "status": self._order_status(order),
            "expires": iso_from_timestamp(order["expires_at"]),
            "identifiers": [{"type": acme.PERMANENT_IDENTIFIER, "value": order["identifier"]}],
            "authorizations": [self.url("authz", authz["id"])] if authz is not None else [],
            "finalize": self.url("order", order["id"], "finalize"),
        }
        if order["certificate_id"]:
            out["certificate"] = self.url("certificate", order["certificate_id"])
        if order["error"]:
            out["error"] = json.loads(order["error"])
        return out

    def _order(self, account: Any, request: acme.SignedRequest, order_id: str) -> ACMEReply:
        order = self._owned_order(account, order_id)
        if not request.post_as_get:
            raise ACMEProblem("malformed", "an order is read with POST-as-GET (an empty payload)")
        return ACMEReply(200, self._order_json(order), headers={"Location": self.url("order", order_id), **self._links()})

    # -- authorizations and the device-attest-01 challenge --------------------------------------------------------
    def _owned_authorization(self, account: Any, authz: Any, what: str) -> Any:
        if authz is None:
            raise _not_found(what)
        return self._owned_order(account, authz["order_id"])

    def _authz_status(self, authz: Any) -> str:
        if authz["status"] == "pending" and authz["expires_at"] <= self.clock.timestamp():
            return "expired"
        return str(authz["status"])

    def _challenge_json(self, authz: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"type": acme.DEVICE_ATTEST_01, "url": self.url("challenge", authz["challenge_id"]),
                               "status": authz["challenge_status"], "token": authz["token"]}
        if authz["validated_at"] is not None:
            out["validated"] = iso_from_timestamp(authz["validated_at"])
        if authz["error"]:
            out["error"] = json.loads(authz["error"])
        return out

    def _authz_json(self, authz: Any, order: Any) -> dict[str, Any]:
        return {
            "status": self._authz_status(authz),
            "expires": iso_from_timestamp(authz["expires_at"]),
            "identifier": {"type": acme.PERMANENT_IDENTIFIER, "value": order["identifier"]},
            "challenges": [self._challenge_json(authz)],
        }

    def _authorization(self, account: Any, request: acme.SignedRequest, authz_id: str) -> ACMEReply:
        with self.store.read() as db:
            authz = q.get_authorization(db, authz_id)
        order = self._owned_authorization(account, authz, "authorization")
        payload = request.json_payload()
        if payload:
            if payload.get("status") != "deactivated":
                raise ACMEProblem("malformed", 'an authorization\'s status can only be set to "deactivated"')
            with self.store.transaction() as db:
                q.update_authorization(db, authz_id, status="deactivated", challenge_status=authz["challenge_status"],
                                       expect=authz["status"], error=authz["error"])
                q.update_order(db, order["id"], status="invalid", expect=("pending", "ready"))
                authz = q.get_authorization(db, authz_id)
        return ACMEReply(200, self._authz_json(authz, order), headers=self._links())

    def _challenge(self, account: Any, request: acme.SignedRequest, challenge_id: str) -> ACMEReply:
        with self.store.read() as db:
            authz = q.get_authorization_by_challenge(db, challenge_id)
        order = self._owned_authorization(account, authz, "challenge")
        up = self.url("authz", authz["id"])
        if request.post_as_get or authz["status"] != "pending" or self._authz_status(authz) == "expired":
            return ACMEReply(200, self._challenge_json(authz), headers=self._links(up))
        payload = request.json_payload()
        if isinstance(payload.get("error"), str):  # the device says it could not attest (step-ca's reading)
            problem = ACMEProblem("badAttestationStatement", f"the device could not attest: {payload['error'][:200]}")
        elif "attObj" not in payload:
            raise ACMEProblem("malformed", 'device-attest-01 is answered with {"attObj": base64url(CBOR)}')
        else:
            problem = None
            try:
                attestation = self._verify_attestation(order, authz, payload["attObj"])
            except ACMEProblem as refused:
                problem = refused
        now = self.clock.timestamp()
        with self.store.transaction() as db:
            if problem is not None:
                error = json.dumps(problem.to_dict())
                if q.update_authorization(db, authz["id"], status="invalid", challenge_status="invalid",
                                          expect="pending", error=error):
                    q.update_order(db, order["id"], status="invalid", expect=("pending",), error=error)
            else:
                if q.update_authorization(db, authz["id"], status="valid", challenge_status="valid", expect="pending",
                                          validated_at=now, key_sha256=attestation.key_sha256,
                                          attestation=json.dumps(_attestation_json(attestation))):
                    q.update_order(db, order["id"], status="ready", expect=("pending",))
            authz = q.get_authorization(db, authz["id"])
        if problem is not None:
            raise problem
        return ACMEReply(200, self._challenge_json(authz), headers=self._links(up))

    def _verify_attestation(self, order: Any, authz: Any, att_obj: Any) -> acme.DeviceAttestation:
        """The attestation object → what it attests, or the problem that refuses it."""
        if not isinstance(att_obj, str):
            raise ACMEProblem("malformed", "attObj must be a base64url string")
        try:
            raw = acme.b64url_decode(att_obj, "attObj")
        except ACMEProblem as exc:
            raise ACMEProblem("badAttestationStatement", exc.detail) from None
        chain = acme.read_attestation_object(raw)
        acme.verify_chain(chain, self.attestation_roots(), self.clock.now())
        attested = acme.read_device_attestation(chain[0])
        if attested.freshness_code is None:
            raise ACMEProblem("badAttestationStatement", "the attestation has no freshness code")
        if attested.freshness_code != acme.freshness_code(authz["token"]):
            raise ACMEProblem("badAttestationStatement",
                              "the attestation's freshness code is not SHA-256 of this challenge's token")
        key = chain[0].public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in ("secp256r1", "secp384r1"):
            raise ACMEProblem("badAttestationStatement", "the attested key is not a Secure Enclave key (EC P-256 or P-384)")
        with self.store.read() as db:
            device = q.get_client_identifier(db, order["client_digest"])
        expected = {device["udid"], device["serial_number"]} - {None} if device is not None else set()
        if not expected & {attested.udid, attested.serial_number}:
            identifier = {"type": acme.PERMANENT_IDENTIFIER, "value": order["identifier"]}
            mismatch = ACMEProblem("rejectedIdentifier", "the attested serial number and UDID are not those of the "
                                   "device this ClientIdentifier was given to", identifier=identifier)
            raise ACMEProblem("badAttestationStatement", "permanent identifier does not match", subproblems=[mismatch])
        return attested

    # -- finalize and the certificate ------------------------------------------------------------------------
    def _finalize(self, account: Any, request: acme.SignedRequest, order_id: str) -> ACMEReply:
        order = self._owned_order(account, order_id)
        status = self._order_status(order)
        if status != "ready":
            raise ACMEProblem("orderNotReady", f"the order is {status}, not ready", 403)
        payload = request.json_payload()
        if not isinstance(payload.get("csr"), str):
            raise ACMEProblem("malformed", 'finalize takes {"csr": base64url(DER)}')
        try:
            csr = x509.load_der_x509_csr(acme.b64url_decode(payload["csr"], "csr"))
        except (ValueError, ACMEProblem):
            raise ACMEProblem("badCSR", "csr is not a DER PKCS#10 request in base64url") from None
        if not csr.is_signature_valid:
            raise ACMEProblem("badCSR", "the CSR's signature does not verify")
        with self.store.read() as db:
            authz = q.get_authorization_of_order(db, order_id)
            device = q.get_client_identifier(db, order["client_digest"])
        assert authz is not None and device is not None
        if acme.public_key_sha256(csr.public_key()) != authz["key_sha256"]:
            raise ACMEProblem("badCSR", "csr does not match the attested key")
        cn = _common_name(csr.subject)
        if cn is not None and cn not in (device["udid"], device["serial_number"]):
            raise ACMEProblem("badCSR", "the CSR's common name must be the device's UDID or serial number")
        now = self.clock.now()
        cert = self._issue(csr, order, now)
        chain_pem = cert_to_pem(cert) + cert_to_pem(self._ca().certificate)
        with self.store.transaction() as db:
            if not q.spend_client_identifier(db, order["client_digest"], now.timestamp()):
                raise ACMEProblem("unauthorized", "this ClientIdentifier was used already", 403)
            certificate_id = q.insert_named(db, "acme_certificates", {
                "order_id": order_id, "account_id": account["id"], "udid": device["udid"], "chain_pem": chain_pem,
                "key_sha256": authz["key_sha256"], "attestation": authz["attestation"], "created_at": now.timestamp(),
            }, lambda seq: self.random.hex(16, f"mdm:acme:certificate:{seq}"))
            if not q.update_order(db, order_id, status="valid", expect=("ready",), certificate_id=certificate_id):
                raise ACMEProblem("orderNotReady", "the order was finalized already", 403)
            if self._on_issued is not None:
                self._on_issued(db, cert, device["udid"], now.timestamp())
            order = q.get_order(db, order_id)
        return ACMEReply(200, self._order_json(order), headers={"Location": self.url("order", order_id), **self._links()})

    def _issue(self, csr: x509.CertificateSigningRequest, order: Any, now: _dt.datetime) -> x509.Certificate:
        """The identity: the CSR's subject and names, the order's PermanentIdentifier, from the MDM CA."""
        ca = self._ca()
        public_key = csr.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise ACMEProblem("badCSR", "the CSR's key must be RSA or EC")
        names: list[x509.GeneralName] = []
        try:
            names = [n for n in csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                     if isinstance(n, x509.DNSName | x509.RFC822Name | x509.UniformResourceIdentifier)]
        except x509.ExtensionNotFound:
            pass
        except ValueError:
            raise ACMEProblem("badCSR", "the CSR's extensions cannot be read") from None
        names.append(acme.permanent_identifier_name(order["identifier"]))
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        try:
            requested = csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            # Only what a device identity is for: a CSR cannot make the MDM CA issue a server, code
            # signing or OCSP certificate (the payload's ExtendedKeyUsage is clientAuth, maybe e-mail).
            usages = list(dict.fromkeys([*(u for u in requested if u in _IDENTITY_USAGES), ExtendedKeyUsageOID.CLIENT_AUTH]))
        except (x509.ExtensionNotFound, ValueError):
            pass
        start = now.replace(microsecond=0)
        serial = int.from_bytes(self.random.bytes(20, f"mdm:acme:certificate-serial:{order['id']}"), "big") >> 1
        return (
            x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca.certificate.subject)
            .public_key(public_key).serial_number(serial)
            .not_valid_before(start).not_valid_after(start + _dt.timedelta(days=self.identity_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=isinstance(public_key, rsa.RSAPublicKey), data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.certificate.public_key()),  # type: ignore[arg-type]
                           critical=False)
            .sign(ca.key, hashes.SHA256())  # type: ignore[arg-type]
        )

    def _certificate(self, account: Any, request: acme.SignedRequest, certificate_id: str) -> ACMEReply:
        with self.store.read() as db:
            row = q.get_certificate(db, certificate_id)
        if row is None:
            raise _not_found("certificate")
        if row["account_id"] != account["id"]:
            raise ACMEProblem("unauthorized", "this certificate belongs to another account", 403)
        return ACMEReply(200, bytes(row["chain_pem"]), CERTIFICATE_CONTENT_TYPE, self._links())

    # -- views -------------------------------------------------------------------------------------------------
    def identity_of(self, udid: str) -> dict[str, Any] | None:
        """How ``udid``'s latest ACME identity was issued: the attested key and what Apple attested."""
        with self.store.read() as db:
            row = q.latest_certificate_for(db, udid)
        if row is None:
            return None
        cert = x509.load_pem_x509_certificate(bytes(row["chain_pem"]))
        return {
            "method": "acme",
            "certificate_serial": format(cert.serial_number, "x"),
            "issued_at": iso_from_timestamp(row["created_at"]),
            "key_sha256": row["key_sha256"],
            "attested": row["attestation"] is not None,
            "attestation": json.loads(row["attestation"]) if row["attestation"] else None,
        }


def _contact(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > 10 or not all(isinstance(c, str) and 0 < len(c) <= 256 for c in value):
        raise ACMEProblem("malformed", "contact is a list of at most 10 URLs (mailto:…)")
    if not all(c.startswith("mailto:") for c in value):
        raise ACMEProblem("unsupportedContact", "only mailto: contacts are supported")
    return list(value)


def _attestation_json(attested: acme.DeviceAttestation) -> dict[str, Any]:
    return {
        "serial_number": attested.serial_number, "udid": attested.udid, "os_version": attested.os_version,
        "sepos_version": attested.sepos_version, "key_sha256": attested.key_sha256,
    }
