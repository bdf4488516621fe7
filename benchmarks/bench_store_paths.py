"""The store's read and write paths beside their floors (issue 12 goals), in one run.

Read: a batch read of 100 keys (90 labeled) through the real store and the SDK's
store client, decoded SDK-side (`LabelStoreClient.get_many`), beside a minimal
Starlette endpoint under the same uvicorn that returns the very same response
bytes (captured from the store) to a plain httpx post: the HTTP floor. The SDK reads
in the compact form (stored bodies copied into the answer, model/compact); the same
keys read in the full form (labels as objects, decoded by the same parser) are the
same-run baseline of what the compact form saves.

Write: N labels in batches of 1,000 (a) through the API (`LabelStoreClient.put`
into a store process), (b) in process through `SQLiteStorage.apply`, (c) the
floor: the three rows per label (label, audit event, change record) written with
one `executemany` each per batch, in one transaction, same schema and pragmas.

Three runs, interleaved; medians with min-max. N = 100,000 with
ENFORCE_BENCH_FULL=1, else 5,000. Written to .benchmarks/bench_store_paths.json.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fixtures.store_server import StoreServerProcess  # noqa: E402
from tests.helpers import free_port, wait_until  # noqa: E402

from benchmarks._harness import machine_info, write_results  # noqa: E402
from enforce_sdk.demo.sample import sample_labels  # noqa: E402
from enforce_sdk.model import wire  # noqa: E402
from enforce_sdk.model.label import Label  # noqa: E402
from enforce_sdk.store import PutOp, SQLiteStorage  # noqa: E402
from enforce_sdk.store.storage import sqlite_schema  # noqa: E402
from enforce_sdk.store_client.client import LabelStoreClient  # noqa: E402
from enforce_sdk.store_client.query import parse_query  # noqa: E402

FULL = os.environ.get("ENFORCE_BENCH_FULL") == "1"
N = 100_000 if FULL else 5_000
ROUNDS = 400 if FULL else 40
BATCH = 1000
LIMITS = {"max_batch_labels": BATCH, "max_batch_keys": 1000,
          "max_body_bytes": 8 * 1024 * 1024, "max_metadata_bytes": 2048}

MINIMAL_APP = textwrap.dedent("""
    import sys
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    BODY = open(sys.argv[1], "rb").read()

    async def query(request):
        await request.body()
        return Response(BODY, media_type="application/msgpack")

    app = Starlette(routes=[Route("/v1/labels/query", query, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
                access_log=False)
""")


def labels(n: int) -> list[Label]:
    now = datetime.now(UTC)
    return list(sample_labels(n, seed=11, now=now))


def median_ns(fn: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        t = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t)
    return statistics.median(samples)


# -- read -------------------------------------------------------------------------------------

def read_case(workdir: Path, stored: list[Label]) -> dict[str, float]:
    db = workdir / "read.db"
    storage = SQLiteStorage(db)
    now = datetime.now(UTC)
    for i in range(0, len(stored), BATCH):
        storage.apply([PutOp(lab) for lab in stored[i:i + BATCH]], actor="bench", now=now)
    storage.close()
    entities = sorted({lab.entity for lab in stored})
    keys = entities[:90] + [f"pin:absent{i}" for i in range(10)]
    server = StoreServerProcess(workdir / "srv", sections={"limits": dict(LIMITS),
                                                           "storage": {"url": f"sqlite://{db}"}})
    server.start(timeout=120)
    minimal: subprocess.Popen[bytes] | None = None
    try:
        token = server.tokens["reader"]
        # The SDK's own request: the compact form (stored bodies, spliced; model/compact).
        request = wire.encode({"keys": keys, "form": "compact"}, "msgpack")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/msgpack",
                   "Accept": "application/msgpack"}
        with httpx.Client() as raw:
            answer = raw.post(server.url + "/v1/labels/query", content=request, headers=headers)
            answer.raise_for_status()
        body_file = workdir / "answer.msgpack"
        body_file.write_bytes(answer.content)
        port = free_port()
        app_file = workdir / "minimal_app.py"
        app_file.write_text(MINIMAL_APP)
        minimal = subprocess.Popen([sys.executable, str(app_file), str(body_file), str(port)])
        url = f"http://127.0.0.1:{port}/v1/labels/query"

        def up() -> bool:
            try:
                return httpx.post(url, content=request).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, "the minimal endpoint", timeout=30)
        with LabelStoreClient(server.url, token=token, timeout=10) as sdk, \
                httpx.Client(headers=headers) as plain:
            got = sdk.get_many(keys)
            assert len({k for k in got if not k.startswith("pin:absent")}) == 90
            for _ in range(20):  # warm both
                sdk.get_many(keys)
                plain.post(url, content=request)
            full_request = wire.encode({"keys": keys}, "msgpack")

            def full_form() -> object:  # the read before the compact form: labels as objects
                answer = plain.post(server.url + "/v1/labels/query", content=full_request)
                return parse_query(wire.decode(answer.content, "msgpack")).labels

            assert full_form() == got
            out = {
                "store_read_sdk_decoded_ns": median_ns(lambda: sdk.get_many(keys), ROUNDS),
                "store_read_full_form_ns": median_ns(full_form, ROUNDS),
                "minimal_same_bytes_ns": median_ns(
                    lambda: plain.post(url, content=request).content, ROUNDS),
                "response_bytes": float(len(answer.content)),
            }
        return out
    finally:
        if minimal is not None:
            minimal.terminate()
            minimal.wait(10)
        server.stop()


# -- write ------------------------------------------------------------------------------------

def api_import(workdir: Path, batch_labels: list[list[Label]]) -> float:
    server = StoreServerProcess(workdir, sections={"limits": dict(LIMITS)})
    server.start(timeout=120)
    try:
        with LabelStoreClient(server.url, token=server.tokens["writer"], timeout=60,
                              max_batch_labels=BATCH) as client:
            t = time.perf_counter()
            for batch in batch_labels:
                client.put(batch)
            return sum(map(len, batch_labels)) / (time.perf_counter() - t)
    finally:
        server.stop()


def in_process_apply(path: Path, batch_labels: list[list[Label]]) -> float:
    storage = SQLiteStorage(path)
    try:
        now = datetime.now(UTC)
        t = time.perf_counter()
        for batch in batch_labels:
            storage.apply([PutOp(lab) for lab in batch], actor="bench", now=now)
        return sum(map(len, batch_labels)) / (time.perf_counter() - t)
    finally:
        storage.close()


def executemany_floor(path: Path, batch_labels: list[list[Label]]) -> float:
    """The three rows per label with one executemany each per batch: what apply must do."""
    SQLiteStorage(path).close()  # the schema and its pragmas
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    seq = 0
    at = sqlite_schema.micros(datetime.now(UTC))
    t = time.perf_counter()
    for batch in batch_labels:
        rows, audit, changes = [], [], []
        for lab in batch:
            seq += 1
            body = sqlite_schema.encode_label(lab)
            expires = None if lab.expires_at is None else sqlite_schema.micros(lab.expires_at)
            rows.append((lab.entity, lab.source.key, 1, seq, body, expires))
            audit.append((lab.entity, seq, lab.source.key, "put", "bench", at, None, body, 1))
            changes.append((seq, lab.entity, lab.source.key, "put", at, 1))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO labels (entity, source_key, status, seq, body, expires_us) "
                         "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (entity, source_key) DO UPDATE "
                         "SET status = excluded.status, seq = excluded.seq, body = excluded.body",
                         rows)
        conn.executemany("INSERT INTO audit (entity, seq, source_key, action, actor, at_us, "
                         "before, after, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", audit)
        conn.executemany("INSERT INTO changes (seq, entity, source_key, action, at_us, labeled) "
                         "VALUES (?, ?, ?, ?, ?, ?)", changes)
        conn.execute("COMMIT")
    rate = sum(map(len, batch_labels)) / (time.perf_counter() - t)
    conn.close()
    return rate


def one_run(workdir: Path, stored: list[Label]) -> dict[str, float]:
    batches = [stored[i:i + BATCH] for i in range(0, len(stored), BATCH)]
    out = read_case(workdir / "read", stored)
    out["import_api_labels_per_s"] = api_import(workdir / "api", batches)
    out["apply_labels_per_s"] = in_process_apply(workdir / "apply.db", batches)
    out["floor_labels_per_s"] = executemany_floor(workdir / "floor.db", batches)
    out["read_vs_minimal"] = out["store_read_sdk_decoded_ns"] / out["minimal_same_bytes_ns"]
    out["compact_vs_full_form"] = out["store_read_sdk_decoded_ns"] / out["store_read_full_form_ns"]
    out["api_vs_apply"] = out["import_api_labels_per_s"] / out["apply_labels_per_s"]
    out["apply_vs_floor"] = out["apply_labels_per_s"] / out["floor_labels_per_s"]
    return out


def run(n: int, runs: int) -> dict[str, Any]:
    stored = labels(n)
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-paths-") as tmp:
            base = Path(tmp)
            for sub in ("read", "api"):
                (base / sub).mkdir()
            results.append(one_run(base, stored))
    summary = {name: {"median": statistics.median(r[name] for r in results),
                      "min": min(r[name] for r in results), "max": max(r[name] for r in results)}
               for name in results[0]}
    return {"labels": n, "runs": runs, "figures": summary}


def test_bench_store_paths_runs_small() -> None:
    """Runs once in the default test run, at a small size: every case runs."""
    out = run(2_000, 1)
    assert all(v["median"] > 0 for v in out["figures"].values())


if __name__ == "__main__":
    figures = run(N, 3)
    figures["machine"] = machine_info()
    path = write_results("bench_store_paths", figures)
    for name, v in figures["figures"].items():
        print(f"{name:>28}: {v['median']:12.2f}  ({v['min']:.2f}-{v['max']:.2f})")
    print("written to", path)
