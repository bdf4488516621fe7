"""The selector language: which labels a surface takes into account.

A selector is a boolean expression over label fields, e.g.
`type = human or (type = automated and system = "spam_domain_model" and confidence >= 0.9)`.
It is tokenized, parsed by recursive descent into a small AST, checked for
meaning (known field, operator and value type that fit it), and compiled into
a tree of closures `(label, now_epoch) -> bool`. Nothing is ever `eval`ed.
Every error is a SelectorSyntaxError with the 0-based position of the
offending token and what was expected there. docs/selectors.md has the grammar.

Precedence, tightest first: comparison, `not`, `and`, `or`. Blank text is the
match-everything selector (a surface's default).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .._errors import SelectorSyntaxError
from ..model.label import Enforcement, Label, SourceType

Predicate = Callable[[Label, float], bool]

MAX_SELECTOR_LENGTH: Final = 4096
MAX_NESTING: Final = 50  # parentheses and `not`s; bounds the recursion of parser and predicate

# Duration units shared with the config document ("500ms", "30s", "7d").
DURATION_UNITS: Final[dict[str, float]] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_DURATION_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)([a-z]+)", re.ASCII)
_DURATION_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?[a-z]+)+", re.ASCII)
DURATION_RULE: Final = ("one or more parts of a number and a unit (ms, s, m, h, d, w), "
                        "largest unit first, each unit once: 500ms, 7d, 1d2h, 1h30m")


def parse_duration(text: str) -> float:
    """Seconds in a duration literal such as "500ms", "1.5h", "7d" or "1d2h" (parts add up,
    largest unit first, each unit once); ValueError naming the rule if malformed."""
    lowered = text.strip().lower()
    if not _DURATION_RE.fullmatch(lowered):
        raise ValueError(f"{text!r} is not a duration: a duration is {DURATION_RULE}")
    seconds = 0.0
    previous = math.inf
    for number, unit in _DURATION_PART_RE.findall(lowered):
        size = DURATION_UNITS.get(unit)
        if size is None:
            raise ValueError(f"{text!r} is not a duration: unknown unit {unit!r} "
                             f"(a duration is {DURATION_RULE})")
        if size >= previous:
            raise ValueError(f"{text!r} is not a duration: {unit!r} is not smaller than the "
                             f"unit before it (a duration is {DURATION_RULE})")
        previous = size
        seconds += float(number) * size
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is out of range")
    return seconds


def format_duration(seconds: float) -> str | float:
    """The shortest exact duration literal for `seconds`, or the number itself if none is exact."""
    for unit in ("w", "d", "h", "m", "s", "ms"):
        amount = seconds / DURATION_UNITS[unit]
        if amount >= 1 and amount == int(amount):
            text = f"{int(amount)}{unit}"
            if parse_duration(text) == seconds:
                return text
    return seconds


# --------------------------------------------------------------------------- tokens

_KEYWORDS: Final = frozenset({"and", "or", "not", "in"})
_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-@]*", re.ASCII)
_TOKEN_RE = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>[A-Za-z_][A-Za-z0-9_.]*)?
  | (?P<word>[A-Za-z_][A-Za-z0-9_.\-@]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op><=|>=|!=|=|<|>)
  | (?P<punct>[()\[\],])
    """,
    re.VERBOSE | re.ASCII | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # word | keyword | number | duration | string | op | punct | end
    text: str  # source text (keywords lower-cased)
    pos: int
    value: str | float | None = None  # decoded string, number, or duration in seconds


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos, n = 0, len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            if text[pos] in "\"'":
                raise SelectorSyntaxError(
                    "unterminated string", text=text, position=pos, expected=f"a closing {text[pos]}"
                )
            raise SelectorSyntaxError(
                f"unexpected character {text[pos]!r}",
                text=text,
                position=pos,
                expected="a field, value, operator, parenthesis or keyword",
            )
        kind = next(k for k in ("ws", "number", "word", "string", "op", "punct") if m.group(k))
        raw = m.group(0)
        if kind == "number":
            unit = m.group("unit")
            if unit is None:
                tokens.append(_Token("number", raw, pos, float(raw)))
            else:
                try:
                    seconds = parse_duration(raw)
                except ValueError:
                    raise SelectorSyntaxError(
                        f"bad duration {raw!r}",
                        text=text,
                        position=pos,
                        expected=DURATION_RULE,
                    ) from None
                tokens.append(_Token("duration", raw.lower(), pos, seconds))
        elif kind == "word":
            if raw.lower() in _KEYWORDS:
                tokens.append(_Token("keyword", raw.lower(), pos))
            else:
                tokens.append(_Token("word", raw, pos, raw))
        elif kind == "string":
            body = raw[1:-1]
            if "\\" in body:  # no label field can hold a quote or a backslash: nothing to escape
                raise SelectorSyntaxError(
                    "backslash in a string: no label field can hold a backslash or the quote "
                    "around it, so strings have no escapes",
                    text=text,
                    position=pos + 1 + body.index("\\"),
                    expected="a string without backslashes",
                )
            tokens.append(_Token("string", raw, pos, body))
        elif kind in ("op", "punct"):
            tokens.append(_Token(kind, raw, pos))
        pos = m.end()
    tokens.append(_Token("end", "", n))
    return tokens


