"""The embedded Label Store backend: one SQLite file in WAL mode, durable on commit.

Writes are serialised (a process-local lock, then `BEGIN IMMEDIATE` across
handles and processes); each `apply` batch is one transaction holding the label
rows, the audit events, the change records and the sequence counter. Reads run
concurrently on a small pool of read-only connections; WAL gives each read
transaction a snapshot of committed batches only. `synchronous=FULL` makes a
commit fsync the WAL before `apply` returns. docs/storage.md has the schema.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta

import msgpack

from ..._errors import InvalidInputError, StorageError
from ...model.label import Enforcement, Label, Source
from ...model.records import (
    Action,
    AuditEvent,
    ChangePage,
    ChangeRecord,
    LabelStatus,
    Outcome,
    StoredLabel,
)
from .base import DeleteOp, LabelStorage, PutOp, WriteOp
from .base import check_aware as _aware
from .base import check_int as _check_int
from .base import check_ops as _checked_ops
from .base import check_str as _check_str

SCHEMA_VERSION = 1  # PRAGMA user_version of a database this module created
_BODY_VERSION = 1  # first element of every stored label body
_ITER_PAGE = 5000  # entities per read transaction in iter_labeled_entities
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STATUS_CODE = {LabelStatus.ACTIVE: 0, LabelStatus.PENDING: 1}
_STATUS_OF = {code: status for status, code in _STATUS_CODE.items()}
_ACTIVE, _PENDING = _STATUS_CODE[LabelStatus.ACTIVE], _STATUS_CODE[LabelStatus.PENDING]

_SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('head', 0), ('active', 0), ('pending', 0);
CREATE TABLE labels (
    entity TEXT NOT NULL,
    source_key TEXT NOT NULL,
    status INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (entity, source_key)
) WITHOUT ROWID;
CREATE INDEX labels_pending ON labels (entity, source_key) WHERE status = 1;
CREATE TABLE audit (
    entity TEXT NOT NULL,
    seq INTEGER NOT NULL,
    source_key TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    before BLOB,
    after BLOB,
    status INTEGER,
    PRIMARY KEY (entity, seq)
) WITHOUT ROWID;
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY,
    entity TEXT NOT NULL,
    source_key TEXT NOT NULL,
    action TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    labeled INTEGER NOT NULL
);
"""

