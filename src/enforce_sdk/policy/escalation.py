"""Escalation rules: signals combined by severity tier into an enforcement, as T&S policy reads.

A rule, per surface (or a global default), in the config document:

    name = "spam account"
    when = "high >= 1 or medium >= 2 or (low >= 2 and medium >= 1)"
    over = "reason = spam and age < 365d"     # a selector over the signals
    enforce = "block"
    reason = "spam"

The **signals** of an entity on a surface are its labels that the resolver
selected (unexpired, taken by the surface's selector and `min_confidence`),
whose enforcement is not `allow`, whose reason is registered (it gives the
tier) and that `over` takes; plus, for each link kind the surface lists in
`related`, the linked entity's labels of at least that link's minimum. Labels
created at or before the item's newest human `allow` of positive weight (an
upheld appeal, a reviewer's clearance) are not signals: the review saw them.

Counts are over **distinct source systems**: a system counts once, in the tier
of its most severe signal, so one noisy system (two model runs, or the same
model on a pin and on its domain) cannot escalate alone. `when` compares the
count of each tier: `tier op integer`, joined by `and`, `or`, `not` and
parentheses; a parse error points at the position, like a selector's.

A rule that fires becomes a `Cause` of the Decision (`escalation` set) and
competes with the ordinary winner by severity: it wins only when its
enforcement is more severe (at equal severity the label stays the winner).
Pure: no I/O.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any, Final, NamedTuple

from .._errors import SelectorSyntaxError
from ..model.label import Enforcement, Label, Source, SourceType
from .selector import Selector

CountPredicate = Callable[[Sequence[int]], bool]
MAX_WHEN_LENGTH: Final = 1024
MAX_NESTING: Final = 20
ESCALATION_SYSTEM: Final = "escalation"  # the source system of the label a rule decides with
_KEYWORDS: Final = frozenset({"and", "or", "not"})
_TOKEN_RE = re.compile(
    r"(?P<ws>\s+)|(?P<number>[0-9]+(?:\.[0-9]*)?)|(?P<word>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>>=|<=|!=|==|=|<|>)|(?P<punct>[()])"
)
_OPS: Final[dict[str, Callable[[int, int], bool]]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}
_CREATED: Final = attrgetter("created_at")
_SLUG_RE = re.compile(r"[^A-Za-z0-9_.\-@]+")


class _Tok(NamedTuple):
    kind: str  # word | keyword | number | op | punct | end
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise SelectorSyntaxError(f"unexpected character {text[pos]!r}", text=text,
                                      position=pos, expected="a tier, a number, an operator, "
                                      "a parenthesis, 'and', 'or' or 'not'")
        kind = next(k for k in ("ws", "number", "word", "op", "punct") if m.group(k))
        raw = m.group(0)
        if kind == "word" and raw.lower() in _KEYWORDS:
            out.append(_Tok("keyword", raw.lower(), pos))
        elif kind != "ws":
            out.append(_Tok(kind, raw, pos))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


class _Parser:
    """Recursive descent: or_expr -> and_expr -> not_expr -> primary (tier op count)."""

    def __init__(self, text: str, tiers: tuple[str, ...]) -> None:
        self.text = text
        self.tiers = tiers
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0
        # True while every comparison is `>=` or `>` and there is no `not`: then more sources
        # can never turn the condition false (Escalation uses it to skip rules early)
        self.monotone = True

    def error(self, message: str, expected: str, tok: _Tok | None = None) -> SelectorSyntaxError:
        tok = tok or self.toks[self.i]
        return SelectorSyntaxError(message, text=self.text, position=tok.pos, expected=expected)

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def at(self, keyword: str) -> bool:
        tok = self.toks[self.i]
        return tok.kind == "keyword" and tok.text == keyword

    def parse(self) -> tuple[CountPredicate, str]:
        pred, text, _ = self.or_expr()
        tok = self.toks[self.i]
        if tok.kind != "end":
            raise self.error(f"unexpected {_describe(tok)}", "'and', 'or' or end of input")
        return pred, text

    # Each rule returns (predicate, canonical text, kind); kind "or" / "and" says which
    # operator joins the text at its top level, so a group is parenthesised only when needed.
    def or_expr(self) -> tuple[CountPredicate, str, str]:
        items = [self.and_expr()]
        while self.at("or"):
            self.take()
            items.append(self.and_expr())
        if len(items) == 1:
            return items[0]
        return (_chain([p for p, _, _ in items], any_of=True),
                " or ".join(f"({t})" if k == "and" else t for _, t, k in items), "or")

    def and_expr(self) -> tuple[CountPredicate, str, str]:
        items = [self.not_expr()]
        while self.at("and"):
            self.take()
            items.append(self.not_expr())
        if len(items) == 1:
            return items[0]
        return (_chain([p for p, _, _ in items], any_of=False),
                " and ".join(f"({t})" if k == "or" else t for _, t, k in items), "and")

    def enter(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(f"nesting deeper than {MAX_NESTING} levels", "a flatter expression",
                             tok)

    def not_expr(self) -> tuple[CountPredicate, str, str]:
        if self.at("not"):
            self.monotone = False
            tok = self.take()
            self.enter(tok)
            pred, text, kind = self.not_expr()
            self.depth -= 1
            return (lambda c: not pred(c)), f"not ({text})" if kind != "atom" else f"not {text}", \
                "atom"
        return self.primary()

    def primary(self) -> tuple[CountPredicate, str, str]:
        tok = self.take()
        if tok.kind == "punct" and tok.text == "(":
            self.enter(tok)
            node = self.or_expr()
            self.depth -= 1
            close = self.take()
            if close.kind != "punct" or close.text != ")":
                raise self.error(f"unexpected {_describe(close)}", "')', 'and' or 'or'", close)
            return node
        tiers = ", ".join(self.tiers)
        if tok.kind != "word":
            raise self.error(f"unexpected {_describe(tok)}", f"a tier ({tiers}), 'not' or '('",
                             tok)
        if tok.text not in self.tiers:
            raise self.error(f"unknown tier {tok.text!r}", f"a tier ({tiers})", tok)
        index = self.tiers.index(tok.text)
        op = self.take()
        if op.kind != "op":
            raise self.error(f"unexpected {_describe(op)}", "=, !=, <, <=, > or >=", op)
        sym = "=" if op.text == "==" else op.text
        num = self.take()
        if num.kind != "number" or not num.text.isdigit():
            raise self.error(f"unexpected {_describe(num)}",
                             "a whole number of distinct sources (0, 1, 2, ...)", num)
        n = int(num.text)
        if sym not in (">=", ">"):
            self.monotone = False
        cmp = _OPS[sym]
        return (lambda c: cmp(c[index], n)), f"{tok.text} {sym} {n}", "atom"


def _chain(preds: list[CountPredicate], *, any_of: bool) -> CountPredicate:
    """`p1 or p2 or ...` (or `and`) as nested two-operand closures: no generator per call."""
    out = preds[-1]
    for p in reversed(preds[:-1]):
        if any_of:
            def either(c: Sequence[int], a: CountPredicate = p, b: CountPredicate = out) -> bool:
                return a(c) or b(c)
            out = either
        else:
            def both(c: Sequence[int], a: CountPredicate = p, b: CountPredicate = out) -> bool:
                return a(c) and b(c)
            out = both
    return out


def _describe(tok: _Tok) -> str:
    if tok.kind == "end":
        return "end of input"
    kind = {"op": "operator", "punct": "parenthesis"}.get(tok.kind, tok.kind)
    return f"{kind} {tok.text!r}"


class Condition:
    """A parsed `when`: a predicate over the distinct-source counts of each tier."""

    __slots__ = ("_text", "monotone", "predicate", "tiers")

    def __init__(self, text: str, predicate: CountPredicate, tiers: tuple[str, ...],
                 monotone: bool = False) -> None:
        self._text = text
        self.predicate = predicate
        self.tiers = tiers
        self.monotone = monotone  # only >= / > and no `not`: more sources never make it false

    @classmethod
    def parse(cls, text: str, tiers: Sequence[str]) -> Condition:
        """Parse `text` over `tiers` (most severe first); SelectorSyntaxError with the position."""
        if not isinstance(text, str) or not text.strip():
            raise SelectorSyntaxError("an escalation condition must be a non-empty string",
                                      text="" if not isinstance(text, str) else text,
                                      position=0, expected="e.g. 'high >= 1 or medium >= 2'")
        if len(text) > MAX_WHEN_LENGTH:
            raise SelectorSyntaxError(f"condition longer than {MAX_WHEN_LENGTH} characters",
                                      text=text[:80] + "...", position=0,
                                      expected="a shorter condition")
        tiers = tuple(tiers)
        parser = _Parser(text, tiers)
        pred, canonical = parser.parse()
        return cls(canonical, pred, tiers, parser.monotone)

    def __call__(self, counts: Sequence[int]) -> bool:
        return self.predicate(counts)

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Condition({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Condition) and (other._text, other.tiers) == (self._text,
                                                                               self.tiers)

    def __hash__(self) -> int:
        return hash(self._text)


@dataclass(frozen=True, slots=True)
class EscalationRule:
    """One rule: when the tier counts of the signals `over` takes meet `when`, `enforce`."""

    name: str
    when: Condition
    enforce: Enforcement
    reason: str
    over: Selector = field(default_factory=Selector.all)
    source: Source = field(init=False, repr=False, compare=False)  # set in __post_init__

    def __post_init__(self) -> None:
        slug = _SLUG_RE.sub("_", self.name).strip("_")[:64] or "rule"
        object.__setattr__(self, "source", Source(ESCALATION_SYSTEM, SourceType.AUTOMATED, slug))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "when": str(self.when)}
        if not self.over.matches_all:
            out["over"] = str(self.over)
        out["enforce"] = self.enforce.wire
        out["reason"] = self.reason
        return out


class EscalationHit(NamedTuple):
    """A rule that fired: the distinct source systems counted in each tier."""

    rule: str
    enforcement: Enforcement
    reason: str
    tiers: tuple[str, ...]
    sources: tuple[tuple[str, ...], ...]  # per tier (as `tiers`), the systems counted, sorted

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.sources)

    def describe(self) -> str:
        """`rule 'spam account': 2 medium (a_model, b_model)`, tiers most severe first."""
        parts = [f"{len(s)} {t} ({', '.join(s)})"
                 for t, s in zip(self.tiers, self.sources, strict=True) if s]
        return f"rule {self.rule!r}: {', '.join(parts)}"

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "enforcement": self.enforcement.wire, "reason": self.reason,
                "counts": dict(zip(self.tiers, self.counts, strict=True)),
                "sources": {t: list(s) for t, s in zip(self.tiers, self.sources, strict=True)
                            if s}}


# A signal as the resolver hands it over: (label, tier index, created epoch seconds).
Signal = tuple[Label, int, float]


class Escalation:
    """The escalation rules of one surface with the registry's tiers. Immutable."""

    __slots__ = ("_checks", "rules", "tier_of", "tiers")

    def __init__(self, rules: Sequence[EscalationRule], tiers: tuple[str, ...],
                 tier_of: dict[str, int]) -> None:
        self.rules = tuple(rules)
        self.tiers = tiers
        self.tier_of = dict(tier_of)  # reason -> tier index
        # (rule, reasons `over` can take or None, its predicate or None for every signal,
        # the condition): the reason bound skips the predicate for most signals
        self._checks = tuple(
            (r, r.over.reasons, None if r.over.matches_all else r.over.predicate,
             r.when.predicate, r.when.monotone)
            for r in self.rules)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Escalation) and (other.rules, other.tiers, other.tier_of) == (
            self.rules, self.tiers, self.tier_of)

    def __hash__(self) -> int:
        return hash((self.rules, self.tiers))

    def evaluate(self, every: Sequence[Signal], now: float
                 ) -> list[tuple[EscalationHit, EscalationRule, Label]]:
        """The rules that fire on the signals `every`, each with the newest signal it counted."""
        signals: Sequence[Signal]
        hits: list[tuple[EscalationHit, EscalationRule, Label]] = []
        ntiers = len(self.tiers)
        by_reason: dict[str, list[Signal]] = {}
        for signal in every:
            group = by_reason.get(signal[0].reason)
            if group is None:
                by_reason[signal[0].reason] = [signal]
            else:
                group.append(signal)
        for rule, reasons, over, cond, monotone in self._checks:
            if reasons is not None:  # only the signals of the reasons `over` can take
                if len(reasons) == 1:
                    (only,) = reasons
                    signals = by_reason.get(only, ())
                else:
                    signals = [s for r, group in by_reason.items() if r in reasons
                               for s in group]
                if not signals:
                    continue
            else:
                signals = every
            if monotone:
                # Upper bound first, without `over`: the systems with a signal in each tier
                # (a system in every tier it has one in). A monotone condition false there
                # is false for any choice `over` makes, so most rules cost no predicate call.
                upper = [0] * ntiers
                pairs: set[tuple[str, int]] = set()
                for label, tier, _ in signals:
                    pair = (label.source.system, tier)
                    if pair not in pairs:
                        pairs.add(pair)
                        upper[tier] += 1
                if not cond(upper):
                    continue
            # each system counts once, in the most severe tier of a signal `over` takes
            taken: dict[str, tuple[int, Label]] = {}
            for label, tier, _ in signals:
                system = label.source.system
                had = taken.get(system)
                if had is not None and had[0] <= tier:
                    continue
                if over is not None and not over(label, now):
                    continue
                taken[system] = (tier, label)
            if not taken:
                continue
            counts = [0] * ntiers
            for tier, _ in taken.values():
                counts[tier] += 1
            if not cond(counts):
                continue
            newest = max((lab for _, lab in taken.values()), key=_CREATED)
            per_tier: list[list[str]] = [[] for _ in range(ntiers)]
            for system, (tier, _) in taken.items():
                per_tier[tier].append(system)
            hit = EscalationHit(rule.name, rule.enforce, rule.reason, self.tiers,
                                tuple(tuple(sorted(s)) for s in per_tier))
            hits.append((hit, rule, newest))
        return hits


def escalation_label(entity: str, rule: EscalationRule, created: datetime) -> Label:
    """The label an escalation decides with: source `escalation/automated/<rule slug>`."""
    return Label.trusted(entity, rule.source, rule.enforce, rule.reason, created,
                         metadata={"rule": rule.name})
