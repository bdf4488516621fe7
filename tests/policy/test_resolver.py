"""Resolver: the worked examples of docs/resolver.md (same numbers) and properties."""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import FrozenInstanceError, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enforce_sdk import Enforcement, Label, Source, SourceType
from enforce_sdk.config.document import EnforcementConfig
from enforce_sdk.policy.decision import Decision, DegradedKind
from enforce_sdk.policy.resolver import Resolver

NOW_TS = 1_800_000_000.0
NOW = datetime.fromtimestamp(NOW_TS, UTC)
DAY = timedelta(days=1)

SPAM_MODEL = Source("spam_domain_model", SourceType.AUTOMATED, "v3")
NSFW_MODEL = Source("nsfw_model", SourceType.AUTOMATED, "v1")
TRUSTED_MODEL = Source("trusted_model", SourceType.AUTOMATED, "v2")
REVIEW = Source("review_tool", SourceType.HUMAN, "alice")
APPEALS = Source("appeals", SourceType.HUMAN, "bob")

HOME_FEED: dict[str, Any] = {
    "half_life": "7d",
    "default_weight": 0.5,
    "hide_from": "limit",
    "human_over_automated": True,
    "weights": {"review_tool": 1.0, "appeals": 0.3, "spam_domain_model": 0.8,
                "trusted_model": 1.0},
    "related": {"domain": "block", "creator": "remove"},
}


def resolver(**overrides: Any) -> Resolver:
    surface = {**HOME_FEED, **overrides}
    cfg = EnforcementConfig.from_dict({"version": 1, "surfaces": {"home_feed": surface}})
    return cfg.resolver("home_feed")


def lab(entity: str, source: Source, enforcement: Enforcement, age: timedelta,
        reason: str = "spam", **kw: Any) -> Label:
    return Label(entity, source, enforcement, reason, NOW - age, **kw)


def resolve(res: Resolver, entity: str, labels: Mapping[str, Sequence[Label]],
            related: Mapping[str, str] | None = None) -> Decision:
    return res.resolve(entity, labels, related or {}, NOW_TS)


def score_of(d: Decision, label: Label) -> float:
    return next(c.score for c in d.causes if c.label is label)


# ---------------------------------------------------------------------------- worked examples


def test_example_1_score_ranking() -> None:
    a = lab("pin:1", SPAM_MODEL, Enforcement.BLOCK, timedelta(0))
    b = lab("pin:1", NSFW_MODEL, Enforcement.LIMIT, 7 * DAY, reason="porn")
    d = resolve(resolver(), "pin:1", {"pin:1": [b, a]})
    assert score_of(d, a) == pytest.approx(0.8)
    assert score_of(d, b) == pytest.approx(0.25)
    assert (d.enforcement, d.label, d.reason, d.visible) == (Enforcement.BLOCK, a, "spam", False)
    assert d.decided_by == "pin:1"
    assert [c.label for c in d.causes] == [a, b]  # best first
    assert [c.won for c in d.causes] == [True, False]


def test_example_2_decay_flips_the_winner() -> None:
    a = lab("pin:1", SPAM_MODEL, Enforcement.BLOCK, 14 * DAY)
    b = lab("pin:1", NSFW_MODEL, Enforcement.LIMIT, timedelta(0), reason="porn")
    d = resolve(resolver(), "pin:1", {"pin:1": [a, b]})
    assert score_of(d, a) == pytest.approx(0.2)
    assert score_of(d, b) == pytest.approx(0.5)
    assert d.label is b and d.enforcement == Enforcement.LIMIT


@pytest.mark.parametrize(("hoa", "winner"), [(True, "H"), (False, "A")])
def test_example_3_human_over_automated(hoa: bool, winner: str) -> None:
    h = lab("pin:1", REVIEW, Enforcement.LIMIT, 14 * DAY)
    a = lab("pin:1", SPAM_MODEL, Enforcement.BLOCK, timedelta(0))
    d = resolve(resolver(human_over_automated=hoa), "pin:1", {"pin:1": [a, h]})
    assert score_of(d, h) == pytest.approx(0.25) and score_of(d, a) == pytest.approx(0.8)
    assert d.label is {"H": h, "A": a}[winner]


