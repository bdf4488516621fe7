"""Counters and latency histograms of one client, readable as a dict or by Prometheus.

Counters are plain int attributes bumped without a lock: under CPython's GIL
`obj.n += 1` on an int cannot be interleaved (no eval-breaker check between its
bytecodes), so counts are exact there; a free-threaded build could lose rare
updates. Histograms use power-of-two nanosecond buckets, one list index bump.

The native gate (client/native_gate) answers most checks in C and counts them in
C: `checks`, `bloom_negatives`, `cache_hits` and `negative_hits` read as the
Python path's count plus the gate's, and `check_latency` in `to_dict()` and
Prometheus adds the gate's sampled latencies (one call in `SAMPLE` is timed and
counts for `SAMPLE`, so the clock is not read twice on every call).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from ..policy.decision import DegradedKind

COUNTERS = (
    "checks",  # decisions returned (one per item, check_many counts each item)
    "bloom_negatives",  # items answered by the bloom precheck without I/O
    "cache_hits",  # items answered from a fresh cache entry
    "negative_hits",  # cache hits whose entry says "no labels"
    "cache_misses",  # items that needed a fetch
    "fetches",  # store round trips
    "fetched_keys",  # keys asked in those round trips
    "fetch_errors",  # round trips that failed
    "coalesced_waits",  # items that waited on another caller's in-flight fetch
    "degraded",  # decisions flagged degraded (all causes)
    "stale_served",  # degraded decisions served from stale cache entries
    "fail_open",  # degraded decisions answered by fail-open
    "fail_closed",  # degraded decisions answered by fail-closed
    "internal_errors",  # unexpected exceptions caught on the serving path
    "bad_links",  # item links that could not be parsed (decided per the surface's on_bad_link)
    "config_updates",  # configs applied after the first
    "config_rejected",  # config versions refused (invalid or not newer)
    "feed_changes",  # change-feed records applied
    "feed_errors",  # change-feed polls that failed
    "feed_bad_pages",  # change-feed pages refused as malformed (each followed by a resync)
    "snapshot_loads",  # bloom snapshots loaded
    "hook_errors",  # hooks that raised (client/hooks): logged, counted, the check went on
)

#: A config source's own stats() (the ZooKeeper source's) exported with the
#: client's: counters, then gauges. `config_rejected` above counts only versions
#: the client refused; a document the source rejects never reaches the client
#: and is counted here (`config_source_rejected`).
SOURCE_COUNTERS = (
    "rejected",  # documents refused by the source (invalid, oversized, older)
    "read_denied",  # reads ZooKeeper refused for this identity (NoAuth)
    "stale_ignored",  # re-reads of the applied version
    "disconnects",
    "reconnects",
    "session_losses",
    "cache_write_errors",
)
SOURCE_GAUGES = ("applied_version", "age_seconds", "connected", "read_refused")

_BUCKETS = 40  # 2^0 .. 2^39 ns (~9 minutes): bucket i holds [2^(i-1), 2^i)


class LatencyHistogram:
    """Log2-bucketed nanosecond latencies; cheap enough to record on every check."""

    __slots__ = ("buckets", "count", "total_ns")

    def __init__(self) -> None:
        self.buckets = [0] * _BUCKETS
        self.count = 0
        self.total_ns = 0

    def record(self, ns: int) -> None:
        i = ns.bit_length()
        self.buckets[i if i < _BUCKETS else _BUCKETS - 1] += 1
        self.count += 1
        self.total_ns += ns

    def quantile(self, q: float) -> float:
        """Upper bound in ns of the bucket holding quantile q (0 if empty)."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for i, n in enumerate(self.buckets):
            seen += n
            if seen >= rank and n:
                return float(1 << i)
        return float(1 << (_BUCKETS - 1))

    def cumulative(self) -> Iterator[tuple[float, int]]:
        """(upper bound in seconds, cumulative count) pairs, for Prometheus buckets."""
        seen = 0
        for i, n in enumerate(self.buckets):
            seen += n
            yield (1 << i) / 1e9, seen

    def to_dict(self) -> dict[str, float]:
        return {
            "count": self.count,
            "mean_ns": self.total_ns / self.count if self.count else 0.0,
            "p50_ns": self.quantile(0.5),
            "p99_ns": self.quantile(0.99),
        }


