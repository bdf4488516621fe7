"""The resolver: turns an entity's labels (and its linked entities') into one Decision.

Per surface, for each entity key separately:

1. drop labels past `expires_at` and labels the surface's selector does not take;
2. score each: weight(source system) x 2^(-age / half_life), age = now - created_at
   (0 for a label dated in the future);
3. rank: human before automated (when `human_over_automated`, for sources of
   weight > 0), then score, then severity, then recency (then source key, so the
   order is total);
4. the top label wins, except that a human `allow` from a source of weight > 0
   created after every negative label (an upheld appeal) wins over them.

Linked entities (image, domain, creator, ...) are resolved the same way; a
link's winner counts only if the surface lists that link kind and the winner's
enforcement is at least the configured minimum. The final winner is the most
severe of the item's own winner and the counted link winners (the item's own
label first at equal severity, then score, then recency). docs/resolver.md has
worked examples; tests/policy/test_resolver.py checks the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final, NamedTuple

from ..model.label import Enforcement, Label, SourceType
from .decision import (
    Cause,
    Decision,
    DegradedKind,
    clear_decision_type,
    make_decision,
    new_clear,
)
from .escalation import EscalationHit, EscalationRule, Signal, escalation_label
from .selector import Predicate
from .surface import FailMode

if TYPE_CHECKING:
    from .escalation import Escalation
    from .surface import SurfaceConfig

_ALLOW: Final = Enforcement.ALLOW
_HUMAN: Final = SourceType.HUMAN
_exp2: Final = math.exp2
_new: Final = object.__new__
_set_entity: Final = Decision.__dict__["entity"].__set__


# A scored label is a plain tuple, so a list of them sorts without a key function:
# (tier, rank, severity, created, system, type, name, -index, label, weight, age, score).
# Everything up to -index is the ranking; -index makes it total and stable.
#
# `rank` orders labels as `score` does, but exactly and independently of `now`:
#   score = w * 2^(-(now - created) / h)  =  2^((rank - now) / h),
#   rank  = created + h * log2(w)          (microseconds).
# With w = m * 2^e (frexp, exact), rank = (created + e*h) + h*log2(m): the first
# part is an exact integer, the second is the same float for the same mantissa.
# Two scores are equal in exact arithmetic only if their m are equal and their
# integer parts are (log2 of a rational other than a power of two is irrational),
# and then the two ranks are the same float: the tie-breaks of docs/resolver.md
# hold at every instant, where comparing the decayed floats would let rounding
# decide. Weight 0 ranks -inf (every weight-0 score is 0, equal).
_Scored = tuple[
    int, float, Enforcement, float, str, SourceType, str, int, Label, float, float, float
]
_RANK: Final = 1
_CREATED: Final = 3
_LABEL: Final = 8
_WEIGHT: Final = 9
_AGE: Final = 10
_SCORE: Final = 11


class _Group(NamedTuple):
    entity: str
    relation: str | None
    scored: list[_Scored]  # best first
    winner: _Scored
    counted: bool


class Resolver:
    """Resolves labels into Decisions for one surface. Immutable and thread-safe."""

    __slots__ = (
        "_clear_cls",
        "_default_weight",
        "_escalation",
        "_fail_mode",
        "_half_life",
        "_hide_from",
        "_hoa",
        "_match",
        "_rank_parts",
        "_related",
        "_weights",
        "config",
        "surface",
    )

    def __init__(self, config: SurfaceConfig) -> None:
        self.config = config
        self.surface = config.name
        self._match = _selection(config)
        esc = config.escalation
        self._escalation: Escalation | None = esc if esc is not None and esc.rules else None
        self._weights = dict(config.weights)
        self._default_weight = config.default_weight
        self._half_life = config.half_life
        h_us = round(config.half_life * 1_000_000)
        # weight -> (e * h, h * log2(m)) of its rank, for the configured weights
        self._rank_parts = {w: _rank_parts(w, h_us)
                            for w in (*config.weights.values(), config.default_weight)}
        self._hoa = config.human_over_automated
        self._hide_from = config.hide_from
        self._fail_mode: FailMode = config.fail_mode
        self._related = dict(config.related)  # kind -> minimum; insertion order is config order
        self._clear_cls = clear_decision_type(config.name)

    # ------------------------------------------------------------------ fast answers

    @property
    def clear_type(self) -> type[Decision]:
        """The class of this surface's "no label applies" decisions (what allow() builds)."""
        return self._clear_cls

    def allow(self, entity: str) -> Decision:
        """The decision for an entity known to have no labels (e.g. a bloom negative)."""
        return new_clear(self._clear_cls, entity)

    def fail(self, entity: str, kind: DegradedKind, detail: str,
             mode: FailMode | None = None) -> Decision:
        """A degraded decision per the surface's fail mode (or `mode`), recording why."""
        return Decision.fail(entity, self.surface, mode or self._fail_mode, kind, detail,
                             hide_from=self._hide_from)

    def is_visible(self, enforcement: Enforcement) -> bool:
        return enforcement < self._hide_from

    # ------------------------------------------------------------------ resolve

    def resolve(
        self,
        entity: str,
        labels: Mapping[str, Sequence[Label]],
        related: Mapping[str, str],
        now: float,
    ) -> Decision:
        """Decide for `entity` (canonical key) on this surface.

        `labels` maps entity keys (the item's and its linked entities') to their
        raw labels; `related` maps link kind ("domain", "image", "creator",
        "board") to the linked entity's canonical key; kinds the surface does not
        list are ignored. `now` is epoch seconds.
        """
        own = labels.get(entity)
        if not own:
            if not related:
                d = _new(self._clear_cls)
                _set_entity(d, entity)
                return d
            rel = self._related
            for kind, key in related.items():
                if kind in rel and labels.get(key):
                    break
            else:
                d = _new(self._clear_cls)
                _set_entity(d, entity)
                return d
        return self._resolve_labeled(entity, own or (), labels, related, now)

    def _resolve_labeled(
        self,
        entity: str,
        own: Sequence[Label],
        labels: Mapping[str, Sequence[Label]],
        related: Mapping[str, str],
        now: float,
    ) -> Decision:
        own_scored = self._score(own, now) if own else []
        links: list[_Group] = []
        if related:
            seen = {entity}
            for kind, minimum in self._related.items():
                key = related.get(kind)
                if key is None or key in seen:
                    continue
                seen.add(key)
                linked = labels.get(key)
                scored = self._score(linked, now) if linked else None
                if scored:
                    win = _winner(scored)
                    links.append(_Group(key, kind, scored, win, win[_LABEL].enforcement >= minimum))
        if not links:  # the common labeled case: only the item's own labels
            if not own_scored:
                return new_clear(self._clear_cls, entity)
            won = _winner(own_scored)
            if self._escalation is not None:
                return self._escalate(entity, [_Group(entity, None, own_scored, won, True)],
                                      won, entity, now)
            label = won[_LABEL]
            causes = tuple([
                Cause(entity, None, s[_LABEL], s[_SCORE], s[_WEIGHT], s[_AGE], True, s is won)
                for s in own_scored
            ])
            return make_decision(entity, self.surface, label.enforcement,
                                 label.enforcement < self._hide_from, label, entity,
                                 label.reason, causes)
        groups = links
        if own_scored:
            groups = [_Group(entity, None, own_scored, _winner(own_scored), True), *links]
        # Most severe wins; at equal severity the item's own label, then score, then recency.
        best = max(
            (g for g in groups if g.counted),
            key=lambda g: (g.winner[_LABEL].enforcement, g.relation is None,
                           g.winner[_RANK], g.winner[_CREATED]),
            default=None,
        )
        won_or_none = None if best is None else best.winner
        if self._escalation is not None:
            return self._escalate(entity, groups, won_or_none,
                                  None if best is None else best.entity, now)
        causes = tuple([
            Cause(g.entity, g.relation, s[_LABEL], s[_SCORE], s[_WEIGHT], s[_AGE], g.counted,
                  s is won_or_none)
            for g in groups
            for s in g.scored
        ])
        if best is None:
            return make_decision(entity, self.surface, _ALLOW, True, None, None, None, causes)
        label = best.winner[_LABEL]
        return make_decision(entity, self.surface, label.enforcement,
                             label.enforcement < self._hide_from, label, best.entity,
                             label.reason, causes)

    def _escalate(self, entity: str, groups: list[_Group], won: _Scored | None,
                  decided_by: str | None, now: float) -> Decision:
        """The decision with the surface's escalation rules competing with the winner `won`."""
        esc = self._escalation
        assert esc is not None
        tier_of = esc.tier_of
        cutoff: float | None = None  # the item's newest human clearance: signals before it
        signals: list[Signal] = []    # were reviewed and do not count
        related = self._related
        for g in groups:
            minimum = _ALLOW if g.relation is None else related[g.relation]
            for s in g.scored:
                label = s[_LABEL]
                enforcement = label.enforcement
                if enforcement is _ALLOW:
                    if (g.relation is None and label.source.type is _HUMAN and s[_WEIGHT] > 0
                            and (cutoff is None or s[_CREATED] > cutoff)):
                        cutoff = s[_CREATED]
                    continue
                if enforcement < minimum:
                    continue
                tier = tier_of.get(label.reason)
                if tier is not None:
                    signals.append((label, tier, s[_CREATED]))
        if cutoff is not None:
            signals = [sig for sig in signals if sig[2] > cutoff]
        hits = esc.evaluate(signals, now) if signals else []
        ordinary = _ALLOW if won is None else won[_LABEL].enforcement
        top: tuple[EscalationHit, EscalationRule, Label] | None = None
        for h in hits:  # the most severe rule; at equal severity the first listed
            severity = h[0].enforcement
            if severity > ordinary and (top is None or severity > top[0].enforcement):
                top = h
        causes = [
            Cause(g.entity, g.relation, s[_LABEL], s[_SCORE], s[_WEIGHT], s[_AGE], g.counted,
                  top is None and s is won)
            for g in groups
            for s in g.scored
        ]
        top_label: Label | None = None
        for h in hits:
            hit, rule, newest = h
            label = escalation_label(entity, rule, newest.created_at)
            if h is top:
                top_label = label
            age = max(now - newest.created_at.timestamp(), 0.0)
            causes.append(Cause(entity, None, label, 0.0, 0.0, age, True, h is top, hit))
        if top_label is not None:
            return make_decision(entity, self.surface, top_label.enforcement,
                                 top_label.enforcement < self._hide_from, top_label, entity,
                                 top_label.reason, tuple(causes))
        if won is None:
            return make_decision(entity, self.surface, _ALLOW, True, None, None, None,
                                 tuple(causes))
        label = won[_LABEL]
        return make_decision(entity, self.surface, label.enforcement,
                             label.enforcement < self._hide_from, label, decided_by,
                             label.reason, tuple(causes))

    def _score(self, labels: Sequence[Label], now: float) -> list[_Scored]:
        """Selected, unexpired labels with their scores, best first."""
        out: list[_Scored] = []
        match = self._match
        weights, default, half_life, hoa, parts = (
            self._weights, self._default_weight, self._half_life, self._hoa, self._rank_parts
        )
        now_us = round(now * 1_000_000)
        for i, label in enumerate(labels):
            expires = label.expires_at
            if expires is not None and expires.timestamp() <= now:
                continue
            if match is not None and not match(label, now):
                continue
            source = label.source
            created = label.created_at.timestamp()
            age = now - created
            if age < 0.0:
                age = 0.0
            weight = weights.get(source.system, default)
            score = weight * _exp2(-age / half_life)
            exponent_part, mantissa_part = parts[weight]
            # exact: `created` is the correctly rounded µs/1e6 of the datetime, and back in
            # µs its error stays below 0.5 for any instant before 2106 (|t| < 2^32 s)
            created_us = round(created * 1_000_000)
            if created_us > now_us:  # dated in the future: scored at age 0 until then
                created_us = now_us
            rank = float(created_us + exponent_part) + mantissa_part
            # a weight-0 source carries no authority: no human tier either
            tier = 1 if hoa and source.type is _HUMAN and weight > 0 else 0
            # IntEnum / StrEnum members compare as int / str: no `.value` (a slow property).
            out.append((tier, rank, label.enforcement, created, source.system, source.type,
                        source.name, -i, label, weight, age, score))
        if len(out) > 1:
            out.sort(reverse=True)
        return out


