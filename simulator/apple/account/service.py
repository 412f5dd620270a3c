"""The rules of Apple's OAuth 2 token endpoint for the Business API (client credentials, RFC 6749 §4.4,
with a JWT client assertion, RFC 7523 §2.2): who gets an access token, for which scope, for how long.

Every parameter is required: ``grant_type=client_credentials``, ``client_id``,
``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer``, ``client_assertion``
and ``scope`` (``business.api`` for a ``BUSINESSAPI.`` client, ``school.api`` for a ``SCHOOLAPI.`` one).
The answer is ``{access_token, token_type: "Bearer", expires_in: 3600, scope}``; there is no refresh
token (a client signs, or reuses, an assertion for the next one). Tokens live an hour of world time
and are stored by digest only; a revoked API account's tokens stop working at once.

Refusals are RFC 6749 §5.2 errors: ``invalid_request`` (a parameter missing, repeated, or an unknown
assertion type), ``unsupported_grant_type``, ``invalid_client`` (unknown or revoked client, or any
assertion check, :mod:`.assertion`), ``invalid_scope``. ``invalid_grant`` is not used: it is for
assertions used *as* grants (RFC 7521 §4.1.1), and Apple's flow uses the assertion to authenticate the
client. Descriptions are mdmsim's (Apple's own strings are not published).

With a seed, access tokens derive from the client, the assertion's ``jti``, world time and how many
tokens were issued before (``account:token:…`` labels).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.randomness import Randomness

from ..portal import store as portal_store
from ..portal.api_accounts import scope_of
from . import store as account_store
from .assertion import ASSERTION_TYPE, assertion_key_id, verify_client_assertion
from .errors import OAuthError

__all__ = ["TokenService", "OAuthError", "ACCESS_TOKEN_LIFETIME_S", "PARAMETERS", "token_digest"]

ACCESS_TOKEN_LIFETIME_S = 3600
PARAMETERS = ("grant_type", "client_id", "client_assertion_type", "client_assertion", "scope")
_SCOPES = ("business.api", "school.api")
# What Apple's tokens look like: a compact JWE (direct key agreement, AES-256-GCM) header.
_JWE_HEADER = base64.urlsafe_b64encode(b'{"alg":"dir","enc":"A256GCM","kid":null}').rstrip(b"=").decode()


def token_digest(token: str) -> str:
    """Tokens are stored and looked up by a SHA-256: the database holds nothing a client could use."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TokenService:
    """``POST /auth/oauth2/token`` for every API account of the world's organisation."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        seed: int | None = None,
        lifetime_s: int = ACCESS_TOKEN_LIFETIME_S,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.clock = clock
        self.random = Randomness(seed)
        self.lifetime_s = int(lifetime_s)
        self._wall = wall

    def grant(self, params: Mapping[str, str], audiences: list[str]) -> dict[str, Any]:
        """An access token for a client that proved it holds its API account's key."""
        missing = [name for name in PARAMETERS if not params.get(name)]
        if missing:
            raise OAuthError("invalid_request", f"missing parameter: {missing[0]}")
        if params["grant_type"] != "client_credentials":
            raise OAuthError("unsupported_grant_type", "grant_type must be client_credentials")
        if params["client_assertion_type"] != ASSERTION_TYPE:
            raise OAuthError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        client_id = params["client_id"]
        assertion_key_id(params["client_assertion"])  # a JWT at all, before any lookup
        with self.store.read() as db:
            account = portal_store.api_account(db, client_id)
        if account is None:
            raise OAuthError("invalid_client", "no API account has this client_id")
        if account["revoked_at"] is not None:
            raise OAuthError("invalid_client", "this API account is revoked")
        now = self.clock.timestamp()
        proof = verify_client_assertion(
            params["client_assertion"], client_id=client_id, key_id=account["key_id"],
            public_key_pem=account["public_key_pem"], audiences=audiences, now=now, wall=self._wall(),
        )
        scope = params["scope"]
        if scope != scope_of(client_id):
            known = scope in _SCOPES
            raise OAuthError(
                "invalid_scope",
                f"this client may ask only for {scope_of(client_id)}" if known else f"unknown scope {scope[:64]!r}",
            )
        with self.store.transaction() as db:
            account_store.forget_expired(db, now - 86400)
            issued = account_store.token_count(db)
            token = self._mint(f"account:token:{client_id}:{proof.jti}:{now!r}:{issued}")
            account_store.insert_access_token(db, token_digest(token), client_id, scope, now, now + self.lifetime_s)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime_s, "scope": scope}

    def _mint(self, label: str) -> str:
        """An opaque token shaped as Apple's are (a compact JWE with an empty key part)."""
        iv, body, tag = (self.random.urlsafe(n, f"{label}:{part}") for n, part in ((12, "iv"), (96, "body"), (16, "tag")))
        return f"{_JWE_HEADER}..{iv}.{body}.{tag}"
