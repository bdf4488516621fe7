"""The native gate against the Python read path: the same streams, the same answers.

Two clients share one store double and one pair of fake clocks; one answers with
the native gate (client/native_gate), the other with the Python path alone
(ENFORCE_SDK_NATIVE_GATE=0 at construction). Every operation runs on both, and
the decisions (or the exception type and message) must be equal: odd and hostile
keys, unknown surfaces, links good and bad, stale and current filters, grown
filters, evictions, config swaps, labels that expire while cached. Hypothesis
drives the mix; a recorded 200k-check Zipf stream checks the common case.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enforce_sdk import BloomFilter, Enforcement, EnforcementClient, Label, Source, SourceType
from enforce_sdk.client.bloom_gate import BloomGate
from enforce_sdk.client.native_gate import ENV
from enforce_sdk.config.document import BloomSettings
from enforce_sdk.demo.sample import universe_keys
from enforce_sdk.native import binding
from enforce_sdk.native.scalable_bloom import BloomLayers
from tests.helpers import FakeClock

pytestmark = pytest.mark.skipif(not binding.GATE_BUILT, reason="never: the gate is built by setup")

NOW = datetime(2026, 6, 1, tzinfo=UTC)
MODEL = Source("spam_model", SourceType.AUTOMATED, "v1")
REVIEW = Source("review_tool", SourceType.HUMAN, "rev")


def config(version: int = 1, home_related: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "version": version,
        "surfaces": {
            "home": {
                "hide_from": "limit",
                "related": dict(home_related if home_related is not None else
                                {"domain": "block", "creator": "block", "image": "limit",
                                 "board": "block"}),
                "on_bad_link": "fail_closed",
            },
            "search": {"hide_from": "block", "on_bloom_stale": "verify"},
            "notify": {"hide_from": "limit", "related": {"creator": "limit"},
                       "on_bad_link": "ignore"},
        },
        "cache": {"ttl": "30s", "negative_ttl": "10s", "max_entries": 100_000},
    }


def label(key: str, enforcement: Enforcement, *, source: Source = MODEL, age_h: float = 1,
          expires_in: float | None = None) -> Label:
    expires = None if expires_in is None else NOW + timedelta(seconds=expires_in)
    created = NOW - timedelta(hours=age_h)
    if expires is not None and expires <= created:
        created = expires - timedelta(seconds=1)
    return Label(key, source, enforcement, "spam", created, expires_at=expires)


class Store:
    """Labels in memory (the store double both clients read)."""

    def __init__(self, labels: Sequence[Label]) -> None:
        self.labels: dict[str, list[Label]] = {}
        for lab in labels:
            self.labels.setdefault(lab.entity, []).append(lab)

    def get_many(self, keys: list[str]) -> Mapping[str, Sequence[Label]]:
        return {k: self.labels[k] for k in keys if k in self.labels}

    def close(self) -> None:
        pass


LABELS = [
    label("pin:1", Enforcement.BLOCK),
    label("pin:2", Enforcement.LIMIT, source=REVIEW),
    label("pin:3", Enforcement.BLOCK, expires_in=-60),  # expired: the memo must still work
    label("pin:3", Enforcement.LIMIT, source=REVIEW, age_h=2),
    label("pin:4", Enforcement.REMOVE, expires_in=30),  # expires during a run
    label("user:7", Enforcement.BLOCK, source=REVIEW),
    label("domain:evil.test", Enforcement.BLOCK),
    label("image:ab12", Enforcement.LIMIT),
    label("board:b1", Enforcement.BLOCK),
]
LABELED = sorted({lab.entity for lab in LABELS})


class Pair:
    """The gate client and the reference client, over one store and one pair of clocks."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, labels: Sequence[Label] = LABELS) -> None:
        self.store = Store(labels)
        self.timer: FakeClock[float] = FakeClock(1000.0)
        self.wall: FakeClock[float] = FakeClock(NOW.timestamp())
        self.version = 1
        self.native = self._client(monkeypatch, "1")
        self.python = self._client(monkeypatch, "0")
        assert self.native._core.native_gate is not None
        assert self.python._core.native_gate is None

    def _client(self, monkeypatch: pytest.MonkeyPatch, gate: str) -> EnforcementClient:
        monkeypatch.setenv(ENV, gate)
        client = EnforcementClient("http://unused", config(), store=self.store,
                                   timer=self.timer, wall_clock=self.wall)
        core = client._core
        bloom = BloomGate(lambda etag, timeout: None, core.stats, BloomSettings(enabled=False),
                          timer=self.timer)
        core.bloom_gate = bloom
        bloom.watch(core._push_bloom_state)
        return client

    @property
    def clients(self) -> tuple[EnforcementClient, EnforcementClient]:
        return self.native, self.python

    def both(self, op: Callable[[EnforcementClient], Any]) -> Any:
        """Run `op` on both clients; their answers (or errors) must be equal."""
        answers = []
        for client in self.clients:
            try:
                answers.append(("ok", op(client)))
            except Exception as exc:
                answers.append(("raised", (type(exc), str(exc))))
        assert answers[0] == answers[1], f"native {answers[0]!r} != python {answers[1]!r}"
        return answers[0]

    # -- state changes, applied to both ----------------------------------------------------

    def set_bloom(self, keys: Sequence[str] | None, layers: int = 1) -> None:
        for client in self.clients:
            gate = client._core.bloom_gate
            assert gate is not None
            if keys is None:
                gate.bloom = None
                continue
            filters = [BloomFilter.for_capacity(1000, 0.01) for _ in range(layers)]
            for i, key in enumerate(keys):
                filters[i % layers].add(key)
            gate.bloom = filters[0] if layers == 1 else BloomLayers(filters)

    def set_fresh(self, fresh: bool) -> None:
        for client in self.clients:
            gate = client._core.bloom_gate
            assert gate is not None
            gate.fresh_until = self.timer() + 3600 if fresh else self.timer() - 1

    def evict(self, keys: Sequence[str]) -> None:
        for client in self.clients:
            client.cache.evict(keys)

    def swap_config(self, related: Mapping[str, str]) -> None:
        self.version += 1
        for client in self.clients:
            client._core._on_config(*_document(self.version, related))

    def close(self) -> None:
        for client in self.clients:
            client.close()


