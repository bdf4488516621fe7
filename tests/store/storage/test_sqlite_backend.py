"""What the SQLite backend promises beyond the shared contract: pragmas, durability, errors."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from enforce_sdk._errors import InvalidInputError, StorageError
from enforce_sdk.model.label import Source, SourceType
from enforce_sdk.model.records import LabelStatus
from enforce_sdk.store import SQLiteStorage
from enforce_sdk.store.storage import sqlite as _sqlite
from enforce_sdk.store.storage.base import WriteKey
from tests.store.storage._labels import ACTOR, T0, label, put


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "labels.db"


def test_database_is_wal_with_full_sync(db_path: Path) -> None:
    storage = SQLiteStorage(db_path)
    try:
        raw = sqlite3.connect(db_path)
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == _sqlite.SCHEMA_VERSION
        raw.close()
        assert storage._writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        storage.close()


def test_get_many_looks_keys_up_by_primary_key(db_path: Path) -> None:
    storage = SQLiteStorage(db_path)
    try:
        for status in ("", "AND status = 0"):
            plan = storage._writer.execute(
                "EXPLAIN QUERY PLAN " + _sqlite._GET_MANY_SQL.format(status=status), ('["a"]',)
            ).fetchall()
            details = " / ".join(str(row[-1]) for row in plan)
            assert "SEARCH labels USING PRIMARY KEY (entity=?)" in details, details
    finally:
        storage.close()


def test_close_releases_every_connection(db_path: Path) -> None:
    storage = SQLiteStorage(db_path)
    storage.apply([put(label("pin:1"))], actor=ACTOR, now=T0)
    readers = [
        threading.Thread(target=storage.get_many, args=(["pin:1"],)) for _ in range(4)
    ]
    for thread in readers:
        thread.start()
    for thread in readers:
        thread.join()
    storage.close()
    raw = sqlite3.connect(db_path, timeout=0)
    # Leaving WAL needs the only connection to the file: any leftover one makes this fail.
    assert raw.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    raw.close()


def test_a_held_write_lock_times_out_as_storage_error(db_path: Path) -> None:
    storage = SQLiteStorage(db_path, busy_timeout=0.05)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageError, match="locked") as caught:
            storage.apply([put(label("pin:1"))], actor=ACTOR, now=T0)
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        assert storage.get_many(["pin:1"]) == {}  # readers are not blocked by the writer
        blocker.execute("ROLLBACK")
        storage.apply([put(label("pin:1"))], actor=ACTOR, now=T0)
        assert storage.count_labels()[LabelStatus.ACTIVE] == 1
    finally:
        blocker.close()
        storage.close()


def test_files_that_are_not_label_stores_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"definitely not sqlite " * 100)
    with pytest.raises(StorageError) as caught:
        SQLiteStorage(garbage)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)

    foreign = tmp_path / "foreign.db"
    raw = sqlite3.connect(foreign)
    raw.execute("CREATE TABLE t (x)")
    raw.commit()
    raw.close()
    with pytest.raises(StorageError, match="not a label store"):
        SQLiteStorage(foreign)

    newer = tmp_path / "newer.db"
    SQLiteStorage(newer).close()
    raw = sqlite3.connect(newer)
    raw.execute(f"PRAGMA user_version = {_sqlite.SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(StorageError, match="schema version"):
        SQLiteStorage(newer)

    with pytest.raises(StorageError):
        SQLiteStorage(tmp_path / "missing-dir" / "labels.db")


def test_a_version_1_database_is_upgraded_in_place_and_keeps_its_labels(tmp_path: Path) -> None:
    """Stores of schema 1 (before the expiry column and idempotency keys) gain both on open."""
    path = tmp_path / "v1.db"
    raw = sqlite3.connect(path)
    raw.executescript(_sqlite.SCHEMA + "DROP INDEX labels_expiry;"
                      "ALTER TABLE labels DROP COLUMN expires_us; PRAGMA user_version = 1;")
    raw.close()
    storage = SQLiteStorage(path)
    try:
        storage.apply([put(label("pin:1"))], actor=ACTOR, now=T0)
        key = WriteKey("w\x00k", "fp", T0 + timedelta(days=1))
        first = storage.apply_once([put(label("pin:2"))], actor=ACTOR, now=T0, key=key)
        again = storage.apply_once([put(label("pin:2"))], actor=ACTOR, now=T0, key=key)
        assert (first.replayed, again.replayed, again.seq) == (False, True, 2)
    finally:
        storage.close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == _sqlite.SCHEMA_VERSION == 4
    assert raw.execute("SELECT count(*) FROM reviews").fetchone()[0] == 0  # schema 4's table
    raw.close()


@pytest.mark.parametrize("path", ["", ":memory:", "file:x.db?mode=memory"])
def test_paths_that_cannot_be_shared_are_refused(path: str) -> None:
    with pytest.raises(InvalidInputError, match="path"):
        SQLiteStorage(path)


def test_iteration_pages_through_many_entities(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite, "_ITER_PAGE", 3)
    storage = SQLiteStorage(db_path)
    try:
        entities = sorted(f"pin:{i}" for i in range(10))
        storage.apply([put(label(e)) for e in entities], actor=ACTOR, now=T0)
        second_source = Source("other", SourceType.HUMAN, "y")  # one entity, two labels
        storage.apply([put(label("pin:4", second_source))], actor=ACTOR, now=T0)
        assert list(storage.iter_labeled_entities()) == entities
    finally:
        storage.close()


_WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from enforce_sdk.model.label import Enforcement, Label, Source, SourceType
    from enforce_sdk.store.storage.sqlite import SQLiteStorage
    from enforce_sdk.store.storage.base import PutOp

    storage = SQLiteStorage(sys.argv[1])
    source = Source("crash_test", SourceType.AUTOMATED, "w")
    now = datetime(2026, 3, 1, tzinfo=UTC)
    batch = 0
    while True:
        ops = [PutOp(Label(f"pin:{batch}-{i}", source, Enforcement.BLOCK, "spam", now))
               for i in range(5)]
        storage.apply(ops, actor="crash", now=now)
        print(batch, flush=True)  # acknowledged
        batch += 1
    """
)


