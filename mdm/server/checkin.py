"""The check-in protocol (CheckInURL): one method per message type, as NanoMDM's service has.

A check-in is handled in three steps, each with its own rule:

1. everything that can refuse the request runs before the store transaction opens (signature,
   plist, ownership of the identity, whether this server answers the MessageType at all), so a refused
   request changes nothing;
2. one transaction runs the message's method, found in a table keyed by MessageType
   (:attr:`CheckinService.handlers`): one dict lookup per request, no chain of ``isinstance`` tests;
3. the webhook event goes out after commit (:class:`~mdm.server.outbound.Outbound`).

Auth failures are 403, never 401: a 401 tells a real device it was unenrolled (FACTS §3).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.checkin import (
    Authenticate,
    CheckOut,
    DeclarativeManagement,
    GetBootstrapToken,
    SetBootstrapToken,
    TokenUpdate,
    UserAuthenticate,
    parse_checkin,
)
from mdm.protocol.isotime import isoformat
from mdm.protocol.plist import PlistError, dumps

from . import store as q
from .identity import IdentityService
from .outbound import Outbound
from .replies import MAX_BODY, PLIST_TYPE, MDMError, Reply, enrollment_id_of, user_id_of

__all__ = ["CheckinService", "DECLARATIONS_TOKEN"]

#: The DeclarationsToken of the (empty) declaration set this server offers.
DECLARATIONS_TOKEN = "mdmsim-empty-0"

#: A message method: ``(db, message, enrollment id, user id, raw body, now) -> Reply``, inside the
#: request's transaction.
Handler = Callable[[sqlite3.Connection, Any, str, "str | None", bytes, float], Reply]


class CheckinService:
    """Authenticate, TokenUpdate, CheckOut, UserAuthenticate, Set/GetBootstrapToken, DeclarativeManagement."""

    def __init__(self, store: Store, clock: Clock, identity: IdentityService, outbound: Outbound) -> None:
        self.store = store
        self.clock = clock
        self.identity = identity
        self.outbound = outbound
        #: MessageType → method. A type missing here (GetToken, say) is refused with 400 before any write.
        self.handlers: dict[str, Handler] = {
            Authenticate.MESSAGE_TYPE: self.authenticate,
            TokenUpdate.MESSAGE_TYPE: self.token_update,
            CheckOut.MESSAGE_TYPE: self.check_out,
            UserAuthenticate.MESSAGE_TYPE: self.user_authenticate,
            SetBootstrapToken.MESSAGE_TYPE: self.set_bootstrap_token,
            GetBootstrapToken.MESSAGE_TYPE: self.get_bootstrap_token,
            DeclarativeManagement.MESSAGE_TYPE: self.declarative_management,
        }

    def checkin(self, body: bytes, signature: str | None, *, url_params: Mapping[str, str] | None = None) -> Reply:
        """One check-in message. Returns the reply; raises :class:`MDMError`."""
        instant = self.clock.now()  # one clock read serves the signature check and the store
        signer = self.identity.signer_of(body, signature, instant)
        try:
            msg = parse_checkin(body, max_size=MAX_BODY)
        except PlistError as exc:
            raise MDMError(400, f"bad check-in message: {exc.reason}") from None
        # An Authenticate may claim an identity from profile-based enrollment, which names no device yet.
        self.identity.check_owner(signer, msg.device_id, bind=msg.message_type == Authenticate.MESSAGE_TYPE)
        handler = self.handlers.get(msg.message_type)
        if handler is None:
            raise MDMError(400, f"{msg.message_type} is not supported by this server")
        user_id = user_id_of(msg)
        eid = enrollment_id_of(msg.device_id, user_id)
        with self.store.transaction() as db:
            reply = handler(db, msg, eid, user_id, body, instant.timestamp())
        self.outbound.checkin_committed(msg, body, url_params)
        return reply

    # -- one method per MessageType ----------------------------------------------------------------
    def authenticate(
        self, db: sqlite3.Connection, msg: Authenticate, eid: str, user_id: str | None, raw: bytes, now: float
    ) -> Reply:
        """Starts the enrollment over (NanoMDM): not enabled, no token, its queue kept."""
        q.upsert_authenticate(
            db,
            enrollment_id=eid,
            device_id=msg.device_id,
            user_id=user_id,
            kind=_kind(user_id),
            serial_number=msg.serial_number,
            topic=msg.topic,
            raw=raw,
            now=now,
        )
        return Reply()

    def token_update(
        self, db: sqlite3.Connection, msg: TokenUpdate, eid: str, user_id: str | None, raw: bytes, now: float
    ) -> Reply:
        """Makes the channel push-able (and creates a user channel, which has no Authenticate)."""
        q.upsert_token_update(
            db,
            enrollment_id=eid,
            device_id=msg.device_id,
            user_id=user_id,
            kind=_kind(user_id),
            topic=msg.topic,
            token_hex=msg.token_hex,
            push_magic=msg.push_magic,
            unlock_token=msg.unlock_token,
            awaiting_configuration=bool(msg.awaiting_configuration),
            user_short_name=msg.user_short_name,
            user_long_name=msg.user_long_name,
            raw=raw,
            now=now,
        )
        return Reply()

    def check_out(
        self, db: sqlite3.Connection, msg: CheckOut, eid: str, user_id: str | None, raw: bytes, now: float
    ) -> Reply:
        """Ends the channel; on the device channel, every channel of the device."""
        _require_enrollment(db, eid)
        q.check_out(db, eid, msg.device_id, device_channel=user_id is None, now=now)
        return Reply()

    def user_authenticate(
        self, db: sqlite3.Connection, msg: UserAuthenticate, eid: str, user_id: str | None, raw: bytes, now: float
    ) -> Reply:
        """NanoMDM's default: 410 declines the user channel for this user."""
        return Reply(status=410)

    def set_bootstrap_token(
        self, db: sqlite3.Connection, msg: SetBootstrapToken, eid: str, user_id: str | None, raw: bytes, now: float
    ) -> Reply:
        """Escrows the token (macOS); an absent token clears it."""
        _require_enrollment(db, eid)
        q.set_bootstrap_token(db, eid, msg.bootstrap_token, now)
        return Reply()

    def get_bootstrap_token(
        self, db: sqlite3.Connection, msg: GetBootstrapToken, eid: str, user_id: str | None, raw: bytes, now: float
    ) -> Reply:
        """The escrowed token, or an empty dictionary when none was set."""
        token = _require_enrollment(db, eid)["bootstrap_token"]
        q.touch(db, eid, now)
        return Reply(body=dumps({"BootstrapToken": bytes(token)} if token else {}), content_type=PLIST_TYPE)

    def declarative_management(
        self,
        db: sqlite3.Connection,
        msg: DeclarativeManagement,
        eid: str,
        user_id: str | None,
        raw: bytes,
        now: float,
    ) -> Reply:
        """An empty declaration set: a device syncs and finds nothing to apply."""
        _require_enrollment(db, eid)
        q.touch(db, eid, now)
        if msg.endpoint == "tokens":
            body: Any = {"SyncTokens": {"DeclarationsToken": DECLARATIONS_TOKEN, "Timestamp": isoformat(self.clock.now())}}
        elif msg.endpoint == "declaration-items":
            body = {
                "Declarations": {"Activations": [], "Assets": [], "Configurations": [], "Management": []},
                "DeclarationsToken": DECLARATIONS_TOKEN,
            }
        elif msg.endpoint == "status":
            return Reply()
        else:
            raise MDMError(404, f"no declaration {msg.endpoint}"[:200])
        return Reply(body=json.dumps(body).encode(), content_type="application/json")


def _kind(user_id: str | None) -> str:
    """NanoMDM's enrollment type: a channel with a user is a ``User`` channel."""
    return "User" if user_id else "Device"


def _require_enrollment(db: sqlite3.Connection, eid: str) -> sqlite3.Row:
    row = q.get_enrollment(db, eid)
    if row is None:
        raise MDMError(403, f"unknown enrollment {eid!r}: send Authenticate first"[:300])
    return row