# --------------------------------------------------------------------------- AST

_STRING_FIELDS: Final = ("type", "system", "name", "reason")
FIELDS: Final = (*_STRING_FIELDS, "enforcement", "confidence", "age")
_ORDER_OPS: Final = frozenset({"<", "<=", ">", ">="})
_FIELD_LIST: Final = ", ".join(FIELDS)
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-@]{1,64}")
_REASON_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")

Value = str | float | Enforcement


@dataclass(frozen=True, slots=True)
class _Compare:
    field: str
    op: str  # = != < <= > >= in notin
    values: tuple[Value, ...]  # one value, or the list of `in`
    texts: tuple[str, ...]  # canonical text of each value


@dataclass(frozen=True, slots=True)
class _Not:
    operand: _Node


@dataclass(frozen=True, slots=True)
class _Bool:
    op: str  # and | or
    operands: tuple[_Node, ...]


_Node = _Compare | _Not | _Bool


class _Parser:
    """Recursive descent over the token list; one method per grammar rule."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    def error(self, message: str, expected: str, tok: _Token | None = None) -> SelectorSyntaxError:
        tok = tok or self.tokens[self.i]
        return SelectorSyntaxError(message, text=self.text, position=tok.pos, expected=expected)

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at_keyword(self, word: str) -> bool:
        tok = self.tokens[self.i]
        return tok.kind == "keyword" and tok.text == word

    def parse(self) -> _Node:
        node = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            raise self.error(f"unexpected {_describe(tok)}", "'and', 'or' or end of input")
        return node

    def or_expr(self) -> _Node:
        items = [self.and_expr()]
        while self.at_keyword("or"):
            self.take()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else _Bool("or", tuple(items))

    def and_expr(self) -> _Node:
        items = [self.not_expr()]
        while self.at_keyword("and"):
            self.take()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else _Bool("and", tuple(items))

    def not_expr(self) -> _Node:
        if self.at_keyword("not"):
            tok = self.take()
            self.enter(tok)
            node = _Not(self.not_expr())
            self.depth -= 1
            return node
        return self.primary()

    def enter(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(
                f"nested deeper than {MAX_NESTING} levels", "a flatter expression", tok
            )

    def primary(self) -> _Node:
        tok = self.peek()
        if tok.kind == "punct" and tok.text == "(":
            self.take()
            self.enter(tok)
            node = self.or_expr()
            close = self.peek()
            if close.kind != "punct" or close.text != ")":
                raise self.error(f"unexpected {_describe(close)}", "')', 'and' or 'or'")
            self.take()
            self.depth -= 1
            return node
        return self.comparison()

    def comparison(self) -> _Node:
        tok = self.take()
        if tok.kind != "word":
            raise self.error(
                f"unexpected {_describe(tok)}", f"a field ({_FIELD_LIST}), 'not' or '('", tok
            )
        field = tok.text
        if field not in FIELDS:
            raise self.error(f"unknown field {field!r}", f"a field ({_FIELD_LIST})", tok)
        op_tok = self.take()
        if op_tok.kind == "op":
            op = op_tok.text
            if op in _ORDER_OPS and field in _STRING_FIELDS:
                raise self.error(
                    f"{field} cannot be ordered with {op}", "=, != or in", op_tok
                )
            value, text = self.value(field)
            return _Compare(field, op, (value,), (text,))
        if op_tok.kind == "keyword" and op_tok.text in ("in", "not"):
            op = "in"
            if op_tok.text == "not":
                nxt = self.take()
                if nxt.kind != "keyword" or nxt.text != "in":
                    raise self.error(f"unexpected {_describe(nxt)}", "'in' after 'not'", nxt)
                op = "notin"
            if field in ("confidence", "age"):
                raise self.error(f"{field} does not support 'in'", "=, !=, <, <=, > or >=", op_tok)
            return self.in_list(field, op)
        raise self.error(
            f"unexpected {_describe(op_tok)}", "an operator (=, !=, <, <=, >, >=, in, not in)", op_tok
        )

    def in_list(self, field: str, op: str) -> _Node:
        tok = self.take()
        if tok.kind != "punct" or tok.text != "[":
            raise self.error(f"unexpected {_describe(tok)}", "'[' to start a list", tok)
        values: list[Value] = []
        texts: list[str] = []
        while True:
            value, text = self.value(field)
            if text not in texts:
                values.append(value)
                texts.append(text)
            sep = self.take()
            if sep.kind == "punct" and sep.text == ",":
                nxt = self.peek()
                if nxt.kind == "punct" and nxt.text == "]":
                    self.take()
                    break
                continue
            if sep.kind == "punct" and sep.text == "]":
                break
            raise self.error(f"unexpected {_describe(sep)}", "',' or ']'", sep)
        return _Compare(field, op, tuple(values), tuple(texts))

    def value(self, field: str) -> tuple[Value, str]:
        """One literal, checked against the field's type; returns (value, canonical text)."""
        tok = self.take()
        if tok.kind not in ("word", "string", "number", "duration"):
            raise self.error(f"unexpected {_describe(tok)}", _expected_value(field), tok)
        if field == "confidence":
            if tok.kind != "number":
                raise self.error(f"confidence compares to a number, got {_describe(tok)}",
                                 "a number in 0..1", tok)
            assert isinstance(tok.value, float)
            if not 0.0 <= tok.value <= 1.0:
                raise self.error(f"confidence {tok.text} is outside 0..1", "a number in 0..1", tok)
            return tok.value, repr(tok.value)
        if field == "age":
            if tok.kind != "duration":
                raise self.error(f"age compares to a duration, got {_describe(tok)}",
                                 _expected_value(field), tok)
            assert isinstance(tok.value, float)
            return tok.value, tok.text
        if tok.kind not in ("word", "string"):
            raise self.error(f"{field} compares to a string, got {_describe(tok)}",
                             _expected_value(field), tok)
        assert isinstance(tok.value, str)
        text = tok.value
        if field == "enforcement":
            member = _ENFORCEMENTS.get(text.strip().lower())
            if member is None:
                raise self.error(f"unknown enforcement {text!r}", _expected_value(field), tok)
            return member, member.wire
        if field == "type":
            kind = text.strip().lower()
            if kind not in ("human", "automated"):
                raise self.error(f"unknown source type {text!r}", _expected_value(field), tok)
            return SourceType(kind), kind
        pattern = _REASON_RE if field == "reason" else _NAME_RE
        if not pattern.fullmatch(text):
            raise self.error(f"{field} {text!r} can never match a label", _expected_value(field), tok)
        return text, _quote(text)


