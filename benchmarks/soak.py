"""Soak: mixed load on a real Label Store for minutes, watching errors, latency drift and leaks.

One Label Store process (SQLite, HTTP) and, each in its own process:

- a writer: a LabelStoreClient putting labels (single and batches of 10) and
  retracting them, on a pool of entities the check stream also asks about;
- SDK processes (8 by default): an EnforcementClient each, config from a file
  (FileConfigSource, re-read every second), `follow_changes` on (so the feed
  follower and the bloom gate run), doing check / check_many(50) / filter(50)
  on a Zipf stream (`universe_keys`), paced at `--rate` calls/s;
- one AsyncEnforcementClient, four coroutines doing the same;
- feed followers: threads long-polling `/v1/changes`, checking the sequence
  numbers only go up;
- config pushes: this process rewrites the config file with a new version
  every `--push-every` seconds (atomically), toggling a surface's hide_from.

Per interval (a minute by hand) it reports: calls and exceptions escaped to
callers (must be zero), degraded decisions (counted, not errors), a canary
label's decision (must be hidden), check/check_many/filter p50/p99/max
latency, feed and write counts, and RSS and open fds of the store and of every
client process. Leaks are judged after a warm-up: fds must not rise interval
after interval (RISING times running) nor by more than FD_SLACK, RSS not by
more than RSS_SLACK.

By hand: `python benchmarks/soak.py --minutes 30` (writes .benchmarks/soak.json).
In the default test run `test_soak` runs it for 60 s in 10 s intervals
(writes .benchmarks/soak.quick.json).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from queue import Empty
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fixtures.store_server import StoreServerProcess  # noqa: E402

from benchmarks._harness import machine_info, percentile, write_results  # noqa: E402
from benchmarks._soak_load import (  # noqa: E402
    KINDS,
    PAGE,
    Report,
    Ticker,
    async_worker,
    feed_worker,
    sdk_worker,
    usage,
    writer_worker,
)

FD_SLACK = 16  # open fds an idle-vs-busy process may differ by (pooled connections)
RSS_SLACK = 64 * 2**20  # bytes of RSS growth after warm-up that is still not a leak
# Rises in a row that make a leak even within FD_SLACK: a pool's connection count may
# rise three intervals running (the store keeps idle connections 30 s), not five.
RISING = 5


def sdk_config(version: int) -> dict[str, Any]:
    """Config version `version`: each push flips search's hide_from, so swaps are visible."""
    return {
        "version": version,
        "surfaces": {
            "home_feed": {"hide_from": "limit"},
            "search": {"hide_from": "block" if version % 2 else "limit"},
        },
        "cache": {"ttl": "20s", "negative_ttl": "10s", "max_entries": 50_000},
        "store": {"timeout": "2s"},
        "bloom": {"enabled": True, "max_staleness": "1m", "refresh_interval": "30s"},
    }


