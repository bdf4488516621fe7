"""The SQLite backend's schema, its label row codec and one write batch (see sqlite.py)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from ..._errors import StorageError
from ...model.compact import (
    CompactBodyError,
    decode_body,
    micros,
)
from ...model.compact import (
    encode_body as encode_label,
)
from ...model.label import Label
from ...model.records import Action, LabelStatus, Outcome
from .base import DeleteOp, ExpireOp, PutOp, WriteOp

# PRAGMA user_version of a database this module created. 1: labels without expires_us;
# 2: SCHEMA below (expires_us); 3: and write_keys (MIGRATIONS[2]); 4: and the console's
# reviews, appeals and appeal_events (MIGRATIONS[3]).
SCHEMA_VERSION = 4


_PREFETCH_CHUNK = 500  # (entity, source) pairs per prefetch query
STATUS_CODE = {LabelStatus.ACTIVE: 0, LabelStatus.PENDING: 1}


STATUS_OF = {code: status for status, code in STATUS_CODE.items()}
ACTIVE, PENDING = STATUS_CODE[LabelStatus.ACTIVE], STATUS_CODE[LabelStatus.PENDING]


SCHEMA = """
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
    expires_us INTEGER,
    PRIMARY KEY (entity, source_key)
) WITHOUT ROWID;
CREATE INDEX labels_pending ON labels (entity, source_key) WHERE status = 1;
CREATE INDEX labels_expiry ON labels (expires_us, entity) WHERE expires_us IS NOT NULL;
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

# The reviewer console's records: review notes, appeals, the appeals outbox, mass jobs
# (sqlite_console).
CONSOLE_SCHEMA = """
CREATE TABLE reviews (
    entity TEXT NOT NULL,
    source_key TEXT NOT NULL,
    label_seq INTEGER NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    note TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    PRIMARY KEY (entity, source_key, label_seq, action)
) WITHOUT ROWID;
CREATE TABLE appeals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entity TEXT NOT NULL,
    contested TEXT NOT NULL,
    appellant TEXT NOT NULL,
    statement TEXT NOT NULL,
    ref TEXT,
    state TEXT NOT NULL,
    opened_us INTEGER NOT NULL,
    decided_by TEXT,
    decided_us INTEGER,
    decision_note TEXT
);
CREATE INDEX appeals_state ON appeals (state, id);
CREATE INDEX appeals_entity ON appeals (entity, id);
CREATE TABLE mass_jobs (
    id TEXT PRIMARY KEY,
    actor TEXT NOT NULL,
    query TEXT NOT NULL,
    reason TEXT NOT NULL,
    state TEXT NOT NULL,
    cursor TEXT,
    matched INTEGER NOT NULL,
    retracted INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    error TEXT
) WITHOUT ROWID;
CREATE TABLE appeal_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    appeal_id INTEGER NOT NULL,
    event TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    appeal TEXT NOT NULL
);
"""

# Statements that bring a database of version N to N + 1 (1 -> 2 is migrate_v1); a new
# database runs SCHEMA (version 2) and then every migration. write_keys holds the
# outcome of each keyed write (apply_once) until it expires, committed with the batch.
MIGRATIONS: dict[int, str] = {
    2: """
CREATE TABLE write_keys (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    outcomes TEXT NOT NULL,
    seq INTEGER NOT NULL,
    expires_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX write_keys_expiry ON write_keys (expires_us);
""",
    # The reviewer console's records (storage/sqlite_console: reviews, appeals, outbox).
    3: CONSOLE_SCHEMA,
}


