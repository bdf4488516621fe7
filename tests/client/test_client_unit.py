"""EnforcementClient against an in-process fake store: semantics, round trips, fail modes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from enforce_sdk import (
    Enforcement,
    EntityKeyError,
    InvalidInputError,
    Label,
    Source,
    SourceType,
    StoreResponseError,
    StoreUnavailableError,
    UnknownSurfaceError,
)
from enforce_sdk.client.client import EnforcementClient
from enforce_sdk.config.source import StaticConfigSource
from enforce_sdk.policy.decision import DegradedKind
from tests.helpers import FakeClock

NOW = datetime(2026, 6, 1, tzinfo=UTC)
REVIEW = Source("review_tool", SourceType.HUMAN, "alice")
MODEL = Source("spam_domain_model", SourceType.AUTOMATED, "v3")

CONFIG: dict[str, Any] = {
    "version": 1,
    "surfaces": {
        "home_feed": {"hide_from": "limit", "related": {"domain": "block", "creator": "remove"}},
        "search": {"hide_from": "block", "fail_mode": "closed"},
        "profile": {"hide_from": "remove"},
    },
    "cache": {"ttl": "60s", "negative_ttl": "30s", "serve_stale_for": "10m", "max_entries": 1000},
    "store": {"timeout": "100ms", "retries": 0},
}


def label(entity: str, enforcement: Enforcement, source: Source = REVIEW, **kw: Any) -> Label:
    return Label(
        entity, source, enforcement, kw.pop("reason", "spam"), NOW - timedelta(hours=1), **kw
    )


class FakeStore:
    def __init__(self, labels: Sequence[Label] = ()) -> None:
        self.labels: dict[str, list[Label]] = {}
        for lab in labels:
            self.labels.setdefault(lab.entity, []).append(lab)
        self.requests: list[list[str]] = []
        self.fail: Exception | None = None
        self.garbage: Any = None
        self.closed = False

    def get_many(self, keys: list[str]) -> Mapping[str, Sequence[Label]]:
        self.requests.append(list(keys))
        if self.fail is not None:
            raise self.fail
        if self.garbage is not None:
            return self.garbage  # type: ignore[no-any-return]
        return {k: self.labels[k] for k in keys if k in self.labels}

    def close(self) -> None:
        self.closed = True


def make(store: FakeStore, config: Any = CONFIG, clock: FakeClock[float] | None = None) -> EnforcementClient:
    return EnforcementClient(
        "http://unused",
        config,
        store=store,
        timer=clock or FakeClock(),
        wall_clock=lambda: NOW.timestamp(),
    )


def test_unlabeled_entity_is_allowed_with_no_label() -> None:
    with make(FakeStore()) as client:
        d = client.check("pin:1", "home_feed")
    assert d.enforcement == Enforcement.ALLOW and d.label is None and d.visible and not d.degraded


def test_visibility_follows_each_surfaces_map() -> None:
    store = FakeStore([label("pin:1", Enforcement.LIMIT)])
    with make(store) as client:
        assert not client.check("pin:1", "home_feed").visible  # hides from limit
        assert client.check("pin:1", "search").visible  # hides from block
        assert client.check("pin:1", "profile").visible
        d = client.check("pin:1", "home_feed")
    assert d.enforcement == Enforcement.LIMIT and d.label == label("pin:1", Enforcement.LIMIT)
    assert d.decided_by == "pin:1" and d.reason == "spam" and len(d.causes) == 1
    assert len(store.requests) == 1  # one fetch served three surfaces: the cache holds raw labels


def test_check_many_makes_one_round_trip_for_all_misses_and_keeps_order() -> None:
    store = FakeStore(
        [label("pin:2", Enforcement.BLOCK), label("domain:bad.com", Enforcement.BLOCK)]
    )
    keys = [f"pin:{i}" for i in range(100)]
    related = [{"domain": "https://www.bad.com/x"} if i == 7 else None for i in range(100)]
    with make(store) as client:
        decisions = client.check_many(keys, "home_feed", related)
        assert len(store.requests) == 1
        assert set(store.requests[0]) == {*keys, "domain:bad.com"}
        assert [d.entity for d in decisions] == keys
        hidden = [d.entity for d in decisions if not d.visible]
        assert hidden == ["pin:2", "pin:7"]
        assert decisions[7].decided_by == "domain:bad.com"
        # warm: no further round trip
        client.check_many(keys, "home_feed", related)
        assert len(store.requests) == 1
        assert client.stats.cache_hits >= 101


def test_creator_link_uses_user_keys_and_propagates_only_from_its_minimum() -> None:
    store = FakeStore([label("user:42", Enforcement.BLOCK), label("user:43", Enforcement.REMOVE)])
    with make(store) as client:
        assert client.check("pin:1", "home_feed", {"creator": "42"}).visible  # block < remove
        d = client.check("pin:2", "home_feed", {"creator": "43"})
    assert not d.visible and d.decided_by == "user:43" and d.enforcement == Enforcement.REMOVE


def test_filter_keeps_visible_items_in_order() -> None:
    store = FakeStore([label("pin:2", Enforcement.REMOVE)])
    items = [{"id": f"pin:{i}"} for i in range(5)]
    with make(store) as client:
        shown = client.filter(items, "home_feed", key=lambda it: it["id"])
    assert [it["id"] for it in shown] == ["pin:0", "pin:1", "pin:3", "pin:4"]


def test_misuse_raises_at_once_without_io() -> None:
    store = FakeStore()
    with make(store) as client:
        with pytest.raises(UnknownSurfaceError, match="unknown surface 'nope'"):
            client.check("pin:1", "nope")
        with pytest.raises(EntityKeyError, match="item 1"):
            client.check_many(["pin:1", "not a key"], "home_feed")
        with pytest.raises(EntityKeyError):
            client.check("domain:co.uk", "home_feed")
    assert store.requests == []


def test_store_down_answers_by_fail_mode_never_raises_and_counts() -> None:
    store = FakeStore()
    store.fail = StoreUnavailableError("connection refused")
    with make(store) as client:
        open_ = client.check("pin:1", "home_feed")
        closed = client.check("pin:1", "search")
        stats = client.stats.to_dict()
    assert open_.visible and open_.degraded
    assert open_.degraded_detail == "fail_open: store unreachable: connection refused"
    assert not closed.visible and closed.degraded
    assert closed.degraded_detail == "fail_closed: store unreachable: connection refused"
    assert stats["fail_open"] == 1 and stats["fail_closed"] == 1 and stats["fetch_errors"] == 2
    assert open_.degraded_reason is closed.degraded_reason is DegradedKind.STORE_UNREACHABLE
    assert stats["degraded_by_kind"]["store_unreachable"] == 2 == stats["degraded"]


def test_garbage_from_the_store_is_a_degraded_answer_not_an_exception() -> None:
    store = FakeStore()
    store.garbage = {"pin:1": ["not a label"]}
    with make(store) as client:
        d = client.check("pin:1", "home_feed")
    assert d.degraded and d.visible
    # labels that are not Labels fail in the resolver: an internal error, not the store's
    assert (d.degraded_detail or "").startswith("fail_open: error: AttributeError")
    assert d.degraded_reason is DegradedKind.INTERNAL_ERROR


def test_a_store_error_is_told_apart_from_an_unreachable_store() -> None:
    store = FakeStore()
    store.fail = StoreResponseError(500, {"error": "boom"})
    with make(store) as client:
        d = client.check("pin:1", "home_feed")
    assert d.degraded_detail == "fail_open: store error: label store answered 500: {'error': 'boom'}"
    assert d.degraded_reason is DegradedKind.STORE_ERROR


def test_stale_entries_are_served_within_bound_while_store_is_down_then_recover() -> None:
    clock = FakeClock()
    store = FakeStore([label("pin:1", Enforcement.BLOCK)])
    with make(store, clock=clock) as client:
        assert not client.check("pin:1", "home_feed").visible
        store.fail = StoreUnavailableError("down")
        clock.tick(120)  # past the 60 s TTL, within the 10 min stale bound
        stale = client.check("pin:1", "home_feed")
        assert not stale.visible and stale.degraded
        assert stale.degraded_detail == "stale: store unreachable (down)"
        assert stale.degraded_reason is DegradedKind.STALE_CACHE
        assert client.stats.stale_served == 1
        clock.tick(3600)  # past the stale bound: fail mode
        failed = client.check("pin:1", "home_feed")
        assert failed.visible and "fail_open" in (failed.degraded_detail or "")
        store.fail = None  # store back
        recovered = client.check("pin:1", "home_feed")
        assert not recovered.visible and not recovered.degraded


def test_config_swap_applies_newer_versions_only() -> None:
    source = StaticConfigSource(CONFIG)
    store = FakeStore([label("pin:1", Enforcement.LIMIT)])
    with make(store, config=source) as client:
        assert client.check("pin:1", "search").visible
        newer = {
            **CONFIG,
            "version": 2,
            "surfaces": {**CONFIG["surfaces"], "search": {"hide_from": "limit"}},
        }
        source.push(newer)
        assert client.config.version == 2
        assert not client.check("pin:1", "search").visible  # no cache flush needed
        assert len(store.requests) == 1
        source.push(CONFIG)  # version 1 again: not newer, ignored
        assert client.config.version == 2


def test_close_is_idempotent_and_leaves_a_borrowed_store_open() -> None:
    store = FakeStore()
    client = make(store)
    client.close()
    client.close()  # idempotent
    assert client._closed and not store.closed


def test_decisions_of_labeled_entities_are_reused_briefly_and_never_past_an_expiry() -> None:
    wall = [NOW.timestamp()]
    expiring = Label(
        "pin:1",
        REVIEW,
        Enforcement.BLOCK,
        "spam",
        NOW - timedelta(hours=1),
        expires_at=NOW + timedelta(seconds=0.5),
    )
    store = FakeStore([expiring])
    client = EnforcementClient(
        "http://unused", CONFIG, store=store, timer=FakeClock(), wall_clock=lambda: wall[0]
    )
    with client:
        assert not client.check("pin:1", "home_feed").visible  # fetched
        first = client.check("pin:1", "home_feed")  # from the cache, now memoised
        assert client.check("pin:1", "home_feed") is first
        assert client.check_many(["pin:1"], "home_feed")[0] is first
        wall[0] += 0.6  # past the label's expiry, though within the memo window
        after = client.check("pin:1", "home_feed")
        assert after.visible and after.label is None
    assert len(store.requests) == 1  # the memo is on the cache entry: no refetch


def test_memo_lasts_at_most_a_second() -> None:
    wall = [NOW.timestamp()]
    store = FakeStore([label("pin:1", Enforcement.BLOCK)])
    with EnforcementClient(
        "http://unused", CONFIG, store=store, timer=FakeClock(), wall_clock=lambda: wall[0]
    ) as client:
        client.check("pin:1", "home_feed")
        first = client.check("pin:1", "home_feed")
        assert client.check("pin:1", "home_feed") is first
        wall[0] += 1.01
        again = client.check("pin:1", "home_feed")
    assert again is not first  # recomputed
    assert again.enforcement == first.enforcement and again.label == first.label
    assert again.causes[0].score < first.causes[0].score  # a second more of decay


def test_a_config_update_during_construction_is_applied_not_lost() -> None:
    from enforce_sdk.config.document import EnforcementConfig
    from enforce_sdk.config.source import ConfigMeta, ConfigSource

    class EagerSource(ConfigSource):
        """Calls back with version 2 from inside start(), as a watch thread may."""

        def start(self, on_update: Any) -> tuple[EnforcementConfig, ConfigMeta]:
            newer = EnforcementConfig.from_dict({**CONFIG, "version": 2})
            on_update(newer, ConfigMeta(2, "eager", NOW.timestamp()))
            return EnforcementConfig.from_dict(CONFIG), ConfigMeta(1, "eager", NOW.timestamp())

    with make(FakeStore(), config=EagerSource()) as client:
        assert client.config.version == 2
        assert client.stats.config_updates == 1


# -- linked entities: accepted kinds, the `user` alias, typos -------------------------------

ISSUE_LINKS = {"image": "9f2c", "domain": "example.com", "user": "42"}  # the issue's example


def test_user_is_another_name_for_the_creator_link() -> None:
    store = FakeStore([label("user:42", Enforcement.REMOVE)])
    with make(store) as client:
        d = client.check("pin:2", "home_feed", ISSUE_LINKS)
        assert not d.visible and d.enforcement == Enforcement.REMOVE
        assert d.decided_by == "user:42" and d.causes[0].relation == "creator"
        # image is a known kind home_feed does not list: ignored, never fetched
        assert store.requests == [["pin:2", "domain:example.com", "user:42"]]
        many = client.check_many(["pin:3", "pin:4"], "home_feed", [None, {"user": "user:42"}])
        assert [x.visible for x in many] == [True, False]
        shown = client.filter(["pin:5", "pin:6"], "home_feed",
                              related=lambda it: {"user": "42"} if it == "pin:6" else None)
        assert shown == ["pin:5"]


@pytest.mark.parametrize("surface", ["home_feed", "search"])  # with links, and without any
def test_an_unknown_link_kind_is_misuse_on_every_call(surface: str) -> None:
    store = FakeStore()
    with make(store) as client:
        client.check("pin:1", surface)  # warm: the cache-hit path must check too
        calls = [
            lambda: client.check("pin:1", surface, {"domian": "example.com"}),
            lambda: client.check("pin:9", surface, {"domian": "example.com"}),
            lambda: client.check_many(["pin:1", "pin:2"], surface, [None, {"domian": "x.com"}]),
            lambda: client.filter(["pin:1"], surface, related=lambda it: {"domian": "x.com"}),
        ]
        for call in calls:
            with pytest.raises(InvalidInputError, match="unknown link kind 'domian'") as err:
                call()
            assert "accepted: image, domain, creator, board, user (= creator)" in str(err.value)
            assert err.value.field == "related"
    assert store.requests == [["pin:1"]]  # no I/O for misuse


def test_user_and_creator_together_are_misuse() -> None:
    with make(FakeStore()) as client, pytest.raises(InvalidInputError, match="another name"):
        client.check("pin:1", "home_feed", {"user": "42", "creator": "43"})


@pytest.mark.parametrize("surface", ["home_feed", "search"])
def test_related_that_is_not_a_mapping_is_misuse(surface: str) -> None:
    with make(FakeStore()) as client:
        client.check("pin:1", surface)  # warm
        for bad in (["domain", "x.com"], "domain=x.com", 42):
            with pytest.raises(InvalidInputError, match="must be a mapping of link kind to id"):
                client.check("pin:1", surface, bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="item 1: must be a mapping"):
            client.check_many(["pin:1", "pin:2"], surface, [None, "x.com"])  # type: ignore[list-item]
        with pytest.raises(InvalidInputError, match="has 1 entries for 2 entities"):
            client.check_many(["pin:1", "pin:2"], surface, [None])


# -- misuse of the call's shape ---------------------------------------------------------


def test_a_surface_that_is_not_a_name_is_an_unknown_surface() -> None:
    with make(FakeStore()) as client:
        client.check("pin:1", "home_feed")  # warm: the fast path
        for call in (
            lambda: client.check("pin:1", ["home_feed"]),  # type: ignore[arg-type]
            lambda: client.check("pin:9", {"s": 1}),  # type: ignore[arg-type]
            lambda: client.check_many(["pin:1"], ["home_feed"]),  # type: ignore[arg-type]
            lambda: client.filter(["pin:1"], ["home_feed"]),  # type: ignore[arg-type]
        ):
            with pytest.raises(UnknownSurfaceError, match="must be a surface name"):
                call()


def test_check_many_and_filter_take_any_iterable_read_once() -> None:
    store = FakeStore([label("pin:2", Enforcement.BLOCK), label("domain:bad.com", Enforcement.BLOCK)])
    with make(store) as client:
        keys = (f"pin:{i}" for i in range(4))
        links = iter([None, None, {"domain": "bad.com"}, None])
        decisions = client.check_many(keys, "home_feed", links)
        assert [d.entity for d in decisions] == ["pin:0", "pin:1", "pin:2", "pin:3"]
        assert [d.visible for d in decisions] == [True, True, False, True]
        assert len(store.requests) == 1
        assert client.check_many(iter(()), "home_feed") == []
        assert client.filter((k for k in ("pin:1", "pin:2")), "home_feed") == ["pin:1"]


def test_check_many_refuses_a_lone_key_or_a_non_iterable() -> None:
    with make(FakeStore()) as client:
        with pytest.raises(InvalidInputError, match="use check"):
            client.check_many("pin:1", "home_feed")
        with pytest.raises(InvalidInputError, match="must be an iterable"):
            client.check_many(42, "home_feed")  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="related: must be an iterable of entries"):
            client.check_many(["pin:1"], "home_feed", {"domain": "x.com"})  # type: ignore[arg-type]


# -- hostile links: one bad link costs only its item -------------------------------------

POISONED = ("https://exa mple.com/", "javascript:alert(1)", "https://%00/", "")


def _page(poison: str) -> list[dict[str, str]]:
    links = ["https://ok.example/a", "https://blocked.example/b", poison, "https://ok.example/c"]
    return [{"id": f"pin:{i}", "link": link} for i, link in enumerate(links)]


@pytest.mark.parametrize("poison", POISONED)
@pytest.mark.parametrize(("mode", "bad_visible"), [("fail_closed", False), ("ignore", True)])
def test_a_poisoned_link_costs_only_its_item(poison: str, mode: str, bad_visible: bool) -> None:
    config = {**CONFIG, "surfaces": {"home_feed": {**CONFIG["surfaces"]["home_feed"],
                                                   "on_bad_link": mode}}}
    store = FakeStore([label("domain:blocked.example", Enforcement.BLOCK, MODEL)])
    items = _page(poison)
    with make(store, config) as client:
        shown = client.filter(items, "home_feed", key=lambda it: it["id"],
                              related=lambda it: {"domain": it["link"]})
        decisions = client.check_many([it["id"] for it in items], "home_feed",
                                      [{"domain": it["link"]} for it in items])
        one = client.check("pin:2", "home_feed", {"domain": poison})
        stats = client.stats.to_dict()
    expected = ["pin:0", "pin:3"] + (["pin:2"] if bad_visible else [])
    assert sorted(it["id"] for it in shown) == sorted(expected)
    assert [d.degraded for d in decisions] == [False, False, True, False]
    assert [d.visible for d in decisions] == [True, False, bad_visible, True]
    bad = decisions[2]
    assert bad.degraded_reason is DegradedKind.BAD_LINK and bad.entity == "pin:2"
    assert (bad.degraded_detail or "").startswith(
        "fail_closed: domain link: " if mode == "fail_closed" else "domain link: ")
    assert one == bad
    assert stats["bad_links"] == 3 and stats["degraded_by_kind"]["bad_link"] == 3


def test_with_ignore_a_bad_link_still_leaves_the_item_its_own_labels() -> None:
    config = {**CONFIG, "surfaces": {"home_feed": {**CONFIG["surfaces"]["home_feed"],
                                                   "on_bad_link": "ignore"}}}
    store = FakeStore([label("pin:1", Enforcement.BLOCK), label("user:9", Enforcement.REMOVE)])
    with make(store, config) as client:
        own = client.check("pin:1", "home_feed", {"domain": "javascript:x"})
        via_creator = client.check("pin:2", "home_feed", {"domain": "https://a b/", "user": "9"})
    assert not own.visible and own.label is not None and own.decided_by == "pin:1"
    assert own.degraded_reason is DegradedKind.BAD_LINK
    assert not via_creator.visible and via_creator.decided_by == "user:9"
    assert via_creator.degraded_reason is DegradedKind.BAD_LINK


def test_the_default_is_fail_closed_and_other_misuse_still_raises() -> None:
    store = FakeStore()
    with make(store) as client:
        d = client.check("pin:1", "home_feed", {"domain": "https://exa mple.com/"})
        assert not d.visible and d.degraded_reason is DegradedKind.BAD_LINK
        with pytest.raises(InvalidInputError, match="related 'domain' must be a string"):
            client.check("pin:1", "home_feed", {"domain": 42})  # type: ignore[dict-item]
        with pytest.raises(EntityKeyError, match="item 1"):
            client.check_many(["pin:1", "pin:a b"], "home_feed",
                              [{"domain": "https://ok.example/"}, None])
    assert "on_bad_link" not in CONFIG["surfaces"]["home_feed"]
