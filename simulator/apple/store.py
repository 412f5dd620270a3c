"""Apple's one database: every Apple party's tables in one SQLite store.

In Apple's world the portal, the DEP web service and activation share one database of organisations,
MDM servers and devices ("Assign to Server" in the portal is what DEP then reports to that server),
so they share one store. Each party keeps its schema and its SQL in its own module; this one only puts
the schemas together:

========================================  ============================================================
:mod:`simulator.apple.portal.store`       the organisation, its MDM servers and API accounts
:mod:`simulator.apple.devices`            devices and their change events (written by portal, DEP,
                                          activation, always through that module)
:mod:`simulator.apple.dep.store`          DEP profiles, sessions, nonces, activation locks, cursor key
:mod:`simulator.apple.activation.store`   the device CA, the Enterprise Attestation CA
:mod:`simulator.apple.apns.store`         APNs' pending notifications, token topics, counters
:mod:`simulator.apple.pushcert.store`     push certificates and their CA
:mod:`simulator.apple.account.store`      the token service's access tokens (API accounts are the
                                          portal's)
:mod:`simulator.apple.business.store`     the Business API's device activities and their results,
                                          rate windows
========================================  ============================================================

The schema is versioned by one ``PRAGMA user_version``, so the migrations of every party are listed
here in the order they were added, and a party's new migration is **appended at the end** (never
inserted next to its siblings): a store made before it then runs exactly the new one. Migration 1 is
the store as first released, when the portal, device and DEP tables were one script.

APNs and the push certificate portal can also run on a store of their own
(:func:`simulator.apple.apns.store.open_apns_store`, :func:`simulator.apple.pushcert.store.open_pushcert_store`).
"""

from __future__ import annotations

from pathlib import Path

from mdm.platform.storage import Store

from . import devices
from .account import store as account_store
from .activation import store as activation_store
from .apns import store as apns_store
from .business import store as business_store
from .dep import store as dep_store
from .portal import store as portal_store
from .pushcert import store as pushcert_store

__all__ = ["MIGRATIONS", "open_apple_store"]

MIGRATIONS = [
    # 1: the portal's, the device records' and DEP's tables, as first released.
    portal_store.MIGRATIONS[0] + devices.MIGRATIONS[0] + dep_store.MIGRATIONS[0],
    # 2 onwards: one party migration each, in the order they joined this store. Append only.
    activation_store.MIGRATIONS[0],
    apns_store.MIGRATIONS[0],
    apns_store.MIGRATIONS[1],
    pushcert_store.MIGRATIONS[0],
    apns_store.MIGRATIONS[2],
    devices.MIGRATIONS[1],
    portal_store.MIGRATIONS[1],
    dep_store.MIGRATIONS[1],
    activation_store.MIGRATIONS[1],
    devices.MIGRATIONS[2],
    portal_store.MIGRATIONS[2],
    account_store.MIGRATIONS[0],
    business_store.MIGRATIONS[0],
]


def open_apple_store(path: str | Path | None = None) -> Store:
    """Apple's store: ``None`` for an in-memory world (tests), a file path for ``mdmsim serve``."""
    return Store(path, MIGRATIONS)