def test_acknowledged_batches_survive_kill_9(db_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(db_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acknowledged = -1
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while acknowledged < 30 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acknowledged = int(line)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert acknowledged >= 30, f"writer died early: {proc.stderr.read() if proc.stderr else ''}"
    storage = SQLiteStorage(db_path)
    try:
        wanted = [f"pin:{b}-{i}" for b in range(acknowledged + 1) for i in range(5)]
        assert len(storage.get_many(wanted)) == len(wanted)
        total = storage.count_labels()[LabelStatus.ACTIVE]
        assert total % 5 == 0, "a batch was half committed"
        assert total >= len(wanted)
        page = storage.changes(0, limit=100_000)
        assert len(page.changes) == total and page.head == page.changes[-1].seq
    finally:
        storage.close()


def test_a_schema_1_database_gains_the_expiry_index_on_open(db_path: Path) -> None:
    ends = T0 + timedelta(hours=1)
    storage = SQLiteStorage(db_path)
    storage.apply([put(label("pin:1", expires_at=ends)), put(label("pin:2"))], actor=ACTOR,
                  now=T0)
    storage.close()
    raw = sqlite3.connect(db_path, isolation_level=None)  # back to what schema 1 stored
    raw.execute("DROP INDEX labels_expiry")
    raw.execute("ALTER TABLE labels DROP COLUMN expires_us")
    raw.execute("DROP TABLE write_keys")  # schema 3's: not in schema 1 either
    raw.executescript("DROP TABLE reviews; DROP TABLE appeals; DROP TABLE appeal_events; "
                      "DROP TABLE mass_jobs")  # schema 4's
    raw.execute("PRAGMA user_version = 1")
    raw.close()

    storage = SQLiteStorage(db_path)
    try:
        raw = sqlite3.connect(db_path)
        assert raw.execute("PRAGMA user_version").fetchone()[0] == _sqlite.SCHEMA_VERSION
        assert raw.execute("SELECT entity, expires_us FROM labels ORDER BY entity").fetchall() == [
            ("pin:1", _sqlite.micros(ends)), ("pin:2", None)]
        raw.close()
        assert storage.purge_expired(ends, now=ends) == 1
        assert list(storage.iter_labeled_entities()) == ["pin:2"]
    finally:
        storage.close()


def _open_at(path: str, start: Any) -> None:
    start.wait()
    SQLiteStorage(path).close()


def test_processes_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Store workers open one new file together: switching it to WAL while another
    process creates the schema made SQLite answer "database is locked" at once."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for attempt in range(8):
        path = str(tmp_path / f"new{attempt}.db")
        start = ctx.Barrier(4)
        procs = [ctx.Process(target=_open_at, args=(path, start)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0], f"attempt {attempt}"
        storage = SQLiteStorage(path)
        assert storage.head_seq() == 0
        storage.close()
