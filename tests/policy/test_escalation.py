"""Escalation rules: the issue's rule over every combination of signals, distinct sources,
windows, expiry, linked entities, appeals, severity competition, and the worked examples of
docs/resolver.md ("Escalation rules" and "Confidence"), with the same numbers."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from enforce_sdk import ConfigError, Enforcement, Label, SelectorSyntaxError, Source, SourceType
from enforce_sdk.config.document import EnforcementConfig
from enforce_sdk.policy.decision import Decision
from enforce_sdk.policy.escalation import Condition
from enforce_sdk.policy.resolver import Resolver

NOW_TS = 1_800_000_000.0
NOW = datetime.fromtimestamp(NOW_TS, UTC)
DAY = timedelta(days=1)
E = Enforcement

# The rule exactly as the issue writes it.
SPAM_ACCOUNT = {
    "name": "spam account",
    "when": "high >= 1 or medium >= 2 or (low >= 2 and medium >= 1)",
    "over": "reason = spam and age < 365d",
    "enforce": "block",
    "reason": "spam",
}
REASONS = {
    "scam": {"tier": "high", "description": "Fraud for money", "owner": "trust-fraud"},
    "spam": {"tier": "medium", "description": "Unsolicited bulk content", "owner": "spam-team",
             "enforcement": "block"},
    "clickbait": {"tier": "low", "description": "Misleading teaser", "owner": "quality"},
    "appeal_upheld": {"tier": "low", "description": "An appeal was upheld",
                      "owner": "appeals", "enforcement": "allow"},
}
# The surface of the worked examples in docs/resolver.md ("Escalation rules").
ACCOUNTS: dict[str, Any] = {
    "hide_from": "limit",
    "half_life": "30d",
    "related": {"domain": "limit", "creator": "remove"},
    "escalate": [SPAM_ACCOUNT],
}


def config(surface: Mapping[str, Any] | None = None, **top: Any) -> EnforcementConfig:
    doc: dict[str, Any] = {"version": 1, "reasons": REASONS,
                           "surfaces": {"accounts": dict(surface or ACCOUNTS)}, **top}
    return EnforcementConfig.from_dict(doc)


def src(system: str, name: str = "v1", human: bool = False) -> Source:
    return Source(system, SourceType.HUMAN if human else SourceType.AUTOMATED, name)


def lab(entity: str, source: Source, enforcement: Enforcement, age: timedelta,
        reason: str = "spam", **kw: Any) -> Label:
    return Label(entity, source, enforcement, reason, NOW - age, **kw)


def resolve(res: Resolver, entity: str, labels: Mapping[str, Sequence[Label]],
            related: Mapping[str, str] | None = None) -> Decision:
    return res.resolve(entity, labels, related or {}, NOW_TS)


RES = config().resolver("accounts")


# -- the issue's rule over every combination of 0..3 high, medium, low signals ----------------

def expected_fires(high: int, medium: int, low: int) -> bool:
    """The rule as a T&S analyst reads it, written independently of the parser."""
    if high >= 1:
        return True
    if medium >= 2:
        return True
    return low >= 2 and medium >= 1


# `over` takes every tier here (the issue's `over` keeps only `spam`, one tier).
TIERED = {**ACCOUNTS, "escalate": [{**SPAM_ACCOUNT, "over": "age < 365d"}]}
TIERED_RES = config(TIERED).resolver("accounts")
TIER_REASON = {"high": "scam", "medium": "spam", "low": "clickbait"}


@pytest.mark.parametrize(("high", "medium", "low"),
                         list(itertools.product(range(4), repeat=3)))
def test_every_combination_of_signals(high: int, medium: int, low: int) -> None:
    labels = []
    for tier, n in (("high", high), ("medium", medium), ("low", low)):
        for i in range(n):  # each signal from its own source system
            labels.append(lab("user:1", src(f"{tier}_model_{i}"), E.LIMIT, (i + 1) * DAY,
                              TIER_REASON[tier]))
    d = resolve(TIERED_RES, "user:1", {"user:1": labels})
    fires = expected_fires(high, medium, low)
    if fires:
        assert d.enforcement is E.BLOCK and not d.visible
        win = d.winning_cause
        assert win is not None and win.escalation is not None
        assert win.escalation.counts == (high, medium, low)
        assert d.label is not None and d.label.source.system == "escalation"
        assert d.reason == "spam"
    else:
        assert d.enforcement is (E.LIMIT if labels else E.ALLOW)
        assert all(c.escalation is None for c in d.causes)


# -- the issue's "done when" ------------------------------------------------------------------

def test_two_medium_spam_labels_from_two_sources_block_the_account() -> None:
    a = lab("user:1", src("a_model"), E.LIMIT, 2 * DAY)
    b = lab("user:1", src("b_model"), E.LIMIT, 1 * DAY)
    d = resolve(RES, "user:1", {"user:1": [a, b]})
    assert (d.enforcement, d.visible, d.reason, d.decided_by) == (E.BLOCK, False, "spam", "user:1")
    assert "escalated by rule 'spam account': 2 medium (a_model, b_model)" in d.explain()


def test_a_single_medium_label_does_not_escalate() -> None:
    d = resolve(RES, "user:1", {"user:1": [lab("user:1", src("a_model"), E.LIMIT, DAY)]})
    assert d.enforcement is E.LIMIT
    assert "escalated" not in d.explain()


# -- counting ---------------------------------------------------------------------------------

def test_one_system_counts_once_whatever_its_source_names() -> None:
    nightly = lab("user:1", src("spam_model", "nightly"), E.LIMIT, 2 * DAY)
    hourly = lab("user:1", src("spam_model", "hourly"), E.LIMIT, 1 * DAY)
    assert resolve(RES, "user:1", {"user:1": [nightly, hourly]}).enforcement is E.LIMIT


def test_a_system_counts_in_the_tier_of_its_most_severe_signal() -> None:
    # one system with a medium and a low signal cannot make "low >= 2 and medium >= 1" alone
    res = TIERED_RES
    m = lab("user:1", src("x_model", "a"), E.LIMIT, DAY, "spam")
    lo = lab("user:1", src("x_model", "b"), E.LIMIT, DAY, "clickbait")
    lo2 = lab("user:1", src("y_model"), E.LIMIT, DAY, "clickbait")
    d = resolve(res, "user:1", {"user:1": [m, lo, lo2]})
    assert d.enforcement is E.LIMIT  # counts: medium 1 (x), low 1 (y)
    lo3 = lab("user:1", src("z_model"), E.LIMIT, DAY, "clickbait")
    d = resolve(res, "user:1", {"user:1": [m, lo, lo2, lo3]})
    assert d.enforcement is E.BLOCK
    assert d.winning_cause is not None and d.winning_cause.escalation is not None
    assert d.winning_cause.escalation.sources == ((), ("x_model",), ("y_model", "z_model"))


def test_allow_labels_and_unregistered_reasons_are_not_signals() -> None:
    a = lab("user:1", src("a_model"), E.ALLOW, DAY)
    b = lab("user:1", src("b_model"), E.LIMIT, DAY)
    assert resolve(RES, "user:1", {"user:1": [a, b]}).enforcement is E.LIMIT
    res = config({**TIERED}).resolver("accounts")
    odd = lab("user:1", src("c_model"), E.LIMIT, DAY, "not_registered")
    assert resolve(res, "user:1", {"user:1": [b, odd]}).enforcement is E.LIMIT


def test_window_age_below_365_days() -> None:
    old = lab("user:1", src("a_model"), E.LIMIT, 400 * DAY)
    new = lab("user:1", src("b_model"), E.LIMIT, DAY)
    assert resolve(RES, "user:1", {"user:1": [old, new]}).enforcement is E.LIMIT
    recent = lab("user:1", src("a_model"), E.LIMIT, 364 * DAY)
    assert resolve(RES, "user:1", {"user:1": [recent, new]}).enforcement is E.BLOCK


def test_expired_labels_are_not_signals() -> None:
    gone = lab("user:1", src("a_model"), E.LIMIT, 3 * DAY, expires_at=NOW - DAY)
    new = lab("user:1", src("b_model"), E.LIMIT, DAY)
    assert resolve(RES, "user:1", {"user:1": [gone, new]}).enforcement is E.LIMIT
    later = lab("user:1", src("a_model"), E.LIMIT, 3 * DAY, expires_at=NOW + DAY)
    assert resolve(RES, "user:1", {"user:1": [later, new]}).enforcement is E.BLOCK


def test_the_surface_selector_and_min_confidence_come_first() -> None:
    a = lab("user:1", src("a_model"), E.LIMIT, DAY, confidence=0.6)
    b = lab("user:1", src("b_model"), E.LIMIT, DAY, confidence=0.95)
    assert resolve(RES, "user:1", {"user:1": [a, b]}).enforcement is E.BLOCK
    floor = config({**ACCOUNTS, "min_confidence": 0.8}).resolver("accounts")
    d = resolve(floor, "user:1", {"user:1": [a, b]})
    assert d.enforcement is E.LIMIT and [c.label for c in d.causes] == [b]
    sel = config({**ACCOUNTS, "selector": "system != a_model"}).resolver("accounts")
    assert resolve(sel, "user:1", {"user:1": [a, b]}).enforcement is E.LIMIT


# -- linked entities --------------------------------------------------------------------------

def test_linked_signals_count_where_related_says() -> None:
    pin = lab("pin:7", src("a_model"), E.LIMIT, DAY)
    dom = lab("domain:spam.example", src("b_model"), E.LIMIT, DAY)
    labels = {"pin:7": [pin], "domain:spam.example": [dom]}
    d = resolve(RES, "pin:7", labels, {"domain": "domain:spam.example"})
    assert d.enforcement is E.BLOCK and d.decided_by == "pin:7"
    # the creator link counts only from `remove`: a limit on the creator is no signal
    user = lab("user:42", src("b_model"), E.LIMIT, DAY)
    d = resolve(RES, "pin:7", {"pin:7": [pin], "user:42": [user]}, {"creator": "user:42"})
    assert d.enforcement is E.LIMIT
    # a link kind the surface does not list is ignored
    img = lab("image:ab", src("b_model"), E.LIMIT, DAY)
    d = resolve(RES, "pin:7", {"pin:7": [pin], "image:ab": [img]}, {"image": "image:ab"})
    assert d.enforcement is E.LIMIT


def test_the_same_system_on_the_item_and_its_link_counts_once() -> None:
    pin = lab("pin:7", src("a_model"), E.LIMIT, DAY)
    dom = lab("domain:spam.example", src("a_model"), E.LIMIT, DAY)
    d = resolve(RES, "pin:7", {"pin:7": [pin], "domain:spam.example": [dom]},
                {"domain": "domain:spam.example"})
    assert d.enforcement is E.LIMIT


def test_linked_signals_alone_can_escalate_the_item() -> None:
    dom_a = lab("domain:spam.example", src("a_model"), E.LIMIT, DAY)
    dom_b = lab("domain:spam.example", src("b_model"), E.LIMIT, DAY)
    d = resolve(RES, "pin:7", {"domain:spam.example": [dom_a, dom_b]},
                {"domain": "domain:spam.example"})
    assert d.enforcement is E.BLOCK and d.decided_by == "pin:7"


# -- competition with the ordinary winner, appeals ----------------------------------------------

def test_a_more_severe_label_beats_the_escalation() -> None:
    a = lab("user:1", src("a_model"), E.LIMIT, DAY)
    b = lab("user:1", src("b_model"), E.LIMIT, DAY)
    r = lab("user:1", src("review_tool", "rev-1", human=True), E.REMOVE, DAY)
    d = resolve(RES, "user:1", {"user:1": [a, b, r]})
    assert d.enforcement is E.REMOVE and d.label is r
    fired = [c for c in d.causes if c.escalation is not None]
    assert len(fired) == 1 and not fired[0].won


def test_at_equal_severity_the_label_wins() -> None:
    a = lab("user:1", src("a_model"), E.BLOCK, DAY)
    b = lab("user:1", src("b_model"), E.LIMIT, DAY)
    d = resolve(RES, "user:1", {"user:1": [a, b]})
    assert d.enforcement is E.BLOCK and d.label is a


def test_signals_before_a_human_clearance_are_not_counted() -> None:
    a = lab("user:1", src("a_model"), E.LIMIT, 3 * DAY)
    b = lab("user:1", src("b_model"), E.LIMIT, 2 * DAY)
    ok = lab("user:1", src("appeals", "bob", human=True), E.ALLOW, DAY, "appeal_upheld")
    d = resolve(RES, "user:1", {"user:1": [a, b, ok]})
    assert d.enforcement is E.ALLOW and d.visible
    again = lab("user:1", src("c_model"), E.LIMIT, DAY / 2)
    d = resolve(RES, "user:1", {"user:1": [a, b, ok, again]})
    assert d.enforcement is E.ALLOW  # one new signal after the appeal: not enough


def test_most_severe_rule_wins_and_every_fired_rule_is_a_cause() -> None:
    rules = [SPAM_ACCOUNT, {**SPAM_ACCOUNT, "name": "spam ring", "when": "medium >= 2",
                            "enforce": "remove"}]
    res = config({**ACCOUNTS, "escalate": rules}).resolver("accounts")
    a = lab("user:1", src("a_model"), E.LIMIT, DAY)
    b = lab("user:1", src("b_model"), E.LIMIT, DAY)
    d = resolve(res, "user:1", {"user:1": [a, b]})
    assert d.enforcement is E.REMOVE
    fired = [(c.escalation.rule, c.won) for c in d.causes if c.escalation is not None]
    assert fired == [("spam account", False), ("spam ring", True)]
    assert d.to_dict()["causes"][-1]["escalation"]["counts"] == {"high": 0, "medium": 2, "low": 0}


# -- config: inheritance, canonical form, errors ------------------------------------------------

def test_global_rules_are_inherited_unless_a_surface_lists_its_own() -> None:
    surfaces = {"a": {"hide_from": "limit"}, "b": {"hide_from": "limit", "escalate": []}}
    cfg = EnforcementConfig.from_dict({"version": 1, "reasons": REASONS, "surfaces": surfaces,
                                       "escalate": [SPAM_ACCOUNT]})
    pair = {"user:1": [lab("user:1", src("a_model"), E.LIMIT, DAY),
                       lab("user:1", src("b_model"), E.LIMIT, DAY)]}
    assert resolve(cfg.resolver("a"), "user:1", pair).enforcement is E.BLOCK
    assert resolve(cfg.resolver("b"), "user:1", pair).enforcement is E.LIMIT
    doc = cfg.to_dict()
    assert "escalate" not in doc["surfaces"]["a"] and doc["surfaces"]["b"]["escalate"] == []
    assert EnforcementConfig.from_dict(doc) == cfg


def test_canonical_document_round_trips_and_keeps_the_rule_text() -> None:
    cfg = config({**ACCOUNTS, "min_confidence": 0.5},
                 sources={"spam_model": {"hold_below": 0.7, "drop_below": 0.2}})
    doc = cfg.to_dict()
    assert doc["surfaces"]["accounts"]["escalate"][0] == SPAM_ACCOUNT
    assert doc["tiers"] == ["high", "medium", "low"] and doc["reasons"]["spam"]["owner"]
    assert EnforcementConfig.from_dict(doc) == cfg
    plain = EnforcementConfig.from_dict({"version": 1, "surfaces": {"s": {}}}).to_dict()
    assert not {"tiers", "reasons", "sources", "escalate"} & set(plain)


def test_the_default_enforcement_of_the_reason_serves_when_enforce_is_left_out() -> None:
    rule = {k: v for k, v in SPAM_ACCOUNT.items() if k != "enforce"}
    cfg = config({**ACCOUNTS, "escalate": [rule]})
    esc = cfg.surface("accounts").escalation
    assert esc is not None and esc.rules[0].enforce is E.BLOCK


def problems(doc_surface: Mapping[str, Any] | None = None, **top: Any) -> str:
    with pytest.raises(ConfigError) as info:
        config(doc_surface, **top)
    return str(info.value)


@pytest.mark.parametrize(("when", "message"), [
    ("hgh >= 1", "unknown tier 'hgh' at position 0: expected a tier (high, medium, low)"),
    ("high >= ", "unexpected end of input at position 8: expected a whole number"),
    ("high >= 1 or", "unexpected end of input at position 12: expected a tier"),
    ("(high >= 1", "unexpected end of input at position 10: expected ')'"),
    ("high >= 1.5", "unexpected number '1.5' at position 8: expected a whole number"),
    ("high => 1", "unexpected operator '>' at position 6: expected a whole number"),
    ("high >= 1 medium", "unexpected word 'medium' at position 10"),
])
def test_when_parse_errors_point_at_the_position(when: str, message: str) -> None:
    text = problems({**ACCOUNTS, "escalate": [{**SPAM_ACCOUNT, "when": when}]})
    assert "surfaces.accounts.escalate[0].when" in text and message in text


def test_rule_problems_name_their_paths() -> None:
    bad = {**SPAM_ACCOUNT, "reason": "spamm", "over": "reason = Spam", "enforce": "allow"}
    text = problems({**ACCOUNTS, "escalate": [bad, SPAM_ACCOUNT, SPAM_ACCOUNT]})
    assert "surfaces.accounts.escalate[0].reason: reason 'spamm' is not registered; did you " \
           "mean 'spam', 'scam'?" in text
    assert "surfaces.accounts.escalate[0].over: reason 'Spam' can never match" in text
    assert "surfaces.accounts.escalate[0].enforce: must be an enforcement among limit" in text
    assert "surfaces.accounts.escalate[2].name: rule name 'spam account' is used twice" in text


def test_rules_need_a_registry_and_registry_entries_are_checked() -> None:
    with pytest.raises(ConfigError, match="register the reasons first"):
        EnforcementConfig.from_dict({"version": 1, "surfaces": {"s": {"escalate": [SPAM_ACCOUNT]}}})
    with pytest.raises(ConfigError) as info:
        EnforcementConfig.from_dict({"version": 1, "surfaces": {"s": {}}, "tiers": ["a", "a"],
                                     "reasons": {"Spam": {}, "x": {"tier": "urgent"}}})
    text = str(info.value)
    for expected in ("tiers[1]: tier 'a' is listed twice", "reasons.Spam: reason names match",
                     "reasons.x.tier: must be a tier among", "reasons.x.description: is required",
                     "reasons.x.owner: is required"):
        assert expected in text


def test_sources_thresholds_are_checked() -> None:
    text = problems(sources={"m": {"hold_below": 0.5, "drop_below": 0.6},
                             "n": {"hold_below": 2}, "o": {"hold": 0.5}})
    assert "sources.m.drop_below: must not be above hold_below (0.5), got 0.6" in text
    assert "sources.n.hold_below: must be a number in 0..1, got 2" in text
    assert "sources.o.hold: unknown key" in text


def test_custom_tiers() -> None:
    reasons = {"csam": {"tier": "sev0", "description": "x", "owner": "y"},
               "spam": {"tier": "sev2", "description": "x", "owner": "y"}}
    rule = {"name": "r", "when": "sev0 >= 1 or sev2 >= 3", "enforce": "remove", "reason": "csam"}
    cfg = EnforcementConfig.from_dict({"version": 1, "tiers": ["sev0", "sev1", "sev2"],
                                       "reasons": reasons,
                                       "surfaces": {"s": {"escalate": [rule]}}})
    d = cfg.resolver("s").resolve(
        "pin:1", {"pin:1": [lab("pin:1", src("m"), E.LIMIT, DAY, "csam")]}, {}, NOW_TS)
    assert d.enforcement is E.REMOVE


def test_condition_canonical_text_keeps_needed_parentheses_only() -> None:
    tiers = ("high", "medium", "low")
    with pytest.raises(SelectorSyntaxError, match="unknown tier 'HIGH'"):
        Condition.parse("HIGH>=1", tiers)  # tier names are case-sensitive
    c = Condition.parse("(high >= 1) or ((medium>=2)) and not low = 0", tiers)
    assert str(c) == "high >= 1 or (medium >= 2 and not low = 0)"
    c = Condition.parse("(high >= 1 or medium >= 2) and low == 0", tiers)
    assert str(c) == "(high >= 1 or medium >= 2) and low = 0"
    assert Condition.parse(str(c), tiers) == c
    for counts in itertools.product(range(3), repeat=3):
        assert c(counts) == ((counts[0] >= 1 or counts[1] >= 2) and counts[2] == 0)


# -- docs/resolver.md, "Escalation rules": the worked examples, row by row ------------------------

A, B = src("a_model"), src("b_model")
DOC_EXAMPLES: list[tuple[str, dict[str, list[Label]], dict[str, str], Enforcement, str | None]] = [
    # (row, labels by entity, links, enforcement, the rule that decided (None: a label did))
    ("a", {"user:1": [lab("user:1", A, E.LIMIT, 2 * DAY), lab("user:1", B, E.LIMIT, DAY)]}, {},
     E.BLOCK, "spam account"),
    ("b", {"user:1": [lab("user:1", A, E.LIMIT, DAY)]}, {}, E.LIMIT, None),
    ("c", {"user:1": [lab("user:1", src("spam_model", "nightly"), E.LIMIT, 2 * DAY),
                      lab("user:1", src("spam_model", "hourly"), E.LIMIT, DAY)]}, {},
     E.LIMIT, None),
    ("d", {"user:1": [lab("user:1", A, E.LIMIT, 400 * DAY), lab("user:1", B, E.LIMIT, DAY)]},
     {}, E.LIMIT, None),
    ("e", {"user:1": [lab("user:1", A, E.LIMIT, 3 * DAY, expires_at=NOW - DAY),
                      lab("user:1", B, E.LIMIT, DAY)]}, {}, E.LIMIT, None),
    ("f", {"user:1": [lab("user:1", A, E.LIMIT, DAY, "scam")]}, {}, E.LIMIT, None),
    ("g", {"pin:7": [lab("pin:7", A, E.LIMIT, DAY)],
           "domain:spam.example": [lab("domain:spam.example", B, E.LIMIT, DAY)]},
     {"domain": "domain:spam.example"}, E.BLOCK, "spam account"),
    ("h", {"pin:7": [lab("pin:7", A, E.LIMIT, DAY)],
           "user:42": [lab("user:42", B, E.LIMIT, DAY)]}, {"creator": "user:42"}, E.LIMIT, None),
    ("i", {"user:1": [lab("user:1", A, E.LIMIT, DAY), lab("user:1", B, E.LIMIT, DAY),
                      lab("user:1", src("review_tool", "rev-1", True), E.REMOVE, DAY)]}, {},
     E.REMOVE, None),
    ("j", {"user:1": [lab("user:1", A, E.BLOCK, DAY), lab("user:1", B, E.LIMIT, DAY)]}, {},
     E.BLOCK, None),
    ("k", {"user:1": [lab("user:1", A, E.LIMIT, 3 * DAY), lab("user:1", B, E.LIMIT, 2 * DAY),
                      lab("user:1", src("appeals", "bob", True), E.ALLOW, DAY,
                          "appeal_upheld")]}, {}, E.ALLOW, None),
]


@pytest.mark.parametrize(("row", "labels", "links", "enforcement", "rule"), DOC_EXAMPLES,
                         ids=[row[0] for row in DOC_EXAMPLES])
def test_doc_worked_examples(row: str, labels: dict[str, list[Label]], links: dict[str, str],
                             enforcement: Enforcement, rule: str | None) -> None:
    entity = "pin:7" if "pin:7" in labels else "user:1"
    d = resolve(RES, entity, labels, links)
    assert d.enforcement is enforcement
    win = d.winning_cause
    decided_by_rule = None if win is None or win.escalation is None else win.escalation.rule
    assert decided_by_rule == rule
    if row == "i":  # the rule fired, and lost to the more severe human remove
        assert [c.escalation.rule for c in d.causes if c.escalation] == ["spam account"]


def test_doc_explain_output() -> None:
    labels = DOC_EXAMPLES[0][1]
    text = resolve(RES, "user:1", labels).explain()
    assert text.splitlines()[:2] == [
        "user:1 on accounts: block (hidden)",
        "  escalated by rule 'spam account': 2 medium (a_model, b_model): block, reason spam",
    ]
    assert text.splitlines()[-1] == (
        "    * escalated by rule 'spam account': 2 medium (a_model, b_model): block spam")


# -- docs/resolver.md, "Confidence": the surface's min_confidence ---------------------------------

@pytest.mark.parametrize(("confidences", "floor", "enforcement", "taken"), [
    ((0.6, 0.95), None, E.BLOCK, 2),   # both count: the rule fires
    ((0.6, 0.95), 0.8, E.LIMIT, 1),    # a_model's 0.6 is below the floor: not taken at all
    ((None, 0.95), 0.8, E.BLOCK, 2),   # a label without confidence is not held to the floor
    ((0.8, 0.95), 0.8, E.BLOCK, 2),    # at the floor is enough
])
def test_doc_min_confidence(confidences: tuple[float | None, float], floor: float | None,
                            enforcement: Enforcement, taken: int) -> None:
    surface = dict(ACCOUNTS) if floor is None else {**ACCOUNTS, "min_confidence": floor}
    res = config(surface).resolver("accounts")
    labels = [lab("user:1", s, E.LIMIT, DAY, confidence=c)
              for s, c in zip((A, B), confidences, strict=True)]
    d = resolve(res, "user:1", {"user:1": labels})
    assert d.enforcement is enforcement
    assert sum(1 for c in d.causes if c.escalation is None) == taken