def _selection(config: SurfaceConfig) -> Predicate | None:
    """The surface's selector with its `min_confidence` floor; None takes every label."""
    match = None if config.selector.matches_all else config.selector.predicate
    floor = config.min_confidence
    if floor is None:
        return match
    if match is None:
        def confident(label: Label, now: float) -> bool:
            c = label.confidence
            return c is None or c >= floor
        return confident
    selected = match

    def confident_and_selected(label: Label, now: float) -> bool:
        c = label.confidence
        return (c is None or c >= floor) and selected(label, now)
    return confident_and_selected


def _rank_parts(weight: float, half_life_us: int) -> tuple[int, float]:
    """The exact integer part and the mantissa part of a rank for `weight` (see _Scored)."""
    if weight <= 0:
        return 0, -math.inf
    mantissa, exponent = math.frexp(weight)
    return exponent * half_life_us, half_life_us * math.log2(mantissa)


def _winner(scored: list[_Scored]) -> _Scored:
    """The top-ranked label, unless a trusted human allow is newer than every negative."""
    if len(scored) == 1:
        return scored[0]
    newest_negative: float | None = None
    for s in scored:
        if s[_LABEL].enforcement is not _ALLOW and (
            newest_negative is None or s[_CREATED] > newest_negative
        ):
            newest_negative = s[_CREATED]
    if newest_negative is not None:
        appeal: _Scored | None = None
        for s in scored:  # best first, so ties on created_at go to the better-ranked allow
            label = s[_LABEL]
            if (label.enforcement is _ALLOW and label.source.type is _HUMAN and s[_WEIGHT] > 0
                    and s[_CREATED] > newest_negative
                    and (appeal is None or s[_CREATED] > appeal[_CREATED])):
                appeal = s
        if appeal is not None:
            return appeal
    return scored[0]
