"""The console's records on SQLite: review notes, appeals with their outbox, mass jobs, the scan.

Redis Cluster does not keep them (yet): it must say so, not pretend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest

from enforce_sdk._errors import InvalidInputError
from enforce_sdk.model.label import Enforcement, Source, SourceType
from enforce_sdk.store.storage.base import LabelStorage
from enforce_sdk.store.storage.console_records import (
    AppealConflictError,
    ConsoleRecords,
    MassJob,
    NoConsoleRecordsError,
    ReviewConflictError,
    ReviewRecord,
)
from tests.store.storage._labels import ACTOR, HUMAN, MODEL, T0, label, put

Factory = Callable[[], LabelStorage]
APPEALS = Source("appeals", SourceType.HUMAN, "rita")


def test_reviews_conflict_on_the_same_action_and_version(sqlite_storage_factory: Factory
                                                         ) -> None:
    s = sqlite_storage_factory()
    first = ReviewRecord("user:42", MODEL.key, 3, "escalate", "console:rita", "why", T0)
    s.add_review(first)
    with pytest.raises(ReviewConflictError, match="console:rita already did escalate"):
        s.add_review(replace(first, actor="console:rob", note="me too"))
    s.add_review(replace(first, label_seq=4, at=T0 + timedelta(seconds=1)))  # a newer version
    assert [r.label_seq for r in s.reviews("user:42")] == [4, 3]  # newest first
    with pytest.raises(InvalidInputError, match="approve, reject, escalate"):
        s.add_review(replace(first, action="shrug"))
    with pytest.raises(InvalidInputError):
        s.add_review(replace(first, note="  "))


def test_an_appeal_is_decided_once_with_its_label_in_one_transaction(
        sqlite_storage_factory: Factory) -> None:
    s = sqlite_storage_factory()
    s.apply([put(label("pin:1"))], actor=ACTOR, now=T0)
    appeal = s.open_appeal("pin:1", [MODEL.key], appellant="product", statement="mine",
                           ref=None, now=T0)
    assert (appeal.id, appeal.state, appeal.contested) == (1, "open", (MODEL.key,))
    allow = put(label("pin:1", APPEALS, Enforcement.ALLOW, created_at=T0 + timedelta(1)),
                decides=True)
    decided, head = s.decide_appeal(appeal.id, upheld=True, note="ok", ops=[allow],
                                    actor="console:rita", now=T0 + timedelta(1))
    assert (decided.state, decided.decided_by, head) == ("upheld", "console:rita", 2)
    assert {x.label.source.key for x in s.labels_of("pin:1")} == {MODEL.key, APPEALS.key}
    # a second decision: refused, and its label write is rolled back with it
    other = put(label("pin:1", HUMAN, Enforcement.REMOVE), decides=True)
    with pytest.raises(AppealConflictError, match="already upheld by console:rita"):
        s.decide_appeal(appeal.id, upheld=False, note="no", ops=[other], actor="console:rob",
                        now=T0 + timedelta(2))
    assert HUMAN.key not in {x.label.source.key for x in s.labels_of("pin:1")}
    assert s.head_seq() == 2
    events = s.appeal_events(0)
    assert [(e.seq, e.event, e.appeal.state) for e in events] == [(1, "opened", "open"),
                                                                   (2, "upheld", "upheld")]
    assert [e.event for e in s.appeal_events(1)] == ["upheld"]
    assert [a.id for a in s.appeals(state="upheld")] == [1]
    assert s.appeals(state="open") == [] and s.appeal(2) is None


def test_jobs_and_the_scan(sqlite_storage_factory: Factory) -> None:
    s = sqlite_storage_factory()
    s.apply([put(label(f"pin:{i}")) for i in (3, 1, 2)] + [put(label("user:42"), pending=True)],
            actor=ACTOR, now=T0)
    keys = [x.label.key for x in s.scan_labels()]
    assert keys == sorted(keys) and len(keys) == 4
    assert [x.label.entity for x in s.scan_labels(after=("pin:1", MODEL.key), limit=2)] == [
        "pin:2", "pin:3"]
    job = MassJob("abc", "console:ada", '{"reason": "spam"}', "misfire", "running", None, 0, 0,
                  T0, T0)
    s.save_job(job)
    s.save_job(replace(job, cursor=("pin:2", MODEL.key), matched=2, retracted=2))
    again = s.job("abc")
    assert again is not None and (again.cursor, again.matched) == (("pin:2", MODEL.key), 2)
    assert [j.id for j in s.jobs()] == ["abc"]


def test_a_backend_without_them_says_so() -> None:
    class Bare(ConsoleRecords):
        pass

    bare = Bare()
    with pytest.raises(NoConsoleRecordsError, match="Bare backend does not keep"):
        bare.open_appeal("pin:1", ["a/human/b"], appellant="p", statement="s", ref=None, now=T0)
    assert bare.reviews("pin:1") == [] and bare.appeals() == []
