"""close() ends a change-feed long-poll in flight instead of waiting it out (real store)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

from enforce_sdk.client.async_client import AsyncEnforcementClient
from enforce_sdk.client.client import EnforcementClient
from tests.fixtures.store_server import StoreServerProcess

CONFIG: dict[str, Any] = {"version": 1, "surfaces": {"home_feed": {"hide_from": "block"}},
                          "store": {"timeout": "2s", "retries": 0}}
LONG_POLL = 8.0  # seconds the store holds each feed poll (its max_wait is 10 in tests)


def _reading_a_response(thread: threading.Thread) -> bool:
    """Whether `thread` is blocked in httpcore reading from its socket right now."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "read" and code.co_filename.replace("\\", "/").endswith(
                "httpcore/_backends/sync.py"):
            return True
        frame = frame.f_back
    return False


def _long_polling(client: EnforcementClient | AsyncEnforcementClient) -> threading.Thread:
    """The follower thread, once it is blocked in a long-poll of the store."""
    follower = client.follower
    assert follower is not None and follower._thread is not None
    thread = follower._thread
    deadline = time.monotonic() + 15.0
    # Caught up (so its polls wait) and blocked reading the answer: a long-poll in flight.
    while not (follower._caught_up and _reading_a_response(thread)):
        assert time.monotonic() < deadline, "the follower never blocked in a long-poll"
        time.sleep(0.01)
    return thread


def test_close_cuts_the_feed_long_poll_short(store_server: StoreServerProcess) -> None:
    client = EnforcementClient(store_server.url, CONFIG, token=store_server.tokens["reader"],
                               feed_wait=LONG_POLL)
    thread = _long_polling(client)
    started = time.monotonic()
    client.close()
    took = time.monotonic() - started
    # Waiting the poll out takes LONG_POLL s (bounded by the follower's 2 s join): well
    # under 1 s means close() woke the poll, however fast or slow the machine is.
    assert took < 1.0, f"close() took {took:.2f}s"
    assert not thread.is_alive()


def test_aclose_cuts_the_feed_long_poll_short(store_server: StoreServerProcess) -> None:
    async def run() -> tuple[float, threading.Thread]:
        client = AsyncEnforcementClient(store_server.url, CONFIG,
                                        token=store_server.tokens["reader"], feed_wait=LONG_POLL)
        thread = await asyncio.to_thread(_long_polling, client)
        started = time.monotonic()
        await client.aclose()
        return time.monotonic() - started, thread

    took, thread = asyncio.run(run())
    assert took < 1.0, f"aclose() took {took:.2f}s"
    assert not thread.is_alive()
