"""The controller's side of Apple's DEP web service: a client per token, and Apple's failures in Graph's words.

Every rule module that calls Apple (tokens, syncing, enrollment profiles, assignments) gets its
:class:`~mdm.controller.depclient.DEPClient` here, so the session a token earned is kept on its row
and reused by the next request, thread or worker; and says what went wrong with :func:`apple_failure`,
so the same refusal reads the same on a setting (``lastSyncErrorReason``) and in an error reply; and
:func:`failure_number` gives the integer Graph types ``lastSyncErrorCode`` as.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import httpx

from mdm.platform.storage import Store

from .depclient import DEPClient, DEPError, OAuthCredentials, TermsNotSigned
from .errors import GraphError, retry_after_seconds
from .store import tokens as token_table

__all__ = [
    "SYNC_TIMED_OUT",
    "TERMS_MESSAGE",
    "TOKEN_EXPIRED",
    "Apple",
    "apple_failure",
    "failure_number",
    "graph_from_apple",
]

TERMS_MESSAGE = (
    "Apple refused the request (403 T_C_NOT_SIGNED): accept the new terms and conditions in "
    "Apple Business Manager, then sync again"
)

#: ``lastSyncErrorCode`` of the failures that are not an answer from Apple: the sync's window ran out
#: (408, a request timeout) or the token expired (401, what Apple answers an expired token with).
SYNC_TIMED_OUT = 408
TOKEN_EXPIRED = 401


class Apple:
    """How the controller reaches Apple: one HTTP client, the DEP URL, and how to wait when rate-limited."""

    def __init__(
        self,
        store: Store,
        *,
        http: httpx.Client,
        dep_url: Callable[[], str],
        sleep: Callable[[float], None],
        protocol_version: int,
    ) -> None:
        self.store = store
        self.http = http
        self.dep_url = dep_url
        self.sleep = sleep
        self.protocol_version = protocol_version

    def client(self, credentials: OAuthCredentials) -> DEPClient:
        """A client for credentials not stored yet (a DEP token being uploaded): a fresh session."""
        return DEPClient(self.http, self.dep_url(), credentials, sleep=self.sleep, protocol_version=self.protocol_version)

    def client_for(self, row: sqlite3.Row) -> DEPClient:
        """A client for a stored token, starting from its session and storing each new one."""
        token_id = row["id"]

        def keep_session(session: str | None) -> None:
            with self.store.transaction() as db:
                token_table.set_session(db, token_id, session)

        credentials = OAuthCredentials(
            row["consumer_key"], row["consumer_secret"], row["access_token"], row["access_secret"]
        )
        return DEPClient(
            self.http,
            self.dep_url(),
            credentials,
            session=row["session_token"],
            on_session=keep_session,
            sleep=self.sleep,
            protocol_version=self.protocol_version,
        )


def apple_failure(exc: Exception) -> tuple[str, str]:
    """(lastSyncErrorCode, message) for an Apple or network failure; the message says what to do."""
    if isinstance(exc, TermsNotSigned):
        return "termsAndConditionsNotAccepted", TERMS_MESSAGE
    if isinstance(exc, DEPError):
        if exc.status == 401:
            return "appleAuthenticationFailed", (
                f"Apple rejected the token's credentials ({exc.status} {exc.code}); the token may have been "
                "renewed or revoked in Apple Business Manager: upload a new one"
            )
        if exc.status == 403:
            return "appleAccessDenied", f"Apple refused access ({exc.status} {exc.code})"
        if exc.status in (429, 503):
            return "appleRateLimited", (
                f"Apple kept answering {exc.status} {exc.code} after several retries; try again later"
            )
        return "appleServiceError", f"Apple's DEP service answered {exc.status} {exc.code}"
    if isinstance(exc, httpx.HTTPError):
        return "appleUnreachable", f"Apple's DEP service could not be reached: {type(exc).__name__}"
    return "internalError", f"the sync stopped unexpectedly: {type(exc).__name__}"


def failure_number(exc: Exception) -> int:
    """``lastSyncErrorCode`` (Graph's Int32) for a failed sync: the HTTP status Apple answered with;
    503 when Apple could not be reached, 500 for anything else."""
    if isinstance(exc, DEPError):
        return exc.status
    if isinstance(exc, httpx.HTTPError):
        return 503
    return 500


def graph_from_apple(exc: Exception, what: str) -> GraphError:
    """A synchronous action (define a profile, assign) that Apple refused → a 400/429 Graph error."""
    code, message = apple_failure(exc)
    if isinstance(exc, DEPError) and exc.status in (429, 503):
        return GraphError(429, code, message, retry_after=retry_after_seconds(exc.retry_after or 60))
    if isinstance(exc, DEPError) and exc.status == 400:
        return GraphError(400, "appleRejected", f"Apple rejected the {what}: {exc.code}")
    return GraphError(400, code, message)