_GET_MANY_SQL = (
    "SELECT entity, source_key, status, seq, body FROM labels "
    "WHERE entity IN (SELECT value FROM json_each(?1)) {status} ORDER BY entity, source_key"
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
        with _translate("open"):
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
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
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
        with _translate(what):
            conn = self._acquire()
            try:
                conn.execute("BEGIN")
                yield conn
            finally:
                self._release(conn)

    # -- writes --------------------------------------------------------------------

    def apply(self, ops: Sequence[WriteOp], *, actor: str, now: datetime) -> list[Outcome]:
        ops = _checked_ops(ops)
        if not isinstance(actor, str) or not actor.strip():
            raise InvalidInputError(f"must be a non-empty string, got {actor!r}", field="actor")
        at_us = _micros(_aware(now, "now"))
        if not ops:
            return []
        with self._write_lock, _translate("apply"):
            if self._closed:
                raise StorageError("the SQLite label store is closed")
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                outcomes = _Batch(conn, actor, at_us).run(ops)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return outcomes

    def prune_changes(self, older_than: datetime) -> int:
        cutoff = _micros(_aware(older_than, "older_than"))
        with self._write_lock, _translate("prune_changes"):
            if self._closed:
                raise StorageError("the SQLite label store is closed")
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Drop the longest prefix of the feed older than the cutoff, so the
                # retained feed never has a hole even if `now` once went backwards.
                row = conn.execute(
                    "SELECT seq FROM changes WHERE at_us >= ? ORDER BY seq LIMIT 1", (cutoff,)
                ).fetchone()
                if row is None:
                    cursor = conn.execute("DELETE FROM changes")
                else:
                    cursor = conn.execute("DELETE FROM changes WHERE seq < ?", (row[0],))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return cursor.rowcount

    # -- reads ---------------------------------------------------------------------

    def get_many(
        self, entities: Iterable[str], *, include_pending: bool = False
    ) -> dict[str, list[StoredLabel]]:
        keys = _checked_entities(entities)
        out: dict[str, list[StoredLabel]] = {}
        if not keys:
            return out
        sql = _GET_MANY_SQL.format(status="" if include_pending else f"AND status = {_ACTIVE}")
        with self._reading("get_many") as conn:
            rows = conn.execute(sql, (json.dumps(keys),)).fetchall()
        for entity, source_key, status, seq, body in rows:
            label = _decode_label(entity, source_key, body)
            out.setdefault(entity, []).append(StoredLabel(label, _STATUS_OF[status], seq))
        return out

    def history(
        self, entity: str, *, limit: int = 100, before_seq: int | None = None
    ) -> list[AuditEvent]:
        _check_str(entity, "entity")
        _check_int(limit, "limit", minimum=1)
        if before_seq is not None:
            _check_int(before_seq, "before_seq", minimum=0)
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
                at=_time(at_us),
                before=None if before is None else _decode_label(entity, source_key, before),
                after=None if after is None else _decode_label(entity, source_key, after),
                status=None if status is None else _STATUS_OF[status],
            )
            for seq, source_key, action, actor, at_us, before, after, status in rows
        ]

    def changes(self, after_seq: int, *, limit: int = 1000) -> ChangePage:
        _check_int(after_seq, "after_seq", minimum=0)
        _check_int(limit, "limit", minimum=1)
        with self._reading("changes") as conn:
            rows = conn.execute(
                "SELECT seq, entity, source_key, action, at_us, labeled FROM changes "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
            head = _meta(conn, "head")
            oldest = conn.execute("SELECT min(seq) FROM changes").fetchone()[0]
        records = [
            ChangeRecord(seq, entity, source_key, Action(action), _time(at_us), bool(labeled))
            for seq, entity, source_key, action, at_us, labeled in rows
        ]
        return ChangePage(records, head=head, oldest=head + 1 if oldest is None else oldest)

    def head_seq(self) -> int:
        with self._reading("head_seq") as conn:
            return _meta(conn, "head")

    def pending(self, *, limit: int = 100, after: tuple[str, str] | None = None) -> list[StoredLabel]:
        _check_int(limit, "limit", minimum=1)
        if after is not None and not (
            isinstance(after, tuple) and len(after) == 2 and all(isinstance(p, str) for p in after)
        ):
            raise InvalidInputError(f"must be (entity, source key), got {after!r}", field="after")
        start = ("", "") if after is None else after
        with self._reading("pending") as conn:
            rows = conn.execute(
                "SELECT entity, source_key, seq, body FROM labels INDEXED BY labels_pending "
                f"WHERE status = {_PENDING} AND (entity, source_key) > (?, ?) "
                "ORDER BY entity, source_key LIMIT ?",
                (*start, limit),
            ).fetchall()
        return [
            StoredLabel(_decode_label(entity, source_key, body), LabelStatus.PENDING, seq)
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
                        f"WHERE entity > ? AND status = {_ACTIVE} ORDER BY entity LIMIT ?",
                        (last, _ITER_PAGE),
                    )
                ]
            yield from page
            if len(page) < _ITER_PAGE:
                return
            last = page[-1]

    def count_labels(self) -> dict[LabelStatus, int]:
        with self._reading("count_labels") as conn:
            return {
                LabelStatus.ACTIVE: _meta(conn, "active"),
                LabelStatus.PENDING: _meta(conn, "pending"),
            }

    def close(self) -> None:
        with self._write_lock, self._pool_lock:
            if self._closed:
                return
            self._closed = True
            idle, self._idle = self._idle, []
        # Readers still in use are closed by _release when they come back.
        with _translate("close"):
            for conn in idle:
                conn.close()
            self._writer.close()

    def __repr__(self) -> str:
        return f"SQLiteStorage({self._path!r})"


