"""AsyncEnforcementClient: the sync client's behaviour tests, run again through it, and asyncio specifics.

The unit and integration tests of EnforcementClient are collected here a
second time with their module's `EnforcementClient` replaced by `AsyncFace`:
the async client behind the sync client's calls, each call run to completion
on the face's own event loop (the client itself is created outside any loop).
So both clients pass the same behaviour tests.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

import tests.client.test_client_integration as integration
import tests.client.test_client_unit as unit
from enforce_sdk import Decision, Enforcement, Label, StoreUnavailableError
from enforce_sdk.client.async_client import AsyncEnforcementClient
from enforce_sdk.store_client.client import LabelStoreClient
from tests.client.test_client_integration import fault_server, writer  # noqa: F401 - fixtures
from tests.client.test_client_unit import CONFIG, NOW, FakeStore, label
from tests.fixtures.store_server import StoreServerProcess


class AsyncStore:
    """An async face of a sync fake store; `gate`, when set, holds every read until released."""

    def __init__(self, inner: Any, gate: threading.Event | None = None) -> None:
        self.inner = inner
        self.gate = gate
        self.entered = threading.Event()

    async def get_many(self, keys: list[str]) -> Mapping[str, Sequence[Label]]:
        self.entered.set()
        if self.gate is not None:
            assert await asyncio.to_thread(self.gate.wait, 10)
        return self.inner.get_many(keys)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        self.inner.close()


class AsyncFace:
    """AsyncEnforcementClient with the sync client's calls (for the shared behaviour tests)."""

    def __init__(self, store_url: str, config: Any, *, store: Any = None, **kw: Any) -> None:
        self.client = AsyncEnforcementClient(
            store_url, config, store=None if store is None else AsyncStore(store), **kw
        )
        self._loop = asyncio.new_event_loop()

    def _run(self, coro: Any) -> Any:
        return self._loop.run_until_complete(coro)

    def check(self, *args: Any, **kw: Any) -> Any:
        return self._run(self.client.check(*args, **kw))

    def check_many(self, *args: Any, **kw: Any) -> Any:
        return self._run(self.client.check_many(*args, **kw))

    def filter(self, *args: Any, **kw: Any) -> Any:
        return self._run(self.client.filter(*args, **kw))

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self.client.aclose())
            self._loop.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def __enter__(self) -> AsyncFace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(autouse=True)
def _async_face(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unit, "EnforcementClient", AsyncFace)
    monkeypatch.setattr(integration, "EnforcementClient", AsyncFace)


# -- the shared behaviour tests, collected again in this module ---------------------------

_SHARED = {
    name: fn
    for module in (unit, integration)
    for name, fn in vars(module).items()
    if name.startswith("test_") and callable(fn)
}
globals().update(_SHARED)


def test_the_shared_tests_run_here() -> None:
    assert len(_SHARED) >= 15
    assert vars(unit)["EnforcementClient"] is AsyncFace  # the autouse fixture is in force


# -- asyncio specifics ------------------------------------------------------------------

DEADLINE = 10.0


async def entered(store: AsyncStore) -> None:
    """Wait (without blocking the loop) until a read has reached the store, with a deadline."""
    deadline = time.monotonic() + DEADLINE
    while not store.entered.is_set():
        assert time.monotonic() < deadline, "timed out waiting for a store read"
        await asyncio.sleep(0.001)


def make(store: Any, **kw: Any) -> AsyncEnforcementClient:
    return AsyncEnforcementClient(
        "http://unused", CONFIG, store=store, wall_clock=lambda: NOW.timestamp(), **kw
    )


def test_a_cache_hit_returns_without_awaiting() -> None:
    client = make(AsyncStore(FakeStore([label("pin:1", Enforcement.BLOCK)])))
    asyncio.run(client.check_many(["pin:1", "pin:2"], "home_feed"))
    for key, visible in (("pin:1", False), ("pin:2", True)):
        coro = client.check(key, "home_feed")
        with pytest.raises(StopIteration) as done:
            coro.send(None)  # runs the coroutine to its end in one step: it never suspended
        assert done.value.value.visible is visible
    asyncio.run(client.aclose())


