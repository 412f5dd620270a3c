"""OAuth 1.0a as the DEP web service's ``GET /session`` checks it (HMAC-SHA1, ``realm="ADM"``). No I/O.

Whether the keys belong to a server, whether the nonce is fresh and whether the timestamp is close
enough are the service's questions; this module only reads the request and checks a signature
(``oauthlib``'s ``verify_hmac_sha1``, never a hand-written HMAC).
"""

from __future__ import annotations

import hashlib
import urllib.parse
from dataclasses import dataclass
from urllib.request import parse_http_list

from oauthlib.common import Request as OAuthRequest
from oauthlib.oauth1.rfc5849 import signature as oauth_signature

from .errors import bad_request

__all__ = ["SignedRequest", "read_signed_request", "signature_matches", "session_key"]

_OAUTH_REQUIRED = (
    "oauth_consumer_key",
    "oauth_token",
    "oauth_signature_method",
    "oauth_signature",
    "oauth_timestamp",
    "oauth_nonce",
)


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What a ``GET /session`` claims: its keys, nonce and timestamp, and the parameters it signed."""

    consumer_key: str
    token: str
    nonce: str
    timestamp: int
    signature: str
    params: list[tuple[str, str]]


def _parse_header(header: str | None) -> list[tuple[str, str]]:
    """``Authorization: OAuth k="v", …`` as a list (duplicates kept, so the caller can refuse them)."""
    if not header or not header[:6].lower() == "oauth ":
        raise bad_request("BAD_REQUEST")
    params: list[tuple[str, str]] = []
    for item in parse_http_list(header[6:]):
        key, sep, value = item.partition("=")
        if not sep:
            raise bad_request("BAD_REQUEST")
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        params.append((urllib.parse.unquote(key), urllib.parse.unquote(value)))
    return params


def read_signed_request(url: str, authorization: str | None) -> SignedRequest:
    """The OAuth parameters of a request, or 400 ``BAD_REQUEST`` when they are not well formed:
    missing, given twice, given in the query as well as the header, not HMAC-SHA1, not version 1.0,
    or a timestamp that is not a plain number."""
    header_params = _parse_header(authorization)
    query = urllib.parse.urlsplit(url).query
    try:
        query_params = urllib.parse.parse_qsl(query, keep_blank_values=True)
    except ValueError:
        raise bad_request("BAD_REQUEST") from None
    if any(k.startswith("oauth_") for k, _ in query_params):
        raise bad_request("BAD_REQUEST")  # OAuth parameters must come from one place only
    names = [k for k, _ in header_params]
    if len(names) != len(set(names)):
        raise bad_request("BAD_REQUEST")
    oauth = dict(header_params)
    if any(not oauth.get(name) for name in _OAUTH_REQUIRED):
        raise bad_request("BAD_REQUEST")
    if oauth["oauth_signature_method"] != "HMAC-SHA1":
        raise bad_request("BAD_REQUEST")
    if oauth.get("oauth_version", "1.0") != "1.0":
        raise bad_request("BAD_REQUEST")
    stamp = oauth["oauth_timestamp"]
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise bad_request("BAD_REQUEST")
    return SignedRequest(
        consumer_key=oauth["oauth_consumer_key"],
        token=oauth["oauth_token"],
        nonce=oauth["oauth_nonce"],
        timestamp=int(stamp),
        signature=oauth["oauth_signature"],
        params=[(k, v) for k, v in header_params if k not in ("oauth_signature", "realm")] + query_params,
    )


def signature_matches(url: str, signed: SignedRequest, consumer_secret: str, access_secret: str) -> bool:
    """Whether ``signed`` carries the HMAC-SHA1 signature of a GET of ``url`` with these secrets."""
    request = OAuthRequest(url, http_method="GET", body="", headers={})
    request.params = signed.params
    request.signature = signed.signature
    try:
        return bool(oauth_signature.verify_hmac_sha1(request, consumer_secret, access_secret))
    except (ValueError, TypeError):
        return False


def session_key(token: str) -> str:
    """Sessions are stored and looked up by a SHA-256 of the token: an index lookup's timing then says
    nothing about the token itself, and the database holds no usable session token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
