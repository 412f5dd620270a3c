"""SQLite persistence shared by every party's store.

It lives in ``mdm.protocol`` because that is the one package every party may import (DESIGN.md rule 1);
it knows nothing of any party's tables. Each party passes its own migrations.

Two modes:

* **in memory** (``path=None``): one connection shared by every thread behind a lock. Shared-cache
  in-memory databases raise "table is locked" under concurrent writers; one serialised connection
  never does, and SQLite calls are short enough that the lock is not the bottleneck.
* **file** (``path=...``): one connection per thread, WAL journal, ``synchronous=NORMAL`` and a busy
  timeout, so several gunicorn worker processes can share the file. Writes open with
  ``BEGIN IMMEDIATE`` so two processes never both think they won a race (one sync in flight, nonce
  reuse): the rule is enforced by the database, not by an in-process lock.

The schema is versioned with ``PRAGMA user_version``: migration *n* runs once, when the stored
version is below *n*.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["Store"]

T = TypeVar("T")
_MISSING = object()


class Store:
    """A SQLite database with migrations, transactions and an in-memory snapshot for fast resets."""

    def __init__(self, path: str | Path | None, migrations: Sequence[str]) -> None:
        self.path = str(path) if path is not None else None
        self._migrations = list(migrations)
        self._local = threading.local()
        self._lock = threading.RLock()
        self._shared: sqlite3.Connection | None = None
        self._all: list[sqlite3.Connection] = []
        self._memo: dict[str, Any] = {}
        if self.path is None:
            self._shared = self._open(":memory:")
        with self.transaction() as db:
            self._migrate(db)

    # -- connections -------------------------------------------------------------------------------
    def _open(self, target: str) -> sqlite3.Connection:
        db = sqlite3.connect(target, isolation_level=None, check_same_thread=False, timeout=30.0)
        db.row_factory = sqlite3.Row
        if target != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
        db.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._all.append(db)
        return db

    def _connection(self) -> sqlite3.Connection:
        if self._shared is not None:
            return self._shared
        db = getattr(self._local, "db", None)
        if db is None:
            assert self.path is not None
            db = self._open(self.path)
            self._local.db = db
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(self._migrations, start=1):
            if number > version:
                for statement in _split_sql(script):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={number}")

    # -- transactions ------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): committed on success, rolled back on error."""
        with self._guard():
            db = self._connection()
            if db.in_transaction:  # nested use inside one thread: join the outer transaction
                yield db
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                self._memo.clear()  # a memo reloaded inside the transaction may hold what was undone
                raise
            else:
                db.execute("COMMIT")

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> None:
        """One write statement as its own transaction (SQLite's autocommit: a write statement takes
        the write lock when it starts, so it is as atomic as ``BEGIN IMMEDIATE`` … ``COMMIT``, in one
        call instead of three). Inside an open transaction of this thread, it joins that one."""
        with self._guard():
            self._connection().execute(sql, parameters)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads; in WAL mode readers never wait for writers."""
        with self._guard():
            yield self._connection()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        if self._shared is not None:
            with self._lock:
                yield
        else:
            yield

    @property
    def in_memory(self) -> bool:
        """True when this object is the only way to the data (one connection in this process), so a
        writer may keep something in memory and still answer every reader exactly."""
        return self._shared is not None

    # -- memos (in-memory stores only) ----------------------------------------------------------------
    def cached(self, key: str, load: Callable[[], T]) -> T:
        """``load()``'s value, kept until :meth:`forget` (or a restore or wipe) in an in-memory store.

        Why: every request reads the same few rows (the clock, the world's URL, a CA) and each read
        takes the store's lock and drops the GIL inside SQLite; with a dozen server threads that
        handoff costs more than the query. An in-memory store has one connection in one process, so
        every write passes through this object and a writer that calls :meth:`forget` inside its
        transaction keeps the memo exact. A store on disk may be written by other processes (gunicorn
        workers), so there ``load`` runs every time.
        """
        if not self.in_memory:
            return load()
        memo = self._memo
        value = memo.get(key, _MISSING)  # a hit takes no lock: one dict read is atomic, and a
        if value is not _MISSING:  # forget() racing it is a write that lands just after
            return value  # type: ignore[no-any-return]
        with self._lock:  # a miss loads under the lock: a writer's forget() cannot be overtaken
            if key not in memo:
                memo[key] = load()
            return memo[key]  # type: ignore[no-any-return]

    def forget(self, key: str) -> None:
        """Drop a memo; call it inside the transaction that changes the rows it was read from."""
        with self._guard():
            self._memo.pop(key, None)

    # -- snapshots (fast resets of in-memory worlds) -------------------------------------------------
    def snapshot(self) -> sqlite3.Connection:
        """Copy the whole database into a private in-memory connection."""
        copy = sqlite3.connect(":memory:", check_same_thread=False)
        with self.read() as db:
            db.backup(copy)
        return copy

    def restore(self, snapshot: sqlite3.Connection) -> None:
        """Replace the database's contents with a snapshot taken by :meth:`snapshot`."""
        with self._guard():
            snapshot.backup(self._connection())
            self._memo.clear()

    def wipe(self) -> None:
        """Drop every table and run the migrations again (used to reset a world kept on disk).

        Foreign keys are switched off around the transaction: SQLite ignores that pragma inside one,
        and dropping a parent table before its children would fail."""
        with self._guard():
            connection = self._connection()
            connection.execute("PRAGMA foreign_keys=OFF")
            try:
                with self.transaction() as db:
                    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
                    for name in names:
                        if not name.startswith("sqlite_"):
                            db.execute(f'DROP TABLE IF EXISTS "{name}"')
                    db.execute("PRAGMA user_version=0")
                    self._migrate(db)
                    self._memo.clear()
            finally:
                connection.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                try:
                    db.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
            self._memo.clear()
            self._shared = None
            self._local = threading.local()


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    statements, buffer = [], ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \n\t;"):
                statements.append(buffer.strip())
            buffer = ""
    return statements