def test_example_4_an_appeal_newer_than_the_negatives_wins() -> None:
    a = lab("pin:1", SPAM_MODEL, Enforcement.BLOCK, 3 * DAY)
    p = lab("pin:1", APPEALS, Enforcement.ALLOW, 1 * DAY, reason="appeal_upheld")
    d = resolve(resolver(human_over_automated=False), "pin:1", {"pin:1": [a, p]})
    assert score_of(d, a) == pytest.approx(0.594398, abs=1e-6)
    assert score_of(d, p) == pytest.approx(0.271717, abs=1e-6)
    assert d.label is p and d.enforcement == Enforcement.ALLOW and d.visible
    assert d.reason == "appeal_upheld"
    assert [c.label for c in d.causes] == [a, p]  # ranking order, winner flagged
    assert [c.won for c in d.causes] == [False, True]


@pytest.mark.parametrize(("hoa", "winner"), [(False, "A2"), (True, "P")])
def test_example_4b_a_negative_after_the_appeal_is_ranked_normally(hoa: bool, winner: str) -> None:
    a = lab("pin:1", SPAM_MODEL, Enforcement.BLOCK, 3 * DAY)
    p = lab("pin:1", APPEALS, Enforcement.ALLOW, 1 * DAY, reason="appeal_upheld")
    a2 = lab("pin:1", Source("spam_domain_model", SourceType.AUTOMATED, "v4"),
             Enforcement.BLOCK, DAY / 2)
    d = resolve(resolver(human_over_automated=hoa), "pin:1", {"pin:1": [a, p, a2]})
    assert score_of(d, a2) == pytest.approx(0.761356, abs=1e-6)
    assert d.label is {"A2": a2, "P": p}[winner]


def test_an_appeal_needs_a_trusted_human_source() -> None:
    a = lab("pin:1", SPAM_MODEL, Enforcement.BLOCK, 3 * DAY)
    auto_allow = lab("pin:1", NSFW_MODEL, Enforcement.ALLOW, DAY, reason="clean")
    d = resolve(resolver(human_over_automated=False), "pin:1", {"pin:1": [a, auto_allow]})
    assert d.label is a  # automated allow: no appeal override
    p = lab("pin:1", APPEALS, Enforcement.ALLOW, DAY, reason="appeal_upheld")
    untrusted = resolver(human_over_automated=False,
                         weights={**HOME_FEED["weights"], "appeals": 0.0})
    assert resolve(untrusted, "pin:1", {"pin:1": [a, p]}).label is a


def test_example_5_ties_go_to_severity_then_recency() -> None:
    x = lab("pin:1", TRUSTED_MODEL, Enforcement.BLOCK, 7 * DAY)
    y = lab("pin:1", NSFW_MODEL, Enforcement.LIMIT, timedelta(0), reason="porn")
    d = resolve(resolver(), "pin:1", {"pin:1": [y, x]})
    assert score_of(d, x) == score_of(d, y) == 0.5  # exact: 1.0 x 2^-1 == 0.5 x 2^0
    assert d.label is x
    y2 = lab("pin:1", NSFW_MODEL, Enforcement.BLOCK, timedelta(0), reason="porn")
    d = resolve(resolver(), "pin:1", {"pin:1": [x, y2]})
    assert d.label is y2


def test_example_6_expired_labels_are_ignored() -> None:
    r = lab("pin:1", REVIEW, Enforcement.REMOVE, 2 * DAY, expires_at=NOW - timedelta(hours=1))
    a = lab("pin:1", SPAM_MODEL, Enforcement.BLOCK, timedelta(0))
    d = resolve(resolver(), "pin:1", {"pin:1": [r, a]})
    assert d.label is a and d.enforcement == Enforcement.BLOCK
    assert [c.label for c in d.causes] == [a]
    # expiring exactly now counts as expired; one second later does not
    r_now = lab("pin:1", REVIEW, Enforcement.REMOVE, 2 * DAY, expires_at=NOW)
    assert resolve(resolver(), "pin:1", {"pin:1": [r_now]}).label is None
    r_later = lab("pin:1", REVIEW, Enforcement.REMOVE, 2 * DAY, expires_at=NOW + timedelta(seconds=1))
    assert resolve(resolver(), "pin:1", {"pin:1": [r_later]}).label is r_later


