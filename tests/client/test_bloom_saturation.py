"""Issue 11: a client that starts on an empty store keeps its bloom filter honest and useful
while a bulk import of 200,000 labels arrives through the change feed.

A real Label Store (SQLite) and a real client: a writer thread puts labels in batches of
the store's limit while the test, every 20,000 labels, waits (deadline poll) for the
client's follower to apply them and then measures the filter the client serves: no
labeled key absent, and the false-positive rate on 100,000 never-labeled keys within
2 x the store's target. Two store schedules: no rebuild during the import (the filter
must grow), and a rebuild every second (the client reloads, stages and replays while
it grows). No timing is asserted; deadlines are generous for a shared CI machine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from enforce_sdk import Enforcement, Label, Source, SourceType
from enforce_sdk.client.client import EnforcementClient
from enforce_sdk.native.scalable_bloom import BloomLayers
from enforce_sdk.store_client.client import LabelStoreClient
from tests.fixtures.store_server import TEST_LIMITS, StoreServerFactory
from tests.helpers import wait_until

TOTAL = 200_000
CHECK_EVERY = 20_000
UNLABELED = [f"pin:{10_000_000 + i}" for i in range(100_000)]  # never written
TARGET_FP = 0.01  # the store's default bloom.fp_rate
CATCH_UP_TIMEOUT = 120.0  # seconds for the follower to apply 20,000 changes on a busy machine
BATCH = 1000  # labels per write: the store's limit for this test (the fixture's is 200)
LIMITS = {**TEST_LIMITS, "max_batch_labels": BATCH, "max_body_bytes": 1 << 20}
MODEL = Source("bulk_import", SourceType.AUTOMATED, "v1")
CONFIG: dict[str, Any] = {
    "version": 1,
    "surfaces": {"home_feed": {"hide_from": "limit"}},
    "cache": {"ttl": "1h", "negative_ttl": "1h"},
    "store": {"timeout": "5s", "retries": 1},
    "bloom": {"enabled": True, "max_staleness": "10m", "refresh_interval": "1s"},
}


class Importer(threading.Thread):
    """Puts TOTAL labels in batches; after every CHECK_EVERY, notes (labels written, head)."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(name="bulk-import", daemon=True)
        self.url, self.token = url, token
        self.marks: list[tuple[int, int]] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        at = datetime.now(UTC)
        try:
            with LabelStoreClient(self.url, token=self.token, timeout=30.0,
                                  max_batch_labels=BATCH) as writer:
                for start in range(0, TOTAL, BATCH):
                    if self.stop.is_set():
                        return
                    writer.put([Label(f"pin:{i}", MODEL, Enforcement.BLOCK, "spam", at)
                                for i in range(start, start + BATCH)])
                    written = start + BATCH
                    if written % CHECK_EVERY == 0:
                        self.marks.append((written, writer.changes(0, limit=1).head))
        except BaseException as exc:
            self.error = exc


@pytest.fixture
def importer_stopper() -> Iterator[list[Importer]]:
    importers: list[Importer] = []
    yield importers
    for importer in importers:
        importer.stop.set()
        importer.join(timeout=60)


@pytest.mark.parametrize("rebuild_seconds", [3600, 1], ids=["no-rebuild", "rebuild-every-1s"])
def test_the_filter_never_saturates_during_a_bulk_import_on_an_empty_store(
    store_server_factory: StoreServerFactory, importer_stopper: list[Importer],
    rebuild_seconds: float,
) -> None:
    server = store_server_factory(bloom={"rebuild_interval_seconds": rebuild_seconds},
                                  limits=LIMITS)
    figures: list[dict[str, Any]] = []
    t0 = time.monotonic()
    with EnforcementClient(server.url, CONFIG, token=server.tokens["reader"],
                           feed_wait=0.5) as client:
        gate, follower = client._core.bloom_gate, client.follower
        assert gate is not None and follower is not None and gate.bloom is not None
        assert gate.bloom.key_count == 0  # the empty store's snapshot
        importer = Importer(server.url, server.tokens["writer"])
        importer_stopper.append(importer)
        importer.start()
        written = [f"pin:{i}" for i in range(TOTAL)]
        for mark in range(CHECK_EVERY, TOTAL + 1, CHECK_EVERY):
            wait_until(lambda mark=mark: len(importer.marks) >= mark // CHECK_EVERY  # type: ignore[misc]
                       or importer.error is not None or not importer.is_alive(),
                       f"the importer to write {mark} labels", CATCH_UP_TIMEOUT)
            assert importer.error is None, f"the import failed: {importer.error!r}"
            count, head = importer.marks[mark // CHECK_EVERY - 1]
            assert count == mark
            wait_until(lambda head=head: (follower.position or 0) >= head,  # type: ignore[misc]
                       f"the follower to apply the feed up to {head}", CATCH_UP_TIMEOUT)
            bloom = gate.bloom  # what the read path uses now (the writer goes on meanwhile)
            assert bloom is not None
            missing = int((~bloom.contains_many(written[:mark])).sum())
            fp = float(bloom.contains_many(UNLABELED).mean())
            figures.append({"labels": mark, "fp": fp, "missing": missing,
                            "layers": len(bloom.layers) if isinstance(bloom, BloomLayers) else 1,
                            "bytes": bloom.size_bytes, "seq": bloom.seq})
            assert missing == 0, figures  # no false negative, ever
            assert fp <= 2 * TARGET_FP, figures
        importer.join(timeout=CATCH_UP_TIMEOUT)
        # What a product host sees: unlabeled keys answered without a store round trip
        # (false positives aside), labeled ones hidden.
        probe = UNLABELED[:5_000]
        fetched = client.stats.fetched_keys
        assert client.filter(probe, "home_feed") == probe
        assert client.stats.fetched_keys - fetched <= 2 * TARGET_FP * len(probe)
        assert not any(d.visible for d in client.check_many(written[::1000], "home_feed"))
        stats = client.stats.to_dict()
        assert stats["bloom_estimated_fp"] <= 2 * TARGET_FP and stats["bloom_fill"] <= 1.0
    print(f"\n{rebuild_seconds=}: {time.monotonic() - t0:.1f} s, "
          f"snapshot loads {stats['snapshot_loads']}, layers {stats['bloom_layers']}")
    for row in figures:
        print(row)
