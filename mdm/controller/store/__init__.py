"""Everything the controller knows, and every SQL statement it runs.

Everything lives in the store (DESIGN rule 3), including the one-sync-in-flight claim: the ``sync_*``
columns of a token row are read and written in a single ``BEGIN IMMEDIATE`` transaction, so two
threads or two worker processes can never both start a sync.

The rule modules never write SQL. They open the transaction (``store.read()`` /
``store.transaction()``), because what must be atomic is a rule's decision, and call the named query
functions of one module per table, each taking that transaction's connection:

* :mod:`.schema`: the migrations;
* :mod:`.tokens`: ``tokens``, one row per ``depOnboardingSetting`` with its sync claim and cursor;
* :mod:`.profiles`: ``profiles``, the enrollment profiles and the JSON sent to Apple;
* :mod:`.devices`: ``devices`` (imported identities) and ``udids`` (who a webhook's UDID is);
* :mod:`.push_certificate`: the tenant's one ``push_certificate`` row.

Times are stored as world-clock epoch seconds (REAL) and rendered as ISO 8601 only at the edge.
"""

from __future__ import annotations

from pathlib import Path

from mdm.platform.storage import Store

from .schema import MIGRATIONS

__all__ = ["MIGRATIONS", "open_controller_store"]


def open_controller_store(path: str | Path | None = None) -> Store:
    """The controller's store: ``None`` in memory (tests), a file for ``mdmsim serve``."""
    return Store(path, MIGRATIONS)
