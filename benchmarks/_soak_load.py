"""The soak's load: the processes benchmarks/soak.py starts, each reporting once per interval.

Every worker is a top-level function run in a spawned process: it builds its
client, says it is ready, waits for the common start, then works until `stop`
and puts one report per interval on the queue (calls and their latencies,
errors with tracebacks, its own RSS and open fds). Nothing here decides pass
or fail: soak.py does.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil  # type: ignore[import-untyped]

SURFACES = ("home_feed", "search")
CANARY = "pin:5050505050"  # blocked by a human label the writer never touches
PAGE = 50
STREAM = 20_000  # keys per worker stream (cycled)
KINDS = ("check", "check_many", "filter")
Report = dict[str, Any]


def usage(pid: int | None = None) -> dict[str, int]:
    proc = psutil.Process(pid)
    return {"rss": proc.memory_info().rss, "fds": proc.num_fds()}


def labeled_pool() -> list[str]:
    """Entities the writer labels and the check stream's labeled share asks about."""
    return [f"pin:{7_000_000 + i}" for i in range(400)] + [f"user:{8_000_000 + i}"
                                                           for i in range(100)]


class Ticker:
    """Interval boundaries from a shared start time: `due()` says when one has passed."""

    def __init__(self, t0: float, interval: float) -> None:
        self.t0 = t0
        self.interval = interval
        self.index = 0

    def due(self) -> int | None:
        """The index of the interval that just ended, or None (call often)."""
        if time.time() < self.t0 + (self.index + 1) * self.interval:
            return None
        self.index += 1
        return self.index - 1


