"""What a device does with a ``com.apple.security.acme`` payload: an identity from an ACME server.

RFC 8555 from the client's side, as iOS 16+ runs it for an enrollment profile (FACTS-apple-2025
§C.4–C.5; Apple's ``ACMECertificate`` documentation gives the order): the key first, made in the
Secure Enclave when ``HardwareBound`` (EC P-256/P-384 only), else in software (RSA or EC); then the
directory, a nonce (``HEAD newNonce``), an account (a software key, ``jwk`` then ``kid``), an order
for the ``permanent-identifier`` whose value is the payload's ``ClientIdentifier``, its
authorization's ``device-attest-01`` challenge; with ``Attest``, Apple's attestation of the key with
SHA-256 of the challenge token as freshness code, sent as
``{"attObj": base64url(CBOR {"fmt": "apple", "attStmt": {"x5c": [leaf, intermediate]}})}`` (an empty
``attStmt`` without it); finally a CSR for the key (``Subject``, ``SubjectAltName``, ``UsageFlags``,
``ExtendedKeyUsage``), the finalize, and the certificate chain. A ``badNonce`` answer is retried with
the nonce it carries, as clients do (certbot once, this client up to three times); ``processing`` is
polled a few times at once (a device cannot sleep on the world clock).

Sans-I/O like the rest of the device: :func:`obtain_identity` yields :class:`Request` and receives
:class:`Response`. The key and the attestation come from callables (:func:`request_attestation`
asks Apple over HTTP), so the same exchange runs against this world's server or a user's own.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ObjectIdentifier

from mdm.protocol import acme
from mdm.protocol.acme import ACMEProblem
from mdm.protocol.mobileconfig import ACMEPayload
from mdm.protocol.plist import dumps
from mdm.protocol.x509 import PrivateKey

from .machine import USER_AGENT, Device, Flow, Request, Response
from .scep_enroll import key_usage, subject_name
from .secure_enclave import HardwareKey

__all__ = [
    "ACMEResult",
    "AttestationFailed",
    "IdentityKey",
    "KeyAttestation",
    "attest_new_key",
    "obtain_identity",
    "request_attestation",
    "ATTESTATION_CONTENT_TYPE",
]

ATTESTATION_CONTENT_TYPE = "application/pkcs7-signature"
MAX_RESPONSE = 256 * 1024
BAD_NONCE_RETRIES = 3
POLLS = 5
#: A key the device signs its CSR with: in the Secure Enclave, or in software.
IdentityKey = HardwareKey | PrivateKey
#: ``make_key(key_type, bits, hardware_bound)``: the identity's key (the device's keychain decides where).
MakeKey = Callable[[str, int, bool], IdentityKey]
#: ``attest(key, freshness)``: Apple's attestation chain (DER, leaf first) for a hardware-bound key.
Attest = Callable[[HardwareKey, bytes], Flow[list[bytes]]]


@dataclass
class ACMEResult:
    """``issued`` (with the identity and how its key was made) or ``failed`` (``reason``)."""

    status: Literal["issued", "failed"]
    reason: str = ""
    certificate: x509.Certificate | None = None
    key: IdentityKey | None = None
    chain: list[x509.Certificate] = field(default_factory=list)
    attestation: list[bytes] = field(default_factory=list)
    hardware_bound: bool = False
    attested: bool = False
    issuer: str = ""


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


#: Raised by :func:`attest_new_key` when Apple does not attest (the reason says why).
AttestationFailed = _Refused


@dataclass(frozen=True)
class KeyAttestation:
    """A new Secure Enclave key and Apple's attestation of it, for a ``device-attest-01`` token.

    What a device sends is :meth:`challenge_response`; ``key`` signs the CSR (:meth:`HardwareKey.sign_csr`)
    and cannot be read. For a user's own ACME client driving this world's device (see the README)."""

    key: HardwareKey
    chain: list[bytes]

    @property
    def certificates(self) -> list[x509.Certificate]:
        return [x509.load_der_x509_certificate(c) for c in self.chain]

    @property
    def attestation_object(self) -> bytes:
        """CBOR ``{"fmt": "apple", "attStmt": {"x5c": [leaf, intermediate]}}``."""
        return acme.attestation_object(self.chain)

    def challenge_response(self) -> dict[str, str]:
        """The payload of the POST to the challenge URL: ``{"attObj": base64url(CBOR)}``."""
        return {"attObj": acme.b64url(self.attestation_object)}


def _check_payload(payload: ACMEPayload) -> None:
    """Apple's rules for the key a payload may ask for (``com.apple.security.acme.yaml``)."""
    kind, bits = payload.key_type, payload.key_size
    if kind == "RSA":
        if payload.hardware_bound:
            raise _Refused("an RSA key cannot be hardware-bound")
        if not (1024 <= bits <= 4096 and bits % 8 == 0):
            raise _Refused(f"RSA KeySize {bits} is not 1024–4096 and a multiple of 8")
    elif kind == "ECSECPrimeRandom":
        allowed = (256, 384) if payload.hardware_bound else (192, 256, 384, 521)
        if bits not in allowed:
            raise _Refused(f"ECSECPrimeRandom KeySize {bits} is not one of {allowed}"
                           + (" (hardware-bound)" if payload.hardware_bound else ""))
    else:
        raise _Refused(f"KeyType {kind!r} is not RSA or ECSECPrimeRandom")
    if payload.attest and not payload.hardware_bound:
        raise _Refused("Attest needs HardwareBound")


