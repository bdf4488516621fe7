"""Pre-fork servers: clients made before fork() keep working in every child.

The parent makes both clients (both following the change feed) and fetches
with them, then forks worker processes while one of its threads is inside a
store read and another holds the sync fetcher's lock and both clients' cache
locks. Nobody calls after_fork() by hand: the os.register_at_fork hook must.
Each child must get correct decisions from the real store with both clients
(fresh connections), not wait on the parent's in-flight read, and run its own
change-feed followers: a label written after the fork reaches each client in
the child through the feed, not through the (hour-long) cache TTL.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import threading
import time
import weakref
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any

from enforce_sdk import Enforcement, Label, Source, SourceType
from enforce_sdk.client.async_client import AsyncEnforcementClient
from enforce_sdk.client.client import EnforcementClient
from enforce_sdk.store_client.client import LabelStoreClient
from enforce_sdk.testing import TestLabels
from tests.fixtures.store_server import StoreServerProcess

REVIEW = Source("review_tool", SourceType.HUMAN, "alice")
CONFIG: dict[str, Any] = {
    "version": 1,
    "surfaces": {"home_feed": {"hide_from": "limit"}},
    "cache": {"ttl": "1h", "negative_ttl": "1h"},
    "store": {"timeout": "2s", "retries": 0},
}
WORKERS = 2
DEADLINE = 20.0


def block(entity: str) -> Label:
    return Label(
        entity, REVIEW, Enforcement.BLOCK, "spam", datetime.now(UTC) - timedelta(minutes=1)
    )


def _feed_thread(client: EnforcementClient | AsyncEnforcementClient) -> threading.Thread | None:
    follower = client.follower
    return None if follower is None else follower._thread


def _worker(
    conn: Connection,
    sync: EnforcementClient,
    aio: AsyncEnforcementClient,
    parent_feed_threads: tuple[int | None, int | None],
) -> None:
    """A forked child: check with both clients, report what it saw."""
    report: dict[str, Any] = {}
    try:
        # pin:3 is the key the parent's thread was fetching at fork time
        report["sync"] = [sync.check(k, "home_feed").visible for k in ("pin:1", "pin:3", "pin:4")]
        report["sync_degraded"] = any(
            sync.check(k, "home_feed").degraded for k in ("pin:1", "pin:3", "pin:4")
        )

        async def run() -> list[bool]:
            ds = await aio.check_many(["pin:1", "pin:3", "pin:5"], "home_feed")
            return [d.visible for d in ds]

        report["async"] = asyncio.run(run())
        for name, client, parent_thread in zip(
            ("sync", "async"), (sync, aio), parent_feed_threads, strict=True
        ):
            thread = _feed_thread(client)
            report[f"{name}_feed_thread_alive"] = thread is not None and thread.is_alive()
            report[f"{name}_feed_thread_is_new"] = (
                thread is not None and thread.ident != parent_thread
            )
        conn.send(("ready", report))

        # the parent writes pin:2 now; pin:2 is cached "unlabeled" for an hour in both
        # clients here, so only this child's followers can evict it
        async def aio_sees_pin_2() -> bool:
            deadline = time.monotonic() + DEADLINE
            while (await aio.check("pin:2", "home_feed")).visible:
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.02)
            return True

        deadline = time.monotonic() + DEADLINE
        while sync.check("pin:2", "home_feed").visible:
            if time.monotonic() > deadline:
                conn.send(("feed", False, None))
                return
            time.sleep(0.02)
        conn.send(("feed", True, asyncio.run(aio_sees_pin_2())))
    except BaseException as exc:
        conn.send(("error", repr(exc)))
        raise


def test_clients_made_before_fork_work_in_every_child(store_server: StoreServerProcess) -> None:
    with LabelStoreClient(store_server.url, token=store_server.tokens["writer"]) as writer:
        writer.put([block("pin:1"), block("pin:3"), block("pin:5")])
        token = store_server.tokens["reader"]
        sync = EnforcementClient(store_server.url, CONFIG, token=token)
        aio = AsyncEnforcementClient(store_server.url, CONFIG, token=token)
        workers: list[Any] = []
        try:
            assert [sync.check(k, "home_feed").visible for k in ("pin:1", "pin:2")] == [False, True]

            async def parent_checks() -> list[bool]:
                return [d.visible for d in await aio.check_many(["pin:1", "pin:2"], "home_feed")]

            assert asyncio.run(parent_checks()) == [False, True]  # the parent's loop is gone
            threads = (_feed_thread(sync), _feed_thread(aio))
            assert threads[0] is not None and threads[1] is not None
            parent_feed_threads = (threads[0].ident, threads[1].ident)

            # one parent thread stuck inside a store read of pin:3 ...
            gate, entered = threading.Event(), threading.Event()
            read = sync._fetcher._fetch_many

            def held_read(keys: list[str]) -> Any:
                entered.set()
                gate.wait(DEADLINE)
                return read(keys)

            sync._fetcher._fetch_many = held_read
            in_fetch = threading.Thread(target=lambda: sync.check("pin:3", "home_feed"))
            in_fetch.start()
            assert entered.wait(DEADLINE)
            # ... and another holding the fetcher's and both caches' locks
            holding, let_go = threading.Event(), threading.Event()

            def hold_locks() -> None:
                with sync._fetcher._lock, sync.cache._lock, aio.cache._lock:
                    holding.set()
                    let_go.wait(DEADLINE)

            holder = threading.Thread(target=hold_locks)
            holder.start()
            assert holding.wait(DEADLINE)

            ctx = multiprocessing.get_context("fork")
            pipes = []
            for _ in range(WORKERS):
                parent_end, child_end = ctx.Pipe()
                proc = ctx.Process(
                    target=_worker, args=(child_end, sync, aio, parent_feed_threads)
                )
                proc.start()
                pipes.append(parent_end)
                workers.append(proc)
            let_go.set()
            gate.set()
            in_fetch.join(DEADLINE)
            holder.join(DEADLINE)

            reports = []
            for conn in pipes:
                assert conn.poll(DEADLINE), "a child never answered (deadlocked after fork?)"
                kind, report = conn.recv()
                assert kind == "ready", report
                reports.append(report)
            writer.put(block("pin:2"))
            for conn in pipes:
                assert conn.poll(DEADLINE + 5), "a child never reported on the feed"
                assert conn.recv() == ("feed", True, True)  # (sync, async) saw pin:2
            for proc in workers:
                proc.join(DEADLINE)
                assert proc.exitcode == 0
        finally:
            for proc in workers:
                if proc.is_alive():
                    proc.kill()
            sync.close()
            asyncio.run(aio.aclose())
    for report in reports:
        assert report["sync"] == [False, False, True]
        assert not report["sync_degraded"]
        assert report["async"] == [False, False, False]
        for name in ("sync", "async"):
            assert report[f"{name}_feed_thread_alive"], report
            assert report[f"{name}_feed_thread_is_new"], report


def test_the_fork_hook_holds_clients_weakly() -> None:
    labels = TestLabels()
    client = labels.client(CONFIG)
    aio = labels.async_client(CONFIG)
    refs: list[weakref.ref[Any]] = [weakref.ref(client), weakref.ref(aio)]
    del client, aio
    gc.collect()
    assert [r() for r in refs] == [None, None]


def test_after_fork_is_harmless_on_a_closed_client() -> None:
    client = TestLabels().client(CONFIG)
    client.close()
    client.after_fork()
    assert client.follower is None and client._closed
