"""ZooKeeperConfigSource against a real ZooKeeper: updates, bad input, faults, fork."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from enforce_sdk._errors import ConfigError
from enforce_sdk._zk_admin import ZooKeeperConfigStore
from enforce_sdk._zk_layout import ConfigLayout, encode_document
from enforce_sdk._zk_source import ZooKeeperConfigSource
from tests.fixtures.zookeeper import ZooKeeperServer, expire_session, wait_for

from ._helpers import ADMIN, ROOT, Recorder, admin_client, document


def push(hosts: str, doc: dict[str, Any]) -> int:
    with ZooKeeperConfigStore(hosts, ROOT, auth=ADMIN) as store:
        return store.push(doc, expected=store.current(strict=False)).version


@pytest.fixture
def make_source(cache_dir: Path) -> Iterator[Callable[..., ZooKeeperConfigSource]]:
    sources: list[ZooKeeperConfigSource] = []

    def make(hosts: str, **kwargs: Any) -> ZooKeeperConfigSource:
        kwargs.setdefault("cache_path", cache_dir / "config.json")
        kwargs.setdefault("timeout", 5.0)
        kwargs.setdefault("session_timeout", 4.0)
        kwargs.setdefault("reconnect_max_delay", 0.5)
        source = ZooKeeperConfigSource(hosts, ROOT, **kwargs)
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.close()


def test_starts_from_zookeeper_and_applies_newer_versions(
    zk_hosts: str, make_source: Callable[..., ZooKeeperConfigSource], cache_dir: Path
) -> None:
    push(zk_hosts, document(1))
    source = make_source(zk_hosts)
    rec = Recorder()
    config, meta = source.start(rec)
    assert (config.version, meta.version) == (1, 1)
    assert meta.origin.startswith("zookeeper:")
    assert source.stats()["origin"] == "zookeeper"

    assert push(zk_hosts, document(1, home_feed="limit")) == 2
    wait_for(lambda: rec.versions == [2], what="version 2 to be applied")
    new, new_meta = rec.updates[0]
    assert new.surfaces["home_feed"].hide_from.wire == "limit"
    assert new_meta.version == 2

    # the last good config is on disk, whole, and private
    def disk_version() -> int | None:
        path = cache_dir / "config.json"  # written by the source's disk thread, maybe not yet
        return json.loads(path.read_text())["document"]["version"] if path.exists() else None

    wait_for(lambda: disk_version() == 2, what="the disk copy of version 2")
    assert (cache_dir / "config.json").stat().st_mode & 0o777 == 0o600
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".tmp")]
    stats = source.stats()
    assert stats["applied_version"] == 2 and stats["updates"] >= 2 and stats["connected"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{\"version\": 3, \"surfaces\": ", "malformed JSON"),
        (b"{\"version\": 3, \"pad\": \"" + b"x" * 300_000 + b"\"}", "over the"),
        (json.dumps({"version": 3, "surfaces": {"home_feed": {"hide_from": "hide"}}}).encode(),
         "surfaces.home_feed.hide_from"),
        (json.dumps({"version": 3, "surfaces": {}, "typo": 1}).encode(), "typo"),
        (encode_document(document(1, home_feed="remove")), "older than the applied version 2"),
    ],
    ids=["malformed", "oversized", "schema", "unknown-key", "older-version"],
)
def test_bad_document_written_around_the_cli_is_rejected(
    zk_hosts: str, make_source: Callable[..., ZooKeeperConfigSource],
    caplog: pytest.LogCaptureFixture, payload: bytes, reason: str,
) -> None:
    push(zk_hosts, document(1))
    push(zk_hosts, document(2))
    sources = [make_source(zk_hosts, cache_path=None) for _ in range(3)]
    recorders = [Recorder() for _ in sources]
    for source, rec in zip(sources, recorders, strict=True):
        assert source.start(rec)[0].version == 2
    caplog.set_level(logging.ERROR, logger="enforce_sdk.config")
    zk = admin_client(zk_hosts)
    try:
        zk.set(ConfigLayout(ROOT).config, payload)
    finally:
        zk.stop()
    for source in sources:  # every SDK source rejects it, with a reason and a count
        wait_for(lambda s=source: s.stats()["rejected"] == 1, what="the rejection")
        stats = source.stats()
        assert reason in stats["last_rejection"]
        assert stats["applied_version"] == 2
    assert all(rec.versions == [] for rec in recorders)
    assert sum(reason in r.getMessage() for r in caplog.records) >= len(sources)

    # the next good push is applied by all
    push(zk_hosts, document(5))
    for rec in recorders:
        wait_for(lambda r=rec: r.versions == [5], what="version 5")


def test_zookeeper_down_at_start_serves_the_disk_copy_then_catches_up(
    zk_server_factory: Callable[[], ZooKeeperServer],
    make_source: Callable[..., ZooKeeperConfigSource],
) -> None:
    server = zk_server_factory()
    push(server.address, document(1))
    first = make_source(server.address)
    first.start(Recorder())
    first.close()  # it left version 1 on disk
    push(server.address, document(2))  # newer than the disk copy
    server.kill()

    source = make_source(server.address, timeout=0.5)
    rec = Recorder()
    config, meta = source.start(rec)
    assert config.version == 1
    assert meta.origin.startswith("disk:")
    assert source.stats()["origin"] == "disk"
    assert not source.stats()["connected"]

    server.start()
    wait_for(lambda: rec.versions == [2], timeout=20, what="catching up with ZooKeeper")
    assert source.stats()["origin"] == "zookeeper"


def test_no_zookeeper_and_no_disk_copy_fails_clearly(
    zk_server_factory: Callable[..., ZooKeeperServer],
    make_source: Callable[..., ZooKeeperConfigSource],
) -> None:
    server = zk_server_factory(start=False)
    source = make_source(server.address, timeout=0.3)
    with pytest.raises(ConfigError, match="no usable copy"):
        source.start(Recorder())


def test_corrupt_disk_copy_is_not_used(
    zk_server_factory: Callable[..., ZooKeeperServer],
    make_source: Callable[..., ZooKeeperConfigSource], cache_dir: Path,
) -> None:
    server = zk_server_factory(start=False)
    (cache_dir / "config.json").write_text('{"format": 1, "path": "/enforce_sdk/test/config", '
                                           '"document": {"version": 1}}')
    source = make_source(server.address, timeout=0.3)
    with pytest.raises(ConfigError, match="surfaces"):
        source.start(Recorder())


def test_survives_zookeeper_kill_and_restart(
    zk_server_factory: Callable[[], ZooKeeperServer],
    make_source: Callable[..., ZooKeeperConfigSource],
) -> None:
    server = zk_server_factory()
    push(server.address, document(1))
    source = make_source(server.address)
    rec = Recorder()
    assert source.start(rec)[0].version == 1
    server.kill()
    wait_for(lambda: not source.stats()["connected"], what="the disconnect to be noticed")
    assert source.stats()["applied_version"] == 1  # still serving
    server.start()
    wait_for(lambda: source.stats()["connected"], timeout=20, what="the reconnect")
    push(server.address, document(2))
    wait_for(lambda: rec.versions == [2], what="version 2 after the restart")
    assert source.stats()["disconnects"] >= 1


def test_survives_session_expiry(
    zk_hosts: str, make_source: Callable[..., ZooKeeperConfigSource]
) -> None:
    push(zk_hosts, document(1))
    source = make_source(zk_hosts)
    rec = Recorder()
    source.start(rec)
    client = source._client
    assert client is not None
    old_session = client.client_id
    expire_session(zk_hosts, client)
    wait_for(lambda: client.client_id not in (None, old_session), what="a new session")
    push(zk_hosts, document(2))
    wait_for(lambda: rec.versions == [2], what="version 2 after session expiry")
    assert source.stats()["session_losses"] >= 1


def test_version_pushed_during_expiry_is_read_after_reconnect(
    zk_server_factory: Callable[[], ZooKeeperServer],
    make_source: Callable[..., ZooKeeperConfigSource],
) -> None:
    server = zk_server_factory()
    push(server.address, document(1))
    source = make_source(server.address, session_timeout=1.0)
    rec = Recorder()
    source.start(rec)
    server.kill()
    wait_for(lambda: not source.stats()["connected"], what="the disconnect")
    server.start()
    push(server.address, document(2))  # may land before the source reconnects
    wait_for(lambda: rec.versions == [2], timeout=20, what="version 2 after reconnect")


def _child(hosts: str, cache: str, conn: Any) -> None:
    """Forked child: open its own session, report its session id and what it applies."""
    source = _CHILD_SOURCE[0]
    source.after_fork()
    rec = Recorder()
    source._on_update = rec
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (source._client is None
                                           or source._client.client_id is None):
        time.sleep(0.01)
    client = source._client
    conn.send(("ready", client.client_id[0] if client and client.client_id else None))
    while time.monotonic() < deadline and rec.versions != [2]:
        time.sleep(0.01)
    conn.send(("applied", rec.versions))
    source.close()


_CHILD_SOURCE: list[ZooKeeperConfigSource] = []


def test_after_fork_child_opens_its_own_session(
    zk_hosts: str, make_source: Callable[..., ZooKeeperConfigSource], cache_dir: Path
) -> None:
    push(zk_hosts, document(1))
    source = make_source(zk_hosts)
    rec = Recorder()
    source.start(rec)
    parent_client = source._client
    assert parent_client is not None and parent_client.client_id is not None
    parent_session = parent_client.client_id[0]
    _CHILD_SOURCE[:] = [source]
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe()
    child = ctx.Process(target=_child, args=(zk_hosts, str(cache_dir), there))
    child.start()
    try:
        assert here.poll(20), "child did not report"
        kind, child_session = here.recv()
        assert kind == "ready" and child_session not in (None, parent_session)
        push(zk_hosts, document(2))
        assert here.poll(20), "child did not report an update"
        assert here.recv() == ("applied", [2])
    finally:
        child.join(20)
        _CHILD_SOURCE.clear()
    assert child.exitcode == 0
    # the parent's session was not closed by the child: it still gets updates
    wait_for(lambda: rec.versions == [2], what="the parent to apply version 2")
    assert parent_client.client_id is not None and parent_client.client_id[0] == parent_session
    assert os.getpid() != child.pid


def test_stats_age_uses_the_injected_clock(
    zk_hosts: str, make_source: Callable[..., ZooKeeperConfigSource]
) -> None:
    push(zk_hosts, document(1))
    now = [100.0]
    source = make_source(zk_hosts, timer=lambda: now[0], wall_clock=lambda: 1_700_000_000.0)
    _, meta = source.start(Recorder())
    assert meta.applied_at == 1_700_000_000.0
    now[0] += 42.5
    assert source.stats()["age_seconds"] == pytest.approx(42.5)
