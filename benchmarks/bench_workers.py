"""Store reads/s with 1 and with 2 worker processes (`--workers`), over one SQLite file.

The read is the SDK's: POST /v1/labels/query of 100 keys (90 stored, 10 not)
in msgpack. Load comes from client processes with raw keep-alive sockets: each
request is pre-encoded and only the response's framing is parsed, so a
request costs the load generator a small fraction of what it costs the store,
and what is measured is the store. Each client process keeps CONNECTIONS
requests in flight (one per connection, each sending its next request as
soon as its answer is in); `/healthz` on each connection first says which
worker took it.

CPU split (where os.sched_setaffinity is allowed and there are 2+ cores):
- "pinned": 1 worker alone on CPU 1 with the clients on CPU 0 (the baseline
  never shares its core with the load generator); 2 workers one per CPU, the
  clients free on both (they must share: that is the cost of a 2-core box);
- "shared": nothing pinned, for both.
The 1- and 2-worker stores run side by side on the same file and are
measured interleaved, RUNS times each: every figure has its same-run baseline.
Full runs (ENFORCE_BENCH_FULL=1): 200,000 labels, 3 runs of a 1 s warm-up and
a 4 s window. The default test run measures a short window once (no figures
asserted: a shared CI box cannot promise throughput). Results go to
.benchmarks/bench_workers.json (quick: bench_workers.quick.json).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import selectors
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
import pytest

from enforce_sdk.demo.sample import entity_for, sample_labels
from enforce_sdk.store import PutOp, SQLiteStorage

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the server harness lives with the test fixtures
    sys.path.insert(0, str(ROOT))

from tests.fixtures.store_server import StoreServerProcess, StoreServerStartError  # noqa: E402
from tests.store._workers import worker_pids  # noqa: E402

from benchmarks._harness import machine_info  # noqa: E402

FULL = os.environ.get("ENFORCE_BENCH_FULL") == "1"
N = 200_000 if FULL else 5_000
RUNS = 3 if FULL else 1
WARMUP_S = 1.0 if FULL else 0.3
WINDOW_S = 4.0 if FULL else 0.7
CLIENTS = 2  # load generator processes
CONNECTIONS = 8  # requests in flight per client process
BATCH_KEYS = 100
LABELED_PER_BATCH = 90
BATCHES = 200
OUT = ROOT / ".benchmarks" / ("bench_workers.json" if FULL else "bench_workers.quick.json")


def _request(host: str, token: str, keys: list[str]) -> bytes:
    body = msgpack.packb({"keys": keys})
    head = (f"POST /v1/labels/query HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/msgpack\r\n"
            f"Accept: application/msgpack\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


class _Conn:
    """One keep-alive connection that reads whole responses by Content-Length."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def response(self) -> tuple[int, bytes]:
        while (answer := self.take()) is None:
            self.more()
        return answer

    def take(self) -> tuple[int, bytes] | None:
        """A whole response from what was received, or None (not all here yet)."""
        head, sep, rest = self.buf.partition(b"\r\n\r\n")
        if not sep:
            return None
        lines = head.split(b"\r\n")
        length = next(int(v) for k, _, v in (ln.partition(b":") for ln in lines[1:])
                      if k.strip().lower() == b"content-length")
        if len(rest) < length:
            return None
        self.buf = rest[length:]
        return int(lines[0].split()[1]), rest[:length]

    def more(self) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise ConnectionError("the store closed the connection")
        self.buf += chunk


