"""The LabelStorage contract under concurrent threads and handles: nothing lost, nothing half-seen."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from enforce_sdk.model.label import Source, SourceType
from enforce_sdk.model.records import LabelStatus, Outcome
from enforce_sdk.store import LabelStorage
from tests.store.storage._labels import ACTOR, T0, label, put
from tests.store.storage.conftest import StorageFactory

ENTITIES = [f"pin:{i}" for i in range(20)]


def _run_all(workers: list[Callable[[], None]]) -> None:
    """Run the workers on threads at once and re-raise the first failure."""
    start = threading.Barrier(len(workers))

    def go(work: Callable[[], None]) -> None:
        start.wait(timeout=30)
        work()

    with ThreadPoolExecutor(len(workers)) as pool:
        for future in [pool.submit(go, w) for w in workers]:
            future.result(timeout=120)


@pytest.mark.parametrize("shared_handle", [True, False], ids=["one-handle", "handle-per-thread"])
def test_concurrent_writers_from_different_sources_never_lose_each_other(
    storage_factory: StorageFactory, shared_handle: bool
) -> None:
    threads, rounds = 6, 8
    shared = storage_factory()
    handles = [shared if shared_handle else storage_factory() for _ in range(threads)]
    sources = [Source(f"writer{t}", SourceType.AUTOMATED, "x") for t in range(threads)]

    def writer(t: int) -> Callable[[], None]:
        def work() -> None:
            for r in range(rounds):
                batch = [put(label(e, sources[t], reason=f"round{r}")) for e in ENTITIES[t % 3::2]]
                outcomes = handles[t].apply(batch, actor=f"w{t}", now=T0)
                assert outcomes == [Outcome.WRITTEN] * len(batch)

        return work

    _run_all([writer(t) for t in range(threads)])
    got = shared.get_many(ENTITIES)
    for t, source in enumerate(sources):
        for entity in ENTITIES[t % 3::2]:
            mine = [s for s in got[entity] if s.label.source == source]
            assert [s.label.reason for s in mine] == [f"round{rounds - 1}"]
    expected = sum(len(ENTITIES[t % 3::2]) for t in range(threads)) * rounds
    page = shared.changes(0, limit=10 * expected)
    seqs = [c.seq for c in page.changes]
    assert len(seqs) == expected == len(set(seqs))
    assert seqs == sorted(seqs) and page.head == seqs[-1] == shared.head_seq()
    assert shared.count_labels()[LabelStatus.ACTIVE] == sum(len(v) for v in got.values())


def test_a_reader_never_sees_part_of_a_batch(storage_factory: StorageFactory) -> None:
    writer_handle, reader_handle = storage_factory(), storage_factory()
    batches = 40
    done = threading.Event()
    observations: list[int] = []

    def write() -> None:
        try:
            for g in range(batches):
                ops = [put(label(e, reason=f"gen{g}")) for e in ENTITIES]
                writer_handle.apply(ops, actor=ACTOR, now=T0)
        finally:
            done.set()

    def read_with(reader: LabelStorage) -> Callable[[], None]:
        def work() -> None:
            while True:
                finished = done.is_set()
                got = reader.get_many(ENTITIES)
                generations = {s.label.reason for v in got.values() for s in v}
                assert len(got) in (0, len(ENTITIES)), f"partial batch: {len(got)} entities"
                assert len(generations) <= 1, f"mixed batches visible: {sorted(generations)}"
                page = reader.changes(0, limit=100_000)
                assert len(page.changes) % len(ENTITIES) == 0, "a batch's changes are split"
                assert not page.changes or page.changes[-1].seq == page.head
                observations.append(len(page.changes))
                if finished:
                    return

        return work

    _run_all([write, read_with(reader_handle), read_with(writer_handle)])
    assert observations[-1] == batches * len(ENTITIES)
    assert {s.label.reason for v in reader_handle.get_many(ENTITIES).values() for s in v} == {
        f"gen{batches - 1}"
    }
