"""Unit tests of ZooKeeperConfigSource's version gate and disk copy, without a server."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from enforce_sdk.config.zk_document import encode_document
from enforce_sdk.config.zk_source import ZooKeeperConfigSource
from tests.config.zk._helpers import ROOT, Recorder, document

# a stream of node contents: a valid document of some version, or garbage
_item = st.one_of(
    st.integers(1, 30).map(lambda v: encode_document(document(v))),
    st.sampled_from([b"", b"{", b"[]", b'{"version": 5}', b"\xff"]),
)


def _offline_source(cache: Path | None = None) -> tuple[ZooKeeperConfigSource, Recorder]:
    source = ZooKeeperConfigSource("127.0.0.1:1", ROOT, cache_path=cache)
    rec = Recorder()
    source._on_update = rec
    source._started = True
    return source, rec


@settings(max_examples=60, deadline=None)
@given(st.lists(_item, max_size=25))
def test_updates_are_valid_and_strictly_increasing(stream: list[bytes]) -> None:
    source, rec = _offline_source()
    for i, data in enumerate(stream):
        source._offer(data, SimpleNamespace(version=i))  # type: ignore[arg-type]
    valid = [json.loads(d)["version"] for d in stream if d.startswith(b'{"cache"')]
    versions = rec.versions
    assert versions == sorted(set(versions))
    assert versions == [v for i, v in enumerate(valid) if v > max(valid[:i], default=0)]
    stats = source.stats()
    assert stats["applied_version"] == (max(valid) if valid else None)
    invalid = len(stream) - len(valid)
    older = sum(1 for i, v in enumerate(valid) if v < max(valid[:i], default=0))
    assert stats["rejected"] == invalid + older


def test_disk_copy_round_trip_and_foreign_copy(tmp_path: Path) -> None:
    cache = tmp_path / "c.json"
    source, _ = _offline_source(cache)
    source._offer(encode_document(document(7)), None)
    assert source.flush_cache()
    assert json.loads(cache.read_text())["document"]["version"] == 7
    again = ZooKeeperConfigSource("127.0.0.1:1", ROOT, cache_path=cache)
    assert again._disk is not None
    loaded = again._disk.load(again._reject)
    assert loaded is not None and loaded[0].version == 7
    other = ZooKeeperConfigSource("127.0.0.1:1", "/enforce_sdk/other", cache_path=cache)
    assert other._disk is not None
    assert other._disk.load(other._reject) is None  # a copy of another namespace is never served
    assert "not '/enforce_sdk/other/config'" in (other.stats()["last_rejection"] or "")


def test_unwritable_cache_is_counted_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    source, rec = _offline_source(blocker / "sub" / "c.json")
    source._offer(encode_document(document(2)), None)
    assert source.flush_cache()
    assert rec.versions == [2]
    assert source.stats()["cache_write_errors"] == 1


def test_source_rejections_and_origin_reach_the_client_stats_and_prometheus() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from enforce_sdk.client.stats import Stats

    source, _ = _offline_source()
    source._offer(encode_document(document(3)), None)
    source._offer(b"{", None)  # invalid: never reaches the client's on_update
    stats = Stats()
    stats.add_config_source(source.stats)
    out = stats.to_dict()
    assert out["config_source"]["rejected"] == 1
    assert out["config_source"]["origin"] == "zookeeper"
    registry = CollectorRegistry()
    stats.register_prometheus(registry)
    text = generate_latest(registry).decode()
    assert "enforce_sdk_config_source_rejected_total 1.0" in text
    assert 'enforce_sdk_config_source_origin{origin="zookeeper"} 1.0' in text
    assert "enforce_sdk_config_source_applied_version 3.0" in text