def _client(port: int, requests: list[bytes], cpus: set[int] | None, ready: Any,
            go: Any, out: Any) -> None:
    """One load generator process: CONNECTIONS in flight until the window ends."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    conns = [_Conn(port) for _ in range(CONNECTIONS)]
    workers = []
    for c in conns:
        c.sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
        workers.append(_worker_of(c.response()[1]))
    ready.put(os.getpid())
    start = go.get(timeout=120)  # every client connected: the same clock for all
    begin, end = start + WARMUP_S, start + WARMUP_S + WINDOW_S
    # Each connection on its own: the next request goes as soon as its answer is in,
    # so a slower worker does not hold back the connections of a faster one.
    sel = selectors.DefaultSelector()
    for i, c in enumerate(conns):
        sel.register(c.sock, selectors.EVENT_READ, c)
        c.sock.sendall(requests[i % len(requests)])
    sent, done, errors = len(conns), 0, 0
    while (now := time.time()) < end:
        for key, _ in sel.select(end - now):
            c = key.data
            c.more()
            answer = c.take()
            if answer is None:
                continue
            errors += answer[0] != 200
            done += time.time() >= begin
            c.sock.sendall(requests[sent % len(requests)])
            sent += 1
    out.put({"done": done, "errors": errors, "workers": workers})


def _worker_of(healthz: bytes) -> int:
    """The worker that answered /healthz (a single store process has no "worker": 0)."""
    return int(json.loads(healthz).get("worker", 0))


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[str]]]:
    path = tmp_path_factory.mktemp("bench-workers") / "labels.db"
    storage = SQLiteStorage(path)
    now = datetime.now(UTC)
    entities: list[str] = []
    try:
        batch: list[PutOp] = []
        for label in sample_labels(N, seed=7, now=now):
            batch.append(PutOp(label))
            entities.append(label.entity)
            if len(batch) == 20_000:
                storage.apply(batch, actor="bench", now=now)
                batch = []
        if batch:
            storage.apply(batch, actor="bench", now=now)
    finally:
        storage.close()
    unique = sorted(set(entities))
    step = max(1, len(unique) // (BATCHES * LABELED_PER_BATCH))
    batches = []
    for b in range(BATCHES):
        stored = [unique[(b * LABELED_PER_BATCH + i) * step % len(unique)]
                  for i in range(LABELED_PER_BATCH)]
        absent = [entity_for("pin", b * BATCH_KEYS + i, 7, labeled=False)
                  for i in range(BATCH_KEYS - LABELED_PER_BATCH)]
        batches.append(stored + absent)
    return path, batches


@pytest.fixture(scope="module")
def stores(populated: tuple[Path, list[list[str]]], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[int, StoreServerProcess]]:
    path, _ = populated
    started: dict[int, StoreServerProcess] = {}
    try:
        for workers in (1, 2):
            server = StoreServerProcess(
                tmp_path_factory.mktemp(f"bench-w{workers}"), workers=workers,
                sections={"storage": {"url": f"sqlite://{path}"},
                          "limits": {"max_batch_keys": 1000}})
            started[workers] = server
            server.start(timeout=120)
        yield started
    except StoreServerStartError as exc:
        pytest.fail(f"Label Store did not start: {exc}")
    finally:
        for server in started.values():
            server.stop()


def _store_pids(server: StoreServerProcess) -> list[int]:
    assert server.proc is not None
    return sorted(worker_pids(server)) if server.workers > 1 else [server.proc.pid]


def _pin(server: StoreServerProcess, split: str) -> set[int] | None:
    """Pin the store's serving processes for `split`; the clients' CPUs (None: free)."""
    everything = set(range(os.cpu_count() or 1))
    pids = _store_pids(server)
    if split == "shared":
        for pid in pids:
            os.sched_setaffinity(pid, everything)
        return None
    if server.workers == 1:
        os.sched_setaffinity(pids[0], {1})
        return {0}
    for cpu, pid in enumerate(pids):
        os.sched_setaffinity(pid, {cpu % 2})
    return None


def _measure(server: StoreServerProcess, requests: list[bytes], split: str) -> dict[str, Any]:
    cpus = _pin(server, split)
    ctx = multiprocessing.get_context("spawn")
    ready, go, out = ctx.Queue(), ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_client, args=(server.port, requests, cpus, ready, go, out))
             for _ in range(CLIENTS)]
    for p in procs:
        p.start()
    for _ in procs:  # the clients' start-up (interpreter, imports, connections) is not timed
        ready.get(timeout=120)
    start = time.time()
    for _ in procs:
        go.put(start)
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    done = sum(r["done"] for r in results)
    conns = [w for r in results for w in r["workers"]]
    return {"reads_per_s": done / WINDOW_S, "errors": sum(r["errors"] for r in results),
            "connections_per_worker": [conns.count(w) for w in range(server.workers)]}


def _can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2 and \
        len(os.sched_getaffinity(0)) >= 2


def test_reads_per_second_with_1_and_2_workers(
    stores: dict[int, StoreServerProcess], populated: tuple[Path, list[list[str]]]
) -> None:
    _, batches = populated
    requests = {w: [_request("bench", s.tokens["reader"], b) for b in batches]
                for w, s in stores.items()}
    # The answer is right before it is timed: 90 stored keys found, none of the 10 others.
    probe = _Conn(stores[2].port)
    probe.sock.sendall(requests[2][0])
    status, body = probe.response()
    probe.sock.close()
    answer = msgpack.unpackb(body)
    assert status == 200 and len(answer["labels"]) >= LABELED_PER_BATCH // 2
    assert not set(batches[0][LABELED_PER_BATCH:]) & set(answer["labels"])

    splits = ["pinned", "shared"] if _can_pin() else ["shared"]
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {s: {1: [], 2: []} for s in splits}
    for _ in range(RUNS):
        for split in splits:
            for workers in (1, 2):  # interleaved: each 2-worker figure has its own baseline
                m = _measure(stores[workers], requests[workers], split)
                assert m["errors"] == 0 and m["reads_per_s"] > 0
                runs[split][workers].append(m)

    summary: dict[str, Any] = {}
    for split, by_workers in runs.items():
        row: dict[str, Any] = {}
        for workers, ms in by_workers.items():
            rates = [m["reads_per_s"] for m in ms]
            row[str(workers)] = {"median": statistics.median(rates), "min": min(rates),
                                 "max": max(rates), "runs": rates,
                                 "connections_per_worker": [m["connections_per_worker"]
                                                            for m in ms]}
        ratios = [b["reads_per_s"] / a["reads_per_s"] for a, b in zip(by_workers[1],
                                                                       by_workers[2], strict=True)]
        row["speedup"] = {"median": statistics.median(ratios), "min": min(ratios),
                          "max": max(ratios), "runs": ratios}
        summary[split] = row
    result = {"config": {"full": FULL, "labels": N, "runs": RUNS, "window_s": WINDOW_S,
                         "clients": CLIENTS, "connections_per_client": CONNECTIONS,
                         "batch_keys": BATCH_KEYS, "labeled_per_batch": LABELED_PER_BATCH},
              "splits": summary, "machine": machine_info()}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print("\n" + _table(summary) + f"\nwritten to {OUT}")


def _table(summary: dict[str, Any]) -> str:
    rows = [f"Store reads/s, 100-key msgpack batch reads ({N:,} labels, {RUNS} runs: "
            "median (min-max))"]
    for split, row in summary.items():
        one, two, up = row["1"], row["2"], row["speedup"]
        rows.append(f"  {split:<7} 1 worker {one['median']:>7,.0f} ({one['min']:,.0f}-"
                    f"{one['max']:,.0f})  2 workers {two['median']:>7,.0f} ({two['min']:,.0f}-"
                    f"{two['max']:,.0f})  x{up['median']:.2f} ({up['min']:.2f}-{up['max']:.2f})")
    return "\n".join(rows)