LINKS = {"domain": "domain:spam.example", "creator": "user:42", "image": "image:abc123"}


@pytest.mark.parametrize(
    ("case", "labels", "enforcement", "decided_by", "counted"),
    [
        ("a", {"domain:spam.example": [("d", SPAM_MODEL, Enforcement.BLOCK, 0.0)]},
         Enforcement.BLOCK, "domain:spam.example", [True]),
        ("b", {"domain:spam.example": [("d", SPAM_MODEL, Enforcement.LIMIT, 0.0)]},
         Enforcement.ALLOW, None, [False]),
        ("c", {"user:42": [("u", REVIEW, Enforcement.REMOVE, 1.0)]},
         Enforcement.REMOVE, "user:42", [True]),
        ("d", {"user:42": [("u", REVIEW, Enforcement.BLOCK, 0.0)]},
         Enforcement.ALLOW, None, [False]),
        ("e", {"pin:7": [("p", REVIEW, Enforcement.LIMIT, 0.0)],
               "domain:spam.example": [("d", SPAM_MODEL, Enforcement.BLOCK, 0.0)]},
         Enforcement.BLOCK, "domain:spam.example", [True, True]),
        ("f", {"pin:7": [("p", TRUSTED_MODEL, Enforcement.BLOCK, 7.0)],
               "domain:spam.example": [("d", SPAM_MODEL, Enforcement.BLOCK, 0.0)]},
         Enforcement.BLOCK, "pin:7", [True, True]),
        ("g", {"image:abc123": [("i", TRUSTED_MODEL, Enforcement.REMOVE, 0.0)]},
         Enforcement.ALLOW, None, []),
    ],
)
def test_example_7_linked_entities(
    case: str, labels: dict[str, list[tuple[str, Source, Enforcement, float]]],
    enforcement: Enforcement, decided_by: str | None, counted: list[bool],
) -> None:
    built = {key: [lab(key, src, e, age * DAY) for _, src, e, age in items]
             for key, items in labels.items()}
    d = resolve(resolver(), "pin:7", built, LINKS)
    assert d.enforcement == enforcement, d.explain()
    assert d.decided_by == decided_by
    assert [c.counted for c in d.causes] == counted
    if decided_by is None:
        assert d.label is None and d.visible
    else:
        assert d.label is built[decided_by][0]
        assert sum(c.won for c in d.causes) == 1
        won = next(c for c in d.causes if c.won)
        assert won.entity == decided_by
        assert won.relation == {v: k for k, v in LINKS.items()}.get(decided_by)
    if case == "c":
        assert d.causes[0].score == pytest.approx(0.905724, abs=1e-6)


@pytest.mark.parametrize(
    ("enforcement", "visible"),
    [
        (Enforcement.ALLOW, {"limit": True, "block": True, "remove": True}),
        (Enforcement.LIMIT, {"limit": False, "block": True, "remove": True}),
        (Enforcement.BLOCK, {"limit": False, "block": False, "remove": True}),
        (Enforcement.REMOVE, {"limit": False, "block": False, "remove": False}),
    ],
)
def test_example_8_visibility_per_surface(enforcement: Enforcement,
                                          visible: dict[str, bool]) -> None:
    label = lab("pin:1", REVIEW, enforcement, timedelta(0))
    for hide_from, want in visible.items():
        d = resolve(resolver(hide_from=hide_from), "pin:1", {"pin:1": [label]})
        assert d.enforcement == enforcement and d.visible is want, hide_from


# ---------------------------------------------------------------------------- fast path


def test_unlabeled_entity_gets_the_prebuilt_allow_decision() -> None:
    res = resolver()
    cases: list[tuple[dict[str, Sequence[Label]], dict[str, str]]] = [
        ({}, {}), ({"pin:1": ()}, {}), ({"pin:1": []}, LINKS),
                            ({"image:abc123": [lab("image:abc123", REVIEW, Enforcement.REMOVE,
                                                   timedelta(0))]}, LINKS)]
    for labels, related in cases:
        d = resolve(res, "pin:1", labels, related)
        assert d == Decision("pin:1", "home_feed", Enforcement.ALLOW, True)
        assert (d.label, d.decided_by, d.reason, d.causes, d.degraded) == (None, None, None, (),
                                                                          False)
        assert isinstance(d, Decision)
    assert res.allow("pin:9").entity == "pin:9" and res.allow("pin:9").visible