def test_created_outside_a_loop_and_used_in_successive_loops() -> None:
    store = FakeStore([label("pin:1", Enforcement.BLOCK)])
    client = make(AsyncStore(store), timer=lambda: 0.0 if len(store.requests) < 2 else 1e9)
    assert not asyncio.run(client.check("pin:1", "home_feed")).visible
    # a second loop (the first is closed): its own fetcher; the cache is past its TTL
    assert asyncio.run(client.check_many(["pin:1", "pin:2"], "home_feed"))[1].visible
    assert len(client._loops) == 1  # the closed loop's state was dropped
    asyncio.run(client.aclose())
    assert len(store.requests) == 2


def test_one_client_used_from_two_loops_in_two_threads_at_once() -> None:
    gate = threading.Event()
    store = AsyncStore(FakeStore([label("pin:1", Enforcement.BLOCK)]), gate)
    client = make(store)
    results: dict[str, list[bool]] = {}

    def worker(name: str) -> None:
        async def run() -> list[bool]:
            decisions = await client.check_many(["pin:1", f"pin:{name}"], "home_feed")
            return [d.visible for d in decisions]

        results[name] = asyncio.run(run())

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("10", "11")]
    for t in threads:
        t.start()
    assert store.entered.wait(5)
    gate.set()
    for t in threads:
        t.join(10)
    assert results == {"10": [False, True], "11": [False, True]}
    assert len(client._loops) == 2  # one fetcher per loop
    asyncio.run(client.aclose())


def test_a_cancelled_caller_does_not_cancel_the_read_others_wait_on() -> None:
    gate = threading.Event()
    fake = FakeStore([label("pin:1", Enforcement.BLOCK)])
    store = AsyncStore(fake, gate)

    async def scenario() -> tuple[bool, int]:
        client = make(store)
        first = asyncio.create_task(client.check("pin:1", "home_feed"))
        await entered(store)
        second = asyncio.create_task(client.check("pin:1", "home_feed"))
        await asyncio.sleep(0)  # second joins the read in flight (single flight)
        first.cancel()
        gate.set()
        decision = await second
        assert first.cancelled()
        await client.aclose()
        return decision.visible, client.stats.coalesced_waits

    visible, waits = asyncio.run(scenario())
    assert not visible and waits == 1 and len(fake.requests) == 1


def test_aclose_answers_waiters_by_fail_mode() -> None:
    gate = threading.Event()
    store = AsyncStore(FakeStore(), gate)

    async def scenario() -> Any:
        client = make(store)
        pending = asyncio.create_task(client.check("pin:1", "search"))  # search fails closed
        await entered(store)
        await client.aclose()
        return await pending

    try:
        decision = asyncio.run(scenario())
    finally:
        gate.set()
    assert decision.degraded and not decision.visible
    assert "fail_closed" in (decision.degraded_detail or "")


def test_a_store_that_raises_is_answered_by_fail_mode() -> None:
    fake = FakeStore()
    fake.fail = StoreUnavailableError("connection refused")
    client = make(AsyncStore(fake))

    async def scenario() -> Any:
        async with client:
            return await client.filter(["pin:1", "pin:2"], "search"), await client.check(
                "pin:1", "home_feed"
            )

    shown, feed = asyncio.run(scenario())
    assert shown == [] and feed.visible and feed.degraded
    assert client.stats.fetch_errors == 2


@pytest.fixture
def labeled_store(store_server: StoreServerProcess) -> Iterator[StoreServerProcess]:
    with LabelStoreClient(store_server.url, token=store_server.tokens["writer"]) as w:
        w.put([label(f"pin:{i}", Enforcement.BLOCK) for i in range(0, 300, 7)])
    yield store_server


# This test is about batching, not deadlines: CONFIG's 100 ms store timeout (meant for
# the doubles above) against a real store on a shared, loaded machine failed it now and
# then (a store answer later than 100 ms under CPU load answers `search` fail-closed).
BATCHING_CONFIG = {**CONFIG, "store": {"timeout": "5s", "retries": 0}}


