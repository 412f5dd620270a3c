"""ACME behind its JWS: hostile payloads *correctly signed* (a real account key, a fresh nonce, the right URL),
so they reach the rules of every ACME resource (the route fuzz stops at the JWS). Never a 5xx; every
refusal an RFC 8555 problem document with a nonce to retry with."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fuzz_world import json_values, plist_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdm.protocol import acme
from simulator import World

RESOURCES = ["new-account", "new-order", "account", "order", "finalize", "authz", "challenge", "certificate"]
KEYS = ["identifiers", "type", "value", "csr", "attObj", "error", "contact", "status", "onlyReturnExisting",
        "termsOfServiceAgreed", "notBefore", "notAfter", "profile"]


class _ACME:
    """A world with one account and one pending order: the ids (and the ClientIdentifier) the fuzz aims at."""

    def __init__(self) -> None:
        self.world = World(devices=2, seed=51, push_certificate=False, identity="acme")
        self.http = self.world.http
        self.directory = self.http.get("/mdm/acme/directory").json()
        self.key = ec.generate_private_key(ec.SECP256R1())
        serial = self.world.serials[0]
        self.client_id = self.world.mdm.acme.new_client_identifier(self.world.identity(serial).udid, serial)
        account = self.send(self.directory["newAccount"], {"termsOfServiceAgreed": True}, kid=None)
        self.kid = account.headers["Location"]
        order = self.send(self.directory["newOrder"], {"identifiers": [
            {"type": acme.PERMANENT_IDENTIFIER, "value": self.client_id}]}, kid=self.kid)
        self.order = order.headers["Location"]
        self.authz = order.json()["authorizations"][0]
        self.challenge = self.send(self.authz, None, kid=self.kid).json()["challenges"][0]["url"]

    def url(self, resource: str) -> str:
        return {"new-account": self.directory["newAccount"], "new-order": self.directory["newOrder"],
                "account": self.kid, "order": self.order, "finalize": f"{self.order}/finalize", "authz": self.authz,
                "challenge": self.challenge, "certificate": f"{self.world.mdm_url}/acme/certificate/00"}[resource]

    def send(self, url: str, payload: Any, *, kid: str | None, nonce: str | None = None, post_to: str | None = None) -> Any:
        body = b"" if payload is None else json.dumps(payload).encode()
        nonce = nonce or self.http.head(self.directory["newNonce"]).headers["Replay-Nonce"]
        signed = acme.sign_jws(body, self.key, nonce=nonce, url=url, kid=kid)
        return self.http.post(post_to or url, content=signed, headers={"Content-Type": acme.JOSE_CONTENT_TYPE})


@pytest.fixture(scope="module")
def target() -> Iterator[_ACME]:
    found = _ACME()
    try:
        yield found
    finally:
        found.world.close()


b64_values = st.one_of(st.binary(max_size=80).map(acme.b64url), st.sampled_from(["", "=", "!!", "A", "AAAA===="]),
                       plist_values.map(lambda v: acme.b64url(cbor2.dumps(v, timezone=dt.UTC))),
                       st.just(acme.b64url(cbor2.dumps({"fmt": "apple", "attStmt": {"x5c": [b"\x30\x82\x01"]}}))))
payloads = st.one_of(
    st.none(), json_values,
    st.dictionaries(st.sampled_from(KEYS), json_values | b64_values | st.sampled_from(
        [[{"type": "permanent-identifier", "value": "x"}], [{"type": "dns"}], "deactivated", ["mailto:a@b"], True]),
        max_size=4),
)


@settings(max_examples=250, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(resource=st.sampled_from(RESOURCES), payload=payloads, signer=st.sampled_from(["kid", "jwk", "stranger"]),
       twist=st.sampled_from(["none", "none", "none", "url", "stale-nonce"]))
def test_signed_hostile_payloads_never_answer_5xx(target: _ACME, resource: str, payload: Any, signer: str,
                                                   twist: str) -> None:
    url = target.url(resource)
    kid = {"kid": target.kid, "jwk": None, "stranger": f"{target.world.mdm_url}/acme/account/ffff"}[signer]
    nonce = "c3RhbGU" if twist == "stale-nonce" else None
    post_to = target.url("order") if twist == "url" else None
    reply = target.send(url, payload, kid=kid, nonce=nonce, post_to=post_to)
    assert reply.status_code < 500, (resource, payload, reply.text[:300])
    assert reply.headers.get("Replay-Nonce")
    if reply.status_code >= 400:
        document = reply.json()
        assert reply.headers["Content-Type"].startswith(acme.PROBLEM_CONTENT_TYPE)
        assert document["type"].startswith(acme.ERROR_PREFIX) and document["status"] == reply.status_code
