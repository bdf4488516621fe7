"""SurfaceConfig: how one product surface selects, ranks and shows labels, and its fail mode."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from ..model.label import Enforcement
from .escalation import Escalation
from .selector import Selector, format_duration

_DAY: Final = 86400.0
_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


FailMode = Literal["open", "closed"]


BloomStaleMode = Literal["trust", "verify"]
# What an item whose link cannot be parsed gets: hidden (fail_closed, the default), or
# decided on its other labels (ignore). Either way flagged degraded (bad_link), and only
# that item: the rest of the page is decided as usual.
BadLinkMode = Literal["ignore", "fail_closed"]


@dataclass(frozen=True, slots=True)
class SurfaceConfig:
    """How one product surface selects, ranks and shows labels."""

    name: str
    selector: Selector = field(default_factory=Selector.all)
    weights: Mapping[str, float] = field(default_factory=lambda: _EMPTY)  # reputation weight by source system
    default_weight: float = 1.0
    half_life: float = 30 * _DAY  # seconds
    human_over_automated: bool = True
    hide_from: Enforcement = Enforcement.BLOCK  # hidden when enforcement >= hide_from
    fail_mode: FailMode = "open"
    related: Mapping[str, Enforcement] = field(default_factory=lambda: _EMPTY)  # link kind -> minimum enforcement propagated
    on_bloom_stale: BloomStaleMode = "trust"
    on_bad_link: BadLinkMode = "fail_closed"  # a link that cannot be parsed: hide the item
    # Labels with a confidence below this are not taken on the surface (None: no floor).
    min_confidence: float | None = None
    # The surface's escalation rules with the registry's tiers (None: no rules), and
    # whether they are the document's global default rather than the surface's own list.
    escalation: Escalation | None = None
    inherits_escalation: bool = False

    def is_visible(self, enforcement: Enforcement) -> bool:
        return enforcement < self.hide_from

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "selector": str(self.selector),
            "weights": dict(self.weights),
            "default_weight": self.default_weight,
            "half_life": format_duration(self.half_life),
            "human_over_automated": self.human_over_automated,
            "hide_from": self.hide_from.wire,
            "fail_mode": self.fail_mode,
            "related": {k: v.wire for k, v in self.related.items()},
            "on_bloom_stale": self.on_bloom_stale,
            "on_bad_link": self.on_bad_link,
        }
        if self.min_confidence is not None:
            out["min_confidence"] = self.min_confidence
        if self.escalation is not None and not self.inherits_escalation:
            out["escalate"] = [r.to_dict() for r in self.escalation.rules]
        return out
