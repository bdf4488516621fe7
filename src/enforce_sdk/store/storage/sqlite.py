"""The embedded Label Store backend: one SQLite file in WAL mode, durable on commit.

Writes are serialised (a process-local lock, then `BEGIN IMMEDIATE` across
handles and processes); each `apply` batch is one transaction holding the label
rows, the audit events, the change records and the sequence counter. Reads run
concurrently on a small pool of read-only connections; WAL gives each read
transaction a snapshot of committed batches only. `synchronous=FULL` makes a
commit fsync the WAL before `apply` returns. The schema, row codec and write
batch are in sqlite_schema.py; docs/storage.md describes the schema.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import datetime

from ..._errors import InvalidInputError, StorageError
from ...model.compact import micros, time_of
from ...model.records import (
    Action,
    AuditEvent,
    ChangePage,
    ChangeRecord,
    LabelStatus,
    Outcome,
    StoredLabel,
)
from . import sqlite_console as console_sql
from .base import AppliedBatch, LabelStorage, WriteKey, WriteOp, recorded_outcome
from .console_records import Appeal, AppealEvent, MassJob, ReviewRecord
from .sqlite_schema import (
    ACTIVE,
    MIGRATIONS,
    PENDING,
    SCHEMA,
    SCHEMA_VERSION,
    STATUS_OF,
    WriteBatch,
    decode_label,
    meta_value,
    migrate_v1,
    translate,
)

_ITER_PAGE = 5000  # entities per read transaction in iter_labeled_entities


_GET_MANY_SQL = (
    "SELECT entity, source_key, status, seq, body FROM labels "
    "WHERE entity IN (SELECT value FROM json_each(?1)) {status} ORDER BY entity, source_key"
)

_GET_BODIES_SQL = (
    "SELECT entity, source_key, body FROM labels "
    f"WHERE entity IN (SELECT value FROM json_each(?1)) AND status = {ACTIVE} "
    "AND (expires_us IS NULL OR expires_us > ?2) ORDER BY entity, source_key"
)


class SQLiteStorage(LabelStorage):
    """A LabelStorage in one SQLite database file; safe to share between threads.

    Several handles (and processes) may open the same file: writes serialise on
    the database lock, waiting up to `busy_timeout` seconds for it.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        if not isinstance(path, str | os.PathLike):
            raise InvalidInputError(f"must be a file path, got {type(path).__name__}", field="path")
        self._path = os.fspath(path)
        if not self._path or self._path == ":memory:" or self._path.startswith("file:"):
            raise InvalidInputError(
                f"must name a database file, got {self._path!r} (in-memory databases "
                "cannot be shared between connections)",
                field="path",
            )
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float) or not (
            0 <= busy_timeout < 86400
        ):
            raise InvalidInputError(f"must be seconds in [0, 86400), got {busy_timeout!r}",
                                    field="busy_timeout")
        self._busy_timeout = float(busy_timeout)
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._busy: set[sqlite3.Connection] = set()
        self._closed = False
        with translate("open"):
            self._writer = self._connect()
            try:
                self._init_database(self._writer)
            except BaseException:
                self._writer.close()
                raise

    # -- connections ---------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        return conn

    def _init_database(self, conn: sqlite3.Connection) -> None:
        """WAL, durability and the schema, retried while another opener holds the file.

        Several processes may open a new file at once (store workers): switching it
        to WAL needs the file to itself, and SQLite answers "database is locked" at
        once, without its busy handler, to a connection that must upgrade a shared
        lock while another holds a write lock. So that is retried, up to
        `busy_timeout` in all.
        """
        deadline = time.monotonic() + self._busy_timeout
        pause = 0.005
        while True:
            try:
                self._init_once(conn)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    def _init_once(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"{self._path}: cannot switch the database to WAL (got {mode!r})")
        # FULL: the WAL is fsynced at every commit, so an acknowledged batch survives
        # a process kill and an OS crash or power loss (NORMAL would only survive the former).
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
                if tables:
                    raise StorageError(f"{self._path} is a SQLite database, but not a label store")
                _run_script(conn, SCHEMA)  # the schema of version 2
                version = 2
            if 0 < version < SCHEMA_VERSION:  # upgrade in place, in this transaction
                if version == 1:
                    migrate_v1(conn)  # 1 -> 2: the expiry column, filled from the bodies
                    version = 2
                for step in range(version, SCHEMA_VERSION):
                    _run_script(conn, MIGRATIONS[step])
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise StorageError(
                    f"{self._path} has label store schema version {version}; "
                    f"this build reads version {SCHEMA_VERSION}"
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _acquire(self) -> sqlite3.Connection:
        with self._pool_lock:
            if self._closed:
                raise StorageError("the SQLite label store is closed")
            conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._connect()
                conn.execute("PRAGMA query_only = 1")
            self._busy.add(conn)
            return conn

    def _release(self, conn: sqlite3.Connection) -> None:
        healthy = True
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            healthy = False
        with self._pool_lock:
            self._busy.discard(conn)
            if healthy and not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[sqlite3.Connection]:
        """A pooled connection inside one read transaction (one consistent snapshot)."""
        with translate(what):
            conn = self._acquire()
            try:
                conn.execute("BEGIN")
                yield conn
            finally:
                self._release(conn)

    # -- writes --------------------------------------------------------------------

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction on the writer: committed if the block ends, else rolled back."""
        with self._write_lock, translate(what):
            if self._closed:
                raise StorageError("the SQLite label store is closed")
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _apply(self, ops: list[WriteOp], *, actor: str, now: datetime) -> list[Outcome]:
        if not ops:
            return []
        with self._writing("apply") as conn:
            return WriteBatch(conn, actor, micros(now)).run(ops)

    def _apply_once(self, ops: list[WriteOp], *, actor: str, now: datetime,
                    key: WriteKey) -> AppliedBatch:
        with self._writing("apply") as conn:
            row = conn.execute(
                "SELECT fingerprint, outcomes, seq FROM write_keys "
                "WHERE key = ? AND expires_us > ?", (key.key, micros(now))).fetchone()
            if row is not None:  # a replay: the transaction wrote nothing
                return recorded_outcome(key, row[0], json.loads(row[1]), row[2])
            batch = WriteBatch(conn, actor, micros(now))
            outcomes = batch.run(ops)
            conn.execute(
                "INSERT OR REPLACE INTO write_keys (key, fingerprint, outcomes, seq, "
                "expires_us) VALUES (?, ?, ?, ?, ?)",
                (key.key, key.fingerprint, json.dumps([o.value for o in outcomes]),
                 batch.seq, micros(key.expires_at)))
        return AppliedBatch(outcomes, batch.seq)

    def _prune_write_keys(self, now: datetime) -> int:
        with self._write_lock, translate("prune_write_keys"):
            if self._closed:
                raise StorageError("the SQLite label store is closed")
            cursor = self._writer.execute("DELETE FROM write_keys WHERE expires_us <= ?",
                                          (micros(now),))  # autocommit: one statement
        return cursor.rowcount

    def _prune_changes(self, older_than: datetime) -> int:
        cutoff = micros(older_than)
        with self._writing("prune_changes") as conn:
            # Drop the longest prefix of the feed older than the cutoff, so the
            # retained feed never has a hole even if `now` once went backwards.
            row = conn.execute(
                "SELECT seq FROM changes WHERE at_us >= ? ORDER BY seq LIMIT 1", (cutoff,)
            ).fetchone()
            if row is None:
                cursor = conn.execute("DELETE FROM changes")
            else:
                cursor = conn.execute("DELETE FROM changes WHERE seq < ?", (row[0],))
        return cursor.rowcount

    # -- reads ---------------------------------------------------------------------

    def _get_many(self, keys: list[str], *, include_pending: bool) -> dict[str, list[StoredLabel]]:
        out: dict[str, list[StoredLabel]] = {}
        if not keys:
            return out
        sql = _GET_MANY_SQL.format(status="" if include_pending else f"AND status = {ACTIVE}")
        with self._reading("get_many") as conn:
            rows = conn.execute(sql, (json.dumps(keys),)).fetchall()
        for entity, source_key, status, seq, body in rows:
            label = decode_label(entity, source_key, body)
            out.setdefault(entity, []).append(StoredLabel(label, STATUS_OF[status], seq))
        return out

    def _get_bodies(self, keys: list[str], now: datetime) -> dict[str, list[tuple[str, bytes]]]:
        """The stored bodies as they are: no label is decoded on a compact read."""
        out: dict[str, list[tuple[str, bytes]]] = {}
        if not keys:
            return out
        with self._reading("get_bodies") as conn:
            rows = conn.execute(_GET_BODIES_SQL, (json.dumps(keys), micros(now))).fetchall()
        for entity, source_key, body in rows:
            found = out.get(entity)
            if found is None:
                out[entity] = [(source_key, body)]
            else:
                found.append((source_key, body))
        return out

    def _history(self, entity: str, *, limit: int, before_seq: int | None) -> list[AuditEvent]:
        with self._reading("history") as conn:
            rows = conn.execute(
                "SELECT seq, source_key, action, actor, at_us, before, after, status FROM audit "
                "WHERE entity = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                (entity, (1 << 62) if before_seq is None else before_seq, limit),
            ).fetchall()
        return [
            AuditEvent(
                seq=seq,
                entity=entity,
                source_key=source_key,
                action=Action(action),
                actor=actor,
                at=time_of(at_us),
                before=None if before is None else decode_label(entity, source_key, before),
                after=None if after is None else decode_label(entity, source_key, after),
                status=None if status is None else STATUS_OF[status],
            )
            for seq, source_key, action, actor, at_us, before, after, status in rows
        ]

    def _changes(self, after_seq: int, *, limit: int) -> ChangePage:
        with self._reading("changes") as conn:
            rows = conn.execute(
                "SELECT seq, entity, source_key, action, at_us, labeled FROM changes "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
            head = meta_value(conn, "head")
            oldest = conn.execute("SELECT min(seq) FROM changes").fetchone()[0]
        records = [
            ChangeRecord(seq, entity, source_key, Action(action), time_of(at_us), bool(labeled))
            for seq, entity, source_key, action, at_us, labeled in rows
        ]
        return ChangePage(records, head=head, oldest=head + 1 if oldest is None else oldest)

    def head_seq(self) -> int:
        with self._reading("head_seq") as conn:
            return meta_value(conn, "head")

    def _pending(self, *, limit: int, after: tuple[str, str] | None) -> list[StoredLabel]:
        start = ("", "") if after is None else after
        with self._reading("pending") as conn:
            rows = conn.execute(
                "SELECT entity, source_key, seq, body FROM labels INDEXED BY labels_pending "
                f"WHERE status = {PENDING} AND (entity, source_key) > (?, ?) "
                "ORDER BY entity, source_key LIMIT ?",
                (*start, limit),
            ).fetchall()
        return [
            StoredLabel(decode_label(entity, source_key, body), LabelStatus.PENDING, seq)
            for entity, source_key, seq, body in rows
        ]

    def iter_labeled_entities(self) -> Iterator[str]:
        # Paged by key, one short read transaction per page, so a long iteration
        # neither holds a connection nor keeps the WAL from being checkpointed.
        last = ""
        while True:
            with self._reading("iter_labeled_entities") as conn:
                page = [
                    row[0]
                    for row in conn.execute(
                        "SELECT DISTINCT entity FROM labels "
                        f"WHERE entity > ? AND status = {ACTIVE} ORDER BY entity LIMIT ?",
                        (last, _ITER_PAGE),
                    )
                ]
            yield from page
            if len(page) < _ITER_PAGE:
                return
            last = page[-1]

    def _expired_entities(self, before: datetime) -> Iterator[str]:
        # Paged by (expires_us, entity) through the expiry index, one short read
        # transaction per page, like iter_labeled_entities.
        cutoff = micros(before)
        last: tuple[int, str] = (-(1 << 62), "")
        while True:
            with self._reading("expired_entities") as conn:
                page = conn.execute(
                    "SELECT expires_us, entity FROM labels INDEXED BY labels_expiry "
                    "WHERE expires_us <= ? AND (expires_us, entity) > (?, ?) "
                    "ORDER BY expires_us, entity LIMIT ?",
                    (cutoff, *last, _ITER_PAGE),
                ).fetchall()
            yield from (entity for _, entity in page)
            if len(page) < _ITER_PAGE:
                return
            last = page[-1]

    # -- the console's records (storage/console_records; SQL in sqlite_console) ----------

    keeps_console_records = True

    def _add_review(self, record: ReviewRecord) -> None:
        with self._writing("add_review") as conn:
            console_sql.add_review(conn, record)

    def _reviews(self, entity: str, *, limit: int) -> list[ReviewRecord]:
        with self._reading("reviews") as conn:
            return console_sql.reviews(conn, entity, limit)

    def _open_appeal(self, entity: str, contested: tuple[str, ...], appellant: str,
                     statement: str, ref: str | None, now: datetime) -> Appeal:
        with self._writing("open_appeal") as conn:
            return console_sql.open_appeal(conn, entity, contested, appellant, statement, ref,
                                           now)

    def _appeal(self, appeal_id: int) -> Appeal | None:
        with self._reading("appeal") as conn:
            return console_sql.get_appeal(conn, appeal_id)

    def _appeals(self, state: str | None, entity: str | None, limit: int) -> list[Appeal]:
        with self._reading("appeals") as conn:
            return console_sql.appeals(conn, state, entity, limit)

    def _appeal_events(self, after: int, limit: int) -> list[AppealEvent]:
        with self._reading("appeal_events") as conn:
            return console_sql.appeal_events(conn, after, limit)

    def _decide_appeal(self, appeal_id: int, state: str, note: str, ops: list[WriteOp], *,
                       actor: str, now: datetime) -> tuple[Appeal, int]:
        with self._writing("decide_appeal") as conn:
            appeal = console_sql.decide(conn, appeal_id, state, actor, note, now)
            batch = WriteBatch(conn, actor, micros(now))
            if ops:
                batch.run(ops)
        return appeal, batch.seq

    def _save_job(self, job: MassJob) -> None:
        with self._writing("save_job") as conn:
            console_sql.save_job(conn, job)

    def _job(self, job_id: str) -> MassJob | None:
        with self._reading("job") as conn:
            return console_sql.get_job(conn, job_id)

    def _jobs(self, limit: int) -> list[MassJob]:
        with self._reading("jobs") as conn:
            return console_sql.jobs(conn, limit)

    def _scan_labels(self, after: tuple[str, str] | None, limit: int) -> list[StoredLabel]:
        with self._reading("scan_labels") as conn:
            rows = console_sql.scan_labels(conn, after, limit)
        return [StoredLabel(decode_label(entity, source_key, body), STATUS_OF[status], seq)
                for entity, source_key, status, seq, body in rows]

    def count_labels(self) -> dict[LabelStatus, int]:
        with self._reading("count_labels") as conn:
            return {
                LabelStatus.ACTIVE: meta_value(conn, "active"),
                LabelStatus.PENDING: meta_value(conn, "pending"),
            }

    def close(self) -> None:
        with self._write_lock, self._pool_lock:
            if self._closed:
                return
            self._closed = True
            idle, self._idle = self._idle, []
        # Readers still in use are closed by _release when they come back.
        with translate("close"):
            for conn in idle:
                conn.close()
            self._writer.close()

    def __repr__(self) -> str:
        return f"SQLiteStorage({self._path!r})"


# -- helpers -------------------------------------------------------------------------


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)
