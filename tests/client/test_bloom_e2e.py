"""The SDK with the bloom precheck against the real Label Store: no I/O for unlabeled keys,
freshness through the change feed, reload past retention, staleness when the store dies."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

import pytest

from enforce_sdk import Enforcement, FeedTooOldError, Label, Source, SourceType
from enforce_sdk.client.async_client import AsyncEnforcementClient
from enforce_sdk.client.client import EnforcementClient
from enforce_sdk.config.source import StaticConfigSource
from enforce_sdk.store_client.client import LabelStoreClient
from tests.fixtures.store_server import StoreServerFactory, StoreServerProcess
from tests.helpers import wait_until

REVIEW = Source("review_tool", SourceType.HUMAN, "alice")
CONFIG: dict[str, Any] = {
    "version": 1,
    "surfaces": {
        "home_feed": {"hide_from": "limit", "related": {"domain": "block"}},  # fail open: trust
        "search": {"hide_from": "block", "fail_mode": "closed"},  # fail closed: verify
    },
    "cache": {"ttl": "1h", "negative_ttl": "1h", "serve_stale_for": "1m"},
    "store": {"timeout": "500ms", "retries": 0},
    "bloom": {"enabled": True, "max_staleness": "5s", "refresh_interval": "1s"},
}
FRESHNESS_BOUND = 5.0  # seconds; the feed long-poll delivers well under this


def block(entity: str) -> Label:
    return Label(entity, REVIEW, Enforcement.BLOCK, "porn", datetime.now(UTC))


@pytest.fixture
def writer(store_server: StoreServerProcess) -> Iterator[LabelStoreClient]:
    with LabelStoreClient(store_server.url, token=store_server.tokens["writer"]) as client:
        yield client


def client_for(server: StoreServerProcess, **kw: Any) -> EnforcementClient:
    return EnforcementClient(server.url, CONFIG, token=server.tokens["reader"], feed_wait=0.5,
                             **kw)


def test_unlabeled_keys_are_answered_without_a_fetch(
    store_server: StoreServerProcess, writer: LabelStoreClient
) -> None:
    writer.put([block("pin:1"), block("pin:5")])
    with client_for(store_server) as client:
        gate = client._core.bloom_gate
        assert gate is not None and gate.bloom is not None and client.stats.snapshot_loads == 1
        wait_until(lambda: "pin:5" in gate.bloom, "the labeled keys to reach the filter")  # type: ignore[operator]
        unlabeled = [f"pin:{i}" for i in range(100, 300)]
        for key in unlabeled[:100]:
            assert client.check(key, "home_feed").visible
        decisions = client.check_many(unlabeled[100:], "home_feed")
        assert all(d.visible and not d.degraded for d in decisions)
        assert client.filter(unlabeled[100:], "search") == unlabeled[100:]
        stats = client.stats
        # a false positive (FP rate 1%) may cost a fetch; unlabeled keys almost never do
        assert stats.fetches <= 3 and stats.bloom_negatives >= 290
        before = stats.fetches
        assert not client.check("pin:1", "home_feed").visible  # labeled: fetched
        assert not client.check("PIN:5", "search").visible  # a non-canonical spelling too
        assert stats.fetches >= before + 1
        assert client.check_many(["pin:1", "pin:200"], "home_feed")[0].visible is False
        assert client.filter(["pin:1", "pin:150", "PIN:5", "pin:151"], "home_feed") == [
            "pin:150", "pin:151"]


def test_async_client_shares_the_precheck(
    store_server: StoreServerProcess, writer: LabelStoreClient
) -> None:
    writer.put(block("pin:1"))

    async def run() -> tuple[list[bool], list[str], int, int]:
        async with AsyncEnforcementClient(store_server.url, CONFIG,
                                          token=store_server.tokens["reader"],
                                          feed_wait=0.5) as client:
            gate = client._core.bloom_gate
            assert gate is not None and gate.bloom is not None
            single = [(await client.check(f"pin:{i}", "home_feed")).visible
                      for i in range(300, 310)]
            kept = await client.filter([f"pin:{i}" for i in range(310, 330)], "search")
            return single, kept, client.stats.fetches, client.stats.bloom_negatives

    single, kept, fetches, negatives = asyncio.run(run())
    assert all(single) and len(kept) == 20
    assert fetches <= 1 and negatives >= 29  # one false positive allowed


def test_a_label_write_is_seen_without_restart_and_a_retraction_unhides(
    store_server: StoreServerProcess, writer: LabelStoreClient
) -> None:
    with client_for(store_server) as client:
        assert client.check("pin:9", "home_feed").visible
        negatives = client.stats.bloom_negatives
        assert negatives == 1
        t0 = time.monotonic()
        writer.put(block("pin:9"))
        wait_until(lambda: not client.check("pin:9", "home_feed").visible,
                   "the new label to show in decisions", FRESHNESS_BOUND)
        assert time.monotonic() - t0 < FRESHNESS_BOUND
        # retracted: the key stays in the filter (a filter never forgets) but the feed evicted
        # the cache, so the store says "no label" and the entity shows again
        writer.delete("pin:9", REVIEW)
        wait_until(lambda: client.check("pin:9", "home_feed").visible,
                   "the retraction to show in decisions", FRESHNESS_BOUND)
        assert client.check_many(["pin:9"], "search")[0].visible


def test_linked_entity_label_is_not_hidden_by_the_precheck(
    store_server: StoreServerProcess, writer: LabelStoreClient
) -> None:
    writer.put(block("domain:spam.example"))
    with client_for(store_server) as client:
        wait_until(lambda: client.follower is not None and (client.follower.position or 0) >= 1,
                   "the follower to catch up")
        d = client.check("pin:77", "home_feed", {"domain": "https://www.spam.example/x"})
        assert not d.visible and d.decided_by == "domain:spam.example"


def test_feed_past_retention_reloads_the_snapshot(
    store_server_factory: StoreServerFactory,
) -> None:
    server = store_server_factory(
        feed={"retention_seconds": 0.2, "prune_interval_seconds": 0.05},
        bloom={"rebuild_interval_seconds": 0.1},
    )
    with client_for(server) as client, \
            LabelStoreClient(server.url, token=server.tokens["writer"]) as writer:
        follower, gate = client.follower, client._core.bloom_gate
        assert follower is not None and gate is not None
        wait_until(lambda: follower.position is not None, "the follower to start")
        assert client.check("pin:20", "home_feed").visible
        follower.stop()
        position = follower.position
        assert position is not None
        loads = client.stats.snapshot_loads
        writer.put([block("pin:20"), block("pin:21")])

        def pruned() -> bool:
            try:
                writer.changes(position)
            except FeedTooOldError:
                return True
            return False

        wait_until(pruned, "the change records to be pruned")
        wait_until(lambda: (writer.bloom_snapshot() or pytest.fail("no snapshot")).bloom.seq
                   >= position + 2, "the store to rebuild its snapshot")
        follower.start(position)  # resumes from a position past retention
        # the counter moves when the download arrives, the filter when it is installed
        # just after: wait for what is asserted, not for the counter
        wait_until(lambda: gate.seq is not None and gate.seq >= position + 2,
                   "the reloaded snapshot to be installed")
        assert client.stats.snapshot_loads > loads and gate.bloom is not None
        assert "pin:20" in gate.bloom and "pin:21" in gate.bloom
        assert not client.check("pin:20", "home_feed").visible
        assert not client.check_many(["pin:21"], "search")[0].visible


def test_stale_feed_is_flagged_then_trusted_or_verified_per_surface(
    store_server: StoreServerProcess, writer: LabelStoreClient
) -> None:
    skew = [0.0]
    with client_for(store_server, timer=lambda: time.monotonic() + skew[0]) as client:
        gate, follower = client._core.bloom_gate, client.follower
        assert gate is not None and follower is not None
        wait_until(lambda: follower.lag() < 1.0, "the feed to be applied")
        assert client.stats.to_dict()["bloom_stale"] == 0.0
        assert not client.check("pin:400", "home_feed").degraded
        store_server.kill()
        skew[0] += 60  # the feed has not been applied for a minute (max_staleness 5 s)
        assert gate.stale() and client.stats.to_dict()["bloom_stale"] == 1.0
        trusted = client.check("pin:401", "home_feed")  # on_bloom_stale = trust (fail open)
        assert trusted.visible and trusted.degraded and trusted.degraded_reason == "bloom_stale"
        pages = client.check_many(["pin:402", "pin:403"], "home_feed")
        assert all(d.visible and d.degraded_reason == "bloom_stale" for d in pages)
        fetches = client.stats.fetches
        verified = client.check("pin:404", "search")  # verify: precheck skipped, store is down
        assert client.stats.fetches > fetches or client.stats.fetch_errors > 0
        assert not verified.visible and (verified.degraded_detail or "").startswith("fail_closed")
        store_server.start()
        wait_until(lambda: not gate.stale(), "the feed to come back")
        assert not client.check("pin:405", "home_feed").degraded


def test_config_swap_turns_the_precheck_on_and_off(
    store_server: StoreServerProcess, writer: LabelStoreClient
) -> None:
    source = StaticConfigSource({**CONFIG, "bloom": {"enabled": False}})
    with EnforcementClient(store_server.url, source, token=store_server.tokens["reader"],
                           feed_wait=0.2) as client:
        gate = client._core.bloom_gate
        assert gate is not None and gate.bloom is None
        assert client.check("pin:500", "home_feed").visible and client.stats.fetches == 1
        assert source.push({**CONFIG, "version": 2,
                            "bloom": {"enabled": True, "refresh_interval": "100ms"}})
        wait_until(lambda: gate.bloom is not None, "the filter to load after enabling")
        assert client.check("pin:501", "home_feed").visible
        assert client.stats.fetches == 1 and client.stats.bloom_negatives == 1
        assert source.push({**CONFIG, "version": 3, "bloom": {"enabled": False}})
        assert gate.bloom is None
        client.check("pin:502", "home_feed")
        assert client.stats.fetches == 2


def _forked_worker(conn: Connection, client: EnforcementClient) -> None:
    """A forked child: the parent's filter serves here, and this child's follower updates it."""
    try:
        gate = client._core.bloom_gate
        assert gate is not None
        fetches = client.stats.fetches
        report = {
            "has_filter": gate.bloom is not None,
            "unlabeled_visible": client.check("pin:601", "home_feed").visible,
            "no_fetch": client.stats.fetches == fetches,
            "labeled_hidden": not client.check("pin:600", "home_feed").visible,
            "lock_usable": gate._lock.acquire(timeout=1.0),
        }
        gate._lock.release()
        conn.send(("ready", report))
        deadline = time.monotonic() + 20
        while client.check("pin:602", "home_feed").visible:  # written by the parent now
            if time.monotonic() > deadline:
                conn.send(("feed", False))
                return
            time.sleep(0.02)
        conn.send(("feed", True))
    except BaseException as exc:
        conn.send(("error", repr(exc)))
        raise


def test_a_forked_child_has_the_filter_and_its_own_follower(
    store_server: StoreServerProcess, writer: LabelStoreClient
) -> None:
    writer.put(block("pin:600"))
    client = client_for(store_server)
    proc: Any = None
    try:
        gate = client._core.bloom_gate
        assert gate is not None
        wait_until(lambda: "pin:600" in gate.bloom, "pin:600 to reach the filter")  # type: ignore[operator]
        with gate._lock:  # held by a parent thread at fork time: the child must not deadlock
            ctx = multiprocessing.get_context("fork")
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=_forked_worker, args=(child_end, client))
            proc.start()
        assert parent_end.poll(30), "the child never answered"
        kind, report = parent_end.recv()
        assert kind == "ready", report
        assert report == {"has_filter": True, "unlabeled_visible": True, "no_fetch": True,
                          "labeled_hidden": True, "lock_usable": True}
        writer.put(block("pin:602"))
        assert parent_end.poll(30), "the child never reported on the feed"
        assert parent_end.recv() == ("feed", True)
        proc.join(10)
        assert proc.exitcode == 0
    finally:
        if proc is not None and proc.is_alive():
            proc.kill()
        client.close()
