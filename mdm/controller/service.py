"""The controller's rules: DEP tokens, enrollment profiles, syncs with limits, assignments, device state.

This is Intune's DEP connector as the outside world sees it through Graph. Every rule lives here;
:mod:`mdm.controller.http` only parses and renders. Two invariants shape the code:

* **Apple is never called inside a store transaction.** A slow or rate-limited Apple must not hold
  SQLite's write lock (other workers would stall on ``BEGIN IMMEDIATE``). So each operation reads,
  calls Apple, then writes; the sync writes page by page, re-checking that it still owns the claim.
* **The one-sync-in-flight rule is the store's.** :meth:`Controller.request_sync` reads the token row
  and claims it in one ``BEGIN IMMEDIATE`` transaction, so concurrent requests in any number of
  threads or processes produce exactly one sync. A claim carries a deadline; whoever reads the row
  after the deadline (a request, a GET, a restarted controller, ``tick()``) marks the sync failed, so
  nothing stays "running" after a crash.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol import cms
from mdm.protocol import x509 as mx509
from mdm.protocol.isotime import IsoTimeError, iso_from_timestamp, parse_iso
from mdm.protocol.webhook import WebhookError, parse_event

from . import profiles as profile_rules
from .depclient import DEPClient, DEPError, OAuthCredentials, TermsNotSigned
from .errors import GraphError
from .pushcert import PushCertificates
from .sync import SyncRules, blocked_until, next_kind, rules_for

__all__ = ["Controller", "GraphError", "MDM_EVENT_TOPICS"]

DEFAULT_THROTTLE_RETRY_S = 60.0
MAX_TOKEN_CHARS = 65_536
MAX_SERIALS_PER_REQUEST = 10_000
MAX_PROFILES_PER_TOKEN = 1000
#: The MDM webhook topics the controller subscribes to: the check-in messages that change what Graph
#: shows (serial ↔ UDID, enrollment state, last contact), and reports on EraseDevice (``pendingReset``).
#: Other command reports (``mdm.Connect``, two or more per device and command) are left out: every
#: event costs the MDM server a request and changes nothing Graph shows.
MDM_EVENT_TOPICS = frozenset({
    "mdm.Authenticate", "mdm.TokenUpdate", "mdm.CheckOut", "mdm.EnrollmentFailed", "mdm.Connect:EraseDevice",
})
MAX_PAGES = 100_000
DEFAULT_TOP = 100
MAX_TOP = 1000
TERMS_MESSAGE = (
    "Apple refused the request (403 T_C_NOT_SIGNED): accept the new terms and conditions in "
    "Apple Business Manager, then sync again"
)


class _SyncLost(Exception):
    """The sync no longer owns its claim (timed out, token deleted): stop without writing."""


@dataclass(frozen=True)
class _Claim:
    token_id: str
    sync_id: str
    kind: str
    deadline: float


def _ceil(seconds: float) -> int:
    return max(1, math.ceil(seconds - 1e-9))



def _not_found(what: str, ident: str) -> GraphError:
    return GraphError(404, "notFound", f"{what} {ident!r} was not found"[:300])


def _apple_failure(exc: Exception) -> tuple[str, str]:
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


def _graph_from_apple(exc: Exception, what: str) -> GraphError:
    """A synchronous action (define a profile, assign) that Apple refused → a 400/429 Graph error."""
    code, message = _apple_failure(exc)
    if isinstance(exc, DEPError) and exc.status in (429, 503):
        return GraphError(429, code, message, retry_after=_ceil(exc.retry_after or 60))
    if isinstance(exc, DEPError) and exc.status == 400:
        return GraphError(400, "appleRejected", f"Apple rejected the {what}: {exc.code}")
    return GraphError(400, code, message)


class Controller:
    """Intune's DEP connector over one store, one clock and one HTTP client to Apple.

    ``background=False`` runs syncs inline in the caller's thread, so a test sees the result as soon
    as the request returns; ``sleep`` is what rate-limit waits call (inject a recorder in tests).
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        http: httpx.Client,
        dep_url: Callable[[], str],
        mdm_enroll_url: Callable[[], str],
        rules: str = "2016",
        background: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        protocol_version: int = 9,
        page_limit: int = 1000,
        mdm_api_url: Callable[[], str] | None = None,
        seed: int | None = None,
        anchor_certs: Callable[[], list[str]] | None = None,
    ) -> None:
        self.store = store
        # ``anchor_certs``: base64 DER certificates the MDM server's TLS certificate chains to. Every
        # profile defined at Apple carries them, so devices trust the MDM server by exactly these.
        self.anchor_certs = anchor_certs
        self.clock = clock
        self.http = http
        self.dep_url = dep_url
        self.mdm_enroll_url = mdm_enroll_url
        self.rules: SyncRules = rules_for(rules)
        self.background = background
        self.sleep = sleep
        self.protocol_version = protocol_version
        self.page_limit = page_limit
        self._threads: list[threading.Thread] = []
        # ``mdm_api_url`` (e.g. "http://host/mdm/api/v1"): where an uploaded push certificate is handed
        # to the MDM server. None keeps the certificate without delivering it (the controller alone).
        self.push_certificates = PushCertificates(store, clock, http=http, mdm_api_url=mdm_api_url, seed=seed)

    # == tokens (depOnboardingSettings) =========================================================
    def create_setting(self, body: Any) -> dict[str, Any]:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise GraphError(400, "badRequest", "the body must be a JSON object")
        name = body.get("tokenName")
        if name is not None and (not isinstance(name, str) or len(name) > 200):
            raise GraphError(400, "badRequest", "tokenName must be a string of at most 200 characters")
        now = self.clock.timestamp()
        token_id = str(uuid.uuid4())
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO tokens (id, token_name, created_at, modified_at) VALUES (?, ?, ?, ?)",
                (token_id, name, now, now),
            )
        return self.get_setting(token_id)

    def update_setting(self, token_id: str, body: Any) -> dict[str, Any]:
        """PATCH: only ``tokenName`` is the admin's to change; the rest comes from Apple."""
        if not isinstance(body, dict):
            raise GraphError(400, "badRequest", "the body must be a JSON object")
        name = body.get("tokenName")
        if "tokenName" in body and (not isinstance(name, str) or not name or len(name) > 200):
            raise GraphError(400, "badRequest", "tokenName must be a string of 1 to 200 characters")
        with self.store.transaction() as db:
            self._token(db, token_id)
            if "tokenName" in body:
                db.execute(
                    "UPDATE tokens SET token_name = ?, modified_at = ? WHERE id = ?",
                    (name, self.clock.timestamp(), token_id),
                )
        return self.get_setting(token_id)

    def list_settings(self) -> list[dict[str, Any]]:
        self._expire_overdue()
        with self.store.read() as db:
            rows = db.execute("SELECT * FROM tokens ORDER BY created_at, id").fetchall()
            return [self._render_setting(db, row) for row in rows]

    def get_setting(self, token_id: str) -> dict[str, Any]:
        self._expire_overdue(token_id)
        with self.store.read() as db:
            return self._render_setting(db, self._token(db, token_id))

    def delete_setting(self, token_id: str) -> None:
        with self.store.transaction() as db:
            self._token(db, token_id)
            db.execute("DELETE FROM tokens WHERE id = ?", (token_id,))

    def generate_encryption_key(self, token_id: str) -> str:
        """A new RSA 2048 key and self-signed certificate; the portal envelopes the token to it.

        RSA because Apple's token is enveloped with RSA key transport. The old key is replaced: a token
        already uploaded keeps working (its OAuth credentials are stored), only new uploads need the new key.
        """
        key = mx509.new_private_key("rsa")
        cert = mx509.self_signed(key, "mdmsim controller DEP token", self.clock.now(), days=365)
        cert_pem = mx509.cert_to_pem(cert).decode()
        with self.store.transaction() as db:
            self._token(db, token_id)
            db.execute(
                "UPDATE tokens SET key_pem = ?, cert_pem = ?, modified_at = ? WHERE id = ?",
                (mx509.key_to_pem(key).decode(), cert_pem, self.clock.timestamp(), token_id),
            )
        return cert_pem

    def get_encryption_key(self, token_id: str) -> str:
        """The certificate to upload to the portal; made on first use so the admin can always download one."""
        with self.store.read() as db:
            row = self._token(db, token_id)
        return row["cert_pem"] or self.generate_encryption_key(token_id)

    def upload_token(self, token_id: str, body: Any) -> None:
        """Decrypt the portal's ``.p7m``, check it with Apple (``GET /account``) and keep its credentials."""
        if not isinstance(body, dict):
            raise GraphError(400, "badRequest", "the body must be a JSON object with depToken and appleId")
        text, apple_id = body.get("depToken"), body.get("appleId")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TOKEN_CHARS:
            raise GraphError(400, "badRequest", "depToken must be the text of the .p7m file from the portal")
        if apple_id is not None and (not isinstance(apple_id, str) or len(apple_id) > 320):
            raise GraphError(400, "badRequest", "appleId must be the Apple ID (an e-mail address)")
        with self.store.read() as db:
            row = self._token(db, token_id)
        if not row["cert_pem"]:
            raise GraphError(
                400,
                "encryptionKeyMissing",
                "generate the encryption public key first and upload it to the portal",
            )
        credentials, expiry = self._open_token(text, row)
        now = self.clock.timestamp()
        if expiry <= now:
            raise GraphError(
                400,
                "depTokenExpired",
                f"the DEP token expired at {iso_from_timestamp(expiry)}: download a new one from the portal",
            )
        client = DEPClient(
            self.http, self.dep_url(), credentials, sleep=self.sleep, protocol_version=self.protocol_version
        )
        try:
            account = client.account()
        except (DEPError, httpx.HTTPError) as exc:
            code, message = _apple_failure(exc)
            raise GraphError(400, code, message) from None
        server_uuid = str(account.get("server_uuid") or "")
        with self.store.transaction() as db:
            row = self._token(db, token_id)
            other = db.execute(
                "SELECT id FROM tokens WHERE server_uuid = ? AND id != ?", (server_uuid, token_id)
            ).fetchone()
            if other is not None:
                raise GraphError(
                    409,
                    "tokenAlreadyUploaded",
                    f"this MDM server's token is already used by depOnboardingSetting {other[0]}",
                )
            if row["server_uuid"] and row["server_uuid"] != server_uuid:
                # A token of another MDM server: its devices and cursor mean nothing here.
                db.execute("DELETE FROM devices WHERE token_id = ?", (token_id,))
                db.execute("UPDATE tokens SET cursor = NULL, last_full_at = NULL WHERE id = ?", (token_id,))
            db.execute(
                """UPDATE tokens SET consumer_key = ?, consumer_secret = ?, access_token = ?,
                   access_secret = ?,
                   token_type = 'dep', token_expiration = ?, session_token = ?, server_uuid = ?,
                   server_name = ?, org_name = ?, apple_identifier = ?, token_name = coalesce(token_name, ?),
                   modified_at = ? WHERE id = ?""",
                (
                    credentials.consumer_key,
                    credentials.consumer_secret,
                    credentials.access_token,
                    credentials.access_secret,
                    expiry,
                    client.session,
                    server_uuid,
                    account.get("server_name"),
                    account.get("org_name"),
                    apple_id or account.get("admin_id"),
                    account.get("server_name") or account.get("org_name"),
                    now,
                    token_id,
                ),
            )

    def _open_token(self, text: str, row: sqlite3.Row) -> tuple[OAuthCredentials, float]:
        try:
            cert = mx509.cert_from_pem(row["cert_pem"])
            key = mx509.key_from_pem(row["key_pem"])
            inner = cms.smime_decrypt(text.encode("utf-8"), cert, key)
            data = json.loads(cms.parse_text_part(inner))
        except cms.CMSError as exc:
            raise GraphError(
                400,
                "invalidDepToken",
                f"the DEP token could not be decrypted with this setting's key ({exc.reason}); "
                "was the current public key uploaded to the portal?",
            ) from None
        except (ValueError, UnicodeError):
            raise GraphError(400, "invalidDepToken", "the decrypted DEP token is not JSON") from None
        names = ("consumer_key", "consumer_secret", "access_token", "access_secret")
        if not isinstance(data, dict) or not all(isinstance(data.get(n), str) and data[n] for n in names):
            raise GraphError(400, "invalidDepToken", "the DEP token lacks its OAuth credentials")
        try:
            expiry = parse_iso(data.get("access_token_expiry")).timestamp()
        except IsoTimeError:
            raise GraphError(
                400, "invalidDepToken", "the DEP token has no valid access_token_expiry"
            ) from None
        return OAuthCredentials(*(data[n] for n in names)), expiry

    # == Apple MDM push certificate (applePushNotificationCertificate) ============================
    def push_certificate_signing_request(self) -> str:
        """``downloadApplePushNotificationCertificateSigningRequest``: the CSR to take to Apple."""
        return self.push_certificates.signing_request()

    def generate_push_certificate_signing_request(self) -> str:
        """A new key and CSR, replacing one that is waiting (the certificate in use is untouched)."""
        return self.push_certificates.new_signing_request()

    def upload_push_certificate(self, body: Any) -> dict[str, Any]:
        """PATCH/POST ``applePushNotificationCertificate``: the certificate Apple issued for our CSR."""
        return self.push_certificates.upload(body)

    def get_push_certificate(self) -> dict[str, Any]:
        return self.push_certificates.get()

    # == syncs ===================================================================================
    def request_sync(self, token_id: str, *, manual: bool = True) -> None:
        """Claim the token's sync slot atomically, then run the sync (in a thread unless inline).

        Raises 409 while another sync holds the slot, 429 when a manual request comes too soon
        (``current`` rules), 400 without a token or with an expired one (recorded on the token).
        """
        claim = self._claim(token_id, manual=manual)
        self._start(claim)

    def _claim(self, token_id: str, *, manual: bool) -> _Claim:
        expired_at: float | None = None
        # A storm of requests is mostly refusals: decide those on a read, which in WAL mode waits for
        # no one. Only a request that may start a sync takes the write lock (and checks again under
        # it); on a data directory, 1,000 requests all queueing for the write lock left p99 at ~250 ms.
        with self.store.read() as db:
            row = self._token(db, token_id)
            now = self.clock.timestamp()  # after the row: no claim it shows can be later than this
            if row["token_type"] == "dep":
                refusal = self._refusal(row, now, manual=manual)
                if refusal is not None:
                    raise refusal
        with self.store.transaction() as db:
            # Read the time once the write lock is held: read before, it can precede a claim another
            # worker made meanwhile, and its Retry-After would exceed the window (601 of 600 s).
            now = self.clock.timestamp()
            self._expire_overdue_in(db, now, token_id)
            row = self._token(db, token_id)
            if row["token_type"] != "dep":
                raise GraphError(400, "depTokenRequired", "upload a DEP token before syncing")
            refusal = self._refusal(row, now, manual=manual)
            if refusal is not None:
                raise refusal
            if row["token_expiration"] is not None and row["token_expiration"] <= now:
                expired_at = row["token_expiration"]
                db.execute(
                    "UPDATE tokens SET last_error_code = 'depTokenExpired', last_error_message "
                    "= ? WHERE id = ?",
                    (self._expired_message(expired_at), token_id),
                )
            else:
                kind = next_kind(self.rules, row, now)
                claim = _Claim(token_id, str(uuid.uuid4()), kind, now + self.rules.window_s)
                db.execute(
                    """UPDATE tokens SET sync_status = 'running', sync_id = ?, sync_kind = ?, sync_manual = ?,
                       sync_triggered_at = ?, sync_deadline = ?, progress_pages = 0, progress_devices = 0,
                       last_manual_at = CASE WHEN ? THEN ? ELSE last_manual_at END
                       WHERE id = ?""",
                    (claim.sync_id, kind, int(manual), now, claim.deadline, int(manual), now, token_id),
                )
        if expired_at is not None:
            raise GraphError(400, "depTokenExpired", self._expired_message(expired_at))
        return claim

    @staticmethod
    def _expired_message(expired_at: float) -> str:
        return (
            f"the DEP token expired at {iso_from_timestamp(expired_at)}; syncing has stopped: download a new token "
            "from Apple Business Manager and upload it"
        )

    def _start(self, claim: _Claim) -> None:
        if not self.background:
            self._run_sync(claim)
            return
        thread = threading.Thread(
            target=self._run_sync, args=(claim,), name=f"dep-sync-{claim.token_id[:8]}", daemon=True
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def wait_for_sync(self, setting_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """Poll until the token's sync is no longer running (wall-clock deadline); for tests and demos."""
        deadline = time.monotonic() + timeout_s
        while True:
            setting = self.get_setting(setting_id)
            if setting["syncStatus"] != "running":
                return setting
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the sync of {setting_id} still runs after {timeout_s} s")
            time.sleep(0.005)

    def tick(self) -> dict[str, Any]:
        """Run what is due: fail overdue syncs, start automatic syncs (``current``), retry THROTTLED.

        The world calls this as its clock moves; nothing here runs on a timer of its own, so a test
        decides exactly when "twelve hours later" happens.
        """
        now = self.clock.timestamp()
        self._expire_overdue()
        started: list[str] = []
        if self.rules.auto_interval_s is not None:
            with self.store.read() as db:
                due = [
                    r["id"]
                    for r in db.execute(
                        "SELECT id FROM tokens WHERE token_type = 'dep' AND sync_status != 'running' "
                        "AND (sync_triggered_at IS NULL OR sync_triggered_at + ? <= ?)",
                        (self.rules.auto_interval_s, now),
                    )
                ]
            for token_id in due:
                try:
                    self.request_sync(token_id, manual=False)
                    started.append(token_id)
                except GraphError:
                    pass  # blocked or expired: recorded on the token, tried again on a later tick
        retried = self.retry_throttled()
        return {"syncsStarted": started, "assignmentsRetried": retried}

    def _expire_overdue(self, token_id: str | None = None) -> None:
        now = self.clock.timestamp()
        with self.store.read() as db:
            sql = "SELECT 1 FROM tokens WHERE sync_status = 'running' AND sync_deadline <= ?"
            args: tuple[Any, ...] = (now,)
            if token_id is not None:
                sql, args = sql + " AND id = ?", (now, token_id)
            if db.execute(sql + " LIMIT 1", args).fetchone() is None:
                return
        with self.store.transaction() as db:
            self._expire_overdue_in(db, now, token_id)

    def _refusal(self, row: sqlite3.Row, now: float, *, manual: bool) -> GraphError | None:
        """Why a sync may not start now (409 while one holds the slot, 429 for a manual one too soon)."""
        until = blocked_until(row, now)
        if until is not None:
            state = (
                "is still running"
                if row["sync_status"] == "running"
                else f"failed ({row['last_error_code']})"
            )
            return GraphError(
                409,
                "syncInProgress",
                f"the sync requested at {iso_from_timestamp(row['sync_triggered_at'])} {state}; each sync request has "
                f"{int(self.rules.window_s // 60)} minutes to finish, so the next one can "
                f"start at {iso_from_timestamp(until)}",
                retry_after=_ceil(until - now),
            )
        interval = self.rules.manual_interval_s
        if manual and interval is not None and row["last_manual_at"] is not None:
            ready = row["last_manual_at"] + interval
            if now < ready:
                return GraphError(
                    429,
                    "syncTooFrequent",
                    f"a manual sync may run every {int(interval // 60)} minutes; the next at "
                    f"{iso_from_timestamp(ready)}",
                    retry_after=_ceil(ready - now),
                )
        return None

    def _expire_overdue_in(self, db: sqlite3.Connection, now: float, token_id: str | None) -> None:
        """Mark syncs whose window has passed failed: how a crash or a restart never leaves one stuck."""
        rows = db.execute(
            "SELECT id, sync_id, sync_kind FROM tokens WHERE sync_status = 'running' AND sync_deadline <= ?"
            + (" AND id = ?" if token_id is not None else ""),
            (now, token_id) if token_id is not None else (now,),
        ).fetchall()
        for row in rows:
            self._mark_failed(
                db,
                row["id"],
                row["sync_id"],
                "syncTimedOut",
                f"the sync did not finish within its {int(self.rules.window_s // 60)} minutes",
            )

    def _mark_failed(
        self, db: sqlite3.Connection, token_id: str, sync_id: str, code: str, message: str
    ) -> None:
        # Under the current rules a failed delta makes the next sync full; a failed full stays due anyway.
        force = 1 if self.rules.name == "current" else 0
        db.execute(
            """UPDATE tokens SET sync_status = 'failed', last_error_code = ?, last_error_message = ?,
               force_full = max(force_full, ?) WHERE id = ? AND sync_id = ? AND sync_status = 'running'""",
            (code, message[:500], force, token_id, sync_id),
        )

    # -- the sync itself ---------------------------------------------------------------------------
    def _run_sync(self, claim: _Claim) -> None:
        """Fetch from Apple and write page by page; every failure ends in a recorded state."""
        try:
            with self.store.read() as db:
                row = db.execute("SELECT * FROM tokens WHERE id = ?", (claim.token_id,)).fetchone()
            if row is None:
                return
            client = self._client(row)
            kind, cursor = claim.kind, row["cursor"]
            if kind != "full":
                try:
                    cursor = self._partial(client, claim, cursor)
                except DEPError as exc:
                    if exc.code not in ("EXPIRED_CURSOR", "INVALID_CURSOR"):
                        raise
                    kind = "full"  # Apple's documented recovery: start over with a full fetch
            if kind == "full":
                cursor = self._full(client, claim)
            self._assign_defaults(claim, row)
            self._finish(claim, kind, cursor)
        except _SyncLost:
            self._expire_overdue(claim.token_id)  # past its window: recorded as failed now, not on next read
        except Exception as exc:  # noqa: BLE001 - any failure must end as a visible state, never "running"
            code, message = _apple_failure(exc)
            with self.store.transaction() as db:
                self._mark_failed(db, claim.token_id, claim.sync_id, code, message)

    def _owned(self, db: sqlite3.Connection, claim: _Claim, now: float) -> None:
        """Raise _SyncLost unless ``claim`` still owns the token and is inside its window."""
        row = db.execute("SELECT sync_id, sync_status FROM tokens WHERE id = ?", (claim.token_id,)).fetchone()
        if row is None or row["sync_id"] != claim.sync_id or row["sync_status"] != "running":
            raise _SyncLost()
        if now > claim.deadline:
            raise _SyncLost()

    def _check_window(self, claim: _Claim) -> None:
        """A sync past its deadline is marked failed right away (not only when someone looks)."""
        now = self.clock.timestamp()
        if now > claim.deadline:
            with self.store.transaction() as db:
                self._expire_overdue_in(db, now, claim.token_id)
            raise _SyncLost()

    def _full(self, client: DEPClient, claim: _Claim) -> str | None:
        """Every serial from ``/server/devices``; known ones refreshed, missing ones marked deleted."""
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            self._check_window(claim)
            try:
                page = client.fetch_devices(cursor, self.page_limit)
            except DEPError as exc:
                if exc.code == "EXHAUSTED_CURSOR":
                    break  # everything was returned already
                raise
            self._write_page(claim, page.get("devices") or [], mode="full")
            cursor = page.get("cursor") or cursor
            if not page.get("more_to_follow"):
                break
        return cursor

    def _partial(self, client: DEPClient, claim: _Claim, cursor: str | None) -> str | None:
        """``/devices/sync`` from the stored cursor: limited (adds only) or delta (applies everything)."""
        assert cursor is not None
        for _ in range(MAX_PAGES):
            self._check_window(claim)
            try:
                page = client.sync_devices(cursor, self.page_limit)
            except DEPError as exc:
                if exc.code == "EXHAUSTED_CURSOR":
                    break
                raise
            self._write_page(claim, page.get("devices") or [], mode=claim.kind)
            cursor = page.get("cursor") or cursor
            if not page.get("more_to_follow"):
                break
        return cursor

    def _write_page(self, claim: _Claim, devices: list[Any], *, mode: str) -> None:
        now = self.clock.timestamp()
        latest: dict[str, dict[str, Any]] = {}
        for device in devices:  # a sync may list a serial twice: the latest op_date wins
            if isinstance(device, dict) and isinstance(device.get("serial_number"), str):
                serial = device["serial_number"]
                if serial not in latest or str(device.get("op_date", "")) >= str(
                    latest[serial].get("op_date", "")
                ):
                    latest[serial] = device
        with self.store.transaction() as db:
            self._owned(db, claim, now)
            known: set[str] = set()
            serials = list(latest)
            for start in range(0, len(serials), 500):
                part = serials[start : start + 500]
                known.update(
                    r[0]
                    for r in db.execute(
                        "SELECT serial FROM devices WHERE token_id = ? AND serial IN "
                        f"({','.join('?' * len(part))})",
                        (claim.token_id, *part),
                    )
                )
            for serial, device in latest.items():
                op = device.get("op_type")
                if mode == "limited":
                    if serial in known or op == "deleted":
                        continue  # 2016: changes to listed serials wait for the next full sync
                    self._upsert(db, claim, device, now)
                elif op == "deleted":
                    if serial in known:
                        db.execute(
                            "UPDATE devices SET is_deleted = 1 WHERE token_id = ? AND serial = ?",
                            (claim.token_id, serial),
                        )
                else:
                    self._upsert(db, claim, device, now)
            db.execute(
                "UPDATE tokens SET progress_pages = progress_pages + 1, progress_devices = "
                "progress_devices + ? "
                "WHERE id = ?",
                (len(devices), claim.token_id),
            )

    @staticmethod
    def _upsert(db: sqlite3.Connection, claim: _Claim, device: dict[str, Any], now: float) -> None:
        def text(name: str) -> str | None:
            value = device.get(name)
            return str(value)[:500] if value is not None else None

        db.execute(
            """INSERT INTO devices (id, token_id, serial, description, model, color, os, device_family,
                   apple_profile_status, apple_profile_uuid, created_at, seen_sync)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (token_id, serial) DO UPDATE SET description = excluded.description,
                   model = excluded.model, color = excluded.color, os = excluded.os,
                   device_family = excluded.device_family,
                   apple_profile_status = excluded.apple_profile_status,
                   apple_profile_uuid = excluded.apple_profile_uuid, is_deleted = 0,
                   seen_sync = excluded.seen_sync""",
            (
                str(uuid.uuid4()),
                claim.token_id,
                device["serial_number"][:64],
                text("description"),
                text("model"),
                text("color"),
                text("os"),
                text("device_family"),
                text("profile_status"),
                text("profile_uuid"),
                now,
                claim.sync_id,
            ),
        )

    def _finish(self, claim: _Claim, kind: str, cursor: str | None) -> None:
        now = self.clock.timestamp()
        if now > claim.deadline:
            self._check_window(claim)
        with self.store.transaction() as db:
            self._owned(db, claim, now)
            if kind == "full":
                db.execute(
                    "UPDATE devices SET is_deleted = 1 WHERE token_id = ? AND seen_sync IS NOT ?",
                    (claim.token_id, claim.sync_id),
                )
            db.execute(
                """UPDATE tokens SET sync_status = 'idle', sync_deadline = NULL, last_success_at = ?,
                   last_kind = ?, cursor = ?, force_full = 0, last_error_code = NULL,
                   last_error_message = NULL,
                   last_full_at = CASE WHEN ? = 'full' THEN sync_triggered_at ELSE last_full_at END
                   WHERE id = ?""",
                (now, kind, cursor, kind, claim.token_id),
            )

    # == enrollment profiles ===================================================================
    def list_profiles(self, token_id: str) -> list[dict[str, Any]]:
        with self.store.read() as db:
            self._token(db, token_id)
            rows = db.execute(
                "SELECT * FROM profiles WHERE token_id = ? ORDER BY created_at, id", (token_id,)
            )
            return [self._render_profile(r) for r in rows.fetchall()]

    def get_profile(self, token_id: str, profile_id: str) -> dict[str, Any]:
        with self.store.read() as db:
            return self._render_profile(self._profile(db, token_id, profile_id))

    def get_apple_profile(self, token_id: str, profile_id: str) -> dict[str, Any]:
        """The exact JSON sent to Apple's ``POST /profile`` for this profile, and Apple's uuid."""
        with self.store.read() as db:
            row = self._profile(db, token_id, profile_id)
        return {"profile_uuid": row["profile_uuid"], "profile": json.loads(row["apple_json"])}

    def create_profile(self, token_id: str, body: Any) -> dict[str, Any]:
        settings = self._settings(None, body)
        with self.store.read() as db:
            token = self._dep_token(db, token_id)
            count = db.execute("SELECT count(*) FROM profiles WHERE token_id = ?", (token_id,)).fetchone()[0]
        # A device enrolled now would get a topic no certificate can push to (Intune refuses likewise).
        self.push_certificates.require()
        if count >= MAX_PROFILES_PER_TOKEN:
            raise GraphError(
                400, "profileLimitReached", f"a token holds at most {MAX_PROFILES_PER_TOKEN} profiles"
            )
        apple, profile_uuid = self._define(token, settings)
        now = self.clock.timestamp()
        profile_id = str(uuid.uuid4())
        with self.store.transaction() as db:
            self._token(db, token_id)
            if settings["isDefault"]:
                self._clear_default(db, token_id)
            db.execute(
                "INSERT INTO profiles (id, token_id, settings, apple_json, profile_uuid, "
                "is_default, created_at, "
                "modified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    profile_id,
                    token_id,
                    json.dumps(settings),
                    apple,
                    profile_uuid,
                    int(settings["isDefault"]),
                    now,
                    now,
                ),
            )
        return self.get_profile(token_id, profile_id)

    def update_profile(self, token_id: str, profile_id: str, body: Any) -> dict[str, Any]:
        """PATCH: Apple profiles cannot change,
        so a new one is defined and the profile's devices move to it."""
        with self.store.read() as db:
            token = self._dep_token(db, token_id)
            current = self._profile(db, token_id, profile_id)
        settings = self._settings(json.loads(current["settings"]), body)
        apple, profile_uuid = self._define(token, settings)
        with self.store.transaction() as db:
            self._profile(db, token_id, profile_id)
            if settings["isDefault"]:
                self._clear_default(db, token_id)
            db.execute(
                "UPDATE profiles SET settings = ?, apple_json = ?, profile_uuid = ?, is_default "
                "= ?, modified_at = ? "
                "WHERE id = ?",
                (
                    json.dumps(settings),
                    apple,
                    profile_uuid,
                    int(settings["isDefault"]),
                    self.clock.timestamp(),
                    profile_id,
                ),
            )
            serials = [
                r[0]
                for r in db.execute(
                    "SELECT serial FROM devices WHERE token_id = ? AND requested_profile_id = ? "
                    "AND is_deleted = 0",
                    (token_id, profile_id),
                )
            ]
        if serials and profile_uuid != current["profile_uuid"]:
            try:
                self._assign(token_id, profile_id, serials)
            except GraphError:
                pass  # recorded per device; the profile itself was saved
        return self.get_profile(token_id, profile_id)

    def delete_profile(self, token_id: str, profile_id: str) -> None:
        """Apple has no call to delete a profile; devices keep it at Apple until assigned another."""
        with self.store.transaction() as db:
            self._profile(db, token_id, profile_id)
            db.execute(
                "UPDATE devices SET requested_profile_id = NULL, requested_at = NULL, retry_at = NULL, "
                "retry_profile_id = NULL WHERE token_id = ? AND (requested_profile_id = ? OR "
                "retry_profile_id = ?)",
                (token_id, profile_id, profile_id),
            )
            db.execute("DELETE FROM profiles WHERE id = ?", (profile_id,))

    @staticmethod
    def _clear_default(db: sqlite3.Connection, token_id: str) -> None:
        for row in db.execute(
            "SELECT id, settings FROM profiles WHERE token_id = ? AND is_default = 1", (token_id,)
        ).fetchall():
            settings = json.loads(row["settings"])
            settings["isDefault"] = False
            db.execute(
                "UPDATE profiles SET is_default = 0, settings = ? WHERE id = ?",
                (json.dumps(settings), row["id"]),
            )

    @staticmethod
    def _settings(current: dict[str, Any] | None, body: Any) -> dict[str, Any]:
        try:
            return profile_rules.merge_settings(current, body)
        except profile_rules.ProfileError as exc:
            raise GraphError(400, "badRequest", str(exc)) from None

    def _define(self, token: sqlite3.Row, settings: dict[str, Any]) -> tuple[str, str]:
        """``POST /profile`` → (the JSON sent, Apple's profile_uuid); Apple's refusals become 400s."""
        try:
            apple = profile_rules.apple_profile(settings, self.mdm_enroll_url())
        except profile_rules.ProfileError as exc:
            raise GraphError(400, "badRequest", str(exc)) from None
        anchors = self.anchor_certs() if self.anchor_certs is not None else []
        if anchors:
            apple["anchor_certs"] = list(anchors)
        try:
            reply = self._client(token).define_profile(apple)
        except (DEPError, httpx.HTTPError) as exc:
            raise _graph_from_apple(exc, "enrollment profile") from None
        profile_uuid = reply.get("profile_uuid")
        if not isinstance(profile_uuid, str) or not profile_uuid:
            raise GraphError(400, "appleRejected", "Apple did not return a profile_uuid")
        return json.dumps(apple), profile_uuid

    # == assignments ===========================================================================
    def assign_profile(self, token_id: str, profile_id: str, body: Any) -> list[dict[str, Any]]:
        """``updateDeviceProfileAssignment``: every serial's result as Apple reported it."""
        serials = body.get("deviceIds") if isinstance(body, dict) else None
        if (
            not isinstance(serials, list)
            or not serials
            or len(serials) > MAX_SERIALS_PER_REQUEST
            or not all(isinstance(s, str) and 0 < len(s) <= 64 for s in serials)
        ):
            raise GraphError(
                400,
                "badRequest",
                f"deviceIds must be a list of 1 to {MAX_SERIALS_PER_REQUEST} serial numbers",
            )
        return self._assign(token_id, profile_id, list(dict.fromkeys(serials)))

    def _assign(self, token_id: str, profile_id: str, serials: list[str]) -> list[dict[str, Any]]:
        with self.store.read() as db:
            token = self._dep_token(db, token_id)
            profile = self._profile(db, token_id, profile_id)
        try:
            statuses, retry_after = self._client(token).assign_profile(profile["profile_uuid"], serials)
        except (DEPError, httpx.HTTPError) as exc:
            raise _graph_from_apple(exc, "assignment") from None
        now = self.clock.timestamp()
        retry_at = now + (retry_after if retry_after is not None else DEFAULT_THROTTLE_RETRY_S)
        supervised = int(bool(json.loads(profile["settings"]).get("supervisedModeEnabled")))
        with self.store.transaction() as db:
            for serial, status in statuses.items():
                if status == "SUCCESS":
                    db.execute(
                        "UPDATE devices SET requested_profile_id = ?, requested_at = ?, is_supervised = ?, "
                        "assignment_status = ?, retry_at = NULL, retry_profile_id = NULL "
                        "WHERE token_id = ? AND serial = ?",
                        (profile_id, now, supervised, status, token_id, serial),
                    )
                elif status == "THROTTLED":
                    db.execute(
                        "UPDATE devices SET assignment_status = ?, retry_at = ?, retry_profile_id = ? "
                        "WHERE token_id = ? AND serial = ?",
                        (status, retry_at, profile_id, token_id, serial),
                    )
                else:
                    db.execute(
                        "UPDATE devices SET assignment_status = ?, retry_at = NULL, retry_profile_id = NULL "
                        "WHERE token_id = ? AND serial = ?",
                        (status, token_id, serial),
                    )
        results = []
        for serial, status in statuses.items():
            item: dict[str, Any] = {"serialNumber": serial, "status": status}
            if status == "THROTTLED":
                item["retryAfterDateTime"] = iso_from_timestamp(retry_at)
            results.append(item)
        return results

    def retry_throttled(self) -> int:
        """Assign again the serials Apple answered THROTTLED for, once their retry time has come."""
        now = self.clock.timestamp()
        with self.store.read() as db:
            rows = db.execute(
                "SELECT token_id, retry_profile_id, serial FROM devices WHERE retry_at IS NOT "
                "NULL AND retry_at <= ? "
                "ORDER BY seq",
                (now,),
            ).fetchall()
        groups: dict[tuple[str, str], list[str]] = {}
        for row in rows:
            groups.setdefault((row[0], row[1]), []).append(row[2])
        done = 0
        for (token_id, profile_id), serials in groups.items():
            try:
                self._assign(token_id, profile_id, serials)
                done += len(serials)
            except GraphError:
                continue  # Apple still refuses: the retry time stays, tried on a later tick
        return done

    def _assign_defaults(self, claim: _Claim, token: sqlite3.Row) -> None:
        """After a sync, serials without a requested profile get the token's default profile."""
        with self.store.read() as db:
            default = db.execute(
                "SELECT id FROM profiles WHERE token_id = ? AND is_default = 1", (claim.token_id,)
            ).fetchone()
            if default is None:
                return
            serials = [
                r[0]
                for r in db.execute(
                    "SELECT serial FROM devices WHERE token_id = ? AND requested_profile_id IS "
                    "NULL AND is_deleted = 0 "
                    "AND retry_at IS NULL AND (assignment_status IS NULL OR assignment_status = "
                    "'SUCCESS') ORDER BY seq",
                    (claim.token_id,),
                )
            ]
        if serials:
            self._check_window(claim)
            try:
                self._assign(claim.token_id, default[0], serials)
            except GraphError:
                pass  # the devices are listed; their assignment status shows what Apple said

    # == imported device identities ===========================================================
    def list_devices(
        self,
        token_id: str,
        *,
        top: str | None = None,
        skiptoken: str | None = None,
        filter: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``importedAppleDeviceIdentities`` and the ``$skiptoken`` of the next, if any."""
        size = DEFAULT_TOP
        if top is not None:
            if not top.isdigit() or int(top) < 1:
                raise GraphError(400, "badRequest", "$top must be a positive integer")
            size = min(int(top), MAX_TOP)
        after = 0
        if skiptoken:
            try:
                after = int(base64.urlsafe_b64decode(skiptoken.encode() + b"==").decode())
            except (ValueError, binascii.Error, UnicodeError):
                raise GraphError(400, "badRequest", "$skiptoken is not one this API handed out") from None
        where, args = _parse_filter(filter)
        with self.store.read() as db:
            self._token(db, token_id)
            rows = db.execute(
                f"SELECT * FROM devices WHERE token_id = ? AND seq > ?{where} ORDER BY seq LIMIT ?",
                (token_id, after, *args, size + 1),
            ).fetchall()
        more = len(rows) > size
        rows = rows[:size]
        token = base64.urlsafe_b64encode(str(rows[-1]["seq"]).encode()).decode().rstrip("=") if more else None
        push_topic = self.push_certificates.topic()
        return [_render_device(r, push_topic) for r in rows], token

    def get_device(self, token_id: str, device_id: str) -> dict[str, Any]:
        with self.store.read() as db:
            row = db.execute(
                "SELECT * FROM devices WHERE token_id = ? AND id = ?", (token_id, device_id)
            ).fetchone()
        if row is None:
            raise _not_found("importedAppleDeviceIdentity", device_id)
        return _render_device(row, self.push_certificates.topic())

    # == MDM events ===============================================================================
    def handle_mdm_event(self, event: Any) -> None:
        """Learn enrollment state from the MDM server's NanoMDM-style webhook events.

        Authenticate carries the serial (remembered per UDID, since later messages only carry the
        UDID); TokenUpdate means enrolled; CheckOut means no longer enrolled (``unknown``: Graph has no
        "unenrolled"); an acknowledged EraseDevice means ``pendingReset``; ``mdm.EnrollmentFailed``
        (our server's extension, sent when it refuses an enrollment) means ``failed``.
        """
        try:
            parsed = parse_event(event)
        except WebhookError as exc:
            raise GraphError(400, "badRequest", str(exc)) from None
        topic, udid, serial = parsed.topic, parsed.udid, parsed.serial_number
        request_type, status = parsed.request_type, parsed.status
        # The topic the device enrolled with: compared with the push certificate's after a topic change.
        enrolled_topic = parsed.enrolled_topic
        state = {
            "mdm.TokenUpdate": "enrolled",
            "mdm.CheckOut": "unknown",
            "mdm.EnrollmentFailed": "failed",
        }.get(topic)
        if topic == "mdm.Connect" and request_type == "EraseDevice" and status == "Acknowledged":
            state = "pendingReset"
        now = self.clock.timestamp()
        with self.store.transaction() as db:
            if isinstance(udid, str) and isinstance(serial, str):
                db.execute(
                    "INSERT INTO udids (udid, serial) VALUES (?, ?) ON CONFLICT (udid) DO UPDATE "
                    "SET serial = excluded.serial",
                    (udid[:100], serial[:64]),
                )
            elif isinstance(udid, str):
                found = db.execute("SELECT serial FROM udids WHERE udid = ?", (udid,)).fetchone()
                serial = found[0] if found else None
            if not isinstance(serial, str):
                return
            db.execute(
                "UPDATE devices SET last_contacted = ?, udid = coalesce(?, udid), "
                "enrollment_state = coalesce(?, enrollment_state), mdm_topic = coalesce(?, mdm_topic) "
                "WHERE serial = ?",
                (now, udid if isinstance(udid, str) else None, state, enrolled_topic and enrolled_topic[:255],
                 serial),
            )

    # == helpers ==================================================================================
    def _client(self, row: sqlite3.Row) -> DEPClient:
        token_id = row["id"]

        def keep_session(session: str | None) -> None:
            with self.store.transaction() as db:
                db.execute("UPDATE tokens SET session_token = ? WHERE id = ?", (session, token_id))

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

    @staticmethod
    def _token(db: sqlite3.Connection, token_id: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
        if row is None:
            raise _not_found("depOnboardingSetting", token_id)
        return row

    def _dep_token(self, db: sqlite3.Connection, token_id: str) -> sqlite3.Row:
        row = self._token(db, token_id)
        if row["token_type"] != "dep":
            raise GraphError(400, "depTokenRequired", "upload a DEP token first")
        return row

    @staticmethod
    def _profile(db: sqlite3.Connection, token_id: str, profile_id: str) -> sqlite3.Row:
        row = db.execute(
            "SELECT * FROM profiles WHERE token_id = ? AND id = ?", (token_id, profile_id)
        ).fetchone()
        if row is None:
            raise _not_found("enrollmentProfile", profile_id)
        return row

    def _render_setting(self, db: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
        now = self.clock.timestamp()
        count = db.execute(
            "SELECT count(*) FROM devices WHERE token_id = ? AND is_deleted = 0", (row["id"],)
        ).fetchone()[0]
        available = now
        until = blocked_until(row, now)
        if until is not None:
            available = max(available, until)
        if self.rules.manual_interval_s is not None and row["last_manual_at"] is not None:
            available = max(available, row["last_manual_at"] + self.rules.manual_interval_s)
        if next_kind(self.rules, row, available) == "full":
            next_full: float | None = available
        elif self.rules.full_interval_s is not None:
            next_full = max(available, row["last_full_at"] + self.rules.full_interval_s)
        else:
            next_full = None  # current rules: only after a failed delta
        return {
            "@odata.type": "#microsoft.graph.depOnboardingSetting",
            "id": row["id"],
            "tokenName": row["token_name"],
            "tokenType": row["token_type"],
            "appleIdentifier": row["apple_identifier"],
            "tokenExpirationDateTime": iso_from_timestamp(row["token_expiration"]),
            "lastModifiedDateTime": iso_from_timestamp(row["modified_at"]),
            "createdDateTime": iso_from_timestamp(row["created_at"]),
            "dataSharingConsentGranted": False,
            "shareTokenWithSchoolDataSyncService": False,
            "appleServerName": row["server_name"],
            "appleServerUuid": row["server_uuid"],
            "organizationName": row["org_name"],
            "syncRules": self.rules.name,
            "syncStatus": row["sync_status"],
            "lastSyncTriggeredDateTime": iso_from_timestamp(row["sync_triggered_at"]),
            "lastSuccessfulSyncDateTime": iso_from_timestamp(row["last_success_at"]),
            "lastSyncKind": row["last_kind"],
            "currentSyncKind": row["sync_kind"] if row["sync_status"] == "running" else None,
            "lastSyncErrorCode": row["last_error_code"],
            "lastSyncErrorMessage": row["last_error_message"],
            "syncedDeviceCount": count,
            "nextSyncAvailableDateTime": iso_from_timestamp(available) if row["token_type"] == "dep" else None,
            "nextFullSyncAvailableDateTime": iso_from_timestamp(next_full) if row["token_type"] == "dep" else None,
            "syncProgress": {"pages": row["progress_pages"], "devices": row["progress_devices"]},
        }

    @staticmethod
    def _render_profile(row: sqlite3.Row) -> dict[str, Any]:
        settings = json.loads(row["settings"])
        return {
            "@odata.type": profile_rules.ODATA_TYPE,
            "id": row["id"],
            **settings,
            "createdDateTime": iso_from_timestamp(row["created_at"]),
            "lastModifiedDateTime": iso_from_timestamp(row["modified_at"]),
            "appleProfileUuid": row["profile_uuid"],
        }

    def join(self, timeout_s: float = 10.0) -> None:
        """Wait for background syncs started by this controller (shutdown, tests)."""
        for thread in list(self._threads):
            thread.join(timeout_s)


_FILTER_FIELDS = {
    "serialNumber": "serial",
    "enrollmentState": "enrollment_state",
    "requestedEnrollmentProfileId": "requested_profile_id",
    "isDeleted": "is_deleted",
    "isSupervised": "is_supervised",
}


def _parse_filter(text: str | None) -> tuple[str, list[Any]]:
    """``$filter`` clauses ``field eq 'value'`` (or ``eq true/false``) joined by ``and``."""
    if not text:
        return "", []
    if len(text) > 2000:
        raise GraphError(400, "badRequest", "$filter is too long")
    where, args = "", []
    for clause in _split_and(text):
        parts = clause.strip().split(" ", 2)
        if len(parts) != 3 or parts[1].lower() != "eq" or parts[0] not in _FILTER_FIELDS:
            raise GraphError(
                400,
                "badRequest",
                "$filter supports `field eq 'value'` joined by `and`, for " + ", ".join(_FILTER_FIELDS),
            )
        value_text = parts[2].strip()
        value: Any
        if value_text in ("true", "false"):
            value = int(value_text == "true")
        elif len(value_text) >= 2 and value_text[0] == value_text[-1] == "'":
            value = value_text[1:-1].replace("''", "'")
        else:
            raise GraphError(400, "badRequest", f"$filter value {value_text!r} must be quoted or true/false")
        where += f" AND {_FILTER_FIELDS[parts[0]]} = ?"
        args.append(value)
    return where, args


def _split_and(text: str) -> Iterable[str]:
    parts, buffer, quoted = [], "", False
    tokens = text.split(" ")
    for word in tokens:
        if not quoted and word.lower() == "and":
            parts.append(buffer)
            buffer = ""
            continue
        buffer = f"{buffer} {word}" if buffer else word
        quoted ^= word.count("'") % 2 == 1
    parts.append(buffer)
    return parts


def _render_device(row: sqlite3.Row, push_topic: str | None = None) -> dict[str, Any]:
    """``reenrollmentRequired``: enrolled under another topic than the push certificate's, so no push
    reaches the device until it enrolls again (after a new, not renewed, push certificate)."""
    os_name = row["os"] or ""
    stale = (
        push_topic is not None
        and row["enrollment_state"] == "enrolled"
        and row["mdm_topic"] is not None
        and row["mdm_topic"] != push_topic
    )
    return {
        "@odata.type": "#microsoft.graph.importedAppleDeviceIdentity",
        "id": row["id"],
        "serialNumber": row["serial"],
        "requestedEnrollmentProfileId": row["requested_profile_id"],
        "requestedEnrollmentProfileAssignmentDateTime": iso_from_timestamp(row["requested_at"]),
        "isSupervised": bool(row["is_supervised"]),
        "discoverySource": "deviceEnrollmentProgram",
        "isDeleted": bool(row["is_deleted"]),
        "createdDateTime": iso_from_timestamp(row["created_at"]),
        "lastContactedDateTime": iso_from_timestamp(row["last_contacted"]),
        "description": row["description"],
        "enrollmentState": row["enrollment_state"],
        "platform": "macOS" if os_name == "OSX" else "ios",
        "model": row["model"],
        "color": row["color"],
        "deviceFamily": row["device_family"],
        "appleProfileStatus": row["apple_profile_status"],
        "profileAssignmentStatus": row["assignment_status"],
        "pushTopic": row["mdm_topic"],
        "reenrollmentRequired": stale,
    }
