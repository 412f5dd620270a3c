"""The OAuth 2 client assertion as Apple's token endpoint checks it (RFC 7523 §3, Apple's "Implementing
OAuth for the Apple School Manager and Apple Business API"). No I/O: the service looks the account up.

A client assertion is a JWT signed with the API account's EC P-256 key: header ``alg: ES256`` and
``kid`` = the account's key ID; claims ``sub`` = the client ID, ``aud`` =
``https://account.apple.com/auth/oauth2/v2/token``, ``iat`` and ``exp`` (less than 180 days apart:
Apple's own sample signs for exactly 180 days, so that is allowed), and ``jti``. ``iss`` (Apple's
sample sets it to the client ID) is not checked. The assertion may be reused until it expires.

PyJWT verifies the signature, the algorithm, the audience and that the claims are there; the subject
and the times are checked here, times against the *world* clock, so that a test expires an assertion
by moving the clock. ``iat`` may be ahead of world time as far as the wall clock (clients sign with their
own clock, and a world may run in the past) plus a minute of skew. Every failure is ``invalid_client``
(RFC 7521 §4.2.1: "If an assertion is not valid or has expired … MUST be invalid_client"), with a
description that says which check failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

from .errors import OAuthError

__all__ = [
    "APPLE_AUDIENCE",
    "ASSERTION_TYPE",
    "MAX_ASSERTION_LIFETIME_S",
    "Assertion",
    "verify_client_assertion",
    "assertion_key_id",
]

APPLE_AUDIENCE = "https://account.apple.com/auth/oauth2/v2/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME_S = 180 * 86400
MAX_ASSERTION_LENGTH = 8192
SKEW_S = 60.0
_REQUIRED = ["aud", "exp", "iat", "sub", "jti"]


@dataclass(frozen=True, slots=True)
class Assertion:
    """A verified client assertion's claims that the token service uses."""

    client_id: str
    jti: str
    issued_at: float
    expires_at: float


def _invalid(description: str) -> OAuthError:
    return OAuthError("invalid_client", description)


def assertion_key_id(assertion: Any) -> str:
    """The ``kid`` of an assertion's header (unverified), after checking it is an ES256 JWT at all."""
    if not isinstance(assertion, str) or not assertion or len(assertion) > MAX_ASSERTION_LENGTH:
        raise _invalid("client_assertion must be a JWT")
    try:
        header = jwt.get_unverified_header(assertion)
    except (jwt.PyJWTError, ValueError, TypeError):
        raise _invalid("client_assertion is not a well-formed JWT") from None
    if header.get("alg") != "ES256":
        raise _invalid("the client assertion must be signed with ES256 (header alg)")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _invalid("the client assertion's header must name the key ID (kid)")
    return kid


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not -1e12 < value < 1e12:
        raise _invalid(f"the {name} claim must be a number of seconds since the epoch")
    return float(value)


def verify_client_assertion(
    assertion: str,
    *,
    client_id: str,
    key_id: str,
    public_key_pem: str,
    audiences: list[str],
    now: float,
    wall: float,
) -> Assertion:
    """The assertion's claims once every check passed, else :class:`OAuthError` ``invalid_client``."""
    if assertion_key_id(assertion) != key_id:
        raise _invalid("the key ID (kid) is not this client's")
    try:
        claims = jwt.decode(
            assertion,
            public_key_pem,
            algorithms=["ES256"],
            audience=audiences,
            options={"require": _REQUIRED, "verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.InvalidSignatureError:
        raise _invalid("the client assertion's signature does not verify with this client's key") from None
    except jwt.MissingRequiredClaimError as exc:
        raise _invalid(f"the client assertion needs the {exc.claim} claim") from None
    except jwt.InvalidAudienceError:
        raise _invalid(f"the client assertion's audience (aud) must be {APPLE_AUDIENCE}") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise _invalid("the client assertion could not be verified") from None
    if claims.get("sub") != client_id:  # checked here: PyJWT checks ``sub`` only from 2.10
        raise _invalid("the client assertion's subject (sub) must be the client ID")
    issued_at, expires_at = _number(claims, "iat"), _number(claims, "exp")
    if expires_at <= now:
        raise _invalid("the client assertion has expired (exp)")
    if issued_at > max(now, wall) + SKEW_S:
        raise _invalid("the client assertion is issued in the future (iat)")
    if expires_at <= issued_at or expires_at - issued_at > MAX_ASSERTION_LIFETIME_S:
        raise _invalid("the client assertion's exp must be after iat and at most 180 days after it")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise _invalid("the client assertion's jti must be a unique string")
    return Assertion(client_id=client_id, jti=jti, issued_at=issued_at, expires_at=expires_at)
