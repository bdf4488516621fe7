"""Planning one `apply` batch for the Redis Cluster backend, in pure Python.

Given the current labels of every entity a batch touches, `plan_batch` works out
each op's Outcome and every effective change (new label rows, removed rows,
audit events, change records, count deltas, pending-index edits) with sequence
numbers *relative* to the batch (offset 0, 1, ...). The storage module then
commits the plan; the global base sequence number is only known at commit, so
every stored value that carries a seq is written as `"<seq>|<json>"` by the
Lua scripts from `base + offset`.

The semantics mirror the SQLite backend (they are pinned by tests/store/storage/):
a put identical in label and status is a no-op (and dismisses nothing); a put
with `decides_pending` dismisses the entity's other pending labels, in source
key order, after its own change; `labeled` is evaluated after each change.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ...._errors import InvalidInputError, StorageError
from ....model.label import Enforcement, Label, Source, format_time, parse_time
from ....model.records import Action, AuditEvent, ChangeRecord, LabelStatus, Outcome, StoredLabel
from ..base import DeleteOp, PutOp, WriteOp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


_ROW_VERSION = 1


def encode_stored(label: Label, status: LabelStatus) -> str:
    """The JSON of one label row (the seq is prefixed by whoever knows it).

    Compact: entity and source live in the key and field name; times are UTC
    microseconds. Decoding builds the Label directly, the hot path of reads.
    """
    return json.dumps([
        _ROW_VERSION, status.value, int(label.enforcement), label.reason,
        micros(label.created_at),
        None if label.expires_at is None else micros(label.expires_at),
        label.confidence, dict(label.metadata) if label.metadata else None,
    ], separators=(",", ":"), ensure_ascii=False)


def split_seq(raw: str) -> tuple[int, str]:
    """Split a stored `"<seq>|<rest>"` value."""
    head, sep, rest = raw.partition("|")
    if not sep or not head.isdigit():
        raise StorageError(f"corrupt stored value {raw[:80]!r}: no sequence prefix")
    return int(head), rest


def decode_stored(entity: str, source_key: str, raw: str) -> StoredLabel:
    seq, body = split_seq(raw)
    try:
        version, status, enforcement, reason, created, expires, confidence, meta = json.loads(body)
        if version != _ROW_VERSION:
            raise ValueError(f"unknown row format {version!r}")
        # Validated once, by the checker, when it was written: rebuilt without checks.
        label = Label.trusted(
            entity, _source(source_key), Enforcement(enforcement), reason,
            _EPOCH + timedelta(microseconds=created),
            None if expires is None else _EPOCH + timedelta(microseconds=expires),
            None if confidence is None else float(confidence), meta or {},
        )
        return StoredLabel(label, LabelStatus(status), seq)
    except (ValueError, KeyError, TypeError, InvalidInputError) as exc:
        raise StorageError(f"corrupt stored label {entity} {source_key}: {exc}") from exc


@functools.lru_cache(maxsize=4096)
def _source(source_key: str) -> Source:
    return Source.from_key(source_key)


def decode_audit(entity: str, raw: str) -> AuditEvent:
    seq, body = split_seq(raw)
    try:
        d = json.loads(body)
        return AuditEvent(
            seq=seq,
            entity=entity,
            source_key=d["source"],
            action=Action(d["action"]),
            actor=d["actor"],
            at=parse_time(d["at"], "at"),
            before=None if d["before"] is None else Label.from_dict(d["before"]),
            after=None if d["after"] is None else Label.from_dict(d["after"]),
            status=None if d["status"] is None else LabelStatus(d["status"]),
        )
    except (ValueError, KeyError, TypeError, InvalidInputError) as exc:
        raise StorageError(f"corrupt audit event {body[:80]!r}: {exc}") from exc


def decode_change(raw: str) -> ChangeRecord:
    """A change record member: `"<seq>|<at_us>|<json>"`."""
    seq, rest = split_seq(raw)
    _at_us, _, body = rest.partition("|")
    try:
        d = json.loads(body)
        return ChangeRecord(
            seq=seq,
            entity=d["entity"],
            source_key=d["source"],
            action=Action(d["action"]),
            at=parse_time(d["at"], "at"),
            labeled=bool(d["labeled"]),
        )
    except (ValueError, KeyError, TypeError, InvalidInputError) as exc:
        raise StorageError(f"corrupt change record {body[:80]!r}: {exc}") from exc


def pending_member(entity: str, source_key: str) -> str:
    """Member of the pending index: NUL sorts first, so byte order is (entity, source) order."""
    return f"{entity}\x00{source_key}"


@dataclass
class EntityPlan:
    """What committing a batch does to one entity (offsets relative to the batch base)."""

    version: int  # the entity's version (seq of its last change) the plan was made against
    set_rows: dict[str, tuple[int, str]] = field(default_factory=dict)  # source -> (offset, json)
    del_rows: set[str] = field(default_factory=set)
    audit: list[tuple[int, str]] = field(default_factory=list)
    last_offset: int = -1  # offset of the entity's last change, -1 if none (no-op only)
    labeled: bool = False

    def materialise_args(self, txid: str, base: int) -> list[Any]:
        """ARGV of the `materialise` script for this entity's part of batch `txid`."""
        args: list[Any] = [f"{txid}|", base, self.last_offset, int(self.labeled),
                           len(self.del_rows), *sorted(self.del_rows), len(self.set_rows)]
        for source, (offset, body) in self.set_rows.items():
            args += [source, offset, body]
        args.append(len(self.audit))
        for offset, body in self.audit:
            args += [offset, body]
        return args

    def to_json(self) -> dict[str, Any]:
        return {
            "set": {src: [off, body] for src, (off, body) in self.set_rows.items()},
            "del": sorted(self.del_rows),
            "audit": self.audit,
            "last": self.last_offset,
            "labeled": self.labeled,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EntityPlan:
        return cls(
            version=0,
            set_rows={src: (int(v[0]), str(v[1])) for src, v in data["set"].items()},
            del_rows=set(data["del"]),
            audit=[(int(off), str(body)) for off, body in data["audit"]],
            last_offset=int(data["last"]),
            labeled=bool(data["labeled"]),
        )


@dataclass
class BatchPlan:
    outcomes: list[Outcome]
    entities: dict[str, EntityPlan]  # every entity the batch touched, no-op ones included
    changes: list[tuple[str, int]] = field(default_factory=list)  # (json, at_us) per offset
    pending_add: dict[str, tuple[int, str]] = field(default_factory=dict)  # member -> (off, json)
    pending_del: set[str] = field(default_factory=set)
    delta_active: int = 0
    delta_pending: int = 0

    @property
    def effective(self) -> int:
        return len(self.changes)

    def payload(self) -> str:
        """The journal record: what roll-forward needs to materialise every entity."""
        return dumps({e: p.to_json() for e, p in self.entities.items() if p.last_offset >= 0})

    def commit_args(self, txid: str, lock_ms: int, max_age_ms: int) -> list[Any]:
        """ARGV of the `commit` script (lua.COMMIT documents the layout)."""
        args: list[Any] = [txid, self.effective, lock_ms, self.payload(),
                           self.delta_active, self.delta_pending, max_age_ms]
        for body, at_us in self.changes:
            args += [body, at_us]
        args.append(len(self.pending_add))
        for member, (offset, body) in self.pending_add.items():
            args += [member, offset, body]
        args.append(len(self.pending_del))
        args += sorted(self.pending_del)
        return args


def plan_batch(
    ops: Sequence[WriteOp],
    current: dict[str, dict[str, StoredLabel]],
    versions: dict[str, int],
    *,
    actor: str,
    now: datetime,
) -> BatchPlan:
    """Outcomes and effects of `ops` applied in order to `current` (entity -> source -> row)."""
    state = {e: dict(rows) for e, rows in current.items()}
    at = format_time(now)
    at_us = micros(now)
    plan = BatchPlan(outcomes=[], entities={})

    def entity_plan(entity: str) -> EntityPlan:
        if entity not in plan.entities:
            plan.entities[entity] = EntityPlan(version=versions.get(entity, 0))
            state.setdefault(entity, {})
        return plan.entities[entity]

    def record(entity: str, source: str, action: Action, before: StoredLabel | None,
               after: Label | None, status: LabelStatus | None) -> None:
        offset = len(plan.changes)
        ep = entity_plan(entity)
        labeled = any(r.status is LabelStatus.ACTIVE for r in state[entity].values())
        ep.audit.append((offset, dumps({
            "source": source, "action": action.value, "actor": actor, "at": at,
            "before": None if before is None else before.label.to_dict(),
            "after": None if after is None else after.to_dict(),
            "status": None if status is None else status.value,
        })))
        ep.last_offset = offset
        ep.labeled = labeled
        plan.changes.append((dumps({
            "entity": entity, "source": source, "action": action.value, "at": at,
            "labeled": labeled,
        }), at_us))
        member = pending_member(entity, source)
        if before is not None:
            if before.status is LabelStatus.ACTIVE:
                plan.delta_active -= 1
            else:
                plan.delta_pending -= 1
                plan.pending_add.pop(member, None)
                plan.pending_del.add(member)
        if status is LabelStatus.ACTIVE:
            plan.delta_active += 1
        elif status is LabelStatus.PENDING and after is not None:
            plan.delta_pending += 1
            plan.pending_del.discard(member)
            plan.pending_add[member] = (offset, encode_stored(after, status))

    for op in ops:
        if isinstance(op, PutOp):
            entity, source = op.label.key
            ep = entity_plan(entity)
            before = state[entity].get(source)
            if before is not None and before.status is op.status and before.label == op.label:
                plan.outcomes.append(Outcome.NOOP)
                continue
            offset = len(plan.changes)
            state[entity][source] = StoredLabel(op.label, op.status, -1)
            ep.set_rows[source] = (offset, encode_stored(op.label, op.status))
            ep.del_rows.discard(source)
            active = op.status is LabelStatus.ACTIVE
            record(entity, source, Action.PUT if active else Action.PEND, before, op.label,
                   op.status)
            if op.decides_pending:
                for other in sorted(state[entity]):
                    row = state[entity][other]
                    if other != source and row.status is LabelStatus.PENDING:
                        del state[entity][other]
                        ep.set_rows.pop(other, None)
                        ep.del_rows.add(other)
                        record(entity, other, Action.DISMISS, row, None, None)
            plan.outcomes.append(Outcome.WRITTEN if active else Outcome.PENDING)
        elif not isinstance(op, DeleteOp):  # ExpireOp: every expired label, by source key
            ep = entity_plan(op.entity)
            expired = sorted(s for s, row in state[op.entity].items()
                             if row.label.is_expired(op.before))
            for source in expired:
                row = state[op.entity].pop(source)
                ep.set_rows.pop(source, None)
                ep.del_rows.add(source)
                record(op.entity, source, Action.EXPIRE, row, None, None)
            plan.outcomes.append(Outcome.DELETED if expired else Outcome.NOOP)
        else:
            ep = entity_plan(op.entity)
            before = state[op.entity].get(op.source_key)
            if before is None:
                plan.outcomes.append(Outcome.NOT_FOUND)
                continue
            del state[op.entity][op.source_key]
            ep.set_rows.pop(op.source_key, None)
            ep.del_rows.add(op.source_key)
            record(op.entity, op.source_key, Action.DELETE, before, None, None)
            plan.outcomes.append(Outcome.DELETED)
    return plan


def micros(value: datetime) -> int:
    """UTC microseconds since the epoch, exact (no float rounding)."""
    return (value - _EPOCH) // timedelta(microseconds=1)


def pairs(reply: Any) -> Iterator[tuple[bytes, bytes]]:
    """Field/value pairs of a raw HGETALL reply (a flat list under RESP2, a dict under RESP3)."""
    if isinstance(reply, dict):
        yield from reply.items()
        return
    it = iter(reply)
    yield from zip(it, it, strict=True)


def committed_base(raw: bytes | None) -> int | None:
    """The base seq of a batch status `C:<base>`, None for absent or aborted."""
    if raw is None or not raw.startswith(b"C:"):
        return None
    return int(raw[2:])


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
