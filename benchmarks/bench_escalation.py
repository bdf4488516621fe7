"""Escalation rules on the check path: an entity with 5 labels, with 3 rules and without.

One process, one run per repetition, both configurations timed in the same run
(the same labels, registry, surface and client code; the only difference is the
surface's `escalate` list). Per case, the median ns per call:

- `check_memo`: `client.check(entity, surface)` with a warm cache, the decision
  memoised (what a product host serves for a hot labeled entity; the native gate
  answers it without Python);
- `check_resolve`: the same warm check with the memo off (MEMO_SECONDS = 0), so
  every call resolves the cached labels: selector, scores, ranking and, with
  rules, the escalation;
- `resolve`: `Resolver.resolve` alone on the same labels;
- `resolve_quiet`: the same with labels on which no rule fires (the second `spam`
  label from the first one's system: one source), the common labeled case.

The 5 labels come from 5 systems (2 medium `spam`, 1 high `scam`, 2 low
`clickbait`); of the 3 rules the issue's "spam account" fires (2 medium), the
other two are evaluated and do not fire. Three runs; each figure is the median
of the runs' medians with min and max, ratios taken within each run. The
issue's bound: with rules / without <= 1.5x. Written to
.benchmarks/bench_escalation.json with machine and versions; `./dev bench`
runs it.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._harness import machine_info, write_results  # noqa: E402
from enforce_sdk import Enforcement, EnforcementClient, Label, Source, SourceType  # noqa: E402
from enforce_sdk.client import read_path  # noqa: E402
from enforce_sdk.config.document import EnforcementConfig  # noqa: E402

FULL = os.environ.get("ENFORCE_BENCH_FULL") == "1"
NOW = datetime.now(UTC)
ENTITY = "user:1"
REASONS = {
    "scam": {"tier": "high", "description": "Fraud for money", "owner": "trust-fraud"},
    "spam": {"tier": "medium", "description": "Unsolicited bulk content", "owner": "spam-team"},
    "clickbait": {"tier": "low", "description": "Misleading teaser", "owner": "quality"},
}
RULES = [
    {"name": "spam account", "when": "high >= 1 or medium >= 2 or (low >= 2 and medium >= 1)",
     "over": "reason = spam and age < 365d", "enforce": "block", "reason": "spam"},
    {"name": "scam ring", "when": "high >= 2", "over": "reason in [scam, spam]",
     "enforce": "remove", "reason": "scam"},
    {"name": "low quality", "when": "low >= 3", "over": "age < 90d", "enforce": "limit",
     "reason": "clickbait"},
]
SURFACE: dict[str, Any] = {
    "hide_from": "block", "half_life": "7d",
    "weights": {"review_tool": 1.0, "spam_model_a": 0.8},
    "selector": "type = human or confidence >= 0.5",
}


def config(rules: bool) -> dict[str, Any]:
    surface = {**SURFACE, "escalate": RULES} if rules else dict(SURFACE)
    return {"version": 1, "reasons": REASONS, "surfaces": {"accounts": surface},
            "cache": {"ttl": "1h", "negative_ttl": "1h"}}


def labels(quiet: bool = False) -> list[Label]:
    """The 5 labels; `quiet`: the second spam label comes from the first one's system, so no
    rule fires (the common case of a labeled entity)."""
    def lab(system: str, enforcement: Enforcement, reason: str, hours: int,
            name: str = "v1") -> Label:
        return Label(ENTITY, Source(system, SourceType.AUTOMATED, name), enforcement, reason,
                     NOW - timedelta(hours=hours), confidence=0.9)
    second = lab("spam_model_a", Enforcement.LIMIT, "spam", 30, "v2") if quiet else \
        lab("spam_model_b", Enforcement.LIMIT, "spam", 30)
    return [lab("spam_model_a", Enforcement.LIMIT, "spam", 5), second,
            lab("fraud_model", Enforcement.LIMIT, "scam", 50),
            lab("title_model", Enforcement.LIMIT, "clickbait", 70),
            lab("thumb_model", Enforcement.LIMIT, "clickbait", 90)]


class MemoryStore:
    def __init__(self, found: Mapping[str, Sequence[Label]]) -> None:
        self.found = found

    def get_many(self, keys: list[str]) -> Mapping[str, Sequence[Label]]:
        return {k: self.found[k] for k in keys if k in self.found}

    def close(self) -> None:
        pass


def per_call_ns(fn: Callable[[], object], calls: int) -> float:
    """Median ns per call over slices of 1,000 calls, each slice timed once."""
    clock = time.perf_counter_ns
    samples = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(calls // 1000):
            t = clock()
            for _ in range(1000):
                fn()
            samples.append((clock() - t) / 1000)
    finally:
        gc.enable()
    return statistics.median(samples)


def one_run(calls: int) -> dict[str, float]:
    out: dict[str, float] = {}
    found = {ENTITY: labels()}
    quiet = {ENTITY: labels(quiet=True)}
    for name, rules in (("rules", True), ("plain", False)):
        client = EnforcementClient("http://unused", config(rules), store=MemoryStore(found))
        try:
            saved = read_path.MEMO_SECONDS
            read_path.MEMO_SECONDS = 0.0  # type: ignore[misc]
            try:  # first: no memo entry of an earlier check may still be current
                first = client.check(ENTITY, "accounts")  # warm: the cache holds the labels
                want = Enforcement.BLOCK if rules else Enforcement.LIMIT
                assert first.enforcement is want, first.explain()
                out[f"check_resolve_{name}"] = per_call_ns(
                    lambda c=client: c.check(ENTITY, "accounts"), calls)
            finally:
                read_path.MEMO_SECONDS = saved  # type: ignore[misc]
            client.check(ENTITY, "accounts")  # memoised from here on
            out[f"check_memo_{name}"] = per_call_ns(lambda c=client: c.check(ENTITY, "accounts"),
                                                    calls)
        finally:
            client.close()
        resolver = EnforcementConfig.from_dict(config(rules)).resolver("accounts")
        now = time.time()
        out[f"resolve_{name}"] = per_call_ns(
            lambda r=resolver, t=now: r.resolve(ENTITY, found, {}, t), calls)
        out[f"resolve_quiet_{name}"] = per_call_ns(
            lambda r=resolver, t=now: r.resolve(ENTITY, quiet, {}, t), calls)
    return out


CASES = ("check_memo", "check_resolve", "resolve", "resolve_quiet")


def run(calls: int, runs: int = 3) -> dict[str, Any]:
    results = [one_run(calls) for _ in range(runs)]

    def summary(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    ns = {name: summary([r[name] for r in results]) for name in results[0]}
    ratios = {f"{c}_rules_vs_plain": summary([r[f"{c}_rules"] / r[f"{c}_plain"] for r in results])
              for c in CASES}
    return {"calls": calls, "runs": runs, "labels": 5, "rules": len(RULES), "ns": ns,
            "ratios": ratios}


def test_bench_escalation_runs_small() -> None:
    """Runs once in the default test run, at a small size: the cases run and agree."""
    out = run(calls=2_000, runs=1)
    assert set(out["ns"]) == {f"{c}_{n}" for c in CASES for n in ("rules", "plain")}
    assert all(v["median"] > 0 for v in out["ns"].values())


if __name__ == "__main__":
    figures = run(calls=200_000 if FULL else 50_000)
    figures["machine"] = machine_info()
    path = write_results("bench_escalation", figures)
    for name, v in figures["ns"].items():
        print(f"{name:>22}: {v['median']:8.1f} ns  ({v['min']:.1f}-{v['max']:.1f})")
    for name, v in figures["ratios"].items():
        print(f"{name:>30}: {v['median']:6.2f}x  ({v['min']:.2f}-{v['max']:.2f})")
    print("written to", path)
