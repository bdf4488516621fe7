"""Model-based test: random batches against a backend and against a plain dict model.

Each hypothesis example works on its own entities within the test's one store
(backends may be slow to create, e.g. networked ones), so global observations
(head, counts, the feed) are compared relative to what the example started from.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from enforce_sdk.model.label import Enforcement, Label
from enforce_sdk.model.records import Action, ChangeRecord, LabelStatus, Outcome
from enforce_sdk.store import DeleteOp, PutOp, WriteOp
from tests.store.storage._labels import HUMAN, MODEL, MODEL2, T0, Clock, label
from tests.store.storage.conftest import StorageFactory

SOURCES = [MODEL, MODEL2, HUMAN]
_RUNS = itertools.count()
_CLOCK = Clock()  # one clock for all examples, so pruning one example never drops a later one's


@dataclass(frozen=True)
class PutSpec:
    entity: int
    source: int
    enforcement: Enforcement
    reason: str
    later: int
    confidence: float | None
    metadata: dict[str, str | int]
    pending: bool
    decides: bool


@dataclass(frozen=True)
class DeleteSpec:
    entity: int
    source: int


# Small value domains, so batches collide: replaces, no-ops, dismissals and not-founds.
put_specs = st.builds(
    PutSpec,
    entity=st.integers(0, 3),
    source=st.integers(0, 2),
    enforcement=st.sampled_from([Enforcement.LIMIT, Enforcement.BLOCK]),
    reason=st.sampled_from(["spam", "porn"]),
    later=st.integers(0, 1),
    confidence=st.sampled_from([None, 0.5]),
    metadata=st.sampled_from([{}, {"k": "a"}, {"k": "b", "n": 1}]),
    pending=st.booleans(),
    decides=st.booleans(),
)
delete_specs = st.builds(DeleteSpec, entity=st.integers(0, 3), source=st.integers(0, 2))
batches = st.lists(st.one_of(put_specs, delete_specs), min_size=1, max_size=5)


@dataclass
class ModelEvent:
    """One expected effective change: its audit event and change record."""

    entity: str
    source_key: str
    action: Action
    actor: str
    at: datetime
    before: Label | None
    after: Label | None
    status: LabelStatus | None
    labeled: bool
    seq: int = 0


def _in_contract_order(records: list[ChangeRecord]) -> list[ChangeRecord]:
    """The records with each put's dismissals sorted by source: their order is not contractual."""
    out = list(records)
    i = 0
    while i < len(out):
        j = i
        while j < len(out) and out[j].action is Action.DISMISS and out[j].entity == out[i].entity:
            j += 1
        out[i:j] = sorted(out[i:j], key=lambda r: r.source_key)
        i = max(i + 1, j)
    return out


def _shape(records: list[ModelEvent] | list[ChangeRecord]) -> list[tuple[object, ...]]:
    return [(r.entity, r.source_key, r.action, r.labeled, r.at) for r in records]


