"""ZooKeeperConfigSource against a real ZooKeeper: updates, bad input, faults, fork."""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.security import Permissions

from enforce_sdk._errors import ConfigError
from enforce_sdk.config.zk_admin import ZooKeeperConfigStore
from enforce_sdk.config.zk_document import encode_document
from enforce_sdk.config.zk_layout import ConfigLayout
from enforce_sdk.config.zk_source import ZooKeeperConfigSource
from tests.config.zk._helpers import (
    ADMIN,
    ROOT,
    SDK,
    Recorder,
    admin_client,
    document,
    write_around_the_cli,
)
from tests.fixtures.zookeeper import TcpProxy, ZooKeeperServer, expire_session, wait_for

ProxyFactory = Callable[[ZooKeeperServer], TcpProxy]


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
    write_around_the_cli(zk_hosts, payload)
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
    zk_server: ZooKeeperServer, zk_hosts: str, tcp_proxy: ProxyFactory,
    make_source: Callable[..., ZooKeeperConfigSource],
) -> None:
    chroot = zk_hosts.removeprefix(zk_server.address)
    proxy = tcp_proxy(zk_server)
    push(zk_hosts, document(1))
    source = make_source(proxy.address + chroot)
    rec = Recorder()
    source.start(rec)
    client = source._client
    assert client is not None
    old_session = client.client_id
    expire_session(zk_hosts, client, proxy)
    wait_for(lambda: client.client_id not in (None, old_session), what="a new session")
    push(zk_hosts, document(2))
    wait_for(lambda: rec.versions == [2], what="version 2 after session expiry")
    assert source.stats()["session_losses"] >= 1


def test_version_pushed_while_cut_off_and_expired_is_read_after_reconnect(
    zk_server: ZooKeeperServer, zk_hosts: str, tcp_proxy: ProxyFactory,
    make_source: Callable[..., ZooKeeperConfigSource],
) -> None:
    """The source is cut off, its session expires, a version is pushed meanwhile."""
    chroot = zk_hosts.removeprefix(zk_server.address)
    proxy = tcp_proxy(zk_server)
    push(zk_hosts, document(1))
    source = make_source(proxy.address + chroot, session_timeout=2.0)
    rec = Recorder()
    source.start(rec)
    client = source._client
    assert client is not None and client.client_id is not None
    old_session = client.client_id
    proxy.cut()
    wait_for(lambda: not source.stats()["connected"], what="the disconnect")
    push(zk_hosts, document(2))  # straight to ZooKeeper, while the source cannot see it
    assert rec.versions == [] and source.stats()["applied_version"] == 1
    # end the session while the source is cut off, then let it reconnect
    expire_session(zk_hosts, client, proxy, client_id=old_session)
    wait_for(lambda: rec.versions == [2], timeout=20, what="version 2 after the new session")
    stats = source.stats()
    assert stats["session_losses"] >= 1 and stats["disconnects"] >= 1
    assert client.client_id is not None and client.client_id[0] != old_session[0]


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
    session = client.client_id[0] if client and client.client_id else None
    conn.send(("ready", session))
    source.after_fork()  # again, in the same child: must keep this child's own session
    again = source._client
    conn.send(("again", again is client and again is not None and again.connected
               and again.client_id is not None and again.client_id[0] == session))
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
        assert here.poll(20), "child did not report its second after_fork"
        assert here.recv() == ("again", True)
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
    assert source._client is parent_client  # after_fork in the child left the parent alone
    assert source.stats()["session_losses"] == 0


def test_after_fork_in_the_owning_process_is_a_no_op(
    zk_hosts: str, make_source: Callable[..., ZooKeeperConfigSource]
) -> None:
    push(zk_hosts, document(1))
    source = make_source(zk_hosts)
    rec = Recorder()
    source.start(rec)
    client = source._client
    assert client is not None
    session = client.client_id
    source.after_fork()
    assert source._client is client and client.connected and client.client_id == session
    push(zk_hosts, document(2))
    wait_for(lambda: rec.versions == [2], what="version 2 on the same session")


def test_stats_age_is_the_age_of_the_config_not_of_this_process(
    zk_server_factory: Callable[[], ZooKeeperServer],
    make_source: Callable[..., ZooKeeperConfigSource],
) -> None:
    server = zk_server_factory()
    push(server.address, document(1))
    zk = admin_client(server.address)
    try:
        mtime = zk.get(ConfigLayout(ROOT).config)[1].mtime / 1000
    finally:
        zk.stop()
    mono, wall = [100.0], [mtime + 42.5]
    source = make_source(server.address, timer=lambda: mono[0], wall_clock=lambda: wall[0])
    _, meta = source.start(Recorder())
    assert meta.applied_at == mtime + 42.5  # when this process applied it
    mono[0] += 1.5
    stats = source.stats()
    assert stats["modified_at"] == pytest.approx(mtime)
    assert stats["age_seconds"] == pytest.approx(42.5)  # since it was pushed
    assert stats["since_applied_seconds"] == pytest.approx(1.5)
    assert source.flush_cache()
    source.close()

    # three weeks later, ZooKeeper down: the disk copy is as old as the push, not 0 s
    server.kill()
    wall[0] = mtime + 21 * 86400
    restarted = make_source(server.address, timeout=0.3, wall_clock=lambda: wall[0])
    restarted.start(Recorder())
    stats = restarted.stats()
    assert stats["origin"] == "disk"
    assert stats["age_seconds"] == pytest.approx(21 * 86400)


