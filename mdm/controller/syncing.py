"""The sync engine: one sync in flight per token, its window, and the fetch from Apple page by page.

Two invariants shape the code:

* **Apple is never called inside a store transaction.** A slow or rate-limited Apple must not hold
  SQLite's write lock (other workers would stall on ``BEGIN IMMEDIATE``). So the sync reads, calls
  Apple, then writes, page by page, re-checking that it still owns the claim.
* **The one-sync-in-flight rule is the store's.** :meth:`Syncing.request_sync` reads the token row
  and claims it in one ``BEGIN IMMEDIATE`` transaction, so concurrent requests in any number of
  threads or processes produce exactly one sync. A claim carries a deadline (the 10-minute window of
  the 2016 rules); whoever reads the row after the deadline (a request, a GET, a restarted
  controller, ``tick()``) marks the sync failed, so nothing stays "running" after a crash.

What may start when (the window, the 7-day full-sync rule, the manual interval) is decided by the
pure rules of :mod:`mdm.controller.sync_rules`; this module applies them to the store.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.isotime import iso_from_timestamp
from mdm.protocol.randomness import Randomness

from .apple import SYNC_TIMED_OUT, TOKEN_EXPIRED, Apple, apple_failure, failure_number
from .depclient import DEPClient, DEPError
from .errors import GraphError, retry_after_seconds
from .profiles import IOS_TYPE, MACOS_TYPE
from .rows import token_row
from .store import devices as device_table
from .store import profiles as profile_table
from .store import tokens as token_table
from .sync_rules import Availability, SyncRules, availability, next_kind

if TYPE_CHECKING:
    from .assignments import Assignments

__all__ = ["MAX_PAGES", "Syncing"]

MAX_PAGES = 100_000


class _SyncLost(Exception):
    """The sync no longer owns its claim (timed out, token deleted): stop without writing."""


@dataclass(frozen=True)
class _Claim:
    token_id: str
    sync_id: str
    kind: str
    deadline: float


def expired_message(expired_at: float) -> str:
    return (
        f"the DEP token expired at {iso_from_timestamp(expired_at)}; syncing has stopped: download a new token "
        "from Apple Business Manager and upload it"
    )


class Syncing:
    """Claims, runs and records syncs of the controller's tokens.

    ``background=False`` runs a sync inline in the requesting thread, so a test sees the result as
    soon as the request returns. ``page_limit`` is how many devices each Apple page asks for.
    """

    def _device_id(self, token_id: str, device: Any) -> str:
        """The Graph id of a device the token lists: one per (token, serial), derived when seeded."""
        return self.random.uuid(f"controller:device:{token_id}:{device['serial_number']}")

    def __init__(
        self,
        store: Store,
        clock: Clock,
        apple: Apple,
        assignments: Assignments,
        *,
        rules: SyncRules,
        background: bool = True,
        page_limit: int = 1000,
        random: Randomness | None = None,
    ) -> None:
        self.random = random or Randomness(None)
        self.store = store
        self.clock = clock
        self.apple = apple
        self.assignments = assignments
        self.rules = rules
        self.background = background
        self.page_limit = page_limit
        self._threads: list[threading.Thread] = []

    # == may a sync start? ========================================================================
    def availability(self, row: sqlite3.Row, now: float, *, manual: bool = True) -> Availability:
        """The one answer to "may this token sync now, and if not, when" (see :mod:`.sync_rules`)."""
        return availability(self.rules, row, now, manual=manual)

    def _refusal(self, row: sqlite3.Row, now: float, *, manual: bool) -> GraphError | None:
        """Why a sync may not start now (409 while one holds the slot, 429 for a manual one too soon)."""
        answer = self.availability(row, now, manual=manual)
        if answer.blocked_until is not None:
            until = answer.blocked_until
            state = "is still running" if row["sync_status"] == "running" else f"failed ({row['last_error_code']})"
            return GraphError(
                409,
                "syncInProgress",
                f"the sync requested at {iso_from_timestamp(row['sync_triggered_at'])} {state}; each sync request has "
                f"{int(self.rules.window_s // 60)} minutes to finish, so the next one can "
                f"start at {iso_from_timestamp(until)}",
                retry_after=retry_after_seconds(until - now),
            )
        ready = answer.manual_ready_at
        if ready is not None and now < ready:
            interval = self.rules.manual_interval_s or 0.0
            return GraphError(
                429,
                "syncTooFrequent",
                f"a manual sync may run every {int(interval // 60)} minutes; the next at "
                f"{iso_from_timestamp(ready)}",
                retry_after=retry_after_seconds(ready - now),
            )
        return None

    # == requests =================================================================================
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
            row = token_row(db, token_id)
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
            row = token_row(db, token_id)
            if row["token_type"] != "dep":
                raise GraphError(400, "depTokenRequired", "upload a DEP token before syncing")
            refusal = self._refusal(row, now, manual=manual)
            if refusal is not None:
                raise refusal
            if row["token_expiration"] is not None and row["token_expiration"] <= now:
                expired_at = row["token_expiration"]
                token_table.record_error(db, token_id, "depTokenExpired", expired_message(expired_at), TOKEN_EXPIRED)
            else:
                kind = next_kind(self.rules, row, now)
                claim = _Claim(token_id, str(uuid.uuid4()), kind, now + self.rules.window_s)
                token_table.claim_sync(
                    db, token_id, sync_id=claim.sync_id, kind=kind, manual=manual, now=now, deadline=claim.deadline
                )
        if expired_at is not None:
            raise GraphError(400, "depTokenExpired", expired_message(expired_at))
        return claim

    def _start(self, claim: _Claim) -> None:
        if not self.background:
            self._run_sync(claim)
            return
        thread = threading.Thread(
            target=self._run_sync, args=(claim,), name=f"dep-sync-{claim.token_id[:8]}", daemon=True
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def tick(self) -> list[str]:
        """Fail overdue syncs and start the automatic ones that are due (``current`` rules).

        Returns the ids of the tokens whose sync started.
        """
        now = self.clock.timestamp()
        self.expire_overdue()
        started: list[str] = []
        if self.rules.auto_interval_s is None:
            return started
        with self.store.read() as db:
            due = token_table.due_for_auto_sync(db, self.rules.auto_interval_s, now)
        for token_id in due:
            try:
                self.request_sync(token_id, manual=False)
                started.append(token_id)
            except GraphError:
                pass  # blocked or expired: recorded on the token, tried again on a later tick
        return started

    def join(self, timeout_s: float = 10.0) -> None:
        """Wait for background syncs started here (shutdown, tests)."""
        for thread in list(self._threads):
            thread.join(timeout_s)

    # == syncs past their window ==================================================================
    def expire_overdue(self, token_id: str | None = None) -> None:
        """Mark failed every sync (of ``token_id``, or of any token) still running past its deadline."""
        now = self.clock.timestamp()
        with self.store.read() as db:
            if not token_table.has_overdue_sync(db, now, token_id):
                return
        with self.store.transaction() as db:
            self._expire_overdue_in(db, now, token_id)

    def _expire_overdue_in(self, db: sqlite3.Connection, now: float, token_id: str | None) -> None:
        """Mark syncs whose window has passed failed: how a crash or a restart never leaves one stuck."""
        for row in token_table.overdue_syncs(db, now, token_id):
            self._mark_failed(
                db,
                row["id"],
                row["sync_id"],
                "syncTimedOut",
                f"the sync did not finish within its {int(self.rules.window_s // 60)} minutes",
                SYNC_TIMED_OUT,
            )

    def _mark_failed(
        self, db: sqlite3.Connection, token_id: str, sync_id: str, code: str, message: str, number: int
    ) -> None:
        # Under the current rules a failed delta makes the next sync full; a failed full stays due anyway.
        token_table.fail_sync(
            db, token_id, sync_id, code, message[:500], number, force_full=self.rules.name == "current"
        )

    # == the sync itself ==========================================================================
    def _run_sync(self, claim: _Claim) -> None:
        """Fetch from Apple and write page by page; every failure ends in a recorded state."""
        try:
            with self.store.read() as db:
                row = token_table.get(db, claim.token_id)
            if row is None:
                return
            client = self.apple.client_for(row)
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
            self._assign_defaults(claim)
            self._finish(claim, kind, cursor)
        except _SyncLost:
            self.expire_overdue(claim.token_id)  # past its window: recorded as failed now, not on next read
        except Exception as exc:  # noqa: BLE001 - any failure must end as a visible state, never "running"
            code, message = apple_failure(exc)
            with self.store.transaction() as db:
                self._mark_failed(db, claim.token_id, claim.sync_id, code, message, failure_number(exc))

    def _owned(self, db: sqlite3.Connection, claim: _Claim, now: float) -> None:
        """Raise _SyncLost unless ``claim`` still owns the token and is inside its window."""
        row = token_table.sync_owner(db, claim.token_id)
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
                if serial not in latest or str(device.get("op_date", "")) >= str(latest[serial].get("op_date", "")):
                    latest[serial] = device
        with self.store.transaction() as db:
            self._owned(db, claim, now)
            known = device_table.known_serials(db, claim.token_id, list(latest))
            for serial, device in latest.items():
                op = device.get("op_type")
                if mode == "limited":
                    if serial in known or op == "deleted":
                        continue  # 2016: changes to listed serials wait for the next full sync
                    device_id = self._device_id(claim.token_id, device)
                    device_table.upsert_from_apple(db, claim.token_id, claim.sync_id, device, now, device_id)
                elif op == "deleted":
                    if serial in known:
                        device_table.mark_deleted(db, claim.token_id, serial)
                else:
                    device_id = self._device_id(claim.token_id, device)
                    device_table.upsert_from_apple(db, claim.token_id, claim.sync_id, device, now, device_id)
            token_table.add_progress(db, claim.token_id, len(devices))

    def _assign_defaults(self, claim: _Claim) -> None:
        """After a sync, serials without a requested profile get the token's default profile for their
        platform (``defaultIosEnrollmentProfile`` or ``defaultMacOsEnrollmentProfile``)."""
        with self.store.read() as db:
            defaults = {
                json.loads(row["settings"]).get("@odata.type", IOS_TYPE): row["id"]
                for row in profile_table.defaults(db, claim.token_id)
            }
            if not defaults:
                return
            waiting = device_table.serials_awaiting_default(db, claim.token_id)
        groups: dict[str, list[str]] = {}
        for serial, os_name in waiting:
            default = defaults.get(MACOS_TYPE if os_name == "OSX" else IOS_TYPE)
            if default is not None:
                groups.setdefault(default, []).append(serial)
        for default, serials in groups.items():
            self._check_window(claim)
            try:
                self.assignments.assign(claim.token_id, default, serials)
            except GraphError:
                pass  # the devices are listed; their assignment status shows what Apple said

    def _finish(self, claim: _Claim, kind: str, cursor: str | None) -> None:
        now = self.clock.timestamp()
        if now > claim.deadline:
            self._check_window(claim)
        with self.store.transaction() as db:
            self._owned(db, claim, now)
            if kind == "full":
                device_table.mark_unseen_deleted(db, claim.token_id, claim.sync_id)
            token_table.finish_sync(db, claim.token_id, now=now, kind=kind, cursor=cursor)
