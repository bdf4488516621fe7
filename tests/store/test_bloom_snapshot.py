"""The store's bloom snapshot: built as of the head read first, sized with headroom, served over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from enforce_sdk import ConfigError, Enforcement, Label, Source, SourceType
from enforce_sdk._errors import AuthError
from enforce_sdk.native.bloom import BloomFilter
from enforce_sdk.store import DeleteOp, PutOp, StoreConfig
from enforce_sdk.store.bloom_snapshot import (
    HEADROOM,
    MIN_KEYS,
    BloomSnapshots,
    build_snapshot,
    snapshot_capacity,
)
from enforce_sdk.store_client.client import LabelStoreClient
from tests.fixtures.store_server import StoreServerFactory, StoreServerProcess
from tests.store._memory_storage import MemoryStorage

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MODEL = Source("spam_model", SourceType.AUTOMATED, "v1")


def label(entity: str) -> Label:
    return Label(entity, MODEL, Enforcement.BLOCK, "spam", T0)


class RacingStorage(MemoryStorage):
    """Commits one more label right after the head is read, as a concurrent writer would."""

    late: str | None = None
    calls: list[str]

    def head_seq(self) -> int:
        self.calls.append("head_seq")
        return super().head_seq()

    def iter_labeled_entities(self) -> Iterator[str]:
        self.calls.append("iter")
        if self.late is not None:
            self.apply([PutOp(label(self.late))], actor="racer", now=T0)
        return super().iter_labeled_entities()


def test_snapshot_is_labeled_with_the_head_read_before_iterating() -> None:
    storage = RacingStorage()
    storage.calls = []
    storage.apply([PutOp(label(f"pin:{i}")) for i in range(50)], actor="t", now=T0)
    storage.apply([DeleteOp("pin:0", MODEL.key)], actor="t", now=T0)
    head = storage.head_seq()
    storage.late = "pin:late"
    storage.calls = []
    bloom, capacity, _ = build_snapshot(storage, 0.01)
    assert storage.calls.index("head_seq") < storage.calls.index("iter")
    assert bloom.seq == head  # not the later head: the late key's change will be replayed
    assert all(f"pin:{i}" in bloom for i in range(1, 50))
    assert "pin:late" in bloom  # labeled after S: included, harmless
    assert bloom.key_count == 50  # pin:0 was retracted (no active label)
    assert capacity == snapshot_capacity(50) == MIN_KEYS


def test_capacity_has_headroom_and_a_floor() -> None:
    assert snapshot_capacity(0) == MIN_KEYS
    assert HEADROOM >= 2  # the store may double before a reader's filter is at its design point
    assert snapshot_capacity(1_000_000) == int(1_000_000 * HEADROOM) + 1
    bloom = BloomFilter.for_capacity(snapshot_capacity(100_000), 0.01)
    assert bloom.model_fp(100_000) < 0.01 and bloom.model_fp(snapshot_capacity(100_000)) <= 0.01


def test_snapshots_serve_the_last_build_and_change_etag() -> None:
    storage = MemoryStorage()
    snapshots = BloomSnapshots(storage, 0.01)
    first = snapshots.latest()  # built lazily
    assert snapshots.latest() is first and first.seq == 0
    storage.apply([PutOp(label("pin:1"))], actor="t", now=T0)
    second = snapshots.rebuild()
    assert second.etag != first.etag and second.seq == 1 and second.key_count == 1
    assert "pin:1" in BloomFilter.from_bytes(second.data)


def test_bloom_config_section_is_validated() -> None:
    config = StoreConfig.from_dict({"bloom": {"fp_rate": 0.001, "rebuild_interval_seconds": 5}})
    assert (config.bloom.fp_rate, config.bloom.rebuild_interval_seconds) == (0.001, 5.0)
    assert StoreConfig().bloom.fp_rate == 0.01
    for bad in ({"fp_rate": 1.0}, {"fp_rate": 0}, {"rebuild_interval_seconds": -1},
                {"size": 3}):
        with pytest.raises(ConfigError) as info:
            StoreConfig.from_dict({"bloom": bad})
        assert (info.value.field or "").startswith("bloom.")


def test_http_snapshot_endpoint(store_server: StoreServerProcess) -> None:
    url = store_server.url
    with LabelStoreClient(url, token=store_server.tokens["writer"]) as writer, \
            LabelStoreClient(url, token=store_server.tokens["reader"]) as reader, \
            LabelStoreClient(url, token=store_server.tokens["admin"]) as admin:
        writer.put([label("pin:1"), label("domain:spam.example")])
        with pytest.raises(AuthError):
            reader.rebuild_bloom()  # admin only
        built = admin.rebuild_bloom()
        assert built["seq"] == 2 and built["key_count"] == 2
        raw = httpx.get(f"{url}/v1/bloom", headers=store_server.headers("reader"))
        assert raw.status_code == 200
        assert raw.headers["content-type"] == "application/octet-stream"
        assert (raw.headers["x-bloom-seq"], raw.headers["x-bloom-key-count"]) == ("2", "2")
        # the design point, so a reader knows when the feed has filled it
        assert raw.headers["x-bloom-capacity"] == str(MIN_KEYS)
        assert float(raw.headers["x-bloom-fp-rate"]) == 0.01
        bloom = BloomFilter.from_bytes(raw.content)
        assert bloom.seq == 2 and "pin:1" in bloom and "domain:spam.example" in bloom
        download = reader.bloom_snapshot()
        assert download is not None and download.etag == raw.headers["etag"]
        assert (download.capacity, download.fp_rate) == (MIN_KEYS, 0.01)
        assert reader.bloom_snapshot(download.etag) is None  # 304: unchanged
        writer.put(label("pin:2"))
        admin.rebuild_bloom()
        fresh = reader.bloom_snapshot(download.etag)
        assert fresh is not None and fresh.bloom.seq == 3 and "pin:2" in fresh.bloom
        assert httpx.get(f"{url}/v1/bloom").status_code == 401


def test_periodic_rebuild(store_server_factory: StoreServerFactory) -> None:
    server = store_server_factory(bloom={"rebuild_interval_seconds": 0.1})
    with LabelStoreClient(server.url, token=server.tokens["writer"]) as c:
        c.put(label("pin:9"))
        deadline = time.monotonic() + 10
        while True:
            download = c.bloom_snapshot()
            assert download is not None
            if download.bloom.seq == 1:
                break
            assert time.monotonic() < deadline, "the snapshot was never rebuilt"
            time.sleep(0.05)
        assert "pin:9" in download.bloom
