"""An in-memory LabelStorage for unit tests of the service (not a product backend)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

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
from enforce_sdk.store.storage.base import DeleteOp, LabelStorage, PutOp, WriteOp


class MemoryStorage(LabelStorage):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._labels: dict[tuple[str, str], StoredLabel] = {}
        self._audit: list[AuditEvent] = []
        self._changes: list[ChangeRecord] = []
        self._head = 0
        self.closed = False
        self.fail_with: Exception | None = None  # raise this from every call when set

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def _labeled(self, entity: str) -> bool:
        return any(k[0] == entity and s.status is LabelStatus.ACTIVE for k, s in self._labels.items())

    def _record(self, entity: str, source: str, action: Action, actor: str, now: datetime,
                before: Label | None, after: Label | None, status: LabelStatus | None) -> int:
        self._head += 1
        self._audit.append(AuditEvent(self._head, entity, source, action, actor, now, before, after,
                                      status))
        return self._head

    def apply(self, ops: Sequence[WriteOp], *, actor: str, now: datetime) -> list[Outcome]:
        self._check()
        with self._lock:
            outcomes: list[Outcome] = []
            touched: list[tuple[int, str, str, Action]] = []
            for op in ops:
                if isinstance(op, PutOp):
                    key = op.label.key
                    old = self._labels.get(key)
                    if op.decides_pending:
                        for k, s in list(self._labels.items()):
                            if k[0] == key[0] and k != key and s.status is LabelStatus.PENDING:
                                del self._labels[k]
                                seq = self._record(k[0], k[1], Action.DISMISS, actor, now, s.label,
                                                   None, None)
                                touched.append((seq, k[0], k[1], Action.DISMISS))
                    if old is not None and old.label == op.label and old.status is op.status:
                        outcomes.append(Outcome.NOOP)
                        continue
                    action = Action.PUT if op.status is LabelStatus.ACTIVE else Action.PEND
                    seq = self._record(key[0], key[1], action, actor, now,
                                       old.label if old else None, op.label, op.status)
                    self._labels[key] = StoredLabel(op.label, op.status, seq)
                    touched.append((seq, key[0], key[1], action))
                    outcomes.append(Outcome.WRITTEN if op.status is LabelStatus.ACTIVE
                                    else Outcome.PENDING)
                else:
                    assert isinstance(op, DeleteOp)
                    key = (op.entity, op.source_key)
                    old = self._labels.pop(key, None)
                    if old is None:
                        outcomes.append(Outcome.NOT_FOUND)
                        continue
                    seq = self._record(key[0], key[1], Action.DELETE, actor, now, old.label, None,
                                       None)
                    touched.append((seq, key[0], key[1], Action.DELETE))
                    outcomes.append(Outcome.DELETED)
            for seq, entity, source, action in touched:
                self._changes.append(ChangeRecord(seq, entity, source, action, now,
                                                  self._labeled(entity)))
            return outcomes

    def get_many(self, entities: Iterable[str], *, include_pending: bool = False
                 ) -> dict[str, list[StoredLabel]]:
        self._check()
        wanted = set(entities)
        out: dict[str, list[StoredLabel]] = {}
        with self._lock:
            for (entity, _), stored in sorted(self._labels.items()):
                if entity in wanted and (include_pending or stored.status is LabelStatus.ACTIVE):
                    out.setdefault(entity, []).append(stored)
        return out

    def history(self, entity: str, *, limit: int = 100, before_seq: int | None = None
                ) -> list[AuditEvent]:
        self._check()
        with self._lock:
            events = [e for e in reversed(self._audit) if e.entity == entity
                      and (before_seq is None or e.seq < before_seq)]
        return events[:limit]

    def changes(self, after_seq: int, *, limit: int = 1000) -> ChangePage:
        self._check()
        with self._lock:
            oldest = self._changes[0].seq if self._changes else self._head + 1
            found = [c for c in self._changes if c.seq > after_seq][:limit]
            return ChangePage(found, self._head, oldest)

    def head_seq(self) -> int:
        self._check()
        return self._head

    def prune_changes(self, older_than: datetime) -> int:
        self._check()
        with self._lock:
            keep = [c for c in self._changes if c.at >= older_than]
            dropped = len(self._changes) - len(keep)
            self._changes = keep
            return dropped

    def pending(self, *, limit: int = 100, after: tuple[str, str] | None = None
                ) -> list[StoredLabel]:
        self._check()
        with self._lock:
            items = sorted((k, s) for k, s in self._labels.items()
                           if s.status is LabelStatus.PENDING and (after is None or k > after))
        return [s for _, s in items[:limit]]

    def iter_labeled_entities(self) -> Iterator[str]:
        with self._lock:
            entities = sorted({k[0] for k, s in self._labels.items()
                               if s.status is LabelStatus.ACTIVE})
        return iter(entities)

    def count_labels(self) -> dict[LabelStatus, int]:
        with self._lock:
            counts = dict.fromkeys(LabelStatus, 0)
            for s in self._labels.values():
                counts[s.status] += 1
            return counts

    def close(self) -> None:
        self.closed = True
