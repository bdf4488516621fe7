"""An in-memory LabelStorage for unit tests of the service (not a product backend).

It runs the storage contract suite (tests/store/storage/) like the real backends, so
the unit tests that use it stand on a faithful double.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime

from enforce_sdk._errors import StorageError
from enforce_sdk.model.label import Label
from enforce_sdk.model.records import (
    Action,
    AuditEvent,
    ChangePage,
    ChangeRecord,
    LabelStatus,
    Outcome,
    StoredLabel,
)
from enforce_sdk.store import DeleteOp, ExpireOp, LabelStorage, PutOp, WriteOp
from enforce_sdk.store.storage.base import AppliedBatch, WriteKey, recorded_outcome


class _State:
    """The data of one store; every handle on it shares this."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.labels: dict[tuple[str, str], StoredLabel] = {}
        self.audit: list[AuditEvent] = []
        self.feed: list[ChangeRecord] = []
        self.head = 0
        # idempotency records: key -> (fingerprint, outcomes, seq, expires_at)
        self.write_keys: dict[str, tuple[str, list[str], int, datetime]] = {}


class MemoryStorage(LabelStorage):
    def __init__(self, shared: MemoryStorage | None = None) -> None:
        """A new store, or (with `shared`) another handle on that one's data."""
        self._s = _State() if shared is None else shared._s
        self.closed = False
        self.fail_with: Exception | None = None  # raise this from every call when set

    def _check(self) -> None:
        if self.closed:
            raise StorageError("the memory label store is closed")
        if self.fail_with is not None:
            raise self.fail_with

    def _labeled(self, entity: str) -> bool:
        return any(k[0] == entity and s.status is LabelStatus.ACTIVE for k, s in self._s.labels.items())

    def _record(self, entity: str, source: str, action: Action, actor: str, now: datetime,
                before: Label | None, after: Label | None, status: LabelStatus | None) -> int:
        self._s.head += 1
        self._s.audit.append(AuditEvent(self._s.head, entity, source, action, actor, now, before, after,
                                      status))
        return self._s.head

    def _apply_once(self, ops: list[WriteOp], *, actor: str, now: datetime,
                    key: WriteKey) -> AppliedBatch:
        self._check()
        with self._s.lock:  # re-entrant: the record is kept in the same critical section
            found = self._s.write_keys.get(key.key)
            if found is not None and found[3] > now:
                return recorded_outcome(key, found[0], found[1], found[2])
            outcomes = self._apply(ops, actor=actor, now=now)
            self._s.write_keys[key.key] = (key.fingerprint, [o.value for o in outcomes],
                                           self._s.head, key.expires_at)
            return AppliedBatch(outcomes, self._s.head)

    def _prune_write_keys(self, now: datetime) -> int:
        self._check()
        with self._s.lock:
            gone = [k for k, v in self._s.write_keys.items() if v[3] <= now]
            for k in gone:
                del self._s.write_keys[k]
            return len(gone)

    def _apply(self, ops: list[WriteOp], *, actor: str, now: datetime) -> list[Outcome]:
        self._check()
        with self._s.lock:
            outcomes: list[Outcome] = []
            for op in ops:
                if isinstance(op, PutOp):
                    key = op.label.key
                    old = self._s.labels.get(key)
                    if old is not None and old.label == op.label and old.status is op.status:
                        outcomes.append(Outcome.NOOP)  # decides nothing either
                        continue
                    action = Action.PUT if op.status is LabelStatus.ACTIVE else Action.PEND
                    seq = self._record(key[0], key[1], action, actor, now,
                                       old.label if old else None, op.label, op.status)
                    self._s.labels[key] = StoredLabel(op.label, op.status, seq)
                    self._change(seq, key, action, now)
                    if op.decides_pending:
                        for k, s in sorted(self._s.labels.items()):
                            if k[0] == key[0] and k != key and s.status is LabelStatus.PENDING:
                                del self._s.labels[k]
                                seq = self._record(k[0], k[1], Action.DISMISS, actor, now,
                                                   s.label, None, None)
                                self._change(seq, k, Action.DISMISS, now)
                    outcomes.append(Outcome.WRITTEN if op.status is LabelStatus.ACTIVE
                                    else Outcome.PENDING)
                elif isinstance(op, ExpireOp):
                    expired = sorted(k for k, s in self._s.labels.items()
                                     if k[0] == op.entity and s.label.is_expired(op.before))
                    for k in expired:
                        old = self._s.labels.pop(k)
                        seq = self._record(k[0], k[1], Action.EXPIRE, actor, now, old.label, None,
                                           None)
                        self._change(seq, k, Action.EXPIRE, now)
                    outcomes.append(Outcome.DELETED if expired else Outcome.NOOP)
                else:
                    assert isinstance(op, DeleteOp)
                    key = (op.entity, op.source_key)
                    old = self._s.labels.pop(key, None)
                    if old is None:
                        outcomes.append(Outcome.NOT_FOUND)
                        continue
                    seq = self._record(key[0], key[1], Action.DELETE, actor, now, old.label, None,
                                       None)
                    self._change(seq, key, Action.DELETE, now)
                    outcomes.append(Outcome.DELETED)
            return outcomes

    def _change(self, seq: int, key: tuple[str, str], action: Action, now: datetime) -> None:
        self._s.feed.append(ChangeRecord(seq, key[0], key[1], action, now, self._labeled(key[0])))

    def _get_many(self, keys: list[str], *, include_pending: bool) -> dict[str, list[StoredLabel]]:
        self._check()
        wanted = set(keys)
        out: dict[str, list[StoredLabel]] = {}
        with self._s.lock:
            for (entity, _), stored in sorted(self._s.labels.items()):
                if entity in wanted and (include_pending or stored.status is LabelStatus.ACTIVE):
                    out.setdefault(entity, []).append(stored)
        return out

    def _history(self, entity: str, *, limit: int, before_seq: int | None) -> list[AuditEvent]:
        self._check()
        with self._s.lock:
            events = [e for e in reversed(self._s.audit) if e.entity == entity
                      and (before_seq is None or e.seq < before_seq)]
        return events[:limit]

    def _changes(self, after_seq: int, *, limit: int) -> ChangePage:
        self._check()
        with self._s.lock:
            oldest = self._s.feed[0].seq if self._s.feed else self._s.head + 1
            found = [c for c in self._s.feed if c.seq > after_seq][:limit]
            return ChangePage(found, self._s.head, oldest)

    def head_seq(self) -> int:
        self._check()
        return self._s.head

    def _prune_changes(self, older_than: datetime) -> int:
        self._check()
        with self._s.lock:
            dropped = 0  # from the front only: a clock that went back never makes a hole
            while dropped < len(self._s.feed) and self._s.feed[dropped].at < older_than:
                dropped += 1
            del self._s.feed[:dropped]
            return dropped

    def _pending(self, *, limit: int, after: tuple[str, str] | None) -> list[StoredLabel]:
        self._check()
        with self._s.lock:
            items = sorted((k, s) for k, s in self._s.labels.items()
                           if s.status is LabelStatus.PENDING and (after is None or k > after))
        return [s for _, s in items[:limit]]

    def iter_labeled_entities(self) -> Iterator[str]:
        with self._s.lock:
            entities = sorted({k[0] for k, s in self._s.labels.items()
                               if s.status is LabelStatus.ACTIVE})
        return iter(entities)

    def _expired_entities(self, before: datetime) -> Iterator[str]:
        self._check()
        with self._s.lock:
            entities = sorted({k[0] for k, s in self._s.labels.items()
                               if s.label.is_expired(before)})
        return iter(entities)

    def count_labels(self) -> dict[LabelStatus, int]:
        with self._s.lock:
            counts = dict.fromkeys(LabelStatus, 0)
            for s in self._s.labels.values():
                counts[s.status] += 1
            return counts

    def close(self) -> None:
        self.closed = True