class _Client:
    """One ACME exchange's state: the directory, the nonce, the account key and its kid."""

    def __init__(self, trust: tuple[str, ...] | None, account_key: PrivateKey) -> None:
        self.trust = trust
        self.account_key = account_key
        self.directory: dict[str, Any] = {}
        self.nonce: str | None = None
        self.kid: str | None = None

    def _remember_nonce(self, response: Response) -> None:
        nonce = response.header("replay-nonce")
        if nonce:
            self.nonce = nonce

    def get_directory(self, url: str) -> Flow[None]:
        response = yield Request("GET", url, {"User-Agent": USER_AGENT}, trust=self.trust)
        self.directory = _json(response, "the ACME directory")
        for name in ("newNonce", "newAccount", "newOrder"):
            if not isinstance(self.directory.get(name), str):
                raise _Refused(f"the ACME directory has no {name}")

    def fresh_nonce(self) -> Flow[None]:
        response = yield Request("HEAD", self.directory["newNonce"], {"User-Agent": USER_AGENT}, trust=self.trust)
        self._remember_nonce(response)
        if not self.nonce:
            raise _Refused(f"newNonce gave no Replay-Nonce ({response.describe()})")

    def post(self, url: str, payload: dict[str, Any] | None) -> Flow[Response]:
        """A JWS POST (``None``: POST-as-GET), retried on badNonce with the nonce the refusal carries."""
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        for _ in range(BAD_NONCE_RETRIES + 1):
            if not self.nonce:
                yield from self.fresh_nonce()
            assert self.nonce is not None
            jws = acme.sign_jws(body, self.account_key, nonce=self.nonce, url=url,  # type: ignore[arg-type]
                                kid=self.kid)
            self.nonce = None
            response = yield Request("POST", url, {"Content-Type": acme.JOSE_CONTENT_TYPE, "User-Agent": USER_AGENT},
                                     jws, trust=self.trust)
            self._remember_nonce(response)
            problem = _problem(response)
            if problem is not None and problem.kind == "badNonce":
                continue
            return response
        raise _Refused(f"the ACME server refused {BAD_NONCE_RETRIES + 1} nonces in a row")


def _problem(response: Response) -> ACMEProblem | None:
    if response.status < 400:
        return None
    try:
        return ACMEProblem.from_dict(json.loads(response.body))
    except (ValueError, UnicodeDecodeError):
        return None


def _describe(response: Response, what: str) -> str:
    problem = _problem(response)
    if problem is not None:
        subs = "; ".join(f"{p.kind}: {p.detail}" for p in problem.subproblems)
        return f"{what}: {problem.kind}: {problem.detail}" + (f" ({subs})" if subs else "")
    return f"{what}: {response.describe()}"


def _json(response: Response, what: str, ok: tuple[int, ...] = (200, 201)) -> dict[str, Any]:
    if response.status not in ok:
        raise _Refused(_describe(response, f"{what} failed"))
    if len(response.body) > MAX_RESPONSE:
        raise _Refused(f"{what} is too large")
    try:
        value = json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict):
        raise _Refused(f"{what} is not a JSON object")
    return value


