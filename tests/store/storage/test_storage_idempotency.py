"""The contract of keyed writes (`apply_once`), run against every backend.

A keyed batch is applied at most once: its outcome is recorded with it, and a
retry with the same key and fingerprint answers that outcome without applying
anything, even if the data changed since; another request under the same key
is refused; the record expires with the key.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest

from enforce_sdk._errors import InvalidInputError, WriteKeyReusedError
from enforce_sdk.model.records import Action, Outcome
from enforce_sdk.store import LabelStorage
from enforce_sdk.store.storage.base import AppliedBatch, WriteKey, WriteOp
from tests.store.storage._labels import ACTOR, HUMAN, MODEL2, T0, delete, label, put
from tests.store.storage.conftest import StorageFactory

W, N, D, NF = Outcome.WRITTEN, Outcome.NOOP, Outcome.DELETED, Outcome.NOT_FOUND
DAY = timedelta(days=1)


def key(name: str = "k1", fingerprint: str = "fp-a", expires_at: datetime = T0 + DAY) -> WriteKey:
    return WriteKey(f"{ACTOR}\x00{name}", fingerprint, expires_at)


def once(storage: LabelStorage, k: WriteKey, *ops: WriteOp, now: datetime = T0) -> AppliedBatch:
    return storage.apply_once(list(ops), actor=ACTOR, now=now, key=k)


def changes(storage: LabelStorage) -> list[tuple[int, str, Action]]:
    return [(c.seq, c.entity, c.action) for c in storage.changes(0).changes]


def test_a_keyed_batch_is_applied_and_its_retry_replays_the_outcome(storage: LabelStorage) -> None:
    ops = [put(label("pin:1")), put(label("pin:2", source=HUMAN)), delete("pin:3")]
    first = once(storage, key(), *ops)
    assert (first.outcomes, first.replayed) == ([W, W, NF], False)
    assert first.seq == storage.head_seq() == 2
    before = changes(storage)

    again = once(storage, key(), *ops, now=T0 + timedelta(minutes=5))
    assert again == AppliedBatch([W, W, NF], first.seq, replayed=True)
    assert changes(storage) == before  # nothing applied twice: no change, no audit event
    assert len(storage.history("pin:1")) == 1


def test_a_retry_replays_even_after_the_data_changed(storage: LabelStorage) -> None:
    lbl = label("pin:1")
    once(storage, key(), put(lbl))
    storage.apply([delete("pin:1")], actor="someone-else", now=T0 + timedelta(seconds=1))
    head = storage.head_seq()

    again = once(storage, key(), put(lbl), now=T0 + timedelta(seconds=2))
    assert (again.outcomes, again.replayed) == ([W], True)
    assert storage.get_many(["pin:1"]) == {}  # the retry did not write the label back
    assert storage.head_seq() == head


def test_the_same_key_with_another_request_is_refused_and_stores_nothing(
        storage: LabelStorage) -> None:
    once(storage, key(fingerprint="fp-a"), put(label("pin:1")))
    head = storage.head_seq()
    with pytest.raises(WriteKeyReusedError) as err:
        once(storage, key(fingerprint="fp-b"), put(label("pin:2")))
    assert err.value.field == "Idempotency-Key"
    assert storage.head_seq() == head
    assert storage.get_many(["pin:2"]) == {}


def test_keys_are_independent(storage: LabelStorage) -> None:
    assert once(storage, key("a"), put(label("pin:1"))).outcomes == [W]
    assert once(storage, key("b"), put(label("pin:2"))).outcomes == [W]
    assert once(storage, key("c"), put(label("pin:2"))).outcomes == [N]  # a new key: applied
    assert storage.head_seq() == 2


def test_a_no_op_batch_records_its_outcome_too(storage: LabelStorage) -> None:
    lbl = label("pin:1")
    storage.apply([put(lbl)], actor=ACTOR, now=T0)
    first = once(storage, key(), put(lbl))
    assert (first.outcomes, first.seq, first.replayed) == ([N], 1, False)
    storage.apply([delete("pin:1")], actor=ACTOR, now=T0)
    again = once(storage, key(), put(lbl))
    assert again == AppliedBatch([N], 1, replayed=True)
    with pytest.raises(WriteKeyReusedError):
        once(storage, key(fingerprint="other"), put(lbl))


def test_an_expired_key_is_forgotten_and_pruned(storage: LabelStorage) -> None:
    once(storage, key(expires_at=T0 + timedelta(hours=1)), put(label("pin:1")))
    later = T0 + timedelta(hours=2)
    assert storage.prune_write_keys(later) >= 0  # Redis drops records by itself
    fresh = once(storage, key(fingerprint="fp-new", expires_at=later + DAY),
                 put(label("pin:2")), now=later)
    assert (fresh.outcomes, fresh.replayed) == ([W], False)


def test_prune_drops_only_expired_records(storage: LabelStorage) -> None:
    once(storage, key("short", expires_at=T0 + timedelta(hours=1)), put(label("pin:1")))
    once(storage, key("long", expires_at=T0 + DAY), put(label("pin:2")))
    storage.prune_write_keys(T0 + timedelta(hours=2))
    kept = once(storage, key("long", expires_at=T0 + DAY), put(label("pin:2")),
                now=T0 + timedelta(hours=3))
    assert kept.replayed


def test_concurrent_attempts_with_one_key_apply_the_batch_once(
        storage_factory: StorageFactory) -> None:
    handles = [storage_factory() for _ in range(4)]
    ops = [put(label(f"pin:{i}", source=MODEL2)) for i in range(5)]
    results: list[AppliedBatch] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(handles))

    def attempt(handle: LabelStorage) -> None:
        try:
            start.wait()
            results.append(once(handle, key(), *ops))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(r.replayed for r in results) == [False, True, True, True]
    assert {tuple(r.outcomes) for r in results} == {(W,) * 5}
    assert handles[0].head_seq() == 5  # five changes, once


def test_bad_keyed_calls_are_refused_before_anything_is_written(storage: LabelStorage) -> None:
    with pytest.raises(InvalidInputError):
        storage.apply_once([put(label())], actor=ACTOR, now=T0, key="k1")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        storage.apply_once([], actor=ACTOR, now=T0, key=key())
    with pytest.raises(InvalidInputError):
        storage.apply_once([put(label())], actor=ACTOR, now=T0,
                           key=WriteKey("", "fp", T0 + DAY))
    assert storage.head_seq() == 0