class Calls:
    """What one process's callers saw in one interval."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = {k: [] for k in KINDS}
        self.escaped = 0
        self.degraded = 0
        self.canary_wrong = 0
        self.tracebacks: list[str] = []

    def timed(self, kind: str, call: Callable[..., Any], *args: Any) -> Any:
        t = time.perf_counter()
        try:
            result = call(*args)
        except Exception:
            self.escaped += 1
            if len(self.tracebacks) < 5:
                self.tracebacks.append(traceback.format_exc())
            return None
        self.latency[kind].append(time.perf_counter() - t)
        return result

    def report(self, name: str, index: int, client: Any) -> Report:
        stats = client.stats
        return {"name": name, "index": index, "latency": self.latency, "escaped": self.escaped,
                "degraded": self.degraded, "canary_wrong": self.canary_wrong,
                "tracebacks": self.tracebacks, "config_version": client.config_meta.version,
                # the client's own counters, since it started
                "sdk_degraded": stats.degraded, "sdk_fetch_errors": stats.fetch_errors,
                "sdk_feed_errors": stats.feed_errors, "sdk_snapshot_loads": stats.snapshot_loads,
                "sdk_config_rejected": stats.config_rejected,
                **usage()}


def _ops(seed: int, keys: list[str]) -> Iterator[tuple[str, str, list[str]]]:
    """An endless mix: (kind, surface, keys) with 60% check, 25% check_many, 15% filter."""
    rng = random.Random(seed)
    at = 0
    while True:
        kind = rng.choices(KINDS, (60, 25, 15))[0]
        n = 1 if kind == "check" else PAGE
        if at + n > len(keys):
            at = 0
        yield kind, rng.choice(SURFACES), keys[at:at + n]
        at += n


def _count(calls: Calls, decisions: Any) -> None:
    if decisions is not None:
        calls.degraded += sum(1 for d in decisions if d.degraded)


def _wait_start(queue: Any, start: Any, t0: Any, name: str, interval: float) -> Ticker:
    """Say this process is ready, wait for the common start, and tick from it."""
    queue.put({"ready": name})
    start.wait()
    return Ticker(t0.value, interval)


def sdk_worker(index: int, url: str, token: str, config_path: str, rate: float, interval: float,
               queue: Any, start: Any, stop: Any, t0: Any) -> None:
    """One SDK process: an EnforcementClient on a paced Zipf stream until `stop`."""
    from enforce_sdk import EnforcementClient, FileConfigSource
    from enforce_sdk.demo.sample import universe_keys

    name = f"sdk{index}"
    source = FileConfigSource(config_path)
    keys = universe_keys(STREAM, 0.05, seed=index, labeled=labeled_pool())
    with EnforcementClient(url, source, token=token, follow_changes=True) as client:
        reloads = threading.Thread(target=_reload_loop, args=(source, stop), daemon=True)
        reloads.start()
        ticker = _wait_start(queue, start, t0, name, interval)
        calls = Calls()
        ops = _ops(index, keys)
        pace = time.monotonic()
        while not stop.is_set():
            kind, surface, page = next(ops)
            if kind == "check":
                decision = calls.timed(kind, client.check, page[0], surface)
                _count(calls, None if decision is None else [decision])
            elif kind == "check_many":
                _count(calls, calls.timed(kind, client.check_many, page, surface))
            else:
                calls.timed(kind, client.filter, page, surface)
            if random.random() < 0.01:
                canary = calls.timed("check", client.check, CANARY, "home_feed")
                if canary is not None and canary.visible:
                    calls.canary_wrong += 1
            done = ticker.due()
            if done is not None:
                queue.put(calls.report(name, done, client))
                calls = Calls()
            pace += 1.0 / rate
            time.sleep(max(0.0, pace - time.monotonic()))
            pace = max(pace, time.monotonic() - 1.0)  # never burst more than a second's worth
        reloads.join(5)


def _reload_loop(source: Any, stop: Any) -> None:
    from enforce_sdk import ConfigError

    while not stop.wait(1.0):
        with contextlib.suppress(ConfigError):  # logged by the source; versions are reported
            source.reload()


def async_worker(url: str, token: str, config_path: str, rate: float, interval: float,
                 queue: Any, start: Any, stop: Any, t0: Any) -> None:
    """One asyncio process: an AsyncEnforcementClient shared by four coroutines."""
    asyncio.run(_async_main(url, token, config_path, rate, interval, queue, start, stop, t0))


async def _async_main(url: str, token: str, config_path: str, rate: float, interval: float,
                      queue: Any, start: Any, stop: Any, t0: Any) -> None:
    from enforce_sdk import AsyncEnforcementClient, FileConfigSource
    from enforce_sdk.demo.sample import universe_keys

    source = FileConfigSource(config_path)
    keys = universe_keys(STREAM, 0.05, seed=99, labeled=labeled_pool())
    async with AsyncEnforcementClient(url, source, token=token, follow_changes=True) as client:
        threading.Thread(target=_reload_loop, args=(source, stop), daemon=True).start()
        ticker = await asyncio.to_thread(_wait_start, queue, start, t0, "async", interval)
        state = {"calls": Calls()}

        async def timed(kind: str, call: Callable[..., Any], *args: Any) -> Any:
            calls = state["calls"]
            t = time.perf_counter()
            try:
                result = await call(*args)
            except Exception:
                calls.escaped += 1
                if len(calls.tracebacks) < 5:
                    calls.tracebacks.append(traceback.format_exc())
                return None
            calls.latency[kind].append(time.perf_counter() - t)
            return result

        async def coroutine(seed: int) -> None:
            ops = _ops(seed, keys)
            while not stop.is_set():
                kind, surface, page = next(ops)
                if kind == "check":
                    decision = await timed(kind, client.check, page[0], surface)
                    _count(state["calls"], None if decision is None else [decision])
                elif kind == "check_many":
                    _count(state["calls"], await timed(kind, client.check_many, page, surface))
                else:
                    await timed(kind, client.filter, page, surface)
                await asyncio.sleep(4.0 / rate)

        async def reporter() -> None:
            while not stop.is_set():
                done = ticker.due()
                if done is not None:
                    queue.put(state["calls"].report("async", done, client))
                    state["calls"] = Calls()
                await asyncio.sleep(0.05)

        await asyncio.gather(*(coroutine(100 + i) for i in range(4)), reporter())


def writer_worker(url: str, token: str, rate: float, interval: float,
                  queue: Any, start: Any, stop: Any, t0: Any) -> None:
    """Puts and retracts labels on the pool at `rate` writes/s; every error is counted."""
    from enforce_sdk import Enforcement, Label, LabelStoreClient, Source, SourceType

    sources = [Source("review_tool", SourceType.HUMAN, "soak"),
               Source("spam_domain_model", SourceType.AUTOMATED, "nightly")]
    pool = labeled_pool()
    rng = random.Random(1)
    with LabelStoreClient(url, token=token, timeout=5.0) as store:
        human = sources[0]
        store.put(Label(CANARY, human, Enforcement.BLOCK, "spam", datetime.now(UTC)))
        ticker = _wait_start(queue, start, t0, "writer", interval)
        counts = {"puts": 0, "retracts": 0, "errors": 0}
        tracebacks: list[str] = []
        pace = time.monotonic()
        while not stop.is_set():
            source = rng.choice(sources)
            now = datetime.now(UTC)
            try:
                if rng.random() < 0.3:
                    store.delete(rng.choice(pool), source)
                    counts["retracts"] += 1
                else:
                    batch = rng.sample(pool, 10 if rng.random() < 0.2 else 1)
                    store.put([Label(e, source, rng.choice(list(Enforcement)[1:]), "spam", now,
                                     expires_at=now + timedelta(hours=1),
                                     confidence=None if source is human else rng.random())
                               for e in batch])
                    counts["puts"] += len(batch)
            except Exception:
                counts["errors"] += 1
                if len(tracebacks) < 5:
                    tracebacks.append(traceback.format_exc())
            done = ticker.due()
            if done is not None:
                queue.put({"name": "writer", "index": done, **counts,
                           "tracebacks": tracebacks, **usage()})
                counts = dict.fromkeys(counts, 0)
                tracebacks = []
            pace += 1.0 / rate
            time.sleep(max(0.0, pace - time.monotonic()))
            pace = max(pace, time.monotonic() - 1.0)


def feed_worker(url: str, token: str, followers: int, interval: float,
                queue: Any, start: Any, stop: Any, t0: Any) -> None:
    """`followers` threads long-polling the change feed; sequence numbers must only go up."""
    from enforce_sdk import FeedTooOldError, LabelStoreClient

    lock = threading.Lock()
    counts = {"pages": 0, "records": 0, "resyncs": 0, "errors": 0, "out_of_order": 0}
    positions = [0] * followers

    def follow(i: int) -> None:
        with LabelStoreClient(url, token=token, timeout=5.0) as store:
            after = store.changes(0, limit=1).head
            while not stop.is_set():
                try:
                    page = store.changes(after, limit=500, wait=2.0)
                except FeedTooOldError:
                    after = store.changes(0, limit=1).head
                    with lock:
                        counts["resyncs"] += 1
                    continue
                except Exception:
                    with lock:
                        counts["errors"] += 1
                    time.sleep(0.5)
                    continue
                seqs = [c.seq for c in page.changes]
                with lock:
                    counts["pages"] += 1
                    counts["records"] += len(seqs)
                    if seqs and (seqs[0] <= after or seqs != sorted(seqs)):
                        counts["out_of_order"] += 1
                after = page.next
                positions[i] = page.head - after

    threads = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(followers)]
    for t in threads:
        t.start()
    ticker = _wait_start(queue, start, t0, "feed", interval)
    while not stop.wait(0.1):
        done = ticker.due()
        if done is not None:
            with lock:
                queue.put({"name": "feed", "index": done, **counts, "lag": max(positions),
                           **usage()})
                counts = dict.fromkeys(counts, 0)
    for t in threads:
        t.join(5)