def test_concurrent_cold_checks_against_the_real_store_are_batched(
    labeled_store: StoreServerProcess,
) -> None:
    client = AsyncEnforcementClient(
        labeled_store.url, BATCHING_CONFIG, token=labeled_store.tokens["reader"],
        follow_changes=False,
    )

    async def scenario() -> list[bool]:
        async with client:
            decisions = await asyncio.gather(
                *(client.check(f"pin:{i}", "search") for i in range(300))
            )
            return [d.visible for d in decisions]

    visible = asyncio.run(scenario())
    assert visible == [i % 7 != 0 for i in range(300)]
    # merged into batches, and never more than max_in_flight (4) + the first
    assert client.stats.fetched_keys == 300
    assert client.stats.fetches <= 300 // 10


def test_a_lagging_event_loop_does_not_degrade_answers_the_store_gave_in_time(
    labeled_store: StoreServerProcess,
) -> None:
    """The loop is blocked for 1 s at a time (a host under load) while 1,200 cold checks
    read the store, whose answers take milliseconds: none may be degraded. Reads made
    on the loop with httpx.AsyncClient timed out on the loop's clock instead."""
    config = {**CONFIG, "store": {"timeout": "500ms", "retries": 0}}
    client = AsyncEnforcementClient(labeled_store.url, config,
                                    token=labeled_store.tokens["reader"], follow_changes=False)
    lags: list[float] = []

    async def hog(stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            t = loop.time()
            time.sleep(1.0)  # the whole loop stalls: no coroutine, callback or timer runs
            lags.append(loop.time() - t)
            await asyncio.sleep(0.02)

    async def scenario() -> list[Decision]:
        async with client:
            stop = asyncio.Event()
            hogging = asyncio.create_task(hog(stop))
            decisions: list[Decision] = []
            for wave in range(4):
                decisions += await asyncio.gather(*(
                    client.check(f"pin:{wave * 1000 + i}", "search") for i in range(300)))
                await asyncio.sleep(0.3)
            stop.set()
            await hogging
            return decisions

    decisions = asyncio.run(scenario())
    assert len(lags) >= 2 and max(lags) >= 1.0  # the loop did lag
    degraded = [d for d in decisions if d.degraded]
    assert not degraded, f"{len(degraded)} of {len(decisions)}: {degraded[0].degraded_detail}"
    assert [d.visible for d in decisions[:300]] == [i % 7 != 0 for i in range(300)]


# -- the async store reader -------------------------------------------------------------


def test_the_async_reader_chunks_parses_and_translates_errors() -> None:
    import httpx

    from enforce_sdk import AuthError, StoreResponseError
    from enforce_sdk.model.wire import decode, encode
    from enforce_sdk.store_client.async_client import AsyncLabelStoreReader

    seen: list[list[str]] = []
    status = [200]

    def answer(request: httpx.Request) -> httpx.Response:
        keys = decode(request.content, "msgpack")["keys"]
        seen.append(keys)
        assert request.headers["authorization"] == "Bearer t0k"
        body = {
            "schema": 1,
            "head": 7,
            "aliases": {},
            "labels": {k: [label(k, Enforcement.BLOCK).to_wire()] for k in keys if k == "pin:4"},
        }
        if status[0] != 200:
            body = {"schema": 1, "error": "nope"}
        return httpx.Response(
            status[0],
            content=encode(body, "msgpack"),
            headers={"content-type": "application/msgpack"},
        )

    async def scenario() -> None:
        async with AsyncLabelStoreReader(
            "http://store", token="t0k", max_batch_keys=3, transport=httpx.MockTransport(answer)
        ) as reader:
            got = await reader.get_many([f"pin:{i}" for i in range(7)])
            assert got == {"pin:4": [label("pin:4", Enforcement.BLOCK)]}
            assert [len(k) for k in seen] == [3, 3, 1]
            status[0] = 403
            with pytest.raises(AuthError):
                await reader.get_many(["pin:1"])
            status[0] = 500
            with pytest.raises(StoreResponseError) as exc:
                await reader.get_many(["pin:1"])
            assert exc.value.status == 500

    asyncio.run(scenario())


def test_the_async_reader_reports_an_unreachable_store() -> None:
    import socket

    from enforce_sdk.store_client.async_client import AsyncLabelStoreReader

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def scenario() -> None:
        async with AsyncLabelStoreReader(f"http://127.0.0.1:{port}", timeout=1) as reader:
            with pytest.raises(StoreUnavailableError):
                await reader.get_many(["pin:1"])

    asyncio.run(scenario())
