"""After a failover lost commits, the head goes back: long-polls must sleep, not spin.

A store process's HeadWatcher still holds the old, higher head. The feed reader
finds nothing past the (lower) storage head; waiting for "head > position" would
return at once and the long-poll would re-read storage back to back until its
deadline. It must instead wait for a change seen after its read, and the poller
sets the watcher back to what storage says.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from enforce_sdk.store import HeadWatcher, LabelStorage, RedisClusterStorage
from tests.store.storage._labels import ACTOR, T0, label, put

Factory = Callable[[], LabelStorage]


def test_a_long_poll_sleeps_after_the_head_went_back(
    redis_cluster_storage_factory: Factory,
) -> None:
    storage = redis_cluster_storage_factory()
    assert isinstance(storage, RedisClusterStorage)
    for i in range(3):
        storage.apply([put(label(f"pin:{i}"))], actor=ACTOR, now=T0)
    assert storage.head_seq() == 3

    async def scenario() -> None:
        reads = 0

        async def read_head() -> int:
            nonlocal reads
            reads += 1
            return await asyncio.to_thread(storage.head_seq)

        watcher = HeadWatcher(read_head, poll_interval=0.02)
        watcher.advance(3)
        # The feed master failed over and the promoted replica lacks commits 2 and 3.
        cluster = storage._io.cluster
        cluster.set(storage._k_seq, 1)
        cluster.set(storage._k_dur, 1)
        cluster.zremrangebyscore(storage._k_chg, 2, "+inf")
        # What the change-feed handler does for a follower at 1:
        seen = watcher.version
        page = await asyncio.to_thread(storage.changes, 1)
        assert (page.changes, page.head) == ([], 1)
        watcher.advance(page.head)
        assert await watcher.wait_past(page.head, 0.3, since=seen) is False  # slept it out
        assert watcher.head == 1  # the poller set it back to what storage says
        assert reads >= 1
        # A new commit (numbered 2 again) still wakes a waiter.
        seen = watcher.version
        waiting = asyncio.create_task(watcher.wait_past(1, 30, since=seen))
        await asyncio.to_thread(storage.apply, [put(label("pin:new"))], actor=ACTOR, now=T0)
        assert await waiting is True and watcher.head == 2
        await watcher.stop()

    asyncio.run(scenario())