def migrate_v1(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 2, inside the caller's write transaction: the expiry column and its index."""
    conn.execute("ALTER TABLE labels ADD COLUMN expires_us INTEGER")
    rows = conn.execute("SELECT entity, source_key, body FROM labels").fetchall()
    updates = []
    for entity, source_key, body in rows:
        expires = decode_label(entity, source_key, body).expires_at
        if expires is not None:
            updates.append((micros(expires), entity, source_key))
    conn.executemany(
        "UPDATE labels SET expires_us = ? WHERE entity = ? AND source_key = ?", updates
    )
    conn.execute(
        "CREATE INDEX labels_expiry ON labels (expires_us, entity) WHERE expires_us IS NOT NULL"
    )


class WriteBatch:
    """One `apply` batch inside an open write transaction."""

    def __init__(self, conn: sqlite3.Connection, actor: str, at_us: int) -> None:
        self._conn = conn
        self._actor = actor
        self._at_us = at_us
        self._seq = meta_value(conn, "head")
        self._counts = {ACTIVE: meta_value(conn, "active"), PENDING: meta_value(conn, "pending")}
        # Audit events and change records are written together when the batch ends (one
        # executemany each): nothing in a batch reads them back.
        self._audit: list[tuple[Any, ...]] = []
        self._changes: list[tuple[Any, ...]] = []
        self._known: dict[tuple[str, str], tuple[int, bytes] | None] = {}

    @property
    def seq(self) -> int:
        """The newest sequence number, with this batch's changes so far."""
        return self._seq

    def run(self, ops: Sequence[WriteOp]) -> list[Outcome]:
        self._prefetch(ops)
        outcomes = [
            self._put(op) if isinstance(op, PutOp)
            else self._delete(op) if isinstance(op, DeleteOp)
            else self._expire(op)
            for op in ops
        ]
        self._conn.executemany(
            "INSERT INTO audit (entity, seq, source_key, action, actor, at_us, before, after, "
            "status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", self._audit)
        self._conn.executemany(
            "INSERT INTO changes (seq, entity, source_key, action, at_us, labeled) "
            "VALUES (?, ?, ?, ?, ?, ?)", self._changes)
        self._audit, self._changes = [], []
        self._conn.executemany(
            "UPDATE meta SET value = ? WHERE key = ?",
            [(self._seq, "head"), (self._counts[ACTIVE], "active"),
             (self._counts[PENDING], "pending")],
        )
        return outcomes

    def _prefetch(self, ops: Sequence[WriteOp]) -> None:
        """The stored rows the batch's puts and deletes look at, read in one query.

        `_known` is then kept up to date by every change the batch makes to a
        label (None once deleted, dismissed or expired), so `_stored` answers from it.
        """
        pairs = sorted({(op.label.entity, op.label.source.key) if isinstance(op, PutOp)
                        else (op.entity, op.source_key)
                        for op in ops if not isinstance(op, ExpireOp)})
        known: dict[tuple[str, str], tuple[int, bytes] | None] = dict.fromkeys(pairs)
        for start in range(0, len(pairs), _PREFETCH_CHUNK):
            chunk = pairs[start:start + _PREFETCH_CHUNK]
            rows = self._conn.execute(
                "SELECT entity, source_key, status, body FROM labels WHERE (entity, source_key) "
                "IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') "
                "FROM json_each(?))", (json.dumps(chunk),)).fetchall()
            for entity, source_key, status, body in rows:
                known[(entity, source_key)] = (status, body)
        self._known = known

    def _stored(self, entity: str, source_key: str) -> tuple[int, bytes] | None:
        key = (entity, source_key)
        if key in self._known:
            return self._known[key]
        row = self._conn.execute(
            "SELECT status, body FROM labels WHERE entity = ? AND source_key = ?",
            (entity, source_key),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def _forget(self, entity: str, source_key: str, now: tuple[int, bytes] | None) -> None:
        """A label of the batch changed: what `_stored` answers for it from now on."""
        self._known[(entity, source_key)] = now

    def _put(self, op: PutOp) -> Outcome:
        label = op.label
        entity, source_key = label.key
        status = STATUS_CODE[op.status]
        body = encode_label(label)
        stored = self._stored(entity, source_key)
        if stored is not None and stored[0] == status and (
            stored[1] == body or decode_label(entity, source_key, stored[1]) == label
        ):
            return Outcome.NOOP
        self._seq += 1
        expires = None if label.expires_at is None else micros(label.expires_at)
        self._conn.execute(
            "INSERT INTO labels (entity, source_key, status, seq, body, expires_us) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (entity, source_key) DO UPDATE "
            "SET status = excluded.status, seq = excluded.seq, body = excluded.body, "
            "expires_us = excluded.expires_us",
            (entity, source_key, status, self._seq, body, expires),
        )
        self._forget(entity, source_key, (status, body))
        if stored is not None:
            self._counts[stored[0]] -= 1
        self._counts[status] += 1
        action = Action.PUT if status == ACTIVE else Action.PEND
        self._record(entity, source_key, action, None if stored is None else stored[1], body, status)
        if op.decides_pending:
            self._dismiss_pending(entity, source_key)
        return Outcome.WRITTEN if status == ACTIVE else Outcome.PENDING

    def _dismiss_pending(self, entity: str, keep_source: str) -> None:
        rows = self._conn.execute(
            f"SELECT source_key, body FROM labels WHERE entity = ? AND status = {PENDING} "
            "AND source_key <> ? ORDER BY source_key",
            (entity, keep_source),
        ).fetchall()
        for source_key, body in rows:
            self._seq += 1
            self._conn.execute(
                "DELETE FROM labels WHERE entity = ? AND source_key = ?", (entity, source_key)
            )
            self._forget(entity, source_key, None)
            self._counts[PENDING] -= 1
            self._record(entity, source_key, Action.DISMISS, body, None, None)

    def _delete(self, op: DeleteOp) -> Outcome:
        stored = self._stored(op.entity, op.source_key)
        if stored is None:
            return Outcome.NOT_FOUND
        self._seq += 1
        self._conn.execute(
            "DELETE FROM labels WHERE entity = ? AND source_key = ?", (op.entity, op.source_key)
        )
        self._forget(op.entity, op.source_key, None)
        self._counts[stored[0]] -= 1
        self._record(op.entity, op.source_key, Action.DELETE, stored[1], None, None)
        return Outcome.DELETED

    def _expire(self, op: ExpireOp) -> Outcome:
        rows = self._conn.execute(
            "SELECT source_key, status, body FROM labels WHERE entity = ? AND expires_us <= ? "
            "ORDER BY source_key",
            (op.entity, micros(op.before)),
        ).fetchall()
        for source_key, status, body in rows:
            self._seq += 1
            self._conn.execute(
                "DELETE FROM labels WHERE entity = ? AND source_key = ?", (op.entity, source_key)
            )
            self._forget(op.entity, source_key, None)
            self._counts[status] -= 1
            self._record(op.entity, source_key, Action.EXPIRE, body, None, None)
        return Outcome.DELETED if rows else Outcome.NOOP

    def _record(
        self,
        entity: str,
        source_key: str,
        action: Action,
        before: bytes | None,
        after: bytes | None,
        status: int | None,
    ) -> None:
        """Queue the audit event and the change record of the change numbered self._seq."""
        # Whether the entity has an active label after this change: surely, if this one is.
        labeled = 1 if status == ACTIVE else self._conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM labels WHERE entity = ? AND status = {ACTIVE})",
            (entity,),
        ).fetchone()[0]
        self._audit.append((entity, self._seq, source_key, action.value, self._actor,
                            self._at_us, before, after, status))
        self._changes.append((self._seq, entity, source_key, action.value, self._at_us, labeled))


@contextlib.contextmanager
def translate(what: str) -> Iterator[None]:
    """The one place sqlite3 errors become StorageError."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StorageError(f"sqlite {what} failed: {exc}") from exc


def meta_value(conn: sqlite3.Connection, key: str) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    if row is None:
        raise StorageError(f"label store metadata {key!r} is missing")
    value: int = row[0]
    return value


def decode_label(entity: str, source_key: str, body: bytes) -> Label:
    """A stored row's label (model/compact), trusted; corrupt bytes are a StorageError."""
    try:
        return decode_body(entity, source_key, body)
    except CompactBodyError as exc:
        raise StorageError(f"stored label {entity} {source_key} is corrupt: {exc}") from exc