def test_prebuilt_decisions_behave_like_ordinary_ones() -> None:
    d = resolver().allow("pin:1")
    plain = Decision("pin:1", "home_feed", Enforcement.ALLOW, True)
    assert d == plain and hash(d) == hash(plain) and repr(d) == repr(plain)
    assert pickle.loads(pickle.dumps(d)) == plain
    assert replace(d, entity="pin:2") == Decision("pin:2", "home_feed", Enforcement.ALLOW, True)
    with pytest.raises(FrozenInstanceError):
        d.visible = False  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        d.entity = "pin:3"  # type: ignore[misc]
    stale = d.degrade(DegradedKind.BLOOM_STALE)
    assert (stale.degraded, stale.degraded_reason, stale.degraded_detail) == (
        True, DegradedKind.BLOOM_STALE, "bloom_stale")
    assert stale.to_dict()["degraded_reason"] == "bloom_stale"
    assert "allowed by default" in d.explain()


def test_fail_decisions_follow_the_fail_mode() -> None:
    res = resolver(fail_mode="closed")
    closed = res.fail("pin:1", DegradedKind.STORE_UNREACHABLE, "store unreachable: timeout")
    assert (closed.enforcement, closed.visible, closed.degraded) == (Enforcement.LIMIT, False, True)
    assert closed.degraded_reason is DegradedKind.STORE_UNREACHABLE
    assert closed.degraded_detail == "fail_closed: store unreachable: timeout"
    opened = res.fail("pin:1", DegradedKind.INTERNAL_ERROR, "boom", mode="open")
    assert (opened.enforcement, opened.visible, opened.degraded_reason, opened.degraded_detail) == (
        Enforcement.ALLOW, True, DegradedKind.INTERNAL_ERROR, "fail_open: boom")
    with pytest.raises(ValueError):
        Decision.fail("pin:1", "s", "sideways", DegradedKind.STORE_ERROR, "x")  # type: ignore[arg-type]


def test_selector_filters_before_ranking() -> None:
    res = resolver(selector="type = human or confidence >= 0.9")
    weak = lab("pin:1", SPAM_MODEL, Enforcement.REMOVE, timedelta(0), confidence=0.5)
    strong = lab("pin:1", NSFW_MODEL, Enforcement.LIMIT, timedelta(0), confidence=0.95,
                 reason="porn")
    d = resolve(res, "pin:1", {"pin:1": [weak, strong]})
    assert d.label is strong and [c.label for c in d.causes] == [strong]
    assert resolve(res, "pin:1", {"pin:1": [weak]}) == res.allow("pin:1")


def test_explain_names_the_winner_and_every_cause() -> None:
    own = lab("pin:7", REVIEW, Enforcement.LIMIT, timedelta(0))
    dom = lab("domain:spam.example", SPAM_MODEL, Enforcement.BLOCK, timedelta(0))
    d = resolve(resolver(), "pin:7", {"pin:7": [own], "domain:spam.example": [dom]}, LINKS)
    text = d.explain()
    assert text.splitlines()[0] == "pin:7 on home_feed: block (hidden)"
    assert "decided by domain:spam.example via domain" in text
    assert "* domain:spam.example via domain: block spam" in text
    assert "- pin:7: limit spam from review_tool/human/alice" in text
    assert d.to_dict()["decided_by"] == "domain:spam.example"


# ---------------------------------------------------------------------------- properties

SOURCES = [SPAM_MODEL, NSFW_MODEL, TRUSTED_MODEL, REVIEW, APPEALS,
           Source("review_tool", SourceType.HUMAN, "carol")]
label_specs = st.lists(
    st.tuples(st.sampled_from(range(len(SOURCES))), st.sampled_from(list(Enforcement)),
              st.floats(0, 60), st.booleans()),
    max_size=6,
    unique_by=lambda t: t[0],  # one label per (entity, source)
)


def build(entity: str, specs: list[tuple[int, Enforcement, float, bool]]) -> list[Label]:
    out = []
    for src, e, age_days, expired in specs:
        created = NOW - timedelta(days=age_days)
        expires = (created + timedelta(seconds=1)) if expired and age_days > 0.01 else None
        out.append(Label(entity, SOURCES[src], e, "spam", created, expires_at=expires))
    return out


