"""Selector language: parsing, errors with positions, evaluation, canonical form, fuzzing."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enforce_sdk import Enforcement, Label, SelectorSyntaxError, Source, SourceType
from enforce_sdk.policy.selector import Selector, format_duration, parse_duration

NOW = datetime(2026, 6, 1, tzinfo=UTC)
NOW_TS = NOW.timestamp()
EXAMPLE = (
    'type = human or (type = automated and system = "spam_domain_model" and confidence >= 0.9)'
)


def make_label(
    *,
    system: str = "spam_domain_model",
    type: SourceType = SourceType.AUTOMATED,
    name: str = "v3",
    reason: str = "spam",
    enforcement: Enforcement = Enforcement.BLOCK,
    confidence: float | None = None,
    age: timedelta = timedelta(hours=1),
) -> Label:
    return Label(
        "pin:1", Source(system, type, name), enforcement, reason, NOW - age, confidence=confidence
    )


def matches(text: str, label: Label) -> bool:
    return Selector.parse(text).matches(label, NOW_TS)


# ---------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        (make_label(type=SourceType.HUMAN, system="review_tool"), True),
        (make_label(confidence=0.95), True),
        (make_label(confidence=0.9), True),
        (make_label(confidence=0.89), False),
        (make_label(confidence=None), False),  # missing confidence: the comparison is false
        (make_label(system="other_model", confidence=0.99), False),
    ],
)
def test_the_issue_example(label: Label, expected: bool) -> None:
    assert matches(EXAMPLE, label) is expected


def test_enforcement_compares_by_severity() -> None:
    sel = Selector.parse("enforcement >= block")
    got = {e: sel.matches(make_label(enforcement=e), NOW_TS) for e in Enforcement}
    assert got == {
        Enforcement.ALLOW: False,
        Enforcement.LIMIT: False,
        Enforcement.BLOCK: True,
        Enforcement.REMOVE: True,
    }
    assert matches("enforcement < limit", make_label(enforcement=Enforcement.ALLOW))
    assert matches("enforcement in [allow, remove]", make_label(enforcement=Enforcement.REMOVE))
    assert not matches("enforcement != remove", make_label(enforcement=Enforcement.REMOVE))
    # enforcement literals are case-insensitive, bare or quoted; the canonical text is lower-case
    assert str(Selector.parse("enforcement >= BLOCK")) == "enforcement >= block"
    assert matches("enforcement = 'Remove'", make_label(enforcement=Enforcement.REMOVE))


def test_age_is_compared_as_a_duration() -> None:
    young, old = make_label(age=timedelta(days=6)), make_label(age=timedelta(days=8))
    assert matches("age < 7d", young) and not matches("age < 7d", old)
    assert matches("age >= 1w", old) and not matches("age >= 1w", young)
    assert matches("age > 36h", young)
    assert matches("age <= 500ms", make_label(age=timedelta(milliseconds=400)))
    assert matches("age < 1d2h", make_label(age=timedelta(hours=25)))
    assert not matches("age < 1d2h", make_label(age=timedelta(hours=27)))
    assert str(Selector.parse("age < 1D2H")) == "age < 1d2h"
    future = make_label(age=timedelta(hours=-1))  # clock skew: age counts as 0
    assert matches("age <= 0s", future)


def test_missing_confidence_fails_every_comparison_including_not_equal() -> None:
    lab = make_label(confidence=None)
    for op in ("=", "!=", "<", "<=", ">", ">="):
        assert not matches(f"confidence {op} 0.5", lab), op
    assert matches("not confidence >= 0.5", lab)


def test_string_fields_in_and_not_in() -> None:
    lab = make_label(reason="porn", name="nsfw-v2.1", system="img@model")
    assert matches("reason in [spam, porn]", lab)
    assert not matches("reason not in [spam, porn]", lab)
    assert matches("name = nsfw-v2.1 and system = img@model", lab)
    assert matches("name = 'nsfw-v2.1'", lab)
    assert matches("type = AUTOMATED", lab)  # source types are case-insensitive
    assert not matches('system = "IMG@model"', lab)  # system names are case-sensitive


def test_precedence_is_not_over_and_over_or() -> None:
    lab = make_label(type=SourceType.HUMAN, reason="spam")
    # `a or b and c` is `a or (b and c)`: true because a is true.
    assert matches("type = human or type = automated and reason = porn", lab)
    assert not matches("(type = human or type = automated) and reason = porn", lab)
    # `not a and b` is `(not a) and b`.
    assert not matches("not type = human and reason = spam", lab)
    assert matches("not (type = automated and reason = spam)", lab)
    assert str(Selector.parse("not type = human and reason = spam")) == (
        "not type = human and reason = spam"
    )


def test_keywords_are_case_insensitive_and_canonical_form_round_trips() -> None:
    sel = Selector.parse("type = human OR Not (reason IN [spam,porn,]) AnD age<7d")
    text = str(sel)
    assert text == "type = human or (not reason in [spam, porn] and age < 7d)"
    assert Selector.parse(text) == sel and str(Selector.parse(text)) == text
    assert str(Selector.parse(EXAMPLE)) == (
        "type = human or (type = automated and system = spam_domain_model and confidence >= 0.9)"
    )


def test_blank_selector_takes_every_label() -> None:
    sel = Selector.parse("  ")
    assert sel.matches_all and sel == Selector.all() and str(sel) == ""
    assert sel.matches(make_label(), NOW_TS)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "position", "expected_fragment", "message_fragment"),
    [
        ("type = human or", 15, "a field", "end of input"),
        ("typ = human", 0, "a field", "unknown field 'typ'"),
        ("type == human", 6, "human or automated", "unexpected '='"),
        ("type = human )", 13, "end of input", "')'"),
        ("(type = human", 13, "')'", "end of input"),
        ('confidence = "x"', 13, "a number in 0..1", "confidence compares to a number"),
        ("confidence >= 1.5", 14, "a number in 0..1", "outside 0..1"),
        ("enforcement >= blocked", 15, "an enforcement", "unknown enforcement 'blocked'"),
        ("age < 7x", 6, "largest unit first", "bad duration '7x'"),
        ("age < 2h1d", 6, "largest unit first", "bad duration '2h1d'"),
        ("age < 7", 6, "a duration", "age compares to a duration"),
        ("type = robot", 7, "human or automated", "unknown source type"),
        ("reason < spam", 7, "=, != or in", "cannot be ordered"),
        ("age in [1d]", 4, "=, !=", "does not support 'in'"),
        ("reason in spam", 10, "'['", "unexpected"),
        ("reason in [spam porn]", 16, "',' or ']'", "unexpected"),
        ("reason in []", 11, "a reason", "unexpected"),
        ("reason not = spam", 11, "'in' after 'not'", "unexpected"),
        ('system = "abc', 9, 'a closing "', "unterminated string"),
        ('system = "a\\nb"', 11, "without backslashes", "strings have no escapes"),
        ('system = "a\\"b"', 11, "without backslashes", "strings have no escapes"),
        ("system = 'a\"b'", 9, "a name matching", "can never match"),
        ("reason = Spam", 9, "a reason matching", "can never match"),
        ("type = human $", 13, "a field, value", "unexpected character '$'"),
        ("reason = and", 9, "a reason", "keyword 'and'"),
        ("and", 0, "a field", "keyword 'and'"),
    ],
)
def test_errors_name_the_position_and_what_was_expected(
    text: str, position: int, expected_fragment: str, message_fragment: str
) -> None:
    with pytest.raises(SelectorSyntaxError) as info:
        Selector.parse(text)
    err = info.value
    assert err.position == position, str(err)
    assert expected_fragment in err.expected, str(err)
    assert message_fragment in str(err)
    assert err.text == text
    # the message points at the column with a caret
    assert str(err).splitlines()[-1] == "  " + " " * position + "^"


def test_nesting_is_bounded_with_a_syntax_error_not_a_recursion_error() -> None:
    with pytest.raises(SelectorSyntaxError, match="nested deeper"):
        Selector.parse("(" * 200 + "type = human" + ")" * 200)
    with pytest.raises(SelectorSyntaxError, match="nested deeper"):
        Selector.parse("not " * 200 + "type = human")
    assert Selector.parse("(" * 20 + "type = human" + ")" * 20).matches(
        make_label(type=SourceType.HUMAN), NOW_TS
    )


def test_non_string_and_overlong_input_are_syntax_errors() -> None:
    with pytest.raises(SelectorSyntaxError):
        Selector.parse(42)  # type: ignore[arg-type]
    with pytest.raises(SelectorSyntaxError, match="longer than"):
        Selector.parse("type = human or " * 400 + "type = human")


def test_durations() -> None:
    assert parse_duration("500ms") == 0.5
    assert parse_duration("1.5h") == 5400
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("1d2h") == 86400 + 7200
    assert parse_duration("1h30m15s500ms") == 5415.5
    assert parse_duration("1D2H") == 93600  # units are case-insensitive, like keywords
    for bad in ("7", "-3d", "7x", "", "d", "2h1d", "1d1d", "1d2", "1d 2h"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    for seconds in (0.5, 30, 90, 3600, 7 * 86400, 1.25, 14 * 86400):
        out = format_duration(seconds)
        assert (parse_duration(out) if isinstance(out, str) else out) == seconds


# ---------------------------------------------------------------------------- fuzzing

SELECTOR_CHARS = st.sampled_from(
    [*"()[],=!<>\"'\\ .-_@0123456789", "and", "or", "not", "in", "type", "age", "7d", "ms",
     "human", "confidence", "0.5", "enforcement", "block"]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=80), st.lists(SELECTOR_CHARS, max_size=30).map(" ".join),
                 st.lists(SELECTOR_CHARS, max_size=30).map("".join)))
def test_any_text_gives_a_selector_or_a_syntax_error(text: str) -> None:
    try:
        sel = Selector.parse(text)
    except SelectorSyntaxError as err:
        assert 0 <= err.position <= len(text)
        assert err.expected
        return
    # whatever parses evaluates without error and its canonical form is a fixed point
    sel.matches(make_label(confidence=0.5), NOW_TS)
    assert str(Selector.parse(str(sel))) == str(sel)


# A reference evaluator over generated ASTs: the selector must agree with it.


@dataclass(frozen=True)
class Cmp:
    field: str
    op: str
    values: tuple[Any, ...]
    texts: tuple[str, ...]


@dataclass(frozen=True)
class Not:
    operand: Any


@dataclass(frozen=True)
class BoolOp:
    op: str
    operands: tuple[Any, ...]


REF_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}
SYSTEMS = ["spam_domain_model", "review_tool", "nsfw-v2"]
REASONS = ["spam", "porn", "hate"]
NAMES = ["v3", "alice", "bob.smith"]
DURATIONS = {"30m": 1800.0, "12h": 43200.0, "1d": 86400.0, "7d": 604800.0, "2w": 1209600.0}


def _string_literal(draw: Callable[..., Any], value: str) -> str:
    text: str = draw(st.sampled_from([value, f'"{value}"', f"'{value}'"]))
    return text


@st.composite
def comparisons(draw: st.DrawFn) -> Cmp:
    field = draw(st.sampled_from(["type", "system", "name", "reason", "enforcement",
                                  "confidence", "age"]))
    if field in ("type", "system", "name", "reason"):
        pool = {"type": ["human", "automated"], "system": SYSTEMS, "name": NAMES,
                "reason": REASONS}[field]
        op = draw(st.sampled_from(["=", "!=", "in", "not in"]))
        count = draw(st.integers(1, 3)) if "in" in op else 1
        values = tuple(draw(st.sampled_from(pool)) for _ in range(count))
        return Cmp(field, op, values, tuple(_string_literal(draw, v) for v in values))
    op = draw(st.sampled_from(list(REF_OPS)))
    if field == "enforcement":
        e = draw(st.sampled_from(list(Enforcement)))
        if draw(st.booleans()):
            return Cmp(field, draw(st.sampled_from(["in", "not in"])), (e,), (e.name.lower(),))
        return Cmp(field, op, (e,), (draw(st.sampled_from([e.name.lower(), e.name])),))
    if field == "confidence":
        c = draw(st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]))
        return Cmp(field, op, (c,), (repr(c),))
    text = draw(st.sampled_from(sorted(DURATIONS)))
    return Cmp(field, op, (DURATIONS[text],), (text,))


expressions = st.recursive(
    comparisons(),
    lambda inner: st.one_of(
        inner.map(Not),
        st.tuples(st.sampled_from(["and", "or"]), st.lists(inner, min_size=2, max_size=3)).map(
            lambda t: BoolOp(t[0], tuple(t[1]))
        ),
    ),
    max_leaves=8,
)


def render(node: Any, draw: Callable[..., Any]) -> str:
    """Text for `node`, always parenthesising compound operands (so structure is unambiguous)."""
    sp = draw(st.sampled_from([" ", "  ", "\t"]))
    if isinstance(node, Cmp):
        if "in" in node.op:
            op = draw(st.sampled_from([node.op, node.op.upper()]))
            return f"{node.field} {op} [{','.join(node.texts)}]"
        return f"{node.field}{sp}{node.op}{sp}{node.texts[0]}"
    if isinstance(node, Not):
        return f"not{sp}({render(node.operand, draw)})"
    kw = draw(st.sampled_from([node.op, node.op.upper()]))
    return f"{sp}{kw}{sp}".join(f"({render(o, draw)})" for o in node.operands)


def reference(node: Any, label: Label, now: float) -> bool:
    if isinstance(node, Not):
        return not reference(node.operand, label, now)
    if isinstance(node, BoolOp):
        results = [reference(o, label, now) for o in node.operands]
        return all(results) if node.op == "and" else any(results)
    value: Any = {
        "type": label.source.type.value,
        "system": label.source.system,
        "name": label.source.name,
        "reason": label.reason,
        "enforcement": label.enforcement,
        "confidence": label.confidence,
        "age": max(0.0, now - label.created_at.timestamp()),
    }[node.field]
    if node.op == "in":
        return value in node.values
    if node.op == "not in":
        return value not in node.values
    if value is None:
        return False
    return REF_OPS[node.op](value, node.values[0])


labels = st.builds(
    make_label,
    system=st.sampled_from(SYSTEMS),
    type=st.sampled_from(list(SourceType)),
    name=st.sampled_from(NAMES),
    reason=st.sampled_from(REASONS),
    enforcement=st.sampled_from(list(Enforcement)),
    confidence=st.one_of(st.none(), st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0, 0.7])),
    age=st.sampled_from([timedelta(0), timedelta(minutes=30), timedelta(hours=5),
                         timedelta(days=1), timedelta(days=7), timedelta(days=30)]),
)


@settings(max_examples=300, deadline=None)
@given(st.data(), expressions, st.lists(labels, min_size=1, max_size=4))
def test_generated_selectors_evaluate_like_the_reference(
    data: st.DataObject, node: Any, sample: list[Label]
) -> None:
    text = render(node, data.draw)
    sel = Selector.parse(text)
    again = Selector.parse(str(sel))
    for label in sample:
        want = reference(node, label, NOW_TS)
        assert sel.matches(label, NOW_TS) is want, (text, label)
        assert again.matches(label, NOW_TS) is want, (str(sel), label)
