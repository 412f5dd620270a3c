"""DEP tokens (Graph ``depOnboardingSettings``): the key the portal envelopes to, the upload, the setting.

The admin's steps: create a setting, download its public key (an RSA key and self-signed
certificate, made on first use), upload that to Apple Business Manager, and upload the ``.p7m``
server token the portal returns. The controller decrypts it, checks it with Apple (``GET /account``)
and keeps its OAuth credentials; one MDM server's token belongs to one setting.

The setting also shows the sync state, including the one answer to "may this token sync now, and if
not, when" (``syncAvailability`` and ``nextSyncAvailableDateTime``), which
:class:`~mdm.controller.syncing.Syncing` decides.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import TYPE_CHECKING, Any

import httpx

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol import cms
from mdm.protocol import x509 as mx509
from mdm.protocol.isotime import IsoTimeError, iso_from_timestamp, parse_iso
from mdm.protocol.randomness import Randomness

from . import odata
from .apple import Apple, apple_failure
from .depclient import DEPError, OAuthCredentials
from .errors import GraphError, retry_after_seconds
from .rows import dep_token_row, token_row
from .store import devices as device_table
from .store import tokens as token_table
from .sync_rules import next_full_at

if TYPE_CHECKING:
    from .syncing import Syncing

__all__ = ["FIELDS", "MAX_TOKEN_CHARS", "Tokens", "dep_token_row", "token_row"]

MAX_TOKEN_CHARS = 65_536
#: What ``$filter``, ``$orderby`` and ``$select`` may name on ``depOnboardingSettings`` (scalars; the
#: rendered objects ``syncAvailability`` and ``syncProgress`` can be selected only).
_SCALARS = (
    "id", "tokenName", "tokenType", "appleIdentifier", "tokenExpirationDateTime", "lastModifiedDateTime",
    "createdDateTime", "dataSharingConsentGranted", "shareTokenWithSchoolDataSyncService", "appleServerName",
    "appleServerUuid", "organizationName", "syncRules", "syncStatus", "lastSyncTriggeredDateTime",
    "lastSuccessfulSyncDateTime", "lastSyncKind", "currentSyncKind", "lastSyncErrorCode", "lastSyncErrorReason",
    "lastSyncErrorMessage", "syncedDeviceCount", "nextSyncAvailableDateTime", "nextFullSyncAvailableDateTime",
)  # fmt: skip
FIELDS = odata.Fields(
    "depOnboardingSetting", _SCALARS, _SCALARS, (*_SCALARS, "roleScopeTagIds", "syncAvailability", "syncProgress")
)


class Tokens:
    """The ``depOnboardingSetting`` rules over the controller's store."""

    def __init__(
        self, store: Store, clock: Clock, apple: Apple, syncing: Syncing, random: Randomness | None = None
    ) -> None:
        self.random = random or Randomness(None)
        self.store = store
        self.clock = clock
        self.apple = apple
        self.syncing = syncing

    # == the setting ==============================================================================
    def create(self, body: Any) -> dict[str, Any]:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise GraphError(400, "badRequest", "the body must be a JSON object")
        name = body.get("tokenName")
        if name is not None and (not isinstance(name, str) or len(name) > 200):
            raise GraphError(400, "badRequest", "tokenName must be a string of at most 200 characters")
        now = self.clock.timestamp()
        with self.store.transaction() as db:
            token_id = self._new_id(db)
            token_table.insert(db, token_id, name, now)
        return self.get(token_id)

    def _new_id(self, db: Any) -> str:
        """A token id: random, or in a seeded world the first of a derived series not in use, so a
        replayed run makes the same ids (whenever it runs: the label holds no time)."""
        for n in range(len(token_table.all_rows(db)), 100_000):
            token_id = self.random.uuid(f"controller:token:{n}")
            if token_table.get(db, token_id) is None:
                return token_id
        raise GraphError(409, "conflict", "could not make a new token id")

    def update(self, token_id: str, body: Any) -> dict[str, Any]:
        """PATCH: only ``tokenName`` is the admin's to change; the rest comes from Apple."""
        if not isinstance(body, dict):
            raise GraphError(400, "badRequest", "the body must be a JSON object")
        name = body.get("tokenName")
        if "tokenName" in body and (not isinstance(name, str) or not name or len(name) > 200):
            raise GraphError(400, "badRequest", "tokenName must be a string of 1 to 200 characters")
        with self.store.transaction() as db:
            token_row(db, token_id)
            if "tokenName" in body:
                token_table.rename(db, token_id, name, self.clock.timestamp())
        return self.get(token_id)

    def list_all(self) -> list[dict[str, Any]]:
        self.syncing.expire_overdue()
        with self.store.read() as db:
            return [self._render(db, row) for row in token_table.all_rows(db)]

    def get(self, token_id: str) -> dict[str, Any]:
        self.syncing.expire_overdue(token_id)
        with self.store.read() as db:
            return self._render(db, token_row(db, token_id))

    def delete(self, token_id: str) -> None:
        with self.store.transaction() as db:
            token_row(db, token_id)
            token_table.delete(db, token_id)

    # == the key the portal envelopes the token to ================================================
    def generate_encryption_key(self, token_id: str) -> str:
        """A new RSA 2048 key and self-signed certificate; the portal envelopes the token to it.

        RSA because Apple's token is enveloped with RSA key transport. The old key is replaced: a token
        already uploaded keeps working (its OAuth credentials are stored), only new uploads need the new key.
        """
        with self.store.read() as db:
            previous = token_row(db, token_id)["cert_pem"] or ""
        # seeded: derived from the token and the key it replaces, so a replay (and every test with the
        # same seed) makes the same key, and generating again still gives a new one
        generation = hashlib.sha256(previous.encode()).hexdigest()[:16]
        key = self.random.rsa_key(f"controller:token:{token_id}:key:{generation}")
        cert = mx509.self_signed(key, "mdmsim controller DEP token", self.clock.now(), days=365)
        cert_pem = mx509.cert_to_pem(cert).decode()
        with self.store.transaction() as db:
            token_row(db, token_id)
            token_table.set_key(db, token_id, mx509.key_to_pem(key).decode(), cert_pem, self.clock.timestamp())
        return cert_pem

    def get_encryption_key(self, token_id: str) -> str:
        """The certificate to upload to the portal; made on first use so the admin can always download one."""
        with self.store.read() as db:
            row = token_row(db, token_id)
        return row["cert_pem"] or self.generate_encryption_key(token_id)

    # == the upload ===============================================================================
    def upload(self, token_id: str, body: Any) -> None:
        """Decrypt the portal's ``.p7m``, check it with Apple (``GET /account``) and keep its credentials."""
        if not isinstance(body, dict):
            raise GraphError(400, "badRequest", "the body must be a JSON object with depToken and appleId")
        text, apple_id = body.get("depToken"), body.get("appleId")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TOKEN_CHARS:
            raise GraphError(400, "badRequest", "depToken must be the text of the .p7m file from the portal")
        if apple_id is not None and (not isinstance(apple_id, str) or len(apple_id) > 320):
            raise GraphError(400, "badRequest", "appleId must be the Apple ID (an e-mail address)")
        with self.store.read() as db:
            row = token_row(db, token_id)
        if not row["cert_pem"]:
            raise GraphError(
                400,
                "encryptionKeyMissing",
                "generate the encryption public key first and upload it to the portal",
            )
        credentials, expiry = self._open(text, row)
        now = self.clock.timestamp()
        if expiry <= now:
            raise GraphError(
                400,
                "depTokenExpired",
                f"the DEP token expired at {iso_from_timestamp(expiry)}: download a new one from the portal",
            )
        client = self.apple.client(credentials)
        try:
            account = client.account()
        except (DEPError, httpx.HTTPError) as exc:
            code, message = apple_failure(exc)
            raise GraphError(400, code, message) from None
        server_uuid = str(account.get("server_uuid") or "")
        with self.store.transaction() as db:
            row = token_row(db, token_id)
            other = token_table.holder_of_server(db, server_uuid, token_id)
            if other is not None:
                raise GraphError(
                    409,
                    "tokenAlreadyUploaded",
                    f"this MDM server's token is already used by depOnboardingSetting {other}",
                )
            if row["server_uuid"] and row["server_uuid"] != server_uuid:
                # A token of another MDM server: its devices and cursor mean nothing here.
                device_table.delete_for_token(db, token_id)
                token_table.forget_cursor(db, token_id)
            token = token_table.DepToken(
                consumer_key=credentials.consumer_key,
                consumer_secret=credentials.consumer_secret,
                access_token=credentials.access_token,
                access_secret=credentials.access_secret,
                expiration=expiry,
                session_token=client.session,
                server_uuid=server_uuid,
                server_name=account.get("server_name"),
                org_name=account.get("org_name"),
                apple_identifier=apple_id or account.get("admin_id"),
                default_name=account.get("server_name") or account.get("org_name"),
            )
            token_table.set_dep_token(db, token_id, token, now)

    @staticmethod
    def _open(text: str, row: sqlite3.Row) -> tuple[OAuthCredentials, float]:
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
            raise GraphError(400, "invalidDepToken", "the DEP token has no valid access_token_expiry") from None
        return OAuthCredentials(*(data[n] for n in names)), expiry

    # == rendering ================================================================================
    def _render(self, db: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
        now = self.clock.timestamp()
        rules = self.syncing.rules
        answer = self.syncing.availability(row, now)
        has_token = row["token_type"] == "dep"
        available = answer.available_at
        next_full = next_full_at(rules, row, available)
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
            "roleScopeTagIds": ["0"],
            "appleServerName": row["server_name"],
            "appleServerUuid": row["server_uuid"],
            "organizationName": row["org_name"],
            "syncRules": rules.name,
            "syncStatus": row["sync_status"],
            "lastSyncTriggeredDateTime": iso_from_timestamp(row["sync_triggered_at"]),
            "lastSuccessfulSyncDateTime": iso_from_timestamp(row["last_success_at"]),
            "lastSyncKind": row["last_kind"],
            "currentSyncKind": row["sync_kind"] if row["sync_status"] == "running" else None,
            # Graph's Int32 (0: no error); what went wrong, in words, in the two fields after it
            "lastSyncErrorCode": int(row["last_error_number"] or 0) if row["last_error_code"] else 0,
            "lastSyncErrorReason": row["last_error_code"],
            "lastSyncErrorMessage": row["last_error_message"],
            "syncedDeviceCount": device_table.count_listed(db, row["id"]),
            "nextSyncAvailableDateTime": iso_from_timestamp(available) if has_token else None,
            "nextFullSyncAvailableDateTime": iso_from_timestamp(next_full) if has_token else None,
            # Whether a sync requested now would start, and if not why (the code the request would be
            # refused with) and in how many seconds (its Retry-After): decided once, by the rules.
            "syncAvailability": {
                "canSync": answer.can_sync,
                "reason": answer.reason,
                "retryAfterSeconds": (
                    retry_after_seconds(available - now) if has_token and not answer.can_sync else None
                ),
            },
            "syncProgress": {"pages": row["progress_pages"], "devices": row["progress_devices"]},
        }