@settings(max_examples=200, deadline=None)
@given(label_specs, st.booleans(), st.permutations(list(range(6))))
def test_properties_of_a_single_entity(specs: list[Any], hoa: bool, perm: list[int]) -> None:
    res = resolver(human_over_automated=hoa)
    labels = build("pin:1", specs)
    d = resolve(res, "pin:1", {"pin:1": labels})
    live = [x for x in labels if x.expires_at is None or x.expires_at.timestamp() > NOW_TS]
    # every live label is a cause, with the formula's score; expired ones are not
    assert sorted(id(c.label) for c in d.causes) == sorted(id(x) for x in live)
    for c in d.causes:
        w = HOME_FEED["weights"].get(c.label.source.system, 0.5)
        age = NOW_TS - c.label.created_at.timestamp()
        assert c.score == pytest.approx(w * math.exp2(-age / (7 * 86400)))
    if not live:
        assert d.label is None and d.enforcement == Enforcement.ALLOW and d.visible
        return
    assert d.label in live and d.enforcement == d.label.enforcement
    assert d.visible == (d.enforcement < Enforcement.LIMIT)
    # the order of the input does not matter
    shuffled = [labels[i] for i in perm if i < len(labels)]
    assert resolve(res, "pin:1", {"pin:1": shuffled}).label is d.label
    # with human_over_automated, an automated label never beats a live human one
    if hoa and any(x.source.type is SourceType.HUMAN for x in live):
        assert d.label.source.type is SourceType.HUMAN


@settings(max_examples=150, deadline=None)
@given(label_specs, label_specs)
def test_a_counted_link_only_ever_raises_the_enforcement(own: list[Any], dom: list[Any]) -> None:
    res = resolver()
    own_labels, dom_labels = build("pin:1", own), build("domain:spam.example", dom)
    alone = resolve(res, "pin:1", {"pin:1": own_labels})
    linked = resolve(res, "pin:1", {"pin:1": own_labels, "domain:spam.example": dom_labels},
                     {"domain": "domain:spam.example"})
    assert linked.enforcement >= alone.enforcement
    if linked.decided_by == "domain:spam.example":
        assert linked.enforcement >= Enforcement.BLOCK  # the domain's minimum
        assert linked.enforcement > alone.enforcement  # at equal severity the item's own wins
    else:
        assert linked.enforcement == alone.enforcement


# ---------------------------------------------------------------------------- exact ties

SWEEP = 10_000


def _instants() -> list[float]:
    """10,000 instants from NOW over the next year, at odd offsets (seconds and fractions)."""
    return [NOW_TS + i * 3155.6926 + (i % 7) * 0.137 for i in range(SWEEP)]


def _float_tie_breaks(a: Label, b: Label, res: Resolver, times: list[float]) -> int:
    """At how many instants the decayed float scores of two exactly-tied labels differ.

    Comparing those floats is what ranking did before; a tie-break test that never
    meets such an instant could not tell the two ways apart.
    """
    w = {TRUSTED_MODEL.system: 1.0}.get(a.source.system, 0.5), 0.5
    h = res.config.half_life
    return sum(
        1 for t in times
        if w[0] * 2 ** (-(t - a.created_at.timestamp()) / h)
        != w[1] * 2 ** (-(t - b.created_at.timestamp()) / h)
    )


def test_example_5_ties_hold_at_every_instant() -> None:
    """Block at 7d with weight 1.0 ties limit at 0d with weight 0.5: severity decides, always."""
    res = resolver()
    x = lab("pin:1", TRUSTED_MODEL, Enforcement.BLOCK, 7 * DAY)
    y = lab("pin:1", NSFW_MODEL, Enforcement.LIMIT, timedelta(0), reason="porn")
    y2 = lab("pin:1", NSFW_MODEL, Enforcement.BLOCK, timedelta(0), reason="porn")
    times = _instants()
    assert _float_tie_breaks(x, y, res, times) > SWEEP // 100  # rounding does differ
    for t in times:
        assert res.resolve("pin:1", {"pin:1": [y, x]}, {}, t).label is x, t  # example 5
        assert res.resolve("pin:1", {"pin:1": [x, y2]}, {}, t).label is y2, t  # 5': newer


