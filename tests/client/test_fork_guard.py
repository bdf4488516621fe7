"""after_fork() re-creates a client's resources only in a new process; elsewhere it is a no-op.

The os.register_at_fork hook calls it in every forked child (tests/client/test_prefork.py
forks for real). Here: calling it in the process that made the client, even with
a live change-feed follower, changes nothing; in a "child" (os.getpid patched) it
re-creates once, and a second call there changes nothing more.
"""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from enforce_sdk.client.async_client import AsyncEnforcementClient
from enforce_sdk.client.client import EnforcementClient
from enforce_sdk.store_client.client import LabelStoreClient
from tests.client.test_async_client import AsyncStore
from tests.client.test_client_unit import CONFIG, FakeStore
from tests.fixtures.store_server import StoreServerProcess


def _feed_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "enforce-sdk-feed"]


def test_after_fork_in_the_live_parent_changes_nothing(store_server: StoreServerProcess) -> None:
    with EnforcementClient(store_server.url, CONFIG, token=store_server.tokens["reader"]) as client:
        assert not client.check("pin:1", "home_feed").degraded
        follower = client.follower
        assert follower is not None and follower._thread is not None
        thread, store, fetcher = follower._thread, client._store, client._fetcher
        assert isinstance(store, LabelStoreClient)
        threads = _feed_threads()
        config_lock, cache_lock = client._core._config_lock, client.cache._lock
        client.after_fork()
        client.after_fork()
        assert follower._thread is thread and thread.is_alive()
        assert _feed_threads() == threads  # no second follower
        assert client._store is store and not store._http.is_closed
        assert client._fetcher is fetcher
        assert client._core._config_lock is config_lock and client.cache._lock is cache_lock
        assert not client.check("pin:2", "home_feed").degraded  # the connection still works


def test_after_fork_acts_once_per_new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    client = EnforcementClient("http://127.0.0.1:9", CONFIG, follow_changes=False)
    parent_store = client._store
    child_pid = os.getpid() + 1
    monkeypatch.setattr(os, "getpid", lambda: child_pid)
    client.after_fork()  # as the fork hook does in a child
    child_store = client._store
    assert child_store is not parent_store
    client.after_fork()  # again in the same child: nothing more
    assert client._store is child_store
    monkeypatch.undo()
    client.close()
    parent_store.close()


def test_async_after_fork_in_the_same_process_changes_nothing() -> None:
    client = AsyncEnforcementClient("http://unused", CONFIG, store=AsyncStore(FakeStore()))

    async def use() -> None:
        await client.check("pin:1", "home_feed")
        loops, lock = dict(client._loops), client._loops_lock
        assert len(loops) == 1
        client.after_fork()
        client.after_fork()
        assert client._loops == loops and client._loops_lock is lock
        await client.aclose()

    asyncio.run(use())


def test_async_after_fork_acts_once_per_new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    client = AsyncEnforcementClient("http://unused", CONFIG, store=AsyncStore(FakeStore()))
    asyncio.run(client.check("pin:1", "home_feed"))
    assert len(client._loops) == 1
    child_pid = os.getpid() + 1
    monkeypatch.setattr(os, "getpid", lambda: child_pid)
    client.after_fork()
    assert client._loops == {}
    asyncio.run(client.check("pin:2", "home_feed"))  # the child's own loop state
    state = dict(client._loops)
    client.after_fork()
    assert client._loops == state
    monkeypatch.undo()
    asyncio.run(client.aclose())