class StorageMachine(RuleBasedStateMachine):
    def __init__(self, factory: StorageFactory) -> None:
        super().__init__()
        self.factory = factory
        self.storage = factory()
        run = next(_RUNS)
        # Zero-padded, so this example's entities are contiguous in key order.
        self.prefix = f"pin:m{run:06d}-"
        self.entities = [f"{self.prefix}{i}" for i in range(4)]
        self.labels: dict[tuple[str, str], tuple[Label, LabelStatus, int]] = {}
        self.events: list[ModelEvent] = []
        self.feed: list[ModelEvent] = []  # events whose change records are still retained
        self.storage.prune_changes(_CLOCK.now())  # forget earlier examples' feed
        self.head = self.storage.head_seq()
        self.base_counts = self.storage.count_labels()
        self.batches = 0

    # -- the model ----------------------------------------------------------------------

    def _labeled(self, entity: str) -> bool:
        return any(
            e == entity and status is LabelStatus.ACTIVE
            for (e, _), (_, status, _) in self.labels.items()
        )

    def _event(self, key: tuple[str, str], action: Action, actor: str, at: datetime,
               before: Label | None, after: Label | None,
               status: LabelStatus | None) -> ModelEvent:
        return ModelEvent(key[0], key[1], action, actor, at, before, after, status,
                          self._labeled(key[0]))

    def _model_apply(self, ops: list[WriteOp], actor: str, at: datetime
                     ) -> tuple[list[Outcome], list[ModelEvent]]:
        outcomes: list[Outcome] = []
        events: list[ModelEvent] = []
        for op in ops:
            if isinstance(op, DeleteOp):
                key = (op.entity, op.source_key)
                if key not in self.labels:
                    outcomes.append(Outcome.NOT_FOUND)
                    continue
                removed = self.labels.pop(key)[0]
                events.append(self._event(key, Action.DELETE, actor, at, removed, None, None))
                outcomes.append(Outcome.DELETED)
                continue
            key = op.label.key
            current = self.labels.get(key)
            if current is not None and current[:2] == (op.label, op.status):
                outcomes.append(Outcome.NOOP)
                continue
            self.labels[key] = (op.label, op.status, 0)
            pending = op.status is LabelStatus.PENDING
            action = Action.PEND if pending else Action.PUT
            before = None if current is None else current[0]
            events.append(self._event(key, action, actor, at, before, op.label, op.status))
            outcomes.append(Outcome.PENDING if pending else Outcome.WRITTEN)
            if op.decides_pending:
                for other in sorted(self.labels):
                    other_label, other_status, _ = self.labels[other]
                    if other[0] == key[0] and other != key and other_status is LabelStatus.PENDING:
                        del self.labels[other]
                        events.append(
                            self._event(other, Action.DISMISS, actor, at, other_label, None, None)
                        )
        return outcomes, events

    def _ops(self, specs: list[PutSpec | DeleteSpec]) -> list[WriteOp]:
        ops: list[WriteOp] = []
        for spec in specs:
            entity, source = self.entities[spec.entity], SOURCES[spec.source]
            if isinstance(spec, DeleteSpec):
                ops.append(DeleteOp(entity, source.key))
                continue
            lbl = label(entity, source, spec.enforcement, spec.reason,
                        T0 + timedelta(seconds=spec.later), confidence=spec.confidence,
                        metadata=spec.metadata)
            status = LabelStatus.PENDING if spec.pending else LabelStatus.ACTIVE
            ops.append(PutOp(lbl, status=status, decides_pending=spec.decides))
        return ops

    # -- rules --------------------------------------------------------------------------

    @rule(specs=batches)
    def write(self, specs: list[PutSpec | DeleteSpec]) -> None:
        ops = self._ops(specs)
        now, actor = _CLOCK.now(), f"actor{self.batches % 2}"
        self.batches += 1
        expected_outcomes, expected = self._model_apply(ops, actor, now)
        assert self.storage.apply(ops, actor=actor, now=now) == expected_outcomes
        new = _in_contract_order(self.storage.changes(self.head, limit=1000).changes)
        assert _shape(new) == _shape(expected)  # the model emits dismissals by source key
        seqs = sorted(c.seq for c in new)
        assert len(set(seqs)) == len(seqs) and all(s > self.head for s in seqs)
        for event, record in zip(expected, new, strict=True):
            event.seq = record.seq
            key = (event.entity, event.source_key)
            if event.after is not None and key in self.labels:
                self.labels[key] = (*self.labels[key][:2], event.seq)
        self.events.extend(expected)
        self.feed.extend(expected)
        if seqs:
            self.head = seqs[-1]
        assert self.storage.head_seq() == self.head

    @rule(specs=batches)
    def write_more(self, specs: list[PutSpec | DeleteSpec]) -> None:
        """The same as `write`: a second rule makes writes as likely as all the checks."""
        self.write(specs)

    @rule(limit=st.integers(1, 4), which=st.integers(0, 3))
    def check_history(self, limit: int, which: int) -> None:
        entity = self.entities[which]
        expected = [
            (e.seq, e.source_key, e.action, e.actor, e.at, e.before, e.after, e.status)
            for e in reversed(self.events) if e.entity == entity
        ]
        got: list[tuple[object, ...]] = []
        before: int | None = None
        while page := self.storage.history(entity, limit=limit, before_seq=before):
            assert before is None or page[0].seq < before
            got += [(e.seq, e.source_key, e.action, e.actor, e.at, e.before, e.after, e.status)
                     for e in page]
            before = page[-1].seq
        assert got == expected

    @rule(limit=st.integers(1, 5))
    def check_feed(self, limit: int) -> None:
        got: list[ChangeRecord] = []
        after = min(e.seq for e in self.feed) - 1 if self.feed else self.head
        while True:
            page = self.storage.changes(after, limit=limit)
            assert page.head == self.head and len(page.changes) <= limit
            assert page.oldest == min((e.seq for e in self.feed), default=self.head + 1)
            if not page.changes:
                break
            assert page.changes[0].seq > after
            got += page.changes
            after = page.changes[-1].seq
        assert [c.seq for c in got] == sorted(e.seq for e in self.feed)
        by_seq = {e.seq: e for e in self.feed}
        assert _shape(got) == _shape([by_seq[c.seq] for c in got])

    @rule(keep=st.integers(0, 4))
    def prune(self, keep: int) -> None:
        """Prune at the time of a retained record (or past all of them)."""
        times = sorted({e.at for e in self.feed})
        cutoff = times[-keep] if 0 < keep <= len(times) else _CLOCK.now()
        dropped = [e for e in self.feed if e.at < cutoff]
        assert self.storage.prune_changes(cutoff) == len(dropped)
        self.feed = [e for e in self.feed if e.at >= cutoff]

    @rule(limit=st.integers(1, 5))
    def check_pending(self, limit: int) -> None:
        got: list[tuple[str, str, Label, int]] = []
        after = (self.prefix, "")  # before every key of this example, itself not a stored key
        while page := self.storage.pending(limit=limit, after=after):
            assert all(s.status is LabelStatus.PENDING for s in page)
            assert page[0].label.key > after
            got += [(*s.label.key, s.label, s.seq) for s in page if s.label.entity in self.entities]
            after = page[-1].label.key
            if after[0] > self.entities[-1]:
                break
        expected = sorted(
            (*key, lbl, seq) for key, (lbl, status, seq) in self.labels.items()
            if status is LabelStatus.PENDING
        )
        assert got == expected

    @rule()
    def check_counts_and_labeled_entities(self) -> None:
        counts = self.storage.count_labels()
        for status in LabelStatus:
            mine = sum(1 for (_, s, _) in self.labels.values() if s is status)
            assert counts[status] - self.base_counts[status] == mine
        ours = set(self.entities)
        labeled = {e for e in self.storage.iter_labeled_entities() if e in ours}
        assert labeled == {e for e in self.entities if self._labeled(e)}

    @precondition(lambda self: self.batches > 0)
    @rule()
    def reopen(self) -> None:
        self.storage.close()
        self.storage = self.factory()

    @invariant()
    def served_labels_match(self) -> None:
        for include_pending in (False, True):
            got = self.storage.get_many(self.entities, include_pending=include_pending)
            expected: dict[str, set[tuple[Label, LabelStatus, int]]] = {}
            for (entity, _), (lbl, status, seq) in self.labels.items():
                if include_pending or status is LabelStatus.ACTIVE:
                    expected.setdefault(entity, set()).add((lbl, status, seq))
            assert {e: {(s.label, s.status, s.seq) for s in v} for e, v in got.items()} == expected

    def teardown(self) -> None:
        # Retract what this example stored, so the shared store stays small however many
        # examples run (cleanup errors must not hide the failure being reported).
        with contextlib.suppress(Exception):
            retract: list[WriteOp] = [DeleteOp(e, s.key) for e in self.entities for s in SOURCES]
            self.storage.apply(retract, actor="cleanup", now=_CLOCK.now())
        self.storage.close()


def test_storage_behaves_like_the_dict_model(storage_factory: StorageFactory) -> None:
    # run_state_machine_as_test takes any factory of machines; its stub only names classes.
    run_state_machine_as_test(
        lambda: StorageMachine(storage_factory),  # type: ignore[arg-type]
        settings=settings(
            max_examples=30,
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
