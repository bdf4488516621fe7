"""Keyed writes on Redis Cluster when the answer is lost after the commit.

A batch can commit and still fail (StorageError, answered 503) before `apply`
returns: the durable head was not raised, or the entities not materialised.
The idempotency record is written by the commit script with the batch, so the
retry finds it and answers the first outcome, and nothing is stored twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from enforce_sdk import StorageError
from enforce_sdk.model.records import Outcome
from enforce_sdk.store import RedisClusterStorage
from enforce_sdk.store.storage.base import WriteKey
from tests.fixtures.redis_cluster import ClusterHarness, drop_namespace
from tests.store.storage._labels import ACTOR, T0, label, put

KEY = WriteKey(f"{ACTOR}\x00batch-1", "fp-1", T0 + timedelta(days=1))


class FailsAfterCommit(RedisClusterStorage):
    """Fails the next batch after its commit, at the step named by `fail_at`."""

    fail_at: str = ""

    def _raise_durable(self, seq: int, *, durable: bool = False) -> int:
        if self.fail_at == "publish":
            self.fail_at = ""
            raise StorageError("injected: connection lost before the durable head was raised")
        return super()._raise_durable(seq, durable=durable)

    def _materialise(self, *args: Any, **kwargs: Any) -> None:
        if self.fail_at == "materialise":
            self.fail_at = ""
            raise StorageError("injected: connection lost before the entities were written")
        super()._materialise(*args, **kwargs)


@pytest.fixture
def store(redis_cluster: ClusterHarness) -> Iterator[FailsAfterCommit]:
    namespace = "t" + uuid.uuid4().hex[:12]
    storage = FailsAfterCommit(redis_cluster.startup_nodes, namespace=namespace)
    yield storage
    storage.close()
    drop_namespace(redis_cluster.startup_nodes, namespace)


@pytest.mark.parametrize("fail_at", ["publish", "materialise"])
def test_a_retry_after_a_failure_past_the_commit_answers_the_first_outcome(
        store: FailsAfterCommit, fail_at: str) -> None:
    ops = [put(label("pin:1")), put(label("pin:2"))]
    store.fail_at = fail_at
    with pytest.raises(StorageError, match="injected"):
        store.apply_once(ops, actor=ACTOR, now=T0, key=KEY)

    retry = store.apply_once(ops, actor=ACTOR, now=T0 + timedelta(seconds=30), key=KEY)
    assert retry.replayed
    assert retry.outcomes == [Outcome.WRITTEN, Outcome.WRITTEN]
    assert retry.seq == store.head_seq() == 2  # the first attempt's two changes, once
    assert [c.seq for c in store.changes(0).changes] == [1, 2]
    assert sorted(store.get_many(["pin:1", "pin:2"])) == ["pin:1", "pin:2"]
    assert len(store.history("pin:1")) == 1


def test_without_a_key_the_same_retry_would_not_know(store: FailsAfterCommit) -> None:
    """The failure is real: an unkeyed retry of the same batch cannot tell it was applied."""
    store.fail_at = "publish"
    with pytest.raises(StorageError, match="injected"):
        store.apply([put(label("pin:1"))], actor=ACTOR, now=T0)
    assert store.apply([put(label("pin:1"))], actor=ACTOR, now=T0) == [Outcome.NOOP]
