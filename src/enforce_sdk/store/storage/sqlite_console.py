"""The SQLite backend's console records (storage/console_records): SQL on an open connection.

Tables (sqlite_schema.CONSOLE_SCHEMA, schema 4): `reviews`, `appeals` and the
appeals outbox `appeal_events`, whose AUTOINCREMENT seq never reuses a number.
Callers hold the transaction (sqlite.py's `_writing` / `_reading`).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from ...model.compact import micros, time_of
from .console_records import (
    Appeal,
    AppealConflictError,
    AppealEvent,
    MassJob,
    ReviewConflictError,
    ReviewRecord,
)

_APPEAL_COLUMNS = ("id, entity, contested, appellant, statement, ref, state, opened_us, "
                   "decided_by, decided_us, decision_note")


def add_review(conn: sqlite3.Connection, record: ReviewRecord) -> None:
    taken = conn.execute(
        "SELECT actor FROM reviews WHERE entity = ? AND source_key = ? AND label_seq = ? "
        "AND action = ?",
        (record.entity, record.source_key, record.label_seq, record.action)).fetchone()
    if taken is not None:
        raise ReviewConflictError(f"{taken[0]} already did {record.action} on this label")
    conn.execute(
        "INSERT INTO reviews (entity, source_key, label_seq, action, actor, note, at_us) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (record.entity, record.source_key, record.label_seq, record.action, record.actor,
         record.note, micros(record.at)))


def reviews(conn: sqlite3.Connection, entity: str, limit: int) -> list[ReviewRecord]:
    rows = conn.execute(
        "SELECT source_key, label_seq, action, actor, note, at_us FROM reviews "
        "WHERE entity = ? ORDER BY at_us DESC, label_seq DESC LIMIT ?", (entity, limit)).fetchall()
    return [ReviewRecord(entity, source_key, label_seq, action, actor, note, time_of(at_us))
            for source_key, label_seq, action, actor, note, at_us in rows]


def _appeal(row: tuple[Any, ...]) -> Appeal:
    (appeal_id, entity, contested, appellant, statement, ref, state, opened_us, decided_by,
     decided_us, decision_note) = row
    return Appeal(appeal_id, entity, tuple(json.loads(contested)), appellant, statement, ref,
                  state, time_of(opened_us), decided_by,
                  None if decided_us is None else time_of(decided_us), decision_note)


def _as_json(appeal: Appeal) -> str:
    return json.dumps([appeal.id, appeal.entity, json.dumps(list(appeal.contested)),
                       appeal.appellant, appeal.statement, appeal.ref, appeal.state,
                       micros(appeal.opened_at), appeal.decided_by,
                       None if appeal.decided_at is None else micros(appeal.decided_at),
                       appeal.decision_note])


def _event(conn: sqlite3.Connection, appeal: Appeal, event: str, at: datetime) -> None:
    conn.execute("INSERT INTO appeal_events (appeal_id, event, at_us, appeal) VALUES (?, ?, ?, ?)",
                 (appeal.id, event, micros(at), _as_json(appeal)))


def open_appeal(conn: sqlite3.Connection, entity: str, contested: tuple[str, ...],
                appellant: str, statement: str, ref: str | None, now: datetime) -> Appeal:
    cursor = conn.execute(
        "INSERT INTO appeals (entity, contested, appellant, statement, ref, state, opened_us) "
        "VALUES (?, ?, ?, ?, ?, 'open', ?)",
        (entity, json.dumps(list(contested)), appellant, statement, ref, micros(now)))
    assert cursor.lastrowid is not None
    appeal = Appeal(cursor.lastrowid, entity, contested, appellant, statement, ref, "open",
                    time_of(micros(now)))
    _event(conn, appeal, "opened", now)
    return appeal


def get_appeal(conn: sqlite3.Connection, appeal_id: int) -> Appeal | None:
    row = conn.execute(f"SELECT {_APPEAL_COLUMNS} FROM appeals WHERE id = ?",
                       (appeal_id,)).fetchone()
    return None if row is None else _appeal(row)


def appeals(conn: sqlite3.Connection, state: str | None, entity: str | None,
            limit: int) -> list[Appeal]:
    where, args = [], []
    if state is not None:
        where.append("state = ?")
        args.append(state)
    if entity is not None:
        where.append("entity = ?")
        args.append(entity)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(f"SELECT {_APPEAL_COLUMNS} FROM appeals {clause} ORDER BY id LIMIT ?",
                        (*args, limit)).fetchall()
    return [_appeal(row) for row in rows]


def decide(conn: sqlite3.Connection, appeal_id: int, state: str, actor: str, note: str,
           now: datetime) -> Appeal:
    """Move an open appeal to `state` and queue its outbox event; conflict if not open."""
    current = get_appeal(conn, appeal_id)
    if current is None:
        raise AppealConflictError(f"there is no appeal {appeal_id}")
    if current.state != "open":
        raise AppealConflictError(f"appeal {appeal_id} was already {current.state} by "
                                  f"{current.decided_by}")
    conn.execute("UPDATE appeals SET state = ?, decided_by = ?, decided_us = ?, "
                 "decision_note = ? WHERE id = ? AND state = 'open'",
                 (state, actor, micros(now), note, appeal_id))
    decided = get_appeal(conn, appeal_id)
    assert decided is not None
    _event(conn, decided, state, now)
    return decided


def appeal_events(conn: sqlite3.Connection, after: int, limit: int) -> list[AppealEvent]:
    rows = conn.execute("SELECT seq, event, at_us, appeal FROM appeal_events WHERE seq > ? "
                        "ORDER BY seq LIMIT ?", (after, limit)).fetchall()
    return [AppealEvent(seq, event, time_of(at_us), _appeal(tuple(json.loads(appeal))))
            for seq, event, at_us, appeal in rows]


_JOB_COLUMNS = ("id, actor, query, reason, state, cursor, matched, retracted, created_us, "
                "updated_us, error")


def save_job(conn: sqlite3.Connection, job: MassJob) -> None:
    conn.execute(
        f"INSERT OR REPLACE INTO mass_jobs ({_JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (job.id, job.actor, job.query, job.reason, job.state,
         None if job.cursor is None else json.dumps(list(job.cursor)), job.matched,
         job.retracted, micros(job.created_at), micros(job.updated_at), job.error))


def _job(row: tuple[Any, ...]) -> MassJob:
    (job_id, actor, query, reason, state, cursor, matched, retracted, created_us, updated_us,
     error) = row
    at = None if cursor is None else tuple(json.loads(cursor))
    return MassJob(job_id, actor, query, reason, state, at, matched, retracted,
                   time_of(created_us), time_of(updated_us), error)


def get_job(conn: sqlite3.Connection, job_id: str) -> MassJob | None:
    row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM mass_jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else _job(row)


def jobs(conn: sqlite3.Connection, limit: int) -> list[MassJob]:
    rows = conn.execute(f"SELECT {_JOB_COLUMNS} FROM mass_jobs ORDER BY created_us DESC LIMIT ?",
                        (limit,)).fetchall()
    return [_job(row) for row in rows]


def scan_labels(conn: sqlite3.Connection, after: tuple[str, str] | None,
                limit: int) -> list[tuple[str, str, int, int, bytes]]:
    """(entity, source_key, status, seq, body) rows in key order after `after`."""
    start = ("", "") if after is None else after
    rows: list[tuple[str, str, int, int, bytes]] = conn.execute(
        "SELECT entity, source_key, status, seq, body FROM labels "
        "WHERE (entity, source_key) > (?, ?) ORDER BY entity, source_key LIMIT ?",
        (*start, limit)).fetchall()
    return rows