class NativeCounts(Protocol):
    """What Stats reads of the native gate (native.binding.Gate)."""

    def counters(self) -> tuple[int, ...]: ...

    def histogram(self) -> tuple[list[int], int, int]: ...

    def reset_counters(self) -> None: ...


class _Merged:
    """A counter the native gate also keeps: the Python path's count plus the gate's.

    Assigning (`stats.checks += 1`) sets the Python part so that the sum reads as
    assigned; a stats object without a gate stores a plain int.
    """

    __slots__ = ("index", "name")

    def __init__(self, index: int) -> None:
        self.index = index
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Stats | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        own: int = obj.__dict__.get(self.name, 0)
        native = obj.native
        return own if native is None else own + native.counters()[self.index]

    def __set__(self, obj: Stats, value: int) -> None:
        native = obj.native
        obj.__dict__[self.name] = value if native is None else value - native.counters()[self.index]


class Stats:
    """One client's counters and histograms."""

    # counted by the native gate too, in the order of its counters()
    checks = _Merged(0)
    bloom_negatives = _Merged(1)
    cache_hits = _Merged(2)
    negative_hits = _Merged(3)
    cache_misses = 0
    fetches = fetched_keys = fetch_errors = coalesced_waits = 0
    degraded = stale_served = fail_open = fail_closed = internal_errors = bad_links = 0
    config_updates = config_rejected = feed_changes = feed_errors = snapshot_loads = 0
    feed_bad_pages = hook_errors = 0

    def __init__(self, clock_ns: Callable[[], int] = time.perf_counter_ns) -> None:
        self.clock_ns = clock_ns
        self.check_latency = LatencyHistogram()  # per call of check/check_many/filter
        self.fetch_latency = LatencyHistogram()  # per store round trip
        self.gauges: dict[str, Callable[[], float]] = {}
        self.config_source: Callable[[], Mapping[str, Any]] | None = None
        self.degraded_by_kind: dict[DegradedKind, int] = dict.fromkeys(DegradedKind, 0)
        self.native: NativeCounts | None = None  # the native gate, whose counts add to these
        # What client.status() reports of the store: the last exchange's outcome and the
        # last error (where, what, wall-clock time). None until there was one.
        self.store_reachable: bool | None = None
        self.last_error: tuple[str, str, float] | None = None

    def note_success(self) -> None:
        """An exchange with the store (read, feed poll, snapshot) succeeded."""
        self.store_reachable = True

    def note_failure(self, where: str, exc: BaseException) -> None:
        """An exchange with the store failed: `where` names it ("store read", ...)."""
        self.store_reachable = False
        self.last_error = (where, f"{type(exc).__name__}: {exc}", time.time())

    def merged_check_latency(self) -> LatencyHistogram:
        """`check_latency` with the native gate's sampled latencies added."""
        native = self.native
        if native is None:
            return self.check_latency
        buckets, count, total_ns = native.histogram()
        merged = LatencyHistogram()
        own = self.check_latency
        merged.buckets = [a + b for a, b in zip(own.buckets, buckets, strict=True)]
        merged.count = own.count + count
        merged.total_ns = own.total_ns + total_ns
        return merged

    def count_degraded(self, kind: DegradedKind, n: int = 1) -> None:
        """Count `n` degraded decisions of one kind (and in `degraded`, all kinds)."""
        self.degraded += n
        self.degraded_by_kind[kind] += n

    def add_gauge(self, name: str, read: Callable[[], float]) -> None:
        """Expose a value computed on read (cache size, config version, feed lag...)."""
        self.gauges[name] = read

    def add_config_source(self, read: Callable[[], Mapping[str, Any]]) -> None:
        """Export a config source's stats() (origin, age, its rejections) with these."""
        self.config_source = read

    def _source_stats(self) -> Mapping[str, Any] | None:
        read = self.config_source
        if read is None:
            return None
        try:
            return read()
        except Exception:  # a source must never break a stats read
            return None

    def reset(self) -> None:
        if self.native is not None:
            self.native.reset_counters()
        for name in COUNTERS:
            setattr(self, name, 0)
        self.degraded_by_kind = dict.fromkeys(DegradedKind, 0)
        self.check_latency = LatencyHistogram()
        self.fetch_latency = LatencyHistogram()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in COUNTERS}
        out["degraded_by_kind"] = {k.value: n for k, n in self.degraded_by_kind.items()}
        out["check_latency"] = self.merged_check_latency().to_dict()
        out["fetch_latency"] = self.fetch_latency.to_dict()
        for name, read in self.gauges.items():
            try:
                out[name] = read()
            except Exception:  # a gauge must never break a stats read
                out[name] = None
        if self.config_source is not None:
            source = self._source_stats()
            out["config_source"] = dict(source) if source is not None else None
        return out

    def prometheus_collector(self, prefix: str = "enforce_sdk") -> Any:
        """A prometheus_client collector reading these stats at scrape time (no hot-path cost)."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        stats = self

        class _Collector:
            def collect(self) -> Iterator[Any]:
                for name in COUNTERS:
                    yield CounterMetricFamily(
                        f"{prefix}_{name}", name.replace("_", " "), value=getattr(stats, name)
                    )
                by_kind = CounterMetricFamily(
                    f"{prefix}_degraded_by_kind", "degraded decisions by kind", labels=["kind"]
                )
                for kind, n in stats.degraded_by_kind.items():
                    by_kind.add_metric([kind.value], n)
                yield by_kind
                for hname, hist in (
                    ("check_seconds", stats.merged_check_latency()),
                    ("fetch_seconds", stats.fetch_latency),
                ):
                    buckets = [(repr(b), float(c)) for b, c in hist.cumulative()]
                    buckets[-1] = ("+Inf", float(hist.count))
                    yield HistogramMetricFamily(
                        f"{prefix}_{hname}",
                        hname.replace("_", " "),
                        buckets=buckets,
                        sum_value=hist.total_ns / 1e9,
                    )
                for gname, read in stats.gauges.items():
                    try:
                        value = float(read())
                    except Exception:
                        continue
                    yield GaugeMetricFamily(
                        f"{prefix}_{gname}", gname.replace("_", " "), value=value
                    )
                yield from _source_metrics(prefix, stats._source_stats())

        return _Collector()

    def register_prometheus(self, registry: Any = None, prefix: str = "enforce_sdk") -> Any:
        """Register the collector with a prometheus_client registry (default: the global one)."""
        if registry is None:
            from prometheus_client import REGISTRY

            registry = REGISTRY
        collector = self.prometheus_collector(prefix)
        registry.register(collector)
        return collector


def _source_metrics(prefix: str, source: Mapping[str, Any] | None) -> Iterator[Any]:
    """Prometheus families of a config source's stats (nothing if it has none)."""
    if source is None:
        return
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    for name in SOURCE_COUNTERS:
        value = source.get(name)
        if isinstance(value, int | float):
            yield CounterMetricFamily(f"{prefix}_config_source_{name}",
                                      "config source " + name.replace("_", " "), value=value)
    for name in SOURCE_GAUGES:
        value = source.get(name)
        if isinstance(value, int | float):  # bools count as 0/1
            yield GaugeMetricFamily(f"{prefix}_config_source_{name}",
                                    "config source " + name.replace("_", " "),
                                    value=float(value))
    origin = source.get("origin")
    if isinstance(origin, str):
        info = GaugeMetricFamily(f"{prefix}_config_source_origin",
                                 "where the applied config came from", labels=["origin"])
        info.add_metric([origin], 1.0)
        yield info