def obtain_identity(
    payload: ACMEPayload,
    *,
    now: Callable[[], datetime],
    account_key: PrivateKey,
    make_key: MakeKey,
    attest: Attest,
    default_cn: str,
    trust: tuple[str, ...] | None = None,
) -> Flow[ACMEResult]:
    """Run the ACME exchange for ``payload``: an :class:`ACMEResult`, never an exception."""
    try:
        return (yield from _run(payload, account_key, make_key, attest, default_cn, trust))
    except _Refused as refused:
        return ACMEResult("failed", refused.reason)
    except (ACMEProblem, ValueError) as exc:
        return ACMEResult("failed", f"the ACME exchange failed: {exc}")


def _run(payload: ACMEPayload, account_key: PrivateKey, make_key: MakeKey, attest: Attest, default_cn: str,
         trust: tuple[str, ...] | None) -> Flow[ACMEResult]:
    _check_payload(payload)
    # Apple's order (ACMECertificate): the key pair first, then the ACME server; the attestation of the
    # key once the challenge's token is known, since its freshness code is made from the token
    key = make_key(payload.key_type, payload.key_size, bool(payload.hardware_bound))
    client = _Client(trust, account_key)
    yield from client.get_directory(payload.directory_url)
    account = yield from client.post(client.directory["newAccount"], {"termsOfServiceAgreed": True})
    _json(account, "newAccount")
    client.kid = account.header("location") or None
    if not client.kid:
        raise _Refused("newAccount answered without the account's Location")
    identifier = {"type": acme.PERMANENT_IDENTIFIER, "value": payload.client_identifier}
    placed = yield from client.post(client.directory["newOrder"], {"identifiers": [identifier]})
    order = _json(placed, "newOrder", (201,))
    order_url = placed.header("location")
    authorizations = order.get("authorizations")
    if not order_url or not isinstance(authorizations, list) or not authorizations or not isinstance(order.get("finalize"), str):
        raise _Refused("newOrder answered an order without its URL, authorizations or finalize URL")
    authz = _json((yield from client.post(str(authorizations[0]), None)), "the authorization")
    challenge = next((c for c in authz.get("challenges") or [] if isinstance(c, dict)
                      and c.get("type") == acme.DEVICE_ATTEST_01), None)
    if challenge is None or not isinstance(challenge.get("token"), str) or not isinstance(challenge.get("url"), str):
        raise _Refused("the authorization offers no device-attest-01 challenge")

    chain: list[bytes] = []
    if payload.attest and isinstance(key, HardwareKey):
        chain = yield from attest(key, acme.freshness_code(challenge["token"]))
    # the WebAuthn-style statement, holding the attestation if the device obtained one (Apple's words);
    # without one it is empty, and the server decides whether that is enough (ours: it is not)
    answer = {"attObj": acme.b64url(acme.attestation_object(chain) if chain
                                    else cbor2.dumps({"fmt": "apple", "attStmt": {}}))}
    answered = yield from client.post(challenge["url"], answer)
    _json(answered, "device-attest-01")
    yield from _await(client, str(authorizations[0]), "the authorization", ("valid",))

    csr = _csr(payload, key, default_cn)
    der = csr.public_bytes(serialization.Encoding.DER)
    finalized = _json((yield from client.post(order["finalize"], {"csr": acme.b64url(der)})), "finalize")
    if finalized.get("status") != "valid":
        finalized = yield from _await(client, order_url, "the order", ("valid",))
    certificate_url = finalized.get("certificate")
    if not isinstance(certificate_url, str):
        raise _Refused("the valid order names no certificate")
    downloaded = yield from client.post(certificate_url, None)
    if downloaded.status != 200:
        raise _Refused(_describe(downloaded, "downloading the certificate failed"))
    try:
        issued = x509.load_pem_x509_certificates(downloaded.body)
    except ValueError:
        raise _Refused("the certificate download is not a PEM chain") from None
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    mine = next((c for c in issued if c.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == public), None)
    if mine is None:
        raise _Refused("the ACME server's certificate is not for our key")
    return ACMEResult("issued", certificate=mine, key=key, chain=issued, attestation=chain,
                      hardware_bound=isinstance(key, HardwareKey), attested=bool(chain),
                      issuer=mine.issuer.rfc4514_string())


def _await(client: _Client, url: str, what: str, done: tuple[str, ...]) -> Flow[dict[str, Any]]:
    """POST-as-GET ``url`` until its status is one of ``done`` (a few times: the device cannot wait)."""
    for _ in range(POLLS):
        state = _json((yield from client.post(url, None)), what)
        status = state.get("status")
        if status in done:
            return state
        if status not in ("pending", "processing", "ready"):
            problem = ACMEProblem.from_dict(state.get("error"))
            if problem is None:
                challenges = [c for c in state.get("challenges") or [] if isinstance(c, dict)]
                problem = next((p for p in (ACMEProblem.from_dict(c.get("error")) for c in challenges) if p), None)
            reason = f": {problem.kind}: {problem.detail}" if problem is not None else ""
            raise _Refused(f"{what} is {status}{reason}")
    raise _Refused(f"{what} did not become {' or '.join(done)} in {POLLS} polls")


