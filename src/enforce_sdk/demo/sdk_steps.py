"""The demo's SDK steps: product decisions from the store the earlier steps fed.

A feed page goes through `EnforcementClient.check_many` on three surfaces; the
hidden items are explained; a feed-like workload runs through `filter`; then a
reviewer's new label reaches decisions through the change feed, no restart.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from ..client.client import EnforcementClient
from ..model.label import Enforcement, Label, Source, SourceType
from .context import DemoContext
from .sample import REVIEW_TOOL, universe_keys

SURFACES = ("home_feed", "search", "profile")
DEMO_CONFIG: dict[str, Any] = {
    "version": 1,
    "cache": {"ttl": "60s", "negative_ttl": "30s", "serve_stale_for": "10m"},
    "store": {"timeout": "500ms", "retries": 1},
    "surfaces": {
        "home_feed": {
            "selector": 'type = human or (type = automated and confidence >= 0.9)',
            "hide_from": "limit",
            "half_life": "7d",
            "weights": {REVIEW_TOOL: 1.0, "spam_domain_model": 0.8, "bot_detector": 0.6},
            "related": {"domain": "block", "creator": "remove"},
        },
        "search": {"hide_from": "block", "half_life": "14d", "fail_mode": "closed",
                   "related": {"domain": "block"}},
        "profile": {"hide_from": "remove", "half_life": "30d"},
    },
}
PAGE = 50


def _client(ctx: DemoContext) -> EnforcementClient:
    return EnforcementClient(ctx.url, DEMO_CONFIG, token=ctx.reader_token)


def _page(ctx: DemoContext, n: int, seed: int) -> list[str]:
    labeled = sorted({lb.entity for lb in ctx.labels if not lb.entity.startswith("domain:")})
    return universe_keys(n, labeled_fraction=0.2, seed=seed, labeled=labeled)


def feed_page_decisions(ctx: DemoContext) -> None:
    """One feed page on three surfaces; the hidden items explained (at most three)."""
    page = list(dict.fromkeys(_page(ctx, PAGE, seed=ctx.seed)))
    domain = next(lb.entity for lb in ctx.labels
                  if lb.entity.startswith("domain:") and lb.enforcement >= Enforcement.BLOCK
                  and lb.source.type is SourceType.HUMAN)
    page.append("pin:900000000001")  # a clean pin that links a blocked domain
    related = [None] * (len(page) - 1) + [{"domain": domain.partition(":")[2]}]
    with _client(ctx) as client:
        by_surface = {s: client.check_many(page, s, related) for s in SURFACES}
        trips = client.stats.fetches
    for surface, decisions in by_surface.items():
        count = sum(not d.visible for d in decisions)
        ctx.out(f"  {surface:<10} {count:>3} of {len(page)} hidden")
    ctx.out(f"  store round trips for the three surfaces: {trips} (the cache holds raw labels)")
    hidden = [d for d in by_surface["home_feed"] if not d.visible]
    for decision in [hidden[0], hidden[-1]] if len(hidden) > 1 else hidden:
        ctx.out("")
        for line in decision.explain().splitlines()[:6]:
            ctx.out("  " + line)
    if not any(d.decided_by == domain for d in by_surface["home_feed"]):
        ctx.failures.append("the pin linking a blocked domain was not hidden")


def feed_workload(ctx: DemoContext) -> None:
    """A feed-like workload through filter(): 40 pages, Zipf popularity, 80% unlabeled."""
    stream = _page(ctx, 40 * PAGE, seed=ctx.seed + 1)  # one Zipf stream: popular items recur
    pages = [stream[i : i + PAGE] for i in range(0, len(stream), PAGE)]
    with _client(ctx) as client:
        start = time.perf_counter()
        shown = sum(len(client.filter(p, "home_feed")) for p in pages)
        elapsed = time.perf_counter() - start
        stats = client.stats.to_dict()
    items = len(pages) * PAGE
    ctx.out(f"  {items} items in {len(pages)} pages: {shown} shown, {items - shown} hidden, "
            f"{elapsed * 1e3:.0f} ms")
    ctx.out(f"  cache hits {stats['cache_hits']}, misses {stats['cache_misses']}, "
            f"store round trips {stats['fetches']} "
            f"({1000 * stats['fetches'] / items:.1f} per 1000 checks)")
    lat = stats["check_latency"]
    ctx.out(f"  per call: p50 <= {lat['p50_ns'] / 1e3:.0f} us, p99 <= {lat['p99_ns'] / 1e3:.0f} us; "
            f"degraded {stats['degraded']}")


def live_label(ctx: DemoContext) -> None:
    """A reviewer blocks a pin; a running client's decision changes within the feed latency."""
    entity = "pin:900000000042"
    with _client(ctx) as client:
        before = client.check(entity, "home_feed")
        label = Label(entity, Source(REVIEW_TOOL, SourceType.HUMAN, "rev-live"),
                      Enforcement.BLOCK, "spam", datetime.now(UTC))
        with ctx.writer() as writer:
            written = time.monotonic()
            writer.put(label)
        deadline = written + 10
        while client.check(entity, "home_feed").visible and time.monotonic() < deadline:
            time.sleep(0.005)
        after = client.check(entity, "home_feed")
        elapsed = time.monotonic() - written
        feed = Counter({"changes applied": client.stats.feed_changes})
    ctx.out(f"  before: {before.enforcement.wire} (visible={before.visible})")
    ctx.out(f"  after:  {after.enforcement.wire} (visible={after.visible}) "
            f"{elapsed * 1e3:.0f} ms after the write, "
            f"{feed['changes applied']} feed change(s) applied")
    if after.visible:
        ctx.failures.append("the new label did not reach the client's decisions")
