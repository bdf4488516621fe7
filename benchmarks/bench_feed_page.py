"""A realistic feed page: pins with a link URL, a creator and an image, beside baselines.

Each pin carries its link (mixed hosts, 5% of hosts labeled), its creator (2%
labeled) and its image signature (1% labeled); pages draw pins by Zipf
popularity; the cache is warm (every page was decided once before timing), so
this measures the in-process cost, not the store. Cases, one run, medians:

- `filter_linked`: filter() of a 100-pin page with related = link, creator, image;
- `check_linked`: check() of one such pin;
- `filter_bare` / `check_bare`: the same pins as bare keys (no related);
- `blocklist`: a dict blocklist doing the same 4 lookups per pin (pin, link host
  through urlsplit, creator, image): what the SDK replaces.

Per-item figures are reported (a page's time / its items). The decisions are
checked against the blocklist's on the same pages: both hide the same pins.

Run: `python benchmarks/bench_feed_page.py` (writes .benchmarks/bench_feed_page.json)
or `./dev bench benchmarks/bench_feed_page.py`; the default test run executes it
once on small sizes. Compare two code versions by running the script under each
(`PYTHONPATH=<tree>/src python benchmarks/bench_feed_page.py`) in the same session.
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import sys
import timeit
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._harness import machine_info, write_results  # noqa: E402
from enforce_sdk import (  # noqa: E402
    Enforcement,
    EnforcementClient,
    Label,
    Source,
    SourceType,
    domain_key_from_url,
)

FULL = os.environ.get("ENFORCE_BENCH_FULL") == "1"
PAGE = 100
NOW = datetime(2026, 6, 1, tzinfo=UTC)
MODEL = Source("spam_domain_model", SourceType.AUTOMATED, "v3")
REVIEW = Source("review_tool", SourceType.HUMAN, "alice")
CONFIG = {
    "version": 1,
    "surfaces": {"home_feed": {"hide_from": "limit",
                               "related": {"domain": "block", "creator": "block",
                                           "image": "block"}}},
    "cache": {"ttl": "1h", "negative_ttl": "1h", "max_entries": 1_000_000},
}
_TLDS = ("com", "net", "org", "co.uk", "com.br", "de", "io", "xyz")


class MemoryReader:
    """The store, in process: the labels of every labeled key (the cache is warm anyway)."""

    def __init__(self, labels: Mapping[str, Sequence[Label]]) -> None:
        self.labels = labels
        self.reads = 0

    def get_many(self, keys: list[str]) -> Mapping[str, Sequence[Label]]:
        self.reads += 1
        return {k: self.labels[k] for k in keys if k in self.labels}

    def close(self) -> None:
        pass


def _zipf_index(rng: random.Random, n: int) -> int:
    """An index in [0, n) with Zipf-like popularity (s = 1): few pins are most of the views."""
    return min(n - 1, int(n ** rng.random()) - 1)


def make_universe(pins: int, seed: int = 7) -> tuple[list[dict[str, str]], dict[str, list[Label]]]:
    """Pins with link, creator and image, and the labels of the labeled ones (all block)."""
    rng = random.Random(seed)
    hosts = [f"{rng.choice(('www.', '', 'm.', 'shop.'))}site{i}.{rng.choice(_TLDS)}"
             for i in range(max(50, pins // 5))]
    users = [f"user:{rng.getrandbits(40)}" for _ in range(max(100, pins // 2))]
    labels: dict[str, list[Label]] = {}

    def block(key: str, source: Source) -> None:
        labels.setdefault(key, []).append(Label(key, source, Enforcement.BLOCK, "spam",
                                                NOW - timedelta(days=1)))

    for host in rng.sample(hosts, len(hosts) // 20):  # 5% of hosts
        block(domain_key_from_url(f"https://{host}/"), MODEL)
    for user in rng.sample(users, len(users) // 50):  # 2% of creators
        block(user, REVIEW)
    items = []
    for i in range(pins):
        image = f"{rng.getrandbits(256):064x}"
        if rng.random() < 0.01:  # 1% of images
            block(f"image:{image}", MODEL)
        path = "/".join(rng.choice(("p", "deal", "x", "item", "a%20b")) for _ in range(2))
        items.append({
            "id": f"pin:{i}",
            "link": f"https://{rng.choice(hosts)}/{path}?ref={i}",
            "creator": rng.choice(users),
            "image": image,
        })
    return items, labels


def related(item: Mapping[str, str]) -> dict[str, str]:
    return {"domain": item["link"], "creator": item["creator"], "image": item["image"]}


def blocklist_visible(page: Sequence[Mapping[str, str]], blocked: Mapping[str, object]
                      ) -> list[Mapping[str, str]]:
    """The blocklist the SDK replaces: 4 dict lookups per pin after splitting the URL."""
    out = []
    for item in page:
        host = urlsplit(item["link"]).hostname or ""
        if (item["id"] in blocked or f"domain:{host}" in blocked or item["creator"] in blocked
                or f"image:{item['image']}" in blocked):
            continue
        out.append(item)
    return out


def blocklist_of(labels: Mapping[str, Sequence[Label]], items: Sequence[Mapping[str, str]]
                 ) -> dict[str, bool]:
    """The blocklist's keys: the labeled keys, and each labeled domain under the exact host
    its links use (a blocklist has no Public Suffix List: it lists hosts)."""
    blocked: dict[str, bool] = dict.fromkeys(labels, True)
    for item in items:
        host = urlsplit(item["link"]).hostname or ""
        if domain_key_from_url(item["link"]) in labels:
            blocked[f"domain:{host}"] = True
    return blocked


def pages(items: Sequence[dict[str, str]], count: int, seed: int = 11) -> list[list[dict[str, str]]]:
    rng = random.Random(seed)
    return [[items[_zipf_index(rng, len(items))] for _ in range(PAGE)] for _ in range(count)]


def run(pins: int, page_count: int, repeat: int) -> dict[str, Any]:
    items, labels = make_universe(pins)
    feed = pages(items, page_count)
    blocked = blocklist_of(labels, items)
    reader = MemoryReader(labels)
    client = EnforcementClient("http://unused", CONFIG, store=reader)
    try:
        key: Callable[[Mapping[str, str]], str] = lambda it: it["id"]  # noqa: E731
        for page in feed:  # warm the cache, and check the SDK against the blocklist
            shown = client.filter(page, "home_feed", key=key, related=related)
            assert [it["id"] for it in shown] == [it["id"] for it in
                                                  blocklist_visible(page, blocked)]
        reads_warm = reader.reads
        one = feed[0][0]
        one_links = related(one)
        cases: dict[str, Callable[[], object]] = {
            "filter_linked": lambda: [client.filter(p, "home_feed", key=key, related=related)
                                      for p in feed],
            "filter_bare": lambda: [client.filter([it["id"] for it in p], "home_feed")
                                    for p in feed],
            "blocklist": lambda: [blocklist_visible(p, blocked) for p in feed],
            "check_linked": lambda: client.check(one["id"], "home_feed", one_links),
            "check_bare": lambda: client.check(one["id"], "home_feed"),
        }
        per_item = {"filter_linked", "filter_bare", "blocklist"}
        results: dict[str, float] = {}
        for name, fn in cases.items():
            number = 1 if name in per_item else 2000
            gc.collect()
            times = timeit.repeat(fn, number=number, repeat=repeat)
            divisor = number * (len(feed) * PAGE if name in per_item else 1)
            results[name] = statistics.median(times) / divisor * 1e6  # microseconds
        assert reader.reads == reads_warm, "a warm page went to the store"
    finally:
        client.close()
    base = results["blocklist"]
    return {
        "pins": pins,
        "pages": page_count,
        "page_items": PAGE,
        "median_us": results,
        "vs_blocklist": {k: v / base for k, v in results.items()},
        "linked_vs_bare": {
            "filter": results["filter_linked"] / results["filter_bare"],
            "check": results["check_linked"] / results["check_bare"],
        },
    }


def test_feed_page_decisions_match_the_blocklist() -> None:
    """Runs once in the default test run: the SDK hides exactly what the blocklist hides."""
    out = run(pins=2000, page_count=3, repeat=1)
    assert set(out["median_us"]) == {"filter_linked", "filter_bare", "blocklist",
                                     "check_linked", "check_bare"}
    assert all(v > 0 for v in out["median_us"].values())


if __name__ == "__main__":
    figures = run(pins=100_000 if FULL else 20_000, page_count=20, repeat=7)
    figures["machine"] = machine_info()
    path = write_results("bench_feed_page", figures)
    for name, us in figures["median_us"].items():
        print(f"{name:>14}: {us:8.3f} us  ({figures['vs_blocklist'][name]:.1f}x blocklist)")
    print("linked/bare:", {k: round(v, 1) for k, v in figures["linked_vs_bare"].items()})
    print("written to", path)