def _csr(payload: ACMEPayload, key: IdentityKey, default_cn: str) -> x509.CertificateSigningRequest:
    """The CSR the payload describes, signed by the new key (in the Secure Enclave when hardware-bound)."""
    try:
        subject = subject_name(payload.subject, default_cn)
    except Exception as exc:  # scep_enroll's refusal says what is wrong with the Subject
        raise _Refused(getattr(exc, "reason", str(exc))) from None
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    names = _alt_names(payload.subject_alt_name)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    usage = payload.usage_flags or 0
    if usage:
        builder = builder.add_extension(key_usage(usage), critical=True)
    if payload.extended_key_usage:
        try:
            oids = [ObjectIdentifier(o) for o in payload.extended_key_usage if isinstance(o, str)]
        except ValueError:
            raise _Refused("ExtendedKeyUsage holds something that is not an OID") from None
        if oids:
            builder = builder.add_extension(x509.ExtendedKeyUsage(oids), critical=False)
    if isinstance(key, HardwareKey):
        return key.sign_csr(builder)
    return builder.sign(key, hashes.SHA256())


def _alt_names(spec: dict[str, Any] | None) -> list[x509.GeneralName]:
    if not spec:
        return []
    kinds = {"dNSName": x509.DNSName, "rfc822Name": x509.RFC822Name, "uniformResourceIdentifier": x509.UniformResourceIdentifier}
    names: list[x509.GeneralName] = []
    for key, make in kinds.items():
        values = spec.get(key)
        for value in [values] if isinstance(values, str) else (values or []):
            if isinstance(value, str) and value:
                names.append(make(value))
    return names


def software_key(key_type: str, bits: int, make_rsa: Callable[[int], rsa.RSAPrivateKey],
                 make_ec: Callable[[int], ec.EllipticCurvePrivateKey]) -> PrivateKey:
    """The key of a payload that is not hardware-bound: RSA of ``bits``, or EC on the matching curve."""
    return make_rsa(bits) if key_type == "RSA" else make_ec(bits)


# -- Apple's attestation of a Secure Enclave key ----------------------------------------------------------------
def sepos_version(device: Device) -> str:
    """The sepOS version the attestation reports: the simulation gives the Secure Enclave the OS's version."""
    return device.identity.os_version


def attest_new_key(device: Device, token: str, bits: int = 384) -> Flow[KeyAttestation]:
    """What the device does for a ``device-attest-01`` challenge with ``token``: a new key of ``bits``
    in its Secure Enclave, attested by Apple with SHA-256 of the token as freshness code."""
    key = device.secure_enclave.create_key(bits, tag=f"attest:{acme.b64url(acme.freshness_code(token))[:16]}")
    chain = yield from request_attestation(device, key, acme.freshness_code(token))
    return KeyAttestation(key, chain)


def request_attestation(device: Device, key: HardwareKey, freshness: bytes) -> Flow[list[bytes]]:
    """Ask Apple to attest ``key`` (see :mod:`simulator.apple.activation.attestation`): the request
    names the key and the freshness code, proves the key's possession, and is signed by the device's
    Apple identity, so Apple attests this device and no other. Returns the chain, leaf first (DER)."""
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    content = dumps({
        "PublicKey": spki, "FreshnessCode": freshness, "OSVersion": device.identity.os_version,
        "sepOSVersion": sepos_version(device), "KeyProof": key.sign(freshness + spki),
    })
    response = yield Request("POST", f"{device.state.apple_url}/activation/attestation",
                             {"Content-Type": ATTESTATION_CONTENT_TYPE, "User-Agent": USER_AGENT},
                             device.sign_with_device_identity(content))
    if response.status != 200:
        raise _Refused(f"Apple did not attest the key: {response.describe()}")
    try:
        x5c = json.loads(response.body)["x5c"]
        chain = [base64.b64decode(c, validate=True) for c in x5c]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise _Refused("Apple's attestation answer is not {\"x5c\": [...]}") from None
    if not chain:
        raise _Refused("Apple's attestation answer holds no certificate")
    return chain