def test_restart_after_a_zookeeper_restore_does_not_go_backwards(
    zk_hosts: str, make_source: Callable[..., ZooKeeperConfigSource]
) -> None:
    for version in (1, 2, 3):
        push(zk_hosts, document(version))
    first = make_source(zk_hosts)
    assert first.start(Recorder())[0].version == 3
    assert first.flush_cache()
    first.close()  # version 3 is on disk
    # ZooKeeper restored from an older backup: version 2
    write_around_the_cli(zk_hosts, encode_document(document(2)))
    source = make_source(zk_hosts)
    rec = Recorder()
    config, meta = source.start(rec)
    assert config.version == 3 and meta.origin.startswith("disk:")
    wait_for(lambda: source.stats()["last_rejection"], what="the older version to be ignored")
    stats = source.stats()
    assert "version 2 is older than the applied version 3" in stats["last_rejection"]
    assert stats["origin"] == "disk" and stats["applied_version"] == 3
    assert push(zk_hosts, document(1)) == 4  # above every version in the history
    wait_for(lambda: rec.versions == [4], what="the next newer version")
    assert source.stats()["origin"] == "zookeeper"


def test_read_refused_by_zookeeper_is_reported_and_retried(
    zk_server: ZooKeeperServer, zk_hosts: str, tcp_proxy: ProxyFactory,
    make_source: Callable[..., ZooKeeperConfigSource],
) -> None:
    """The ACL changes mid-run so that the reader is denied, then is fixed.

    ZooKeeper 3.8 sent no change notification to a watcher that may not read
    the node (and none for an ACL change), so the refused read here is the
    re-read after a reconnect; once the ACL is fixed only the source's own
    retry can see the node.
    """
    chroot = zk_hosts.removeprefix(zk_server.address)
    proxy = tcp_proxy(zk_server)
    with ZooKeeperConfigStore(zk_hosts, ROOT, auth=ADMIN, readers=[SDK]) as store:
        store.push(document(1), expected=None)
    source = make_source(proxy.address + chroot, auth=SDK, cache_path=None)
    rec = Recorder()
    assert source.start(rec)[0].version == 1
    config_node = ConfigLayout(ROOT).config
    zk = admin_client(zk_hosts)
    try:
        acl, _ = zk.get_acls(config_node)
        zk.set_acls(config_node, [a for a in acl if a.perms == Permissions.ALL])  # admin only
        zk.set(config_node, encode_document(document(2)))
        proxy.cut()  # a reconnect: the watch re-reads the node, and is refused
        wait_for(lambda: not source.stats()["connected"], what="the disconnect")
        proxy.restore()
        wait_for(lambda: source.stats()["read_denied"] >= 1, what="the refusal to be recorded")
        assert source.stats()["connected"]
        stats = source.stats()
        assert "refused" in stats["last_rejection"] and "NoAuth" in stats["last_rejection"]
        assert stats["read_refused"] and stats["applied_version"] == 1 and rec.versions == []
        zk.set_acls(config_node, acl)  # no change notification: only a retry can see it
        wait_for(lambda: rec.versions == [2], what="version 2 once the reader may read again")
        assert not source.stats()["read_refused"]
    finally:
        zk.stop()


def test_wrong_reader_credential_is_reported_without_waiting_for_the_timeout(
    zk_hosts: str, make_source: Callable[..., ZooKeeperConfigSource], cache_dir: Path
) -> None:
    with ZooKeeperConfigStore(zk_hosts, ROOT, auth=ADMIN, readers=[SDK]) as store:
        store.push(document(1), expected=None)
    wrong = make_source(zk_hosts, auth="sdk-host:wrong-secret", cache_path=None, timeout=30.0)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="refused to let this identity read"):
        wrong.start(Recorder())
    assert time.monotonic() - started < 15.0

    good = make_source(zk_hosts, auth=SDK)
    good.start(Recorder())
    assert good.flush_cache()
    good.close()  # version 1 is on disk
    from_disk = make_source(zk_hosts, auth="sdk-host:wrong-secret", timeout=30.0)
    started = time.monotonic()
    config, meta = from_disk.start(Recorder())
    assert time.monotonic() - started < 15.0
    assert config.version == 1 and meta.origin.startswith("disk:")
    stats = from_disk.stats()
    assert stats["read_denied"] >= 1 and stats["read_refused"] and stats["origin"] == "disk"