def _document(version: int, related: Mapping[str, str]) -> tuple[Any, Any]:
    from enforce_sdk.config.document import EnforcementConfig
    from enforce_sdk.config.source import ConfigMeta

    cfg = EnforcementConfig.from_dict(config(version, related))
    return cfg, ConfigMeta(version=version, origin="test", applied_at=NOW.timestamp())


@pytest.fixture
def pair(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pair]:
    p = Pair(monkeypatch)
    yield p
    p.close()


# -- the inputs ------------------------------------------------------------------------------

KEYS = [
    *LABELED, "pin:5", "pin:6", "pin:a:b", "user:8", "image:cd34", "image:AB12", "board:b2",
    " pin:1 ", "PIN:1", "Pin:5", "domain:evil.test", "domain:EVIL.test", "domain:ok.test",
    "pin:\u00e9", "pin:\u200b", "pin:x\ud800", "nokind", "", ":x", "pin:", "pin:" + "x" * 300,
    "a" * 33 + ":1", "pin:1\n", "pin:\x7f", 7, None, b"pin:1",
]
URLS = ["https://www.evil.test/a?b=1", "http://OK.test/", "https://shop.ok.test/x",
        "javascript:alert(1)", "https://exa mple.com/", "//evil.test/p", "evil.test",
        "https://[::1]/", "http://10.0.0.1:80/", "https://\u4f8b\u3048.jp/",
        "domain:evil.test", "https://" + "a" * 70 + ".test/"]
RELATED = st.one_of(
    st.none(),
    st.just({}),
    st.just("not a mapping"),
    st.dictionaries(
        st.sampled_from(["domain", "creator", "user", "image", "board", "bogus"]),
        st.one_of(st.none(), st.sampled_from(URLS), st.sampled_from(["7", "8", "user:7", "AB12",
                  "cd34", "b1", "b2", "pin:5", "", " ", 5])),
        max_size=4,
    ),
)
SURFACES = st.sampled_from(["home", "home", "search", "notify", "unknown", 5])
KEY = st.sampled_from(KEYS)


