"""The LabelStorage contract: what every backend guarantees, tested through the interface only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from enforce_sdk._errors import InvalidInputError, StorageError
from enforce_sdk.model.compact import decode_body
from enforce_sdk.model.label import Enforcement, Label
from enforce_sdk.model.records import Action, LabelStatus, Outcome, StoredLabel
from enforce_sdk.store import DeleteOp, ExpireOp, LabelStorage, PutOp, WriteOp
from enforce_sdk.store.storage.base import PURGE_ACTOR
from tests.store.storage._labels import ACTOR, HUMAN, MODEL, MODEL2, T0, Clock, delete, label, put
from tests.store.storage.conftest import StorageFactory

W, P, N, D, NF = Outcome.WRITTEN, Outcome.PENDING, Outcome.NOOP, Outcome.DELETED, Outcome.NOT_FOUND


def apply(
    storage: LabelStorage, *ops: WriteOp, now: datetime = T0, actor: str = ACTOR
) -> list[Outcome]:
    return storage.apply(list(ops), actor=actor, now=now)


def served(storage: LabelStorage, entity: str, *, include_pending: bool = False) -> list[Label]:
    return [s.label for s in storage.get_many([entity], include_pending=include_pending).get(entity, [])]


def by_source(stored: list[StoredLabel]) -> dict[str, StoredLabel]:
    return {s.label.source.key: s for s in stored}


# -- outcomes ---------------------------------------------------------------------------


def test_empty_store(storage: LabelStorage) -> None:
    assert storage.head_seq() == 0
    assert storage.get_many(["pin:1", "user:2"]) == {}
    page = storage.changes(0)
    assert (page.changes, page.head, page.oldest) == ([], 0, 1)
    assert storage.history("pin:1") == []
    assert storage.pending() == []
    assert list(storage.iter_labeled_entities()) == []
    assert storage.count_labels() == {LabelStatus.ACTIVE: 0, LabelStatus.PENDING: 0}
    storage.ping()


def test_new_label_is_written_and_served(storage: LabelStorage) -> None:
    lbl = label("pin:1")
    assert apply(storage, put(lbl)) == [W]
    got = storage.get_many(["pin:1"])
    assert list(got) == ["pin:1"]
    [stored] = got["pin:1"]
    assert stored.label == lbl
    assert stored.status is LabelStatus.ACTIVE
    assert stored.seq == storage.head_seq() >= 1


def test_every_label_field_round_trips(storage: LabelStorage) -> None:
    lbl = label(
        "user:Ünï-42",
        source=HUMAN,
        enforcement=Enforcement.REMOVE,
        reason="self_harm",
        created_at=datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        expires_at=datetime(2026, 4, 1, 0, 0, 0, 1, tzinfo=UTC),
        confidence=0.8125,
        metadata={"ticket": "T-9", "n": 3, "score": 0.5, "flag": True, "none": None},
    )
    apply(storage, put(lbl))
    [stored] = storage.get_many([lbl.entity], now=T0)[lbl.entity]
    got = stored.label
    assert got == lbl
    assert dict(got.metadata) == dict(lbl.metadata)
    assert got.created_at.tzinfo is not None and got.created_at.utcoffset() == timedelta(0)
    assert (got.expires_at, got.confidence) == (lbl.expires_at, 0.8125)


def test_identical_put_is_noop_without_audit_or_change(storage: LabelStorage) -> None:
    lbl = label("pin:1", metadata={"a": "1", "b": 2})
    apply(storage, put(lbl))
    head = storage.head_seq()
    same = label("pin:1", metadata={"b": 2, "a": "1"})  # equal label, other key order
    assert apply(storage, put(same), now=T0 + timedelta(hours=1), actor="someone-else") == [N]
    assert storage.head_seq() == head
    assert len(storage.history("pin:1")) == 1
    assert [c.seq for c in storage.changes(0).changes] == [head]
    assert storage.get_many(["pin:1"])["pin:1"][0].seq == head


@pytest.mark.parametrize(("old", "new"), [(1, True), (1, 1.0), (0, False)])
def test_metadata_changing_type_is_a_write_not_a_duplicate(
    storage: LabelStorage, old: object, new: object
) -> None:
    apply(storage, put(label("pin:1", metadata={"k": old})))
    assert apply(storage, put(label("pin:1", metadata={"k": new}))) != [N]
    stored = storage.get_many(["pin:1"])["pin:1"][0].label.metadata["k"]
    assert type(stored) is type(new) and stored == new


def test_replacing_a_source_label_records_before_and_after(storage: LabelStorage) -> None:
    old = label("pin:1", enforcement=Enforcement.LIMIT)
    new = label("pin:1", enforcement=Enforcement.BLOCK, created_at=T0 + timedelta(minutes=5))
    apply(storage, put(old))
    assert apply(storage, put(new), actor="second") == [W]
    assert served(storage, "pin:1") == [new]
    latest = storage.history("pin:1")[0]
    assert (latest.action, latest.before, latest.after, latest.actor) == (
        Action.PUT, old, new, "second"
    )
    assert latest.status is LabelStatus.ACTIVE


@pytest.mark.parametrize(
    ("first", "second", "outcome", "action"),
    [(False, True, P, Action.PEND), (True, False, W, Action.PUT)],
    ids=["active-to-pending", "pending-to-active"],
)
def test_same_label_with_other_status_is_a_change(
    storage: LabelStorage, first: bool, second: bool, outcome: Outcome, action: Action
) -> None:
    lbl = label("pin:1")
    apply(storage, put(lbl, pending=first))
    assert apply(storage, put(lbl, pending=second)) == [outcome]
    [stored] = storage.get_many(["pin:1"], include_pending=True)["pin:1"]
    assert stored.status is (LabelStatus.PENDING if second else LabelStatus.ACTIVE)
    event = storage.history("pin:1")[0]
    assert (event.action, event.before, event.after) == (action, lbl, lbl)


def test_delete_retracts_and_missing_delete_is_not_found(storage: LabelStorage) -> None:
    lbl = label("pin:1")
    apply(storage, put(lbl))
    head = storage.head_seq()
    assert apply(storage, delete("pin:1", MODEL2)) == [NF]
    assert apply(storage, delete("pin:2")) == [NF]
    assert storage.head_seq() == head
    assert apply(storage, delete("pin:1"), actor="retractor") == [D]
    assert storage.get_many(["pin:1"], include_pending=True) == {}
    event = storage.history("pin:1")[0]
    assert (event.action, event.before, event.after, event.status, event.actor) == (
        Action.DELETE, lbl, None, None, "retractor"
    )
    assert apply(storage, delete("pin:1")) == [NF]


def test_sources_on_one_entity_never_lose_each_other(storage: LabelStorage) -> None:
    a, b, c = label("pin:1", MODEL), label("pin:1", MODEL2), label("pin:1", HUMAN)
    assert apply(storage, put(a)) == [W]
    assert apply(storage, put(b), put(c)) == [W, W]
    a2 = label("pin:1", MODEL, Enforcement.LIMIT)
    assert apply(storage, put(a2)) == [W]
    assert by_source(storage.get_many(["pin:1"])["pin:1"]).keys() == {
        MODEL.key, MODEL2.key, HUMAN.key
    }
    assert set(served(storage, "pin:1")) == {a2, b, c}
    apply(storage, delete("pin:1", MODEL2))
    assert set(served(storage, "pin:1")) == {a2, c}


def test_get_many_returns_only_entities_with_labels(storage: LabelStorage) -> None:
    entities = [f"pin:{i}" for i in range(1500)]
    apply(storage, *(put(label(e)) for e in entities[::3]))
    apply(storage, put(label("pin:1", HUMAN), pending=True))  # pending only: absent by default
    asked = [*entities, "pin:0", "user:nobody"]  # duplicates and unknown keys are fine
    got = storage.get_many(iter(asked))
    assert sorted(got) == sorted(entities[::3])
    assert all(len(v) == 1 and v[0].label.entity == k for k, v in got.items())
    assert storage.get_many([]) == {}
    assert sorted(storage.get_many(asked, include_pending=True)) == sorted(
        [*entities[::3], "pin:1"]
    )


def test_expired_labels_are_not_served_but_stay_stored_until_purged(
    storage: LabelStorage,
) -> None:
    ends = T0 + timedelta(hours=1)
    short = label("pin:1", created_at=T0, expires_at=ends)
    lasting = label("pin:1", MODEL2, created_at=T0)
    held = label("pin:2", created_at=T0, expires_at=ends)
    assert apply(storage, put(short), put(lasting), put(held, pending=True)) == [W, W, P]

    def read(now: datetime) -> dict[str, set[Label]]:
        found = storage.get_many(["pin:1", "pin:2"], include_pending=True, now=now)
        return {e: {s.label for s in stored} for e, stored in found.items()}

    assert read(ends - timedelta(microseconds=1)) == {"pin:1": {short, lasting}, "pin:2": {held}}
    assert read(ends) == {"pin:1": {lasting}}  # expired at expires_at itself
    # Stored still: enumeration and counts include it until the purge.
    assert sorted(storage.iter_labeled_entities()) == ["pin:1"]
    assert storage.count_labels() == {LabelStatus.ACTIVE: 2, LabelStatus.PENDING: 1}
    assert served(storage, "pin:9") == []  # the wall clock is the default `now`


def test_purge_removes_expired_labels_with_audit_and_change_records(
    storage: LabelStorage,
) -> None:
    ends = T0 + timedelta(hours=1)
    gone_active = label("pin:1", created_at=T0, expires_at=ends)
    gone_held = label("pin:1", MODEL2, created_at=T0, expires_at=ends)
    lasting = label("pin:1", HUMAN, created_at=T0)
    only = label("pin:2", created_at=T0, expires_at=ends)
    in_grace = label("pin:3", created_at=T0, expires_at=ends + timedelta(days=1))
    apply(storage, put(gone_active), put(gone_held, pending=True), put(lasting), put(only),
          put(in_grace))
    head = storage.head_seq()
    purge_time = ends + timedelta(days=1, seconds=30)
    # The purge takes labels expired by `before` (now minus the grace), not by `now`.
    assert storage.purge_expired(ends, now=purge_time) == 2
    new = storage.changes(head).changes  # the order of entities is not part of the contract
    assert sorted((c.entity, c.source_key) for c in new) == [
        ("pin:1", MODEL2.key), ("pin:1", MODEL.key), ("pin:2", MODEL.key)]
    assert [c.seq for c in new] == list(range(head + 1, head + 4))
    assert all(c.at == purge_time and c.action is Action.EXPIRE for c in new)
    assert {c.entity: c.labeled for c in new} == {"pin:1": True, "pin:2": False}
    expired = [e for e in storage.history("pin:1") if e.action is Action.EXPIRE]
    assert {e.before for e in expired} == {gone_active, gone_held}
    assert all(e.after is None and e.status is None and e.actor == PURGE_ACTOR for e in expired)
    far = purge_time + timedelta(days=365)
    assert storage.get_many(["pin:1", "pin:2", "pin:3"], include_pending=True, now=T0) == {
        "pin:1": storage.get_many(["pin:1"], now=far)["pin:1"],
        "pin:3": storage.get_many(["pin:3"], now=T0)["pin:3"],
    }
    assert served(storage, "pin:1") == [lasting]
    assert storage.pending() == []
    assert sorted(storage.iter_labeled_entities()) == ["pin:1", "pin:3"]
    assert storage.count_labels() == {LabelStatus.ACTIVE: 2, LabelStatus.PENDING: 0}
    # Nothing more to purge: no change at all.
    assert storage.purge_expired(ends, now=purge_time) == 0
    assert storage.head_seq() == head + 3


def test_purge_is_atomic_per_entity_and_rechecks_each_label(storage: LabelStorage) -> None:
    ends = T0 + timedelta(hours=1)
    apply(storage, put(label("pin:1", created_at=T0, expires_at=ends)),
          put(label("pin:1", MODEL2, created_at=T0, expires_at=ends)))
    renewed = label("pin:1", created_at=T0, expires_at=ends + timedelta(days=30))
    head = storage.head_seq()
    # An expire op applied in order after a put that renewed one label: only the other goes,
    # and both ops commit together.
    assert apply(storage, put(renewed), ExpireOp("pin:1", ends)) == [W, D]
    assert [(c.action, c.source_key) for c in storage.changes(head).changes] == [
        (Action.PUT, MODEL.key), (Action.EXPIRE, MODEL2.key)]
    assert apply(storage, ExpireOp("pin:1", ends), ExpireOp("pin:404", ends)) == [N, N]
    assert storage.head_seq() == head + 2
    assert [s.label for s in storage.get_many(["pin:1"], now=ends)["pin:1"]] == [renewed]


def test_purge_spans_many_batches(storage: LabelStorage) -> None:
    ends = T0 + timedelta(hours=1)
    entities = [f"pin:{i}" for i in range(600)]
    apply(storage, *(put(label(e, created_at=T0, expires_at=ends)) for e in entities),
          put(label("pin:keep", created_at=T0)))
    assert storage.purge_expired(ends, now=ends) == len(entities)
    assert list(storage.iter_labeled_entities()) == ["pin:keep"]
    assert storage.count_labels() == {LabelStatus.ACTIVE: 1, LabelStatus.PENDING: 0}


# -- batches ----------------------------------------------------------------------------


def test_later_ops_in_a_batch_see_earlier_ones(storage: LabelStorage) -> None:
    a = label("pin:1")
    a2 = label("pin:1", enforcement=Enforcement.LIMIT)
    outcomes = apply(
        storage,
        delete("pin:1"),
        put(a),
        put(a),
        put(a2),
        delete("pin:1"),
        delete("pin:1"),
        put(a),
    )
    assert outcomes == [NF, W, N, W, D, NF, W]
    events = storage.history("pin:1")
    assert [e.action for e in events] == [Action.PUT, Action.DELETE, Action.PUT, Action.PUT]
    assert [(e.before, e.after) for e in events] == [(None, a), (a2, None), (a, a2), (None, a)]
    assert served(storage, "pin:1") == [a]


def test_a_batch_commits_everything_with_increasing_seqs(storage: LabelStorage) -> None:
    ops = [put(label(f"pin:{i}")) for i in range(50)]
    assert apply(storage, *ops) == [W] * 50
    page = storage.changes(0)
    seqs = [c.seq for c in page.changes]
    assert len(seqs) == 50 and seqs == sorted(set(seqs)) and page.head == seqs[-1]
    assert [c.entity for c in page.changes] == [f"pin:{i}" for i in range(50)]
    stored = storage.get_many([f"pin:{i}" for i in range(50)])
    assert [stored[f"pin:{i}"][0].seq for i in range(50)] == seqs


def test_an_invalid_batch_stores_nothing(storage: LabelStorage) -> None:
    apply(storage, put(label("pin:0")))
    head = storage.head_seq()
    bad_batches: list[list[object]] = [
        [put(label("pin:1")), "not an op"],
        [put(label("pin:1")), PutOp(label("pin:2"), status="live")],  # type: ignore[arg-type]
        [put(label("pin:1")), DeleteOp("", MODEL.key)],
        [put(label("pin:1")), PutOp({"entity": "pin:3"})],  # type: ignore[arg-type]
    ]
    for ops in bad_batches:
        with pytest.raises(InvalidInputError):
            storage.apply(ops, actor=ACTOR, now=T0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="actor"):
        storage.apply([put(label("pin:1"))], actor="", now=T0)
    with pytest.raises(InvalidInputError, match="now"):
        storage.apply([put(label("pin:1"))], actor=ACTOR, now=datetime(2026, 1, 1))
    assert storage.head_seq() == head
    assert storage.get_many(["pin:1", "pin:2"], include_pending=True) == {}
    assert apply(storage) == [] and storage.head_seq() == head


# -- pending ----------------------------------------------------------------------------


def test_pending_labels_are_stored_but_not_served(storage: LabelStorage) -> None:
    active, held = label("user:7", HUMAN, Enforcement.ALLOW, "appeal_upheld"), label("user:7")
    assert apply(storage, put(active), put(held, pending=True)) == [W, P]
    assert served(storage, "user:7") == [active]
    both = by_source(storage.get_many(["user:7"], include_pending=True)["user:7"])
    assert both[MODEL.key].status is LabelStatus.PENDING and both[MODEL.key].label == held
    assert both[HUMAN.key].status is LabelStatus.ACTIVE
    assert [s.label for s in storage.pending()] == [held]
    assert storage.count_labels() == {LabelStatus.ACTIVE: 1, LabelStatus.PENDING: 1}
    assert apply(storage, put(held, pending=True)) == [N]
    event = storage.history("user:7")[0]
    assert (event.action, event.status, event.after) == (Action.PEND, LabelStatus.PENDING, held)


def test_pending_is_listed_in_key_order_with_a_cursor(storage: LabelStorage) -> None:
    keys = [(f"user:{e}", s) for e in ("b", "a", "c", "aa") for s in (MODEL2, MODEL)]
    apply(storage, *(put(label(e, s), pending=True) for e, s in keys))
    apply(storage, put(label("user:a", HUMAN)))  # active: never listed
    expected = sorted((e, s.key) for e, s in keys)
    assert [s.label.key for s in storage.pending(limit=100)] == expected
    seen: list[tuple[str, str]] = []
    cursor: tuple[str, str] | None = None
    while True:
        page = storage.pending(limit=3, after=cursor)
        assert len(page) <= 3
        if not page:
            break
        assert cursor is None or page[0].label.key > cursor, "the cursor key itself came back"
        assert all(s.status is LabelStatus.PENDING for s in page)
        seen.extend(s.label.key for s in page)
        cursor = page[-1].label.key
    assert seen == expected
    assert [s.label.key for s in storage.pending(after=("user:aa", "~"))] == expected[4:]


def test_a_deciding_put_dismisses_other_pending_labels(storage: LabelStorage) -> None:
    held1, held2 = label("user:7", MODEL), label("user:7", MODEL2)
    other_entity = label("user:8", MODEL)
    apply(storage, put(held1, pending=True), put(held2, pending=True))
    apply(storage, put(other_entity, pending=True))
    head = storage.head_seq()
    verdict = label("user:7", HUMAN, Enforcement.ALLOW, "reviewed_ok")
    assert apply(storage, put(verdict, decides=True), actor="reviewer") == [W]
    assert storage.get_many(["user:7"], include_pending=True)["user:7"] == [
        storage.get_many(["user:7"])["user:7"][0]
    ]
    assert served(storage, "user:7") == [verdict]
    assert [s.label for s in storage.pending()] == [other_entity]
    new = storage.changes(head).changes
    assert [c.action for c in new] == [Action.PUT, Action.DISMISS, Action.DISMISS]
    assert {c.source_key for c in new[1:]} == {MODEL.key, MODEL2.key}
    assert all(c.labeled for c in new)
    dismissals = [e for e in storage.history("user:7") if e.action is Action.DISMISS]
    assert {e.before for e in dismissals} == {held1, held2}
    assert all(e.after is None and e.status is None and e.actor == "reviewer" for e in dismissals)
    assert storage.count_labels() == {LabelStatus.ACTIVE: 1, LabelStatus.PENDING: 1}


def test_a_deciding_put_keeps_active_labels_and_its_own_source(storage: LabelStorage) -> None:
    active = label("user:7", MODEL2, Enforcement.LIMIT)
    own_pending = label("user:7", HUMAN, Enforcement.BLOCK)
    apply(storage, put(active), put(own_pending, pending=True))
    verdict = label("user:7", HUMAN, Enforcement.ALLOW, "reviewed_ok")
    assert apply(storage, put(verdict, decides=True)) == [W]
    assert set(served(storage, "user:7")) == {active, verdict}
    assert storage.pending() == []
    assert storage.history("user:7")[0].before == own_pending  # replaced, not dismissed


def test_a_noop_deciding_put_dismisses_nothing(storage: LabelStorage) -> None:
    verdict = label("user:7", HUMAN, Enforcement.ALLOW, "reviewed_ok")
    apply(storage, put(verdict))
    held = label("user:7", MODEL)
    apply(storage, put(held, pending=True))
    head = storage.head_seq()
    assert apply(storage, put(verdict, decides=True)) == [N]
    assert storage.head_seq() == head
    assert [s.label for s in storage.pending()] == [held]


def test_a_pending_label_can_be_retracted(storage: LabelStorage) -> None:
    held = label("user:7")
    apply(storage, put(held, pending=True))
    assert apply(storage, delete("user:7")) == [D]
    assert storage.pending() == []
    assert storage.count_labels()[LabelStatus.PENDING] == 0
    assert storage.history("user:7")[0].before == held


# -- audit ------------------------------------------------------------------------------


def test_history_is_newest_first_and_pages_by_seq(storage: LabelStorage) -> None:
    clock = Clock()
    versions = [label("pin:1", reason=f"r{i}") for i in range(7)]
    times = []
    for i, v in enumerate(versions):
        times.append(clock.now())
        apply(storage, put(v), put(label("pin:2", reason=f"r{i}")), now=times[-1], actor=f"w{i}")
    events = storage.history("pin:1")
    assert [e.after for e in events] == versions[::-1]
    assert [e.before for e in events] == [*versions[:-1][::-1], None]
    assert [e.actor for e in events] == [f"w{i}" for i in range(6, -1, -1)]
    assert [e.at for e in events] == times[::-1]
    assert all(e.entity == "pin:1" and e.source_key == MODEL.key for e in events)
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 7
    paged: list[int] = []
    before: int | None = None
    while page := storage.history("pin:1", limit=3, before_seq=before):
        assert len(page) <= 3
        assert before is None or page[0].seq < before, "before_seq itself came back"
        paged.extend(e.seq for e in page)
        before = page[-1].seq
    assert paged == seqs
    assert [e.seq for e in storage.history("pin:1", before_seq=seqs[2])] == seqs[3:]
    assert storage.history("pin:1", before_seq=seqs[-1]) == []


def test_audit_survives_deletes_and_pruning(storage: LabelStorage) -> None:
    apply(storage, put(label("pin:1")), now=T0)
    apply(storage, delete("pin:1"), now=T0 + timedelta(seconds=1))
    storage.prune_changes(T0 + timedelta(days=1))
    assert [e.action for e in storage.history("pin:1")] == [Action.DELETE, Action.PUT]


# -- change feed ------------------------------------------------------------------------


def test_changes_are_ascending_limited_and_carry_head(storage: LabelStorage) -> None:
    clock = Clock()
    for i in range(10):
        apply(storage, put(label(f"pin:{i}")), now=clock.now())
    head = storage.head_seq()
    everything = storage.changes(0).changes
    assert len(everything) == 10 and everything[-1].seq == head
    first = storage.changes(0, limit=4)
    assert first.changes == everything[:4] and first.head == head
    assert first.oldest == everything[0].seq
    rest = storage.changes(first.changes[-1].seq, limit=100)
    assert rest.changes == everything[4:]
    assert storage.changes(head).changes == []
    assert storage.changes(head + 5).changes == []
    assert [(c.entity, c.source_key, c.action) for c in everything] == [
        (f"pin:{i}", MODEL.key, Action.PUT) for i in range(10)
    ]
    assert [c.at for c in everything] == [T0 + timedelta(seconds=i + 1) for i in range(10)]


def test_a_position_past_the_head_gets_an_empty_page_naming_the_head(
    storage: LabelStorage,
) -> None:
    """The service answers such a position 410 (reload): the store went back, e.g. a
    restored backup or a failover, and numbers above its head may be issued again."""
    apply(storage, put(label("pin:1")), put(label("pin:2")))
    head = storage.head_seq()
    page = storage.changes(head + 3)
    assert (page.changes, page.head, page.oldest) == ([], head, 1)
    apply(storage, put(label("pin:3")))
    assert [c.seq for c in storage.changes(head).changes] == [head + 1]


def test_labeled_says_whether_the_entity_has_an_active_label_after_the_change(
    storage: LabelStorage,
) -> None:
    head = storage.head_seq()
    apply(storage, put(label("pin:1", MODEL), pending=True))  # pending only: not labeled
    apply(storage, put(label("pin:1", MODEL2)))  # labeled
    apply(storage, put(label("pin:1", HUMAN)))  # labeled
    apply(storage, delete("pin:1", MODEL2))  # HUMAN remains
    apply(storage, delete("pin:1", HUMAN))  # only the pending one remains
    apply(storage, put(label("pin:1", MODEL, reason="other")))  # pending -> active
    apply(storage, put(label("pin:1", MODEL, reason="other"), pending=True))  # active -> pending
    changes = storage.changes(head).changes
    assert [(c.action, c.labeled) for c in changes] == [
        (Action.PEND, False),
        (Action.PUT, True),
        (Action.PUT, True),
        (Action.DELETE, True),
        (Action.DELETE, False),
        (Action.PUT, True),
        (Action.PEND, False),
    ]


def test_prune_drops_old_changes_and_moves_oldest(storage: LabelStorage) -> None:
    for i in range(6):
        apply(storage, put(label(f"pin:{i}")), now=T0 + timedelta(hours=i))
    all_changes = storage.changes(0).changes
    head = storage.head_seq()
    assert storage.prune_changes(T0) == 0
    assert storage.prune_changes(T0 + timedelta(hours=2)) == 2
    page = storage.changes(0)
    assert page.changes == all_changes[2:]
    assert (page.oldest, page.head) == (all_changes[2].seq, head)
    assert storage.prune_changes(T0 + timedelta(hours=2)) == 0
    assert storage.prune_changes(T0 + timedelta(days=30)) == 4
    page = storage.changes(0)
    assert (page.changes, page.head, page.oldest) == ([], head, head + 1)
    assert storage.head_seq() == head
    assert len(storage.get_many([f"pin:{i}" for i in range(6)])) == 6  # labels are kept


def test_prune_never_leaves_a_hole_when_the_clock_went_back(storage: LabelStorage) -> None:
    hours = [0, 3, 1, 4, 2, 5]  # `now` of consecutive batches: not monotonic
    for i, h in enumerate(hours):
        apply(storage, put(label(f"pin:{i}")), now=T0 + timedelta(hours=h))
    everything = storage.changes(0).changes
    cutoff = T0 + timedelta(hours=2, minutes=30)
    dropped = storage.prune_changes(cutoff)
    page = storage.changes(0)
    assert page.changes == everything[dropped:]  # a prefix went, nothing in between
    assert all(c.at < cutoff for c in everything[:dropped])
    assert page.oldest == everything[dropped].seq
    assert dropped == 1  # the second record is younger than the cutoff: the prefix ends there


def test_prune_bounds(storage: LabelStorage) -> None:
    apply(storage, put(label("pin:1")), now=T0)
    assert storage.prune_changes(T0) == 0  # "older than" is strict
    with pytest.raises(InvalidInputError):
        storage.prune_changes(datetime(2026, 1, 1))  # naive: ambiguous


# -- sequence numbers -------------------------------------------------------------------


def test_seq_strictly_increases_and_is_never_reused(storage_factory: StorageFactory) -> None:
    storage = storage_factory()
    seen: list[int] = []
    for i in range(3):
        apply(storage, put(label("pin:1", reason=f"r{i}")), put(label(f"pin:x{i}")), now=T0)
    seen += [c.seq for c in storage.changes(0).changes]
    head = storage.head_seq()
    storage.prune_changes(T0 + timedelta(days=1))
    storage.close()
    reopened = storage_factory()
    assert reopened.head_seq() == head
    apply(reopened, put(label("pin:1", reason="after_prune")), now=T0 + timedelta(days=2))
    new = reopened.changes(head).changes
    assert len(new) == 1 and new[0].seq > head
    seen.append(new[0].seq)
    assert seen == sorted(set(seen))
    assert reopened.history("pin:1")[0].seq == new[0].seq


# -- persistence and handles ------------------------------------------------------------


def test_handles_share_one_store_and_data_survives_reopen(storage_factory: StorageFactory) -> None:
    first, second = storage_factory(), storage_factory()
    a, b = label("pin:1", MODEL), label("pin:1", HUMAN)
    apply(first, put(a))
    assert served(second, "pin:1") == [a]
    apply(second, put(b), put(label("pin:2"), pending=True))
    assert set(served(first, "pin:1")) == {a, b}
    assert first.head_seq() == second.head_seq()
    head = first.head_seq()
    first.close()
    second.close()
    third = storage_factory()
    assert set(served(third, "pin:1")) == {a, b}
    assert third.head_seq() == head
    assert [s.label.entity for s in third.pending()] == ["pin:2"]
    assert len(third.history("pin:1")) == 2
    assert [c.seq for c in third.changes(0).changes][-1] == head
    assert third.count_labels() == {LabelStatus.ACTIVE: 2, LabelStatus.PENDING: 1}


def test_close_is_idempotent_and_a_closed_handle_refuses_work(
    storage_factory: StorageFactory,
) -> None:
    storage = storage_factory()
    apply(storage, put(label("pin:1")))
    storage.close()
    storage.close()
    with pytest.raises(StorageError):
        storage.get_many(["pin:1"])
    with pytest.raises(StorageError):
        apply(storage, put(label("pin:2")))
    with pytest.raises(StorageError):
        storage.ping()
    assert served(storage_factory(), "pin:1") == [label("pin:1")]


# -- enumeration and counts -------------------------------------------------------------


def test_labeled_entities_and_counts(storage: LabelStorage) -> None:
    apply(
        storage,
        put(label("pin:1", MODEL)),
        put(label("pin:1", HUMAN)),
        put(label("user:2", MODEL), pending=True),  # pending only: not labeled
        put(label("domain:example.com", MODEL2)),
        put(label("pin:3", MODEL)),
        put(label("image:abc", MODEL), pending=True),
        put(label("image:abc", HUMAN, Enforcement.ALLOW, "ok")),
    )
    apply(storage, delete("pin:3"))
    entities = list(storage.iter_labeled_entities())
    assert sorted(set(entities)) == ["domain:example.com", "image:abc", "pin:1"]
    assert storage.count_labels() == {LabelStatus.ACTIVE: 4, LabelStatus.PENDING: 2}


# -- argument checks --------------------------------------------------------------------


def test_read_arguments_are_checked(storage: LabelStorage) -> None:
    with pytest.raises(InvalidInputError, match="limit"):
        storage.history("pin:1", limit=0)
    with pytest.raises(InvalidInputError, match="limit"):
        storage.changes(0, limit=0)
    with pytest.raises(InvalidInputError, match="after_seq"):
        storage.changes(-1)
    with pytest.raises(InvalidInputError, match="limit"):
        storage.pending(limit=0)
    with pytest.raises(InvalidInputError, match="entities"):
        storage.get_many("pin:1")
    with pytest.raises(InvalidInputError, match="now"):
        storage.get_many(["pin:1"], now=datetime(2026, 1, 1))  # naive
    with pytest.raises(InvalidInputError, match="before"):
        storage.purge_expired(datetime(2026, 1, 1), now=T0)
    with pytest.raises(InvalidInputError, match=r"ops\[0\]\.before"):
        storage.apply([ExpireOp("pin:1", datetime(2026, 1, 1))], actor=ACTOR, now=T0)


def test_get_bodies_are_the_served_labels_in_compact_form(storage: LabelStorage) -> None:
    ends = T0 + timedelta(hours=1)
    apply(storage,
          put(label("pin:1", MODEL, metadata={"run": "r9"}, confidence=0.25)),
          put(label("pin:1", MODEL2, expires_at=ends)),
          put(label("pin:1", HUMAN, Enforcement.ALLOW), pending=True),
          put(label("pin:2", MODEL, expires_at=ends)),
          put(label("user:3", HUMAN, Enforcement.LIMIT, reason="harassment")))
    keys = ["user:3", "pin:2", "pin:1", "pin:404", "pin:1"]
    for now in (ends - timedelta(microseconds=1), ends):
        bodies = storage.get_bodies(keys, now=now)
        decoded = {e: [decode_body(e, source_key, body) for source_key, body in pairs]
                   for e, pairs in bodies.items()}
        served_now = storage.get_many(keys, now=now)
        assert decoded == {e: [s.label for s in stored] for e, stored in served_now.items()}
        assert all([k for k, _ in pairs] == sorted(k for k, _ in pairs)
                   for pairs in bodies.values())
    assert "pin:2" not in storage.get_bodies(keys, now=ends)
    assert storage.get_bodies([], now=T0) == {}
    with pytest.raises(InvalidInputError, match="entities"):
        storage.get_bodies("pin:1", now=T0)
    with pytest.raises(InvalidInputError, match="now"):
        storage.get_bodies(["pin:1"], now=datetime(2026, 1, 1))  # naive
