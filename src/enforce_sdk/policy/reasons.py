"""The reason registry and confidence routing: what a policy reason means, and how sure is enough.

A `ReasonRegistry` lists every policy reason a label may carry, each with a
severity tier (by default `high`, `medium`, `low`; the tier names are
configurable, most severe first), a description, an owning team and an
optional default enforcement. The Label Checker refuses a reason that is not
registered, suggesting the nearest registered names; escalation rules count
signals by tier.

`ConfidenceRouting` says, per source system, below which confidence an
automated label is held for review (`hold_below`) or refused as noise
(`drop_below`). Both come from the SDK config document, so the SDK and the
store read the same registry. Pure data: no I/O.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from ..model.label import Enforcement, Label, SourceType

DEFAULT_TIERS: Final = ("high", "medium", "low")
_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Reason:
    """One registered policy reason."""

    name: str
    tier: str
    description: str
    owner: str
    enforcement: Enforcement | None = None  # the reason's default enforcement, if any

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tier": self.tier, "description": self.description,
                               "owner": self.owner}
        if self.enforcement is not None:
            out["enforcement"] = self.enforcement.wire
        return out


@dataclass(frozen=True, slots=True)
class ReasonRegistry:
    """Every registered reason, and the severity tiers, most severe first. Immutable."""

    reasons: Mapping[str, Reason]
    tiers: tuple[str, ...] = DEFAULT_TIERS
    tier_of: Mapping[str, int] = field(init=False, repr=False, compare=False)
    """reason name -> tier index (0 = most severe): the lookup escalation rules count with."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reasons", MappingProxyType(dict(self.reasons)))
        index = {t: i for i, t in enumerate(self.tiers)}
        object.__setattr__(self, "tier_of", MappingProxyType(
            {name: index[r.tier] for name, r in self.reasons.items()}))

    def __contains__(self, name: object) -> bool:
        return name in self.reasons

    def __len__(self) -> int:
        return len(self.reasons)

    def get(self, name: str) -> Reason | None:
        return self.reasons.get(name)

    def nearest(self, name: str, n: int = 3) -> list[str]:
        """Registered names that look like `name` (a typo's likely intent), best first."""
        return difflib.get_close_matches(name, list(self.reasons), n=n, cutoff=0.6)

    def unknown_reason_problem(self, name: str) -> str:
        """The message for an unregistered reason: it, and what was probably meant."""
        near = self.nearest(name)
        hint = (f"; did you mean {', '.join(repr(n) for n in near)}?" if near
                else f"; registered: {_some(sorted(self.reasons))}")
        return f"reason {name!r} is not registered{hint}"

    def unregistered(self, names: Iterable[str]) -> set[str]:
        return {n for n in names if n not in self.reasons}

    def to_dict(self) -> dict[str, Any]:
        """The registry as the config document writes it (`reasons` table)."""
        return {name: r.to_dict() for name, r in self.reasons.items()}


def _some(names: list[str], limit: int = 10) -> str:
    if not names:
        return "none"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


class Route(enum.Enum):
    """What the Label Checker does with a label, by its source's confidence thresholds."""

    ACCEPT = "accept"
    HOLD = "hold"  # stored pending review, not served until a human decides
    DROP = "drop"  # refused as noise


@dataclass(frozen=True, slots=True)
class SourceThresholds:
    """Confidence thresholds of one source system; None: no threshold."""

    hold_below: float | None = None
    drop_below: float | None = None

    def to_dict(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.hold_below is not None:
            out["hold_below"] = self.hold_below
        if self.drop_below is not None:
            out["drop_below"] = self.drop_below
        return out


@dataclass(frozen=True, slots=True)
class ConfidenceRouting:
    """Per source system confidence thresholds, applied by the Label Checker.

    Only automated labels that carry a confidence are routed; human labels and
    labels without a confidence are accepted as they are. A label below
    `drop_below` is dropped; else below `hold_below` it is held.
    """

    sources: Mapping[str, SourceThresholds] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))

    def route(self, label: Label) -> tuple[Route, float | None]:
        """The route of `label` and the threshold that decided it (None for ACCEPT)."""
        confidence = label.confidence
        if confidence is None or label.source.type is not SourceType.AUTOMATED:
            return Route.ACCEPT, None
        t = self.sources.get(label.source.system)
        if t is None:
            return Route.ACCEPT, None
        if t.drop_below is not None and confidence < t.drop_below:
            return Route.DROP, t.drop_below
        if t.hold_below is not None and confidence < t.hold_below:
            return Route.HOLD, t.hold_below
        return Route.ACCEPT, None

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {system: t.to_dict() for system, t in self.sources.items()}


NO_ROUTING: Final = ConfidenceRouting()