_ENFORCEMENTS: Final = {e.wire: e for e in Enforcement}


def _expected_value(field: str) -> str:
    return {
        "type": "human or automated",
        "enforcement": "an enforcement (" + ", ".join(e.wire for e in Enforcement) + ")",
        "confidence": "a number in 0..1",
        "age": "a duration (e.g. 30s, 12h, 7d)",
        "reason": "a reason matching " + _REASON_RE.pattern,
    }.get(field, "a name matching " + _NAME_RE.pattern)


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return "end of input"
    return f"{tok.kind} {tok.text!r}" if tok.kind in ("keyword", "word") else repr(tok.text)


def _quote(text: str) -> str:
    if _WORD_RE.fullmatch(text) and text.lower() not in _KEYWORDS:
        return text
    return '"' + text + '"'  # values hold no quote or backslash (checked when parsed)


# --------------------------------------------------------------------------- rendering


def _render(node: _Node, nested: bool = False) -> str:
    """Canonical text: keywords lower-case, one space around operators, every nested group in ()."""
    if isinstance(node, _Compare):
        if node.op in ("in", "notin"):
            word = "in" if node.op == "in" else "not in"
            return f"{node.field} {word} [{', '.join(node.texts)}]"
        return f"{node.field} {node.op} {node.texts[0]}"
    if isinstance(node, _Not):
        return "not " + _render(node.operand, True)
    text = f" {node.op} ".join(_render(o, True) for o in node.operands)
    return f"({text})" if nested else text


# --------------------------------------------------------------------------- compiling


def _match_all(label: Label, now: float) -> bool:
    return True


_GETTERS: Final[dict[str, Callable[[Label], object]]] = {
    "type": operator.attrgetter("source.type"),
    "system": operator.attrgetter("source.system"),
    "name": operator.attrgetter("source.name"),
    "reason": operator.attrgetter("reason"),
    "enforcement": operator.attrgetter("enforcement"),
}


def _compile(node: _Node) -> Predicate:
    if isinstance(node, _Not):
        inner = _compile(node.operand)
        return lambda label, now: not inner(label, now)
    if isinstance(node, _Bool):
        return _compile_bool(node.op, [_compile(o) for o in node.operands])
    return _compile_compare(node)