OPS = st.one_of(
    st.tuples(st.just("check"), KEY, SURFACES, RELATED),
    st.tuples(st.just("many"), st.lists(KEY, max_size=12), SURFACES,
              st.one_of(st.none(), st.lists(RELATED, min_size=12, max_size=12))),
    st.tuples(st.just("filter"), st.lists(KEY, max_size=12), SURFACES,
              st.booleans()),
    st.tuples(st.just("tick"), st.sampled_from([0.2, 1.5, 11.0, 31.0])),
    st.tuples(st.just("bloom"), st.sampled_from(["none", "labeled", "some", "layers", "empty"])),
    st.tuples(st.just("fresh"), st.booleans()),
    st.tuples(st.just("evict"), st.lists(st.sampled_from([*LABELED, "pin:5"]), max_size=3)),
    st.tuples(st.just("config"), st.sampled_from([{}, {"creator": "limit"},
                                                  {"domain": "block", "image": "block"}])),
)


def run_op(pair: Pair, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "check":
        _, key, surface, rel = op
        pair.both(lambda c: c.check(key, surface, rel))
    elif kind == "many":
        _, keys, surface, rels = op
        rels = None if rels is None else rels[: len(keys)]
        pair.both(lambda c: c.check_many(keys, surface, rels))
        pair.both(lambda c: c.check_many(tuple(keys), surface, rels))
        pair.both(lambda c: c.check_many(iter(keys), surface, rels))
    elif kind == "filter":
        _, keys, surface, with_links = op
        items = [{"id": k, "n": i} for i, k in enumerate(keys)]

        def links(it: Mapping[str, Any]) -> dict[str, str]:
            return {"creator": "7"} if it["n"] % 2 else {"domain": URLS[it["n"] % 4]}

        pair.both(lambda c: [it["n"] for it in c.filter(
            items, surface, key=lambda it: it["id"], related=links if with_links else None)])
        pair.both(lambda c: c.filter(list(keys), surface))
        pair.both(lambda c: c.filter(iter(keys), surface))
    elif kind == "tick":
        pair.timer.tick(op[1])
        pair.wall.tick(op[1])
    elif kind == "bloom":
        choice = op[1]
        if choice == "none":
            pair.set_bloom(None)
        elif choice == "labeled":
            pair.set_bloom(LABELED)
        elif choice == "some":
            pair.set_bloom([*LABELED[::2], "pin:5"])  # misses some labeled keys: still agree
        elif choice == "layers":
            pair.set_bloom(LABELED, layers=3)
        else:
            pair.set_bloom([])
    elif kind == "fresh":
        pair.set_fresh(op[1])
    elif kind == "evict":
        pair.evict(op[1])
    elif kind == "config":
        pair.swap_config(op[1])


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=1, max_size=40))
def test_the_gate_and_the_python_path_agree_on_any_stream(
    monkeypatch: pytest.MonkeyPatch, ops: list[tuple[Any, ...]]
) -> None:
    pair = Pair(monkeypatch)
    try:
        pair.set_bloom(LABELED)
        pair.set_fresh(True)
        for op in ops:
            run_op(pair, op)
        assert pair.native.stats.checks == pair.python.stats.checks
        assert pair.native.stats.degraded == pair.python.stats.degraded
    finally:
        pair.close()


def test_a_recorded_zipf_stream_of_200k_checks_agrees(pair: Pair) -> None:
    labeled = [f"pin:{i}" for i in range(0, 4000, 7)]
    for key in labeled:
        pair.store.labels[key] = [label(key, Enforcement.BLOCK if len(key) % 2 else
                                        Enforcement.LIMIT, expires_in=-5 if len(key) % 3 else None)]
    pair.set_bloom(labeled + LABELED)
    pair.set_fresh(True)
    stream = universe_keys(200_000, 0.05, seed=3, labeled=labeled)
    rng = random.Random(5)
    i = 0
    answered = 0
    while i < len(stream):
        size = rng.choice((1, 1, 1, 100))
        part = stream[i:i + size]
        i += size
        if size == 1:
            a, b = pair.native.check(part[0], "home"), pair.python.check(part[0], "home")
            assert a == b, part[0]
        else:
            a2, b2 = pair.native.check_many(part, "home"), pair.python.check_many(part, "home")
            assert a2 == b2
            f1, f2 = pair.native.filter(part, "home"), pair.python.filter(part, "home")
            assert f1 == f2
        if rng.random() < 0.001:
            pair.timer.tick(5.0)
            pair.wall.tick(5.0)
    assert pair.native.stats.checks == pair.python.stats.checks
    answered = pair.native._core.native_gate.counters()[0]
    assert answered > 0.9 * pair.native.stats.checks  # the gate, not the fallback, answered


