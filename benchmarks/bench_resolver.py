"""Selector evaluation and Resolver.resolve() costs, beside baselines measured in the same run.

The hot path of a cache-hit check() resolves an unlabeled key: that must cost a
few hundred ns. Cases:

- baseline: a bound method call returning its argument; a dict.get; building a
  Decision through its frozen-dataclass __init__ (what the fast path avoids);
- unlabeled: resolve(entity, {entity: ()}, {}, now) (what check() passes on a
  negative cache hit), with empty link keys, and Resolver.allow(entity);
- labeled: one label; three labels on the item plus a linked domain;
- selector: the issue's example selector on one label, and the match-all selector.

Run as pytest-benchmark (`pytest benchmarks/bench_resolver.py --benchmark-enable`)
or directly (`python benchmarks/bench_resolver.py`) for timeit medians, written
to .benchmarks/bench_resolver.json with machine and versions. The default test
run executes each case once (`--benchmark-disable`).
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import timeit
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from enforce_sdk import Enforcement, Label, Source, SourceType
from enforce_sdk.config.document import EnforcementConfig
from enforce_sdk.policy.decision import Decision
from enforce_sdk.policy.selector import Selector

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._harness import machine_info, write_results  # noqa: E402

FULL = os.environ.get("ENFORCE_BENCH_FULL") == "1"
NOW_TS = 1_800_000_000.0
NOW = datetime.fromtimestamp(NOW_TS, UTC)
CONFIG = EnforcementConfig.from_dict({
    "version": 1,
    "surfaces": {"home_feed": {
        "hide_from": "limit",
        "half_life": "7d",
        "weights": {"review_tool": 1.0, "spam_domain_model": 0.8},
        "related": {"domain": "block", "creator": "remove"},
    }},
})
RESOLVER = CONFIG.resolver("home_feed")
EXAMPLE = Selector.parse(
    'type = human or (type = automated and system = "spam_domain_model" and confidence >= 0.9)'
)
MODEL = Source("spam_domain_model", SourceType.AUTOMATED, "v3")
REVIEW = Source("review_tool", SourceType.HUMAN, "alice")
ONE = {"pin:1": (Label("pin:1", MODEL, Enforcement.BLOCK, "spam", NOW - timedelta(days=1),
                       confidence=0.95),)}
MANY = {
    "pin:1": (
        Label("pin:1", MODEL, Enforcement.BLOCK, "spam", NOW - timedelta(days=1), confidence=0.95),
        Label("pin:1", REVIEW, Enforcement.ALLOW, "appeal_upheld", NOW - timedelta(hours=3)),
        Label("pin:1", Source("nsfw_model", SourceType.AUTOMATED, "v1"), Enforcement.LIMIT,
              "porn", NOW - timedelta(days=3), confidence=0.7),
    ),
    "domain:spam.example": (
        Label("domain:spam.example", MODEL, Enforcement.BLOCK, "spam", NOW - timedelta(days=2)),
    ),
}
LINKS = {"domain": "domain:spam.example", "creator": "user:42"}
NO_LINKS: dict[str, str] = {}
UNLABELED = {"pin:1": ()}
UNLABELED_LINKED = {"pin:1": (), "domain:spam.example": (), "user:42": ()}
LABEL = ONE["pin:1"][0]


class _Baseline:
    def const(self, entity: str) -> str:
        return entity


_BASE = _Baseline()
_DICT = {"pin:1": 1}

CASES: dict[str, Callable[[], Any]] = {
    "baseline_method_call": lambda: _BASE.const("pin:1"),
    "baseline_dict_get": lambda: _DICT.get("pin:1"),
    "baseline_decision_init": lambda: Decision("pin:1", "home_feed", Enforcement.ALLOW, True),
    "resolve_unlabeled": lambda: RESOLVER.resolve("pin:1", UNLABELED, NO_LINKS, NOW_TS),
    "resolve_unlabeled_with_links": lambda: RESOLVER.resolve(
        "pin:1", UNLABELED_LINKED, LINKS, NOW_TS),
    "allow": lambda: RESOLVER.allow("pin:1"),
    "resolve_one_label": lambda: RESOLVER.resolve("pin:1", ONE, NO_LINKS, NOW_TS),
    "resolve_3_labels_and_domain": lambda: RESOLVER.resolve("pin:1", MANY, LINKS, NOW_TS),
    "selector_example": lambda: EXAMPLE.predicate(LABEL, NOW_TS),
    "selector_match_all": lambda: Selector.all().predicate(LABEL, NOW_TS),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bench(benchmark: Any, case: str) -> None:
    fn = CASES[case]
    result = benchmark(fn)
    if case.startswith("resolve_unlabeled") or case in ("allow", "baseline_decision_init"):
        assert result.enforcement == Enforcement.ALLOW and result.label is None
    elif case.startswith("resolve_"):
        assert result.enforcement == Enforcement.BLOCK


def measure(number: int, repeat: int) -> dict[str, dict[str, float]]:
    """Median and min ns per call of every case (timeit, loop overhead subtracted)."""
    empty = lambda: None  # noqa: E731
    gc.collect()
    overhead = min(timeit.repeat(empty, number=number, repeat=repeat)) / number
    out: dict[str, dict[str, float]] = {}
    for name, fn in CASES.items():
        gc.collect()
        n = number // 20 if "3_labels" in name or "one_label" in name else number
        runs = [t / n - overhead for t in timeit.repeat(fn, number=n, repeat=repeat)]
        out[name] = {"median_ns": round(statistics.median(runs) * 1e9, 1),
                     "min_ns": round(min(runs) * 1e9, 1)}
    base = out["baseline_method_call"]["median_ns"]
    for row in out.values():
        row["x_method_call"] = round(row["median_ns"] / base, 2) if base > 0 else float("nan")
    return out


def main() -> None:
    number, repeat = (1_000_000, 15) if FULL else (200_000, 7)
    cases = measure(number, repeat)
    results = {"machine": machine_info(), "number": number, "repeat": repeat, "cases": cases}
    for name, row in cases.items():
        print(f"{name:32s} median {row['median_ns']:9.1f} ns   min {row['min_ns']:9.1f} ns"
              f"   x{row['x_method_call']}")
    print("written to", write_results("bench_resolver", results))


if __name__ == "__main__":
    main()