def _compile_bool(op: str, preds: Sequence[Predicate]) -> Predicate:
    if len(preds) == 2:
        a, b = preds
        if op == "and":
            return lambda label, now: a(label, now) and b(label, now)
        return lambda label, now: a(label, now) or b(label, now)
    items = tuple(preds)
    if op == "and":

        def all_of(label: Label, now: float) -> bool:
            for p in items:  # noqa: SIM110 - a plain loop is ~2x faster than all(genexpr)
                if not p(label, now):
                    return False
            return True

        return all_of

    def any_of(label: Label, now: float) -> bool:
        for p in items:  # noqa: SIM110 - a plain loop is ~2x faster than any(genexpr)
            if p(label, now):
                return True
        return False

    return any_of


def _compile_compare(node: _Compare) -> Predicate:
    op, field = node.op, node.field
    if op in ("in", "notin"):
        members = frozenset(node.values)
        get = _GETTERS[field]
        if op == "in":
            return lambda label, now: get(label) in members
        return lambda label, now: get(label) not in members
    value = node.values[0]
    if field == "confidence":
        assert isinstance(value, float)
        return _compile_confidence(op, value)
    if field == "age":
        assert isinstance(value, float)
        return _compile_age(op, value)
    get = _GETTERS[field]
    cmp = _CMP[op]
    return lambda label, now: cmp(get(label), value)


def _compile_confidence(op: str, v: float) -> Predicate:
    # A label without a confidence fails every comparison on it, `!=` included.
    cmp = _CMP[op]

    def confidence(label: Label, now: float) -> bool:
        c = label.confidence
        return c is not None and cmp(c, v)

    return confidence


def _compile_age(op: str, v: float) -> Predicate:
    cmp = _CMP[op]

    def age(label: Label, now: float) -> bool:
        # A label dated in the future (clock skew) has age 0.
        return cmp(max(0.0, now - label.created_at.timestamp()), v)

    return age


_CMP: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


# --------------------------------------------------------------------------- public


def _required_reasons(node: _Node) -> frozenset[str] | None:
    """Reasons a label must have for `node` to take it (None: no such bound), soundly:
    `reason = x`, `reason in [...]`, an `and` with such a part, an `or` of such parts."""
    if isinstance(node, _Compare):
        if node.field == "reason" and node.op in ("=", "in"):
            return frozenset(str(v) for v in node.values)
        return None
    if isinstance(node, _Bool):
        parts = [_required_reasons(n) for n in node.operands]
        if node.op == "and":
            bounds = [p for p in parts if p is not None]
            return frozenset.intersection(*bounds) if bounds else None
        if any(p is None for p in parts):
            return None
        return frozenset().union(*(p for p in parts if p is not None))
    return None


class Selector:
    """A parsed, checked and compiled selector. Immutable; equal when canonical texts are equal."""

    __slots__ = ("_text", "predicate", "reasons")

    predicate: Predicate
    """The compiled `(label, now_epoch_seconds) -> bool`; call it directly on hot paths."""
    reasons: frozenset[str] | None
    """Only labels with one of these reasons can match (None: no bound); lets a caller skip
    the predicate for the others (escalation rules do)."""

    def __init__(self, canonical: str, predicate: Predicate,
                 reasons: frozenset[str] | None = None) -> None:
        self._text = canonical
        self.predicate = predicate
        self.reasons = reasons

    @classmethod
    def parse(cls, text: str) -> Selector:
        """Parse and compile `text`; raise SelectorSyntaxError with the position of the problem."""
        if not isinstance(text, str):
            raise SelectorSyntaxError(
                f"a selector must be a string, got {type(text).__name__}",
                text="",
                position=0,
                expected="a string",
            )
        if len(text) > MAX_SELECTOR_LENGTH:
            raise SelectorSyntaxError(
                f"selector longer than {MAX_SELECTOR_LENGTH} characters",
                text=text[:80] + "...",
                position=0,
                expected="a shorter selector",
            )
        if not text.strip():
            return cls.all()
        node = _Parser(text).parse()
        return cls(_render(node), _compile(node), _required_reasons(node))

    @classmethod
    def all(cls) -> Selector:
        """The selector that takes every label (blank text)."""
        return _ALL

    @property
    def matches_all(self) -> bool:
        return self._text == ""

    def matches(self, label: Label, now: float) -> bool:
        """Whether this selector takes `label`, `now` being epoch seconds (for `age`)."""
        return self.predicate(label, now)

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Selector({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Selector) and other._text == self._text

    def __hash__(self) -> int:
        return hash(self._text)


_ALL: Final = Selector("", _match_all)