def test_linked_items_are_answered_by_the_gate_and_agree(pair: Pair) -> None:
    pair.set_bloom(LABELED)
    pair.set_fresh(True)
    gate = pair.native._core.native_gate
    items = [{"id": f"pin:{i}", "link": URLS[i % len(URLS)], "creator": str(i % 10)}
             for i in range(5, 60)]

    def links(it: Mapping[str, str]) -> dict[str, str]:
        return {"domain": it["link"], "creator": it["creator"]}

    for _ in range(3):
        shown = pair.both(lambda c: [it["id"] for it in
                                     c.filter(items, "home", key=lambda it: it["id"],
                                              related=links)])
        assert 0 < len(shown[1]) < len(items)  # the evil links and user:7 hide some
    before = gate.counters()[0]
    pair.both(lambda c: c.check("pin:5", "home", {"domain": "https://ok.test/", "user": "8"}))
    assert gate.counters()[0] == before + 1  # answered in C


def test_the_gate_answers_a_memoised_labeled_hit_with_an_expired_label(pair: Pair) -> None:
    """pin:3 carries an expired label: its decision is still memoised (the memo fix)."""
    gate = pair.native._core.native_gate
    pair.set_bloom(LABELED)
    pair.set_fresh(True)
    first = pair.both(lambda c: c.check("pin:3", "home"))[1]
    assert first.label is not None and first.enforcement == Enforcement.LIMIT
    pair.both(lambda c: c.check("pin:3", "home"))  # resolved from the cache, memoised
    entry = pair.python.cache.entry("pin:3")
    assert entry is not None and entry[3], "no memo for an entity with an expired label"
    memo_hits = gate.counters()[4]
    again = pair.both(lambda c: c.check("pin:3", "home"))[1]
    assert gate.counters()[4] == memo_hits + 1
    assert pair.native.check("pin:3", "home") is pair.native.check("pin:3", "home")
    assert again == first


def test_a_stale_filter_is_left_to_the_python_path_when_trusted(pair: Pair) -> None:
    pair.set_bloom(LABELED)
    pair.set_fresh(False)  # stale: home trusts it (degraded), search verifies
    gate = pair.native._core.native_gate
    before = gate.counters()[0]
    d = pair.both(lambda c: c.check("pin:5", "home"))[1]
    assert d.degraded and d.degraded_reason == "bloom_stale"
    assert gate.counters()[0] == before  # the flagged answer is the Python path's
    pair.both(lambda c: c.check("pin:5", "search"))


def test_stats_add_the_gate_counts_to_the_python_ones(pair: Pair) -> None:
    pair.set_bloom(LABELED)
    pair.set_fresh(True)
    for client in pair.clients:
        client.check_many([f"pin:{i}" for i in range(100, 200)], "home")
        client.check("pin:1", "home")  # labeled: fetched by the Python path
    native, python = pair.native.stats, pair.python.stats
    for name in ("checks", "bloom_negatives", "cache_hits", "negative_hits", "cache_misses"):
        assert getattr(native, name) == getattr(python, name), name
    assert native.to_dict()["check_latency"]["count"] >= 1
    native.checks += 5
    assert native.checks == python.checks + 5
    native.reset()
    assert native.checks == 0 and pair.native._core.native_gate.counters()[0] == 0


def test_turned_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "0")
    with EnforcementClient("http://unused", config(), store=Store(LABELS),
                           follow_changes=False) as client:
        assert client._core.native_gate is None
        assert client.check("pin:5", "home").visible


def test_the_bound_check_takes_arguments_as_check_does(pair: Pair) -> None:
    pair.set_bloom(LABELED)
    pair.set_fresh(True)
    native = pair.native
    assert type(native.check).__name__ == "builtin_function_or_method"  # the C check
    for args, kwargs in (
        (("pin:5", "home"), {}),
        (("pin:5",), {"surface": "home"}),
        ((), {"entity": "pin:5", "surface": "home", "related": {"creator": "8"}}),
        (("pin:1", "home", None), {}),
    ):
        assert native.check(*args, **kwargs) == pair.python.check(*args, **kwargs)
    for args, kwargs in ((("pin:5",), {}), (("pin:5", "home"), {"entity": "pin:6"}),
                         (("pin:5", "home"), {"bogus": 1}), (("a", "b", None, 4), {})):
        with pytest.raises(TypeError):
            native.check(*args, **kwargs)
        with pytest.raises(TypeError):
            pair.python.check(*args, **kwargs)
