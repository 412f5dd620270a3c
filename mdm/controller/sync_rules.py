"""Intune's DEP sync rules, as data, and the pure decisions made from them.

Two rule sets (FACTS.md §4):

* ``2016`` (the documentation this project follows): a full sync at most once every 7 days, a sync
  within 7 days of the last full one is *limited* (only serials not yet listed are added); every
  request gets 10 minutes to finish, and no other request is accepted until it succeeds or those
  10 minutes are over (a failure does not reopen the window early, as the document reads).
* ``current``: manual syncs at most every 15 minutes, 15 minutes to finish, an automatic *delta* sync
  every 12 hours that applies additions, changes and deletions, and a failed delta makes the next
  sync full.

Nothing here touches the store: :mod:`mdm.controller.syncing` reads a token row, asks these functions
what to do, and writes the answer in the same transaction. :func:`availability` is the one answer to
"may this token sync now, and if not, when": the claim refuses by it, and the setting shows it
(``nextSyncAvailableDateTime``, ``syncAvailability``), so no client works it out again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RULES", "Availability", "SyncRules", "availability", "blocked_until", "next_full_at", "next_kind", "rules_for"]

DAY = 24 * 3600.0


@dataclass(frozen=True)
class SyncRules:
    """The limits of one rule set, in seconds (``None``: no such limit)."""

    name: str
    window_s: float  # how long one sync may run; no other sync starts meanwhile
    full_interval_s: float | None  # a full sync at most this often (2016); otherwise partial syncs
    manual_interval_s: float | None  # manual requests at most this often (current: 429 otherwise)
    auto_interval_s: float | None  # automatic syncs run by tick() this often
    partial_kind: str  # what a non-full sync is called: "limited" (adds only) or "delta" (applies all)


RULES: dict[str, SyncRules] = {
    "2016": SyncRules("2016", 600.0, 7 * DAY, None, None, "limited"),
    "current": SyncRules("current", 900.0, None, 900.0, 12 * 3600.0, "delta"),
}


def rules_for(name: str) -> SyncRules:
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"unknown sync rules {name!r}: use one of {', '.join(RULES)}") from None


def blocked_until(row: Mapping[str, Any], now: float) -> float | None:
    """The instant until which a new sync is refused because one was requested (409), or None.

    A running sync blocks until its deadline; a failed one too, because the 2016 rule keeps Sync
    disabled "for 10 minutes or until the request succeeds". A success clears the deadline.
    """
    deadline = row["sync_deadline"]
    if deadline is None or row["sync_status"] not in ("running", "failed"):
        return None
    return deadline if now < deadline else None


def next_kind(rules: SyncRules, row: Mapping[str, Any], now: float) -> str:
    """``full`` or the rule set's partial kind for a sync that starts at ``now``."""
    if row["cursor"] is None or row["last_full_at"] is None or row["force_full"]:
        return "full"
    if rules.full_interval_s is not None and now >= row["last_full_at"] + rules.full_interval_s:
        return "full"
    return rules.partial_kind


def next_full_at(rules: SyncRules, row: Mapping[str, Any], available: float) -> float | None:
    """When the next sync that starts at or after ``available`` will be a full one (None: not planned)."""
    if next_kind(rules, row, available) == "full":
        return available
    if rules.full_interval_s is not None:
        return max(available, row["last_full_at"] + rules.full_interval_s)
    return None  # current rules: only after a failed delta


@dataclass(frozen=True)
class Availability:
    """Whether a sync may start at ``now``; if not, why (the code the refusal carries) and from when."""

    now: float
    has_token: bool
    blocked_until: float | None  # a requested sync holds the slot until then: 409 syncInProgress
    manual_ready_at: float | None  # a manual sync may not start before then: 429 syncTooFrequent

    @property
    def reason(self) -> str | None:
        """``depTokenRequired``, ``syncInProgress``, ``syncTooFrequent``, or None when a sync may start."""
        if not self.has_token:
            return "depTokenRequired"
        if self.blocked_until is not None:
            return "syncInProgress"
        if self.manual_ready_at is not None and self.now < self.manual_ready_at:
            return "syncTooFrequent"
        return None

    @property
    def can_sync(self) -> bool:
        return self.reason is None

    @property
    def available_at(self) -> float:
        """The first instant at which a sync request will be accepted (``now`` when it may start now)."""
        return max(t for t in (self.now, self.blocked_until, self.manual_ready_at) if t is not None)


def availability(rules: SyncRules, row: Mapping[str, Any], now: float, *, manual: bool = True) -> Availability:
    """May a sync of this token row start at ``now`` (a manual one unless told otherwise)?

    An expired DEP token is not a matter of waiting: it is refused when a sync is requested (and the
    reason recorded on the token), not here.
    """
    interval = rules.manual_interval_s
    ready = None
    if manual and interval is not None and row["last_manual_at"] is not None:
        ready = row["last_manual_at"] + interval
    return Availability(now, row["token_type"] == "dep", blocked_until(row, now), ready)

