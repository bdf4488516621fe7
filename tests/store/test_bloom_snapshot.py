"""The store's bloom snapshot: built as of the head read first, sized with headroom, served over HTTP."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from enforce_sdk import ConfigError, Enforcement, Label, Source, SourceType
from enforce_sdk._errors import AuthError
from enforce_sdk.model.records import ChangePage, LabelStatus
from enforce_sdk.native.bloom import BloomFilter
from enforce_sdk.store import DeleteOp, PutOp, StoreConfig, bloom_snapshot
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


def test_an_unchanged_store_keeps_its_snapshot_and_a_write_is_added_incrementally() -> None:
    storage = MemoryStorage()
    storage.apply([PutOp(label("pin:1"))], actor="t", now=T0)
    snapshots = BloomSnapshots(storage, 0.01)
    first = snapshots.refresh()
    assert snapshots.refresh() is first and snapshots.refresh().etag == first.etag
    storage.apply([PutOp(label("pin:2"))], actor="t", now=T0)
    second = snapshots.refresh()
    assert second.etag != first.etag and second.seq == 2
    assert {"pin:1", "pin:2"} <= set_of(second, ["pin:1", "pin:2"])
    assert snapshots.refresh() is second
    assert snapshots.full_builds == 1  # the write came from the change feed
    # A change that labels nothing moves the seq (a new ETag), but adds no key.
    storage.apply([DeleteOp("pin:2", MODEL.key)], actor="t", now=T0)
    third = snapshots.refresh()
    assert (third.seq, third.key_count, snapshots.stale) == (3, 2, 1)
    assert third.etag != second.etag and snapshots.full_builds == 1
    # A full rebuild that finds the same bytes keeps the ETag readers hold.
    snapshots.rebuild()
    rebuilt = snapshots.rebuild()
    assert snapshots.rebuild() is rebuilt and rebuilt.key_count == 1


def set_of(snapshot: bloom_snapshot.BloomSnapshot, keys: list[str]) -> set[str]:
    bloom = BloomFilter.from_bytes(snapshot.data)
    return {k for k in keys if k in bloom}


def test_refresh_rebuilds_when_the_feed_cannot_bridge_the_gap() -> None:
    storage = MemoryStorage()
    snapshots = BloomSnapshots(storage, 0.01)
    snapshots.refresh()
    storage.apply([PutOp(label("pin:1"))], actor="t", now=T0)
    storage.apply([PutOp(label("pin:2"))], actor="t", now=T0 + timedelta(hours=1))
    storage.prune_changes(T0 + timedelta(minutes=1))  # pin:1's change is gone
    after = snapshots.refresh()
    assert snapshots.full_builds == 2 and after.seq == 2
    assert set_of(after, ["pin:1", "pin:2"]) == {"pin:1", "pin:2"}


def test_refresh_rebuilds_past_the_design_point_and_when_keys_went_stale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bloom_snapshot, "MIN_KEYS", 4)
    monkeypatch.setattr(bloom_snapshot, "MIN_STALE", 3)
    storage = MemoryStorage()
    storage.apply([PutOp(label("pin:0"))], actor="t", now=T0)
    snapshots = BloomSnapshots(storage, 0.01)
    assert snapshots.refresh().capacity == 4  # max(4, 2 * 1 + 1)
    storage.apply([PutOp(label(f"pin:{i}")) for i in range(1, 4)], actor="t", now=T0)
    assert snapshots.refresh().capacity == 4 and snapshots.full_builds == 1  # 4 keys: at it
    storage.apply([PutOp(label("pin:4"))], actor="t", now=T0)
    grown = snapshots.refresh()  # 5 keys: past it, so rebuilt for 2 x 5
    assert (snapshots.full_builds, grown.capacity, grown.key_count) == (2, 11, 5)
    storage.apply([DeleteOp(f"pin:{i}", MODEL.key) for i in range(2)], actor="t", now=T0)
    assert snapshots.refresh().key_count == 5 and snapshots.full_builds == 2  # 2 stale: kept
    storage.apply([DeleteOp("pin:2", MODEL.key)], actor="t", now=T0)
    assert snapshots.refresh().key_count == 2 and snapshots.full_builds == 3


class RacingFeed(MemoryStorage):
    """Commits a write right after each change page is read, as a concurrent writer would."""

    racer: random.Random | None = None

    def _changes(self, after_seq: int, *, limit: int) -> ChangePage:
        page = super()._changes(after_seq, limit=limit)
        if self.racer is not None:
            self.apply([PutOp(label(f"pin:race{self.racer.randrange(10**6)}"))], actor="r",
                       now=T0)
        return page


def test_the_snapshot_holds_every_entity_labeled_at_its_seq() -> None:
    rng = random.Random(1207)
    storage = RacingFeed()
    labeled_at: dict[int, set[str]] = {0: set()}

    def write(op: PutOp | DeleteOp) -> None:
        storage.apply([op], actor="t", now=T0)
        labeled_at[storage.head_seq()] = set(storage.iter_labeled_entities())

    snapshots = BloomSnapshots(storage, 0.01)
    for step in range(400):
        entity = f"pin:{rng.randrange(60)}"
        if rng.random() < 0.3:
            write(DeleteOp(entity, MODEL.key))
        else:
            pending = rng.random() < 0.2  # stored, not served: not labeled
            write(PutOp(label(entity), status=LabelStatus.PENDING if pending
                        else LabelStatus.ACTIVE))
        if step % 7 == 0:
            storage.racer = rng if rng.random() < 0.5 else None
            snapshot = snapshots.refresh()
            storage.racer = None
            labeled_at.setdefault(storage.head_seq(), set(storage.iter_labeled_entities()))
            expected = labeled_at[snapshot.seq]
            assert set_of(snapshot, sorted(expected)) == expected, step
    assert snapshots.full_builds == 1


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


def _wire_bytes(response: httpx.Response) -> int:
    """Size of an HTTP/1.1 answer on the wire: status line, headers, blank line, body."""
    status_line = len(f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n")
    headers = sum(len(k) + len(v) + 4 for k, v in response.headers.raw)
    return status_line + headers + 2 + len(response.content)


def test_an_unchanged_store_answers_304_and_a_write_a_new_etag(
    store_server_factory: StoreServerFactory,
) -> None:
    server = store_server_factory(bloom={"rebuild_interval_seconds": 0.05})
    headers = server.headers("reader")
    with LabelStoreClient(server.url, token=server.tokens["writer"]) as writer, \
            httpx.Client(base_url=server.url, headers=headers) as http:
        writer.put(label("pin:1"))

        def snapshot_at(seq: int) -> httpx.Response:
            deadline = time.monotonic() + 10
            while (r := http.get("/v1/bloom")).headers["x-bloom-seq"] != str(seq):
                assert time.monotonic() < deadline, f"the snapshot never reached seq {seq}"
                time.sleep(0.02)
            return r

        first = snapshot_at(1)
        etag = first.headers["etag"]
        assert len(first.content) > 80_000  # the whole filter (65,536 keys at 1%)
        # Several refresh intervals later, nothing written: the same snapshot, 304.
        for _ in range(3):
            time.sleep(0.1)
            unchanged = http.get("/v1/bloom", headers={"If-None-Match": etag})
            assert unchanged.status_code == 304 and unchanged.headers["etag"] == etag
            assert unchanged.content == b"" and _wire_bytes(unchanged) < 1024
        writer.put(label("pin:2"))
        fresh = snapshot_at(2)
        assert fresh.headers["etag"] != etag
        assert "pin:2" in BloomFilter.from_bytes(fresh.content)
        again = http.get("/v1/bloom", headers={"If-None-Match": fresh.headers["etag"]})
        assert again.status_code == 304
