"""Stats: counters, histogram quantiles, Prometheus export."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from enforce_sdk.client.stats import COUNTERS, LatencyHistogram, Stats


def test_histogram_quantiles_bound_the_recorded_values() -> None:
    hist = LatencyHistogram()
    for ns in [100] * 90 + [10_000] * 9 + [1_000_000]:
        hist.record(ns)
    assert hist.count == 100
    assert 100 <= hist.quantile(0.5) <= 128
    assert 10_000 <= hist.quantile(0.99) <= 16_384
    assert hist.quantile(1.0) >= 1_000_000
    assert hist.to_dict()["mean_ns"] == (90 * 100 + 9 * 10_000 + 1_000_000) / 100


def test_empty_histogram_reports_zero() -> None:
    assert LatencyHistogram().quantile(0.99) == 0.0


def test_to_dict_has_every_counter_and_gauges_never_raise() -> None:
    stats = Stats()
    stats.checks += 3
    stats.add_gauge("cache_entries", lambda: 7)
    stats.add_gauge("broken", lambda: 1 / 0)
    snap = stats.to_dict()
    assert set(COUNTERS) <= set(snap)
    assert snap["checks"] == 3
    assert snap["cache_entries"] == 7
    assert snap["broken"] is None
    stats.reset()
    assert stats.to_dict()["checks"] == 0


def test_prometheus_export_reads_live_values() -> None:
    stats = Stats()
    registry = CollectorRegistry()
    stats.register_prometheus(registry)
    stats.fetches += 2
    stats.check_latency.record(1500)
    text = generate_latest(registry).decode()
    assert "enforce_sdk_fetches_total 2.0" in text
    assert 'enforce_sdk_check_seconds_bucket{le="+Inf"} 1.0' in text
