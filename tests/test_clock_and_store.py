"""The world clock and the SQLite store every party builds on."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from mdm.platform.clock import Clock, ClockError
from mdm.platform.storage import Store
from mdm.protocol.isotime import IsoTimeError, isoformat, parse_iso


def test_clock_advances_and_never_runs_backwards() -> None:
    clock = Clock(Store(None, []), start=datetime(2026, 1, 1, tzinfo=UTC), frozen=True)
    assert isoformat(clock.now()) == "2026-01-01T00:00:00Z"
    assert clock.advance(days=7, seconds=1) == datetime(2026, 1, 8, 0, 0, 1, tzinfo=UTC)
    with pytest.raises(ClockError, match="never runs backwards"):
        clock.set(datetime(2026, 1, 2, tzinfo=UTC))
    with pytest.raises(ClockError):
        clock.advance(seconds=-1)
    assert clock.set(datetime(2026, 2, 1, tzinfo=UTC)) == datetime(2026, 2, 1, tzinfo=UTC)


def test_running_clock_follows_wall_time_plus_offset() -> None:
    wall = [1_000_000.0]
    clock = Clock(Store(None, []), wall=lambda: wall[0])
    clock.advance(hours=1)
    wall[0] += 5
    assert clock.timestamp() == pytest.approx(1_000_000.0 + 3600 + 5)


def test_clock_is_shared_by_every_process_of_a_file_world(tmp_path) -> None:
    first = Clock(Store(tmp_path / "w.db", []))
    second = Clock(Store(tmp_path / "w.db", []))  # as a second worker process would open it
    assert abs(second.now() - datetime.now(UTC)) < timedelta(seconds=5)  # read once before the move
    first.advance(days=8)
    assert abs((second.now() - datetime.now(UTC)) - timedelta(days=8)) < timedelta(seconds=5)


def test_memoised_clock_follows_moves_resets_and_rollbacks() -> None:
    """An in-memory store memoises the clock row: every way the row changes must show at once."""
    store = Store(None, [])
    clock = Clock(store, start=datetime(2026, 1, 1, tzinfo=UTC), frozen=True)
    snap = store.snapshot()
    assert clock.advance(days=1) == datetime(2026, 1, 2, tzinfo=UTC) == clock.now()
    store.restore(snap)  # a world reset
    assert clock.now() == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(RuntimeError), store.transaction() as db:
        db.execute("UPDATE clock SET frozen_at = frozen_at + 86400 * 30")
        store.forget("clock")
        assert clock.now() == datetime(2026, 1, 31, tzinfo=UTC)  # seen inside the transaction…
        raise RuntimeError("undone")
    assert clock.now() == datetime(2026, 1, 1, tzinfo=UTC)  # …and gone with its rollback


def test_memos_are_loaded_once_per_change_in_memory_and_never_on_disk(tmp_path) -> None:
    loads = []

    def load() -> int:
        loads.append(1)
        return len(loads)

    memory = Store(None, [])
    assert [memory.cached("k", load) for _ in range(3)] == [1, 1, 1]
    memory.forget("k")
    assert memory.cached("k", load) == 2
    loads.clear()
    disk = Store(tmp_path / "d.db", [])  # other processes may write the file: always read again
    assert [disk.cached("k", load) for _ in range(3)] == [1, 2, 3]


def test_parse_iso_rejects_naive_and_garbage() -> None:
    assert parse_iso("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=UTC)
    for bad in ("2026-01-01T00:00:00", "yesterday", 5):
        with pytest.raises(IsoTimeError):
            parse_iso(bad)  # type: ignore[arg-type]


def test_store_transactions_roll_back_and_snapshots_restore() -> None:
    store = Store(None, ["CREATE TABLE t (v INTEGER);"])
    with store.transaction() as db:
        db.execute("INSERT INTO t VALUES (1)")
    snap = store.snapshot()
    with pytest.raises(RuntimeError), store.transaction() as db:
        db.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("boom")
    with store.transaction() as db:
        db.execute("INSERT INTO t VALUES (3)")
    store.restore(snap)
    with store.read() as db:
        assert [r[0] for r in db.execute("SELECT v FROM t")] == [1]


def test_file_store_counts_exactly_under_concurrent_writers(tmp_path) -> None:
    store = Store(tmp_path / "c.db", ["CREATE TABLE n (v INTEGER NOT NULL); INSERT INTO n VALUES (0);"])

    def bump() -> None:
        for _ in range(50):
            with store.transaction() as db:
                (v,) = db.execute("SELECT v FROM n").fetchone()
                db.execute("UPDATE n SET v = ?", (v + 1,))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.read() as db:
        assert db.execute("SELECT v FROM n").fetchone()[0] == 200


def test_migrations_run_once_and_upgrade(tmp_path) -> None:
    Store(tmp_path / "m.db", ["CREATE TABLE a (x);"])
    upgraded = Store(tmp_path / "m.db", ["CREATE TABLE a (x);", "CREATE TABLE b (y);"])
    with upgraded.read() as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2


def test_a_device_outside_the_world_is_never_behind_the_world_clock() -> None:
    """``/_sim/clock`` answers whole seconds; a device that trusted it as is would run up to a second
    behind and find a CA made "now" on the server not yet valid (a flake seen with ``--tls``)."""
    import httpx

    from simulator.device.drivers import served_world_clock

    world_now = datetime.now(UTC) + timedelta(days=3)  # a moved world clock, with its fraction of a second
    shown = isoformat(world_now)  # what the endpoint answers: the fraction dropped
    client = httpx.Client(transport=httpx.MockTransport(lambda _req: httpx.Response(200, json={"now": shown})))
    device_now = served_world_clock(client, "http://world.invalid")
    assert device_now() >= world_now
    assert device_now() - world_now < timedelta(seconds=2)
