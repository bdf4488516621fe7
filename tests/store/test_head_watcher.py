"""HeadWatcher: wake-ups by local writes, by the storage poller, by close, and timeouts."""

from __future__ import annotations

import asyncio

import pytest

from enforce_sdk.store import HeadWatcher

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class StorageHead:
    def __init__(self) -> None:
        self.value = 0
        self.reads = 0

    async def __call__(self) -> int:
        self.reads += 1
        return self.value


async def until_waiting(watcher: HeadWatcher, n: int = 1) -> None:
    for _ in range(1000):
        if watcher.waiters == n:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("nobody started waiting")


async def test_head_already_past_returns_at_once() -> None:
    storage = StorageHead()
    watcher = HeadWatcher(storage, poll_interval=3600)
    watcher.advance(5)
    assert await watcher.wait_past(4, timeout=0) is True
    watcher.advance(3)  # the head never moves back
    assert watcher.head == 5


async def test_local_write_wakes_every_waiter() -> None:
    watcher = HeadWatcher(StorageHead(), poll_interval=3600)  # no help from polling
    waits = [asyncio.create_task(watcher.wait_past(0, timeout=30)) for _ in range(3)]
    await until_waiting(watcher, 3)
    watcher.advance(1)
    assert await asyncio.gather(*waits) == [True, True, True]
    assert watcher.waiters == 0
    await watcher.stop()


async def test_poller_notices_writes_by_other_processes() -> None:
    storage = StorageHead()
    watcher = HeadWatcher(storage, poll_interval=0.005)
    wait = asyncio.create_task(watcher.wait_past(0, timeout=30))
    await until_waiting(watcher)
    storage.value = 7
    assert await wait is True
    assert watcher.head == 7
    await watcher.stop()


async def test_timeout_returns_false_and_the_poller_stops() -> None:
    storage = StorageHead()
    watcher = HeadWatcher(storage, poll_interval=0.005)
    assert await watcher.wait_past(0, timeout=0.05) is False
    for _ in range(1000):
        if watcher._poller is None or watcher._poller.done():
            break
        await asyncio.sleep(0.001)
    reads = storage.reads
    await asyncio.sleep(0.02)
    assert storage.reads == reads  # nobody waits, so storage is left alone


async def test_close_releases_waiters() -> None:
    watcher = HeadWatcher(StorageHead(), poll_interval=3600)
    wait = asyncio.create_task(watcher.wait_past(0, timeout=30))
    await until_waiting(watcher)
    watcher.close()
    assert await wait is False
    assert await watcher.wait_past(0, timeout=30) is False  # closed: no more waiting


async def test_failing_storage_poll_does_not_break_waiters() -> None:
    async def broken() -> int:
        raise OSError("down")

    watcher = HeadWatcher(broken, poll_interval=0.005)
    wait = asyncio.create_task(watcher.wait_past(0, timeout=30))
    await until_waiting(watcher)
    watcher.advance(2)
    assert await wait is True
    await watcher.stop()