def test_rule_6_ties_across_links_hold_at_every_instant() -> None:
    """Two counted links, equal severity and exactly equal scores: the newer label wins."""
    res = resolver(related={"domain": "block", "image": "block"})
    old = lab("domain:spam.example", TRUSTED_MODEL, Enforcement.BLOCK, 7 * DAY)
    new = lab("image:ab12", NSFW_MODEL, Enforcement.BLOCK, timedelta(0), reason="porn")
    labels = {"domain:spam.example": [old], "image:ab12": [new]}
    related = {"domain": "domain:spam.example", "image": "image:ab12"}
    for t in _instants():
        d = res.resolve("pin:1", labels, related, t)
        assert (d.label, d.decided_by) == (new, "image:ab12"), t


@given(st.floats(min_value=0.0, max_value=10.0), st.integers(min_value=0, max_value=3),
       st.integers(min_value=0, max_value=60 * 86400), st.floats(0.0, 400 * 86400.0))
@settings(max_examples=300, deadline=None)
def test_a_weight_2k_times_larger_k_half_lives_older_ties_exactly(
    weight: float, shift: int, age_s: int, later: float
) -> None:
    res = resolver(weights={"trusted_model": weight * 2.0**shift, "nsfw_model": weight})
    older = timedelta(seconds=age_s + shift * res.config.half_life)
    a = lab("pin:1", TRUSTED_MODEL, Enforcement.LIMIT, older)
    b = lab("pin:1", NSFW_MODEL, Enforcement.BLOCK, timedelta(seconds=age_s), reason="porn")
    d = res.resolve("pin:1", {"pin:1": [a, b]}, {}, NOW_TS + later)
    assert d.label is b  # equal scores (0 when weight is 0): the higher severity wins


@given(st.floats(min_value=0.01, max_value=10.0), st.floats(min_value=0.01, max_value=10.0),
       st.integers(min_value=0, max_value=90 * 86400), st.integers(min_value=0, max_value=90 * 86400))
@settings(max_examples=300, deadline=None)
def test_rank_orders_as_the_exact_score_does(w1: float, w2: float, age1: int, age2: int) -> None:
    res = resolver(weights={"trusted_model": w1, "nsfw_model": w2})
    h = res.config.half_life
    # log2 of each score, exactly enough to order pairs that differ by more than rounding
    l1, l2 = math.log2(w1) - age1 / h, math.log2(w2) - age2 / h
    if abs(l1 - l2) < 1e-9:
        return
    a = lab("pin:1", TRUSTED_MODEL, Enforcement.LIMIT, timedelta(seconds=age1))
    b = lab("pin:1", NSFW_MODEL, Enforcement.LIMIT, timedelta(seconds=age2), reason="porn")
    d = res.resolve("pin:1", {"pin:1": [a, b]}, {}, NOW_TS)
    assert d.label is (a if l1 > l2 else b)


def test_a_weight_0_human_source_gets_no_human_tier() -> None:
    """Weight 0 says "no authority": under human_over_automated such a human label neither
    outranks automated ones nor overrides them as an appeal; it ranks by its score, 0."""
    a = lab("pin:1", SPAM_MODEL, Enforcement.BLOCK, 3 * DAY)
    p = lab("pin:1", APPEALS, Enforcement.ALLOW, DAY, reason="appeal_upheld")
    muted = resolver(human_over_automated=True,
                     weights={**HOME_FEED["weights"], "appeals": 0.0})
    d = resolve(muted, "pin:1", {"pin:1": [p, a]})
    assert d.label is a and d.enforcement is Enforcement.BLOCK
    assert [c.label for c in d.causes] == [a, p]
    trusted = resolver(human_over_automated=True)  # appeals at 0.3: the tier applies again
    assert resolve(trusted, "pin:1", {"pin:1": [a, p]}).label is p


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2105, 12, 31),
                    timezones=st.just(UTC)))
@settings(max_examples=2000, deadline=None)
def test_the_rank_reads_created_at_in_exact_microseconds(when: datetime) -> None:
    """The rank takes created_at as round(timestamp * 1e6): exact over the range it claims."""
    exact = (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert round(when.timestamp() * 1_000_000) == exact