def write_config(path: Path, version: int) -> None:
    """Replace the config file atomically: a reader sees the old or the new, never half."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(sdk_config(version)))
    os.replace(tmp, path)



def run_soak(workdir: Path, seconds: float, interval: float, *, sdk_processes: int = 8,
             rate: float = 50.0, write_rate: float = 20.0, followers: int = 4,
             push_every: float = 15.0, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the soak; return per-interval figures and the processes' exit codes."""
    server = StoreServerProcess(workdir / "store")
    server.start()
    config_path = workdir / "sdk-config.json"
    version = 1
    write_config(config_path, version)
    ctx = mp.get_context("spawn")
    queue, start, stop, t0 = ctx.Queue(), ctx.Event(), ctx.Event(), ctx.Value("d", 0.0)
    common = (interval, queue, start, stop, t0)
    reader, writer = server.tokens["reader"], server.tokens["writer"]
    procs = [ctx.Process(target=sdk_worker, name=f"sdk{i}",
                         args=(i, server.url, reader, str(config_path), rate, *common))
             for i in range(sdk_processes)]
    procs.append(ctx.Process(target=async_worker, name="async",
                             args=(server.url, reader, str(config_path), rate, *common)))
    procs.append(ctx.Process(target=writer_worker, name="writer",
                             args=(server.url, writer, write_rate, *common)))
    procs.append(ctx.Process(target=feed_worker, name="feed",
                             args=(server.url, reader, followers, *common)))
    intervals = int(seconds // interval)
    reports: list[Report] = []
    store_usage: list[Report] = []
    pushes: list[int] = []
    try:
        for p in procs:
            p.start()
        ready: set[str] = set()
        deadline = time.monotonic() + 180
        while len(ready) < len(procs):
            if time.monotonic() > deadline or any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError(f"workers not ready: only {sorted(ready)}")
            with contextlib.suppress(Empty):
                ready.add(queue.get(timeout=1.0)["ready"])
        t0.value = time.time()
        start.set()
        ticker = Ticker(t0.value, interval)
        next_push = time.monotonic() + push_every
        end = time.monotonic() + seconds
        expected = intervals * len(procs)
        # every process reports every interval; a starved one may report late, not never
        while time.monotonic() < end or (_complete(reports, intervals) < expected
                                         and time.monotonic() < end + 60.0):
            if time.monotonic() >= next_push and time.monotonic() < end:
                version += 1
                write_config(config_path, version)
                pushes.append(version)
                next_push += push_every
            done = ticker.due()
            if done is not None and done < intervals:
                store_usage.append({"index": done, **usage(server.proc.pid)})  # type: ignore[union-attr]
                log(f"soak: interval {done} done ({len(reports)} reports so far)")
            with contextlib.suppress(Empty):
                reports.append(queue.get(timeout=0.2))
        stop.set()
        for p in procs:
            while p.is_alive():
                try:
                    reports.append(queue.get(timeout=0.2))
                except Empty:
                    p.join(0.1)
    finally:
        stop.set()
        start.set()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
        server.kill()
    return {"reports": [r for r in reports if "ready" not in r and r["index"] < intervals],
            "store": [s for s in store_usage if s["index"] < intervals],
            "exitcodes": {p.name: p.exitcode for p in procs},
            "pushes": pushes, "final_version": version, "intervals": intervals}


def _complete(reports: list[Report], intervals: int) -> int:
    return sum(1 for r in reports if "index" in r and r["index"] < intervals)


def summarise(run: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per interval: errors, latency quantiles, RSS and fds."""
    rows = []
    for i in range(run["intervals"]):
        mine = [r for r in run["reports"] if r["index"] == i]
        clients = [r for r in mine if "latency" in r]
        row: dict[str, Any] = {"interval": i, "reports": len(mine)}
        row["calls"] = sum(len(v) for r in clients for v in r["latency"].values())
        for key in ("escaped", "degraded", "canary_wrong", "sdk_degraded", "sdk_fetch_errors",
                    "sdk_feed_errors", "sdk_snapshot_loads", "sdk_config_rejected"):
            row[key] = sum(r[key] for r in clients)
        row["config_version_min"] = min((r["config_version"] for r in clients), default=None)
        for kind in KINDS:
            lat = sorted(x for r in clients for x in r["latency"][kind])
            if lat:
                row[f"{kind}_p50_ms"] = round(percentile(lat, 0.5) * 1e3, 3)
                row[f"{kind}_p99_ms"] = round(percentile(lat, 0.99) * 1e3, 3)
                row[f"{kind}_max_ms"] = round(lat[-1] * 1e3, 1)
        for name in ("writer", "feed"):
            rec: Report = next((r for r in mine if r["name"] == name), {})
            keys = ("puts", "retracts") if name == "writer" else ("records", "resyncs", "lag",
                                                                   "out_of_order")
            for key in (*keys, "errors"):
                row[f"{name}_{key}"] = rec.get(key)
        store: Report = next((s for s in run["store"] if s["index"] == i), {})
        row["store_rss_mib"] = round(store.get("rss", 0) / 2**20, 1)
        row["store_fds"] = store.get("fds")
        row["client_rss_mib_max"] = round(max((r["rss"] for r in clients), default=0) / 2**20, 1)
        row["client_fds_max"] = max((r["fds"] for r in clients), default=None)
        rows.append(row)
    return rows


def series(run: dict[str, Any]) -> dict[str, list[dict[str, int]]]:
    """Per process (and the store), its RSS and fds interval by interval."""
    out: dict[str, list[dict[str, int]]] = {"store": sorted(run["store"], key=lambda s: s["index"])}
    for r in sorted(run["reports"], key=lambda r: r["index"]):
        out.setdefault(r["name"], []).append({"index": r["index"], "rss": r["rss"],
                                              "fds": r["fds"]})
    return out


def leaks(run: dict[str, Any], warmup: int) -> list[str]:
    """Processes whose fds or RSS grow after the first `warmup` intervals beyond noise."""
    problems = []
    for name, points in series(run).items():
        after = [p for p in points if p["index"] >= warmup]
        if len(after) < 2:
            continue
        fds = [p["fds"] for p in after]
        steps = [b - a for a, b in itertools.pairwise(fds)]
        if fds[-1] - fds[0] > FD_SLACK or (len(steps) >= RISING and all(s > 0 for s in steps)):
            problems.append(f"{name}: open fds {fds}")
        rss = [p["rss"] for p in after]
        if rss[-1] - min(rss) > RSS_SLACK:
            problems.append(f"{name}: RSS MiB {[round(x / 2**20, 1) for x in rss]}")
    return problems


def soak_results(run: dict[str, Any], warmup: int, seconds: float,
                 interval: float) -> dict[str, Any]:
    rows = summarise(run)
    cumulative = ("sdk_degraded", "sdk_fetch_errors", "sdk_feed_errors", "sdk_snapshot_loads",
                  "sdk_config_rejected")
    return {
        "setup": {"seconds": seconds, "interval_s": interval, "warmup_intervals": warmup,
                  "processes": sorted(run["exitcodes"]), "config_pushes": len(run["pushes"]),
                  "final_config_version": run["final_version"], "page": PAGE},
        "intervals": rows,
        "totals": {key: sum(r[key] or 0 for r in rows)
                   for key in ("calls", "escaped", "degraded", "canary_wrong",
                               "writer_puts", "writer_retracts", "writer_errors",
                               "feed_records", "feed_errors", "feed_out_of_order")}
        | {key: rows[-1][key] if rows else 0 for key in cumulative},
        "leaks": leaks(run, warmup),
        "exitcodes": run["exitcodes"],
        "tracebacks": [e for r in run["reports"] for e in r.get("tracebacks", [])][:10],
        "machine": machine_info(),
    }


def test_soak(tmp_path: Path) -> None:
    seconds, interval = 60.0, 10.0
    run = run_soak(tmp_path, seconds, interval, push_every=5.0)
    results = soak_results(run, 2, seconds, interval)
    write_results("soak.quick", results)
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1))
    assert all(code == 0 for code in run["exitcodes"].values()), run["exitcodes"]
    totals = results["totals"]
    assert totals["escaped"] == 0, results["tracebacks"]
    assert totals["canary_wrong"] == 0
    assert totals["writer_errors"] == 0 and totals["feed_errors"] == 0, results["tracebacks"]
    assert totals["feed_out_of_order"] == 0
    assert totals["calls"] > 0 and totals["writer_puts"] > 0 and totals["feed_records"] > 0
    assert len(run["reports"]) == run["intervals"] * len(run["exitcodes"])  # nobody stalled
    last = {r["name"]: r["config_version"] for r in run["reports"]
            if r["index"] == run["intervals"] - 1 and "config_version" in r}
    assert min(last.values()) >= run["final_version"] - 2, last  # pushes reach every process
    assert results["leaks"] == []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=60.0, help="report every N seconds")
    parser.add_argument("--warmup", type=int, default=3, help="intervals before leak checks")
    parser.add_argument("--sdk-processes", type=int, default=8)
    parser.add_argument("--rate", type=float, default=50.0, help="calls/s per SDK process")
    parser.add_argument("--write-rate", type=float, default=20.0, help="writes/s")
    parser.add_argument("--push-every", type=float, default=15.0, help="seconds between pushes")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        workdir = args.workdir or Path(tmp)
        run = run_soak(workdir, seconds, args.interval, sdk_processes=args.sdk_processes,
                       rate=args.rate, write_rate=args.write_rate, push_every=args.push_every,
                       log=lambda line: print(line, file=sys.stderr, flush=True))
    results = soak_results(run, args.warmup, seconds, args.interval)
    path = write_results("soak", results)
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1))
    print(f"written to {path}", file=sys.stderr)
    failed = results["totals"]["escaped"] or results["leaks"] or any(run["exitcodes"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