class _Batch:
    """One `apply` batch inside an open write transaction."""

    def __init__(self, conn: sqlite3.Connection, actor: str, at_us: int) -> None:
        self._conn = conn
        self._actor = actor
        self._at_us = at_us
        self._seq = _meta(conn, "head")
        self._counts = {_ACTIVE: _meta(conn, "active"), _PENDING: _meta(conn, "pending")}

    def run(self, ops: Sequence[WriteOp]) -> list[Outcome]:
        outcomes = [self._put(op) if isinstance(op, PutOp) else self._delete(op) for op in ops]
        self._conn.executemany(
            "UPDATE meta SET value = ? WHERE key = ?",
            [(self._seq, "head"), (self._counts[_ACTIVE], "active"),
             (self._counts[_PENDING], "pending")],
        )
        return outcomes

    def _stored(self, entity: str, source_key: str) -> tuple[int, bytes] | None:
        row = self._conn.execute(
            "SELECT status, body FROM labels WHERE entity = ? AND source_key = ?",
            (entity, source_key),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def _put(self, op: PutOp) -> Outcome:
        label = op.label
        entity, source_key = label.key
        status = _STATUS_CODE[op.status]
        body = _encode_label(label)
        stored = self._stored(entity, source_key)
        if stored is not None and stored[0] == status and (
            stored[1] == body or _decode_label(entity, source_key, stored[1]) == label
        ):
            return Outcome.NOOP
        self._seq += 1
        self._conn.execute(
            "INSERT INTO labels (entity, source_key, status, seq, body) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (entity, source_key) DO UPDATE "
            "SET status = excluded.status, seq = excluded.seq, body = excluded.body",
            (entity, source_key, status, self._seq, body),
        )
        if stored is not None:
            self._counts[stored[0]] -= 1
        self._counts[status] += 1
        action = Action.PUT if status == _ACTIVE else Action.PEND
        self._record(entity, source_key, action, None if stored is None else stored[1], body, status)
        if op.decides_pending:
            self._dismiss_pending(entity, source_key)
        return Outcome.WRITTEN if status == _ACTIVE else Outcome.PENDING

    def _dismiss_pending(self, entity: str, keep_source: str) -> None:
        rows = self._conn.execute(
            f"SELECT source_key, body FROM labels WHERE entity = ? AND status = {_PENDING} "
            "AND source_key <> ? ORDER BY source_key",
            (entity, keep_source),
        ).fetchall()
        for source_key, body in rows:
            self._seq += 1
            self._conn.execute(
                "DELETE FROM labels WHERE entity = ? AND source_key = ?", (entity, source_key)
            )
            self._counts[_PENDING] -= 1
            self._record(entity, source_key, Action.DISMISS, body, None, None)

    def _delete(self, op: DeleteOp) -> Outcome:
        stored = self._stored(op.entity, op.source_key)
        if stored is None:
            return Outcome.NOT_FOUND
        self._seq += 1
        self._conn.execute(
            "DELETE FROM labels WHERE entity = ? AND source_key = ?", (op.entity, op.source_key)
        )
        self._counts[stored[0]] -= 1
        self._record(op.entity, op.source_key, Action.DELETE, stored[1], None, None)
        return Outcome.DELETED

    def _record(
        self,
        entity: str,
        source_key: str,
        action: Action,
        before: bytes | None,
        after: bytes | None,
        status: int | None,
    ) -> None:
        """Append the audit event and the change record of the change numbered self._seq."""
        labeled = self._conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM labels WHERE entity = ? AND status = {_ACTIVE})",
            (entity,),
        ).fetchone()[0]
        self._conn.execute(
            "INSERT INTO audit (entity, seq, source_key, action, actor, at_us, before, after, "
            "status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (entity, self._seq, source_key, action.value, self._actor, self._at_us, before, after,
             status),
        )
        self._conn.execute(
            "INSERT INTO changes (seq, entity, source_key, action, at_us, labeled) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (self._seq, entity, source_key, action.value, self._at_us, labeled),
        )


# -- helpers -------------------------------------------------------------------------


@contextlib.contextmanager
def _translate(what: str) -> Iterator[None]:
    """The one place sqlite3 errors become StorageError."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StorageError(f"sqlite {what} failed: {exc}") from exc


def _meta(conn: sqlite3.Connection, key: str) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    if row is None:
        raise StorageError(f"label store metadata {key!r} is missing")
    value: int = row[0]
    return value


def _encode_label(label: Label) -> bytes:
    """Compact body: entity and source live in the key columns, times as UTC microseconds."""
    meta = label.metadata
    body: bytes = msgpack.packb(
        [
            _BODY_VERSION,
            int(label.enforcement),
            label.reason,
            _micros(label.created_at),
            None if label.expires_at is None else _micros(label.expires_at),
            label.confidence,
            dict(sorted(meta.items())) if meta else None,
        ],
        use_bin_type=True,
    )
    return body


def _decode_label(entity: str, source_key: str, body: bytes) -> Label:
    try:
        version, enforcement, reason, created, expires, confidence, meta = msgpack.unpackb(
            body, raw=False
        )
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError) as exc:
        raise StorageError(f"stored label {entity} {source_key} is corrupt: {exc}") from exc
    if version != _BODY_VERSION:
        raise StorageError(f"stored label {entity} {source_key} has unknown format {version!r}")
    return Label(
        entity=entity,
        source=_source(source_key),
        enforcement=Enforcement(enforcement),
        reason=reason,
        created_at=_time(created),
        expires_at=None if expires is None else _time(expires),
        confidence=confidence,
        metadata=meta or {},
    )


@functools.lru_cache(maxsize=4096)
def _source(source_key: str) -> Source:
    return Source.from_key(source_key)


def _micros(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _time(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _checked_entities(entities: Iterable[str]) -> list[str]:
    if isinstance(entities, str | bytes):
        raise InvalidInputError("must be an iterable of entity keys, not one string",
                                field="entities")
    keys = list(dict.fromkeys(entities))
    for key in keys:
        _check_str(key, "entities")
    return keys

