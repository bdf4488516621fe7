"""Decision: what a surface should do with an entity, and why.

A Decision carries the enforcement, whether the entity is visible on the
surface, the winning label and the entity it sits on (the item itself or a
linked entity), every selected label with its score (`causes`), and whether
the answer is degraded and why: `degraded_reason` is a `DegradedKind` (a
small fixed set to count and alert on, as LaunchDarkly's evaluation reasons
are) and `degraded_detail` the free-text account (e.g. "fail_open: store
unreachable: connection refused").

Speed note: building a frozen dataclass costs about 1 us, half the budget of a
cache-hit check(). Unlabeled entities are by far the common answer, so
`clear_decision_type(surface)` makes a per-surface subclass whose fields other
than `entity` are class constants; `new_clear(cls, entity)` then allocates an
object and sets one slot (~0.15 us). Such objects compare, hash, pickle and
repr exactly like an ordinary Decision.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from ..model.label import Enforcement, Label, format_time
from .escalation import EscalationHit
from .surface import FailMode


class DegradedKind(enum.StrEnum):
    """Why a decision is degraded; `Decision.degraded_detail` says the rest."""

    STORE_UNREACHABLE = "store_unreachable"  # no answer from the store (transport, timeout)
    STORE_ERROR = "store_error"  # the store answered with an error status or garbage
    STALE_CACHE = "stale_cache"  # decided from cache entries past their TTL (store failing)
    BLOOM_STALE = "bloom_stale"  # a stale bloom filter's "no label", trusted by the surface
    BAD_LINK = "bad_link"  # a link of the item could not be parsed (the surface's on_bad_link)
    INTERNAL_ERROR = "internal_error"  # a bug caught on the serving path


class Cause(NamedTuple):
    """One selected label and its part in a decision.

    `entity` is the key the label is on and `relation` the link kind it came
    through (None for the item itself). `score` = `weight` x 2^(-`age`/half-life),
    age in seconds. `counted` is True for the item's own labels, and for a linked
    entity's labels when that entity's resolved enforcement reaches the surface's
    minimum for the link; False means they did not take part. `won` marks the
    winning label. A named tuple: cheap to build on the labeled path.
    """

    entity: str
    relation: str | None
    label: Label
    score: float
    weight: float
    age: float
    counted: bool
    won: bool
    escalation: EscalationHit | None = None  # set on an escalation rule that fired

    def to_dict(self) -> dict[str, Any]:
        out = {
            "entity": self.entity,
            "relation": self.relation,
            "label": self.label.to_dict(),
            "score": self.score,
            "weight": self.weight,
            "age": self.age,
            "counted": self.counted,
            "won": self.won,
        }
        if self.escalation is not None:
            out["escalation"] = self.escalation.to_dict()
        return out


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Decision:
    """The answer of check(entity, surface). Immutable."""

    entity: str  # canonical key asked about
    surface: str
    enforcement: Enforcement
    visible: bool
    label: Label | None = None  # the winning label
    decided_by: str | None = None  # entity key the winning label is on
    reason: str | None = None  # the winning label's reason
    causes: tuple[Cause, ...] = ()
    degraded: bool = False
    degraded_reason: DegradedKind | None = None  # why, as one of a few kinds
    degraded_detail: str | None = None  # the free-text account, e.g. "fail_open: ..."

    # ------------------------------------------------------------------ builders

    @staticmethod
    def fail(
        entity: str,
        surface: str,
        mode: FailMode,
        kind: DegradedKind,
        detail: str,
        *,
        hide_from: Enforcement = Enforcement.LIMIT,
    ) -> Decision:
        """A degraded decision when labels are unavailable (or a link unreadable).

        Fail open shows the entity (ALLOW). Fail closed hides it with the least
        severe enforcement that hides on the surface (`hide_from`), so that
        `visible == (enforcement < hide_from)` holds for every decision.
        `degraded_detail` is "fail_open: <detail>" or "fail_closed: <detail>".
        """
        if mode == "open":
            return Decision(entity, surface, Enforcement.ALLOW, True, degraded=True,
                            degraded_reason=kind, degraded_detail=f"fail_open: {detail}")
        if mode == "closed":
            return Decision(entity, surface, hide_from, False, degraded=True,
                            degraded_reason=kind, degraded_detail=f"fail_closed: {detail}")
        raise ValueError(f"fail mode must be 'open' or 'closed', got {mode!r}")

    def degrade(self, kind: DegradedKind, detail: str | None = None) -> Decision:
        """This decision flagged degraded for `kind` (the detail defaults to the kind)."""
        return Decision(self.entity, self.surface, self.enforcement, self.visible, self.label,
                        self.decided_by, self.reason, self.causes, True, kind,
                        detail if detail is not None else kind.value)

    # ------------------------------------------------------------------ reading

    @property
    def winning_cause(self) -> Cause | None:
        return next((c for c in self.causes if c.won), None)

    def explain(self) -> str:
        """A multi-line account of the decision for people: verdict, winner, every cause."""
        shown = "visible" if self.visible else "hidden"
        lines = [f"{self.entity} on {self.surface}: {self.enforcement.wire} ({shown})"]
        if self.degraded:
            lines.append(f"  DEGRADED ({self.degraded_reason}): {self.degraded_detail}")
        win = self.winning_cause
        if self.label is None:
            lines.append("  no selected label applies: allowed by default"
                         if not self.degraded else "  no label decided")
        elif win is not None and win.escalation is not None:
            lines.append(f"  escalated by {win.escalation.describe()}: "
                         f"{self.enforcement.wire}, reason {self.reason}")
        else:
            via = f" via {win.relation}" if win is not None and win.relation else ""
            lines.append(f"  decided by {self.decided_by}{via}: reason {self.reason}, "
                         f"label from {self.label.source.key}")
        if self.causes:
            rules = sum(1 for c in self.causes if c.escalation is not None)
            fired = f", {rules} escalation rule(s) fired" if rules else ""
            lines.append(f"  causes ({len(self.causes) - rules} selected labels, best first per "
                         f"entity{fired}):")
            for c in self.causes:
                mark = "*" if c.won else ("-" if c.counted else "x")
                if c.escalation is not None:
                    lines.append(f"    {mark} escalated by {c.escalation.describe()}: "
                                 f"{c.label.enforcement.wire} {c.label.reason}")
                    continue
                via = f" via {c.relation}" if c.relation else ""
                lab = c.label
                extra = "" if c.counted else " [below the link's minimum: not counted]"
                conf = "" if lab.confidence is None else f", confidence {lab.confidence:g}"
                exp = "" if lab.expires_at is None else f", expires {format_time(lab.expires_at)}"
                lines.append(
                    f"    {mark} {c.entity}{via}: {lab.enforcement.wire} {lab.reason} "
                    f"from {lab.source.key}, score {c.score:.6g} = weight {c.weight:g} "
                    f"x 2^(-age/half_life), age {_age(c.age)}{conf}{exp}{extra}"
                )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for logs and debugging endpoints)."""
        return {
            "entity": self.entity,
            "surface": self.surface,
            "enforcement": self.enforcement.wire,
            "visible": self.visible,
            "label": None if self.label is None else self.label.to_dict(),
            "decided_by": self.decided_by,
            "reason": self.reason,
            "causes": [c.to_dict() for c in self.causes],
            "degraded": self.degraded,
            "degraded_reason": None if self.degraded_reason is None else self.degraded_reason.value,
            "degraded_detail": self.degraded_detail,
        }

    # ------------------------------------------------------------------ identity

    def _values(self) -> tuple[Any, ...]:
        return (self.entity, self.surface, self.enforcement, self.visible, self.label,
                self.decided_by, self.reason, self.causes, self.degraded, self.degraded_reason,
                self.degraded_detail)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        names = ("entity", "surface", "enforcement", "visible", "label", "decided_by", "reason",
                 "causes", "degraded", "degraded_reason", "degraded_detail")
        body = ", ".join(f"{n}={v!r}" for n, v in zip(names, self._values(), strict=True))
        return f"Decision({body})"

    def __reduce__(self) -> tuple[Callable[..., Decision], tuple[Any, ...]]:
        return (Decision, self._values())


def _age(seconds: float) -> str:
    if not math.isfinite(seconds):
        return str(seconds)
    if seconds < 60:
        return f"{seconds:.3g}s"
    if seconds < 3600:
        return f"{seconds / 60:.3g}m"
    if seconds < 86400:
        return f"{seconds / 3600:.3g}h"
    return f"{seconds / 86400:.3g}d"


_new: Final = object.__new__
_set_entity: Final = Decision.__dict__["entity"].__set__


def _as_plain_decision(cls: type, *args: Any, **kwargs: Any) -> Decision:
    # dataclasses.replace() and friends call type(d)(...): give them an ordinary Decision.
    return Decision(*args, **kwargs)


def clear_decision_type(surface: str) -> type[Decision]:
    """The per-surface class of "no label applies" decisions: ALLOW, visible, no causes."""
    attrs: dict[str, Any] = {
        "__slots__": (),
        "__module__": Decision.__module__,
        "__qualname__": "Decision",
        "__doc__": Decision.__doc__,
        "__new__": _as_plain_decision,
        "surface": surface,
        "enforcement": Enforcement.ALLOW,
        "visible": True,
        "label": None,
        "decided_by": None,
        "reason": None,
        "causes": (),
        "degraded": False,
        "degraded_reason": None,
        "degraded_detail": None,
    }
    return type("Decision", (Decision,), attrs)


def new_clear(cls: type[Decision], entity: str) -> Decision:
    """An unlabeled-entity decision of a class from clear_decision_type(); one slot set."""
    d: Decision = _new(cls)
    _set_entity(d, entity)
    return d


_SETTERS: Final = tuple(
    Decision.__dict__[f].__set__
    for f in ("entity", "surface", "enforcement", "visible", "label", "decided_by", "reason",
              "causes", "degraded", "degraded_reason", "degraded_detail")
)


def make_decision(
    entity: str,
    surface: str,
    enforcement: Enforcement,
    visible: bool,
    label: Label | None,
    decided_by: str | None,
    reason: str | None,
    causes: tuple[Cause, ...],
) -> Decision:
    """Decision(...) for trusted arguments at half the cost of the frozen dataclass __init__."""
    d: Decision = _new(Decision)
    s = _SETTERS
    s[0](d, entity)
    s[1](d, surface)
    s[2](d, enforcement)
    s[3](d, visible)
    s[4](d, label)
    s[5](d, decided_by)
    s[6](d, reason)
    s[7](d, causes)
    s[8](d, False)
    s[9](d, None)
    s[10](d, None)
    return d
