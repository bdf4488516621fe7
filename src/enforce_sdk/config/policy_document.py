"""The policy sections of the SDK config document: reason registry, confidence routing, escalation.

```toml
tiers = ["high", "medium", "low"]          # optional, most severe first
[reasons.spam]
tier = "medium"
description = "Unsolicited bulk or deceptive content"
owner = "spam-team"
enforcement = "block"                      # optional default enforcement
[sources.spam_domain_model]
hold_below = 0.7                           # automated labels below: held for review
drop_below = 0.2                           # automated labels below: refused as noise
[[escalate]]                               # global default rules (a surface's own replace them)
name = "spam account"
when = "high >= 1 or medium >= 2 or (low >= 2 and medium >= 1)"
over = "reason = spam and age < 365d"
enforce = "block"
reason = "spam"
```

Every problem is added to the document's collector under its path; a `when`
or `over` that does not parse is reported with its position, as selectors are.
docs/config.md describes the fields.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from .._errors import SelectorSyntaxError
from ..model.label import Enforcement
from ..model.problems import ProblemCollector, show
from ..policy.escalation import Condition, EscalationRule
from ..policy.reasons import (
    DEFAULT_TIERS,
    NO_ROUTING,
    ConfidenceRouting,
    Reason,
    ReasonRegistry,
    SourceThresholds,
)
from ..policy.selector import Selector

_TIER_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_REASON_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_SYSTEM_RE = re.compile(r"[A-Za-z0-9_.\-@]{1,64}")
_KEYWORDS: Final = frozenset({"and", "or", "not"})
MAX_TIERS: Final = 10
MAX_TEXT: Final = 1024  # characters of a description, owner or rule name
_REASON_KEYS: Final = ("tier", "description", "owner", "enforcement")
_RULE_KEYS: Final = ("name", "when", "over", "enforce", "reason")
_SOURCE_KEYS: Final = ("hold_below", "drop_below")


def _text(v: ProblemCollector, t: Mapping[str, Any], key: str, path: str, *,
          limit: int = MAX_TEXT) -> str | None:
    raw = t.get(key)
    if raw is None:
        v.add(path, "is required (a non-empty string)")
        return None
    if not isinstance(raw, str) or not raw.strip() or len(raw) > limit:
        v.add(path, f"must be a non-empty string of at most {limit} characters, got {show(raw)}")
        return None
    return raw.strip()


def _fraction(v: ProblemCollector, raw: object, path: str) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) \
            or not 0.0 <= raw <= 1.0:
        v.add(path, f"must be a number in 0..1, got {show(raw)}")
        return None
    return float(raw)


def _enforcement(v: ProblemCollector, raw: object, path: str, *, allow_ok: bool
                 ) -> Enforcement | None:
    allowed = ("allow", "limit", "block", "remove") if allow_ok else ("limit", "block", "remove")
    if not isinstance(raw, str) or raw.strip().lower() not in allowed:
        v.add(path, f"must be an enforcement among {', '.join(allowed)}, got {show(raw)}")
        return None
    return Enforcement[raw.strip().upper()]


def parse_tiers(v: ProblemCollector, data: Mapping[str, Any]) -> tuple[str, ...]:
    raw = data.get("tiers")
    if raw is None:
        return DEFAULT_TIERS
    if not isinstance(raw, list) or not raw or len(raw) > MAX_TIERS:
        v.add("tiers", f"must be a list of 1..{MAX_TIERS} tier names, most severe first, "
                       f"got {show(raw)}")
        return DEFAULT_TIERS
    tiers: list[str] = []
    for i, name in enumerate(raw):
        if not isinstance(name, str) or not _TIER_RE.fullmatch(name) or name in _KEYWORDS:
            v.add(f"tiers[{i}]", f"tier names match {_TIER_RE.pattern} and are not and, or, "
                                 f"not; got {show(name)}")
        elif name in tiers:
            v.add(f"tiers[{i}]", f"tier {name!r} is listed twice")
        else:
            tiers.append(name)
    return tuple(tiers) if len(tiers) == len(raw) else DEFAULT_TIERS


def parse_registry(v: ProblemCollector, data: Mapping[str, Any]) -> ReasonRegistry | None:
    """The `reasons` table with `tiers`; None when the document registers no reasons."""
    tiers = parse_tiers(v, data)
    if "reasons" not in data:
        if "tiers" in data:
            v.add("tiers", "tiers without a [reasons] table: register the reasons too")
        return None
    raw = data["reasons"]
    if not isinstance(raw, Mapping) or not raw:
        v.add("reasons", f"must be a table of at least one reason, got {show(raw)}")
        return None
    reasons: dict[str, Reason] = {}
    for name, body in raw.items():
        p = f"reasons.{name}"
        if not isinstance(name, str) or not _REASON_RE.fullmatch(name):
            v.add(p, f"reason names match {_REASON_RE.pattern} (as labels' reasons do)")
            continue
        if not isinstance(body, Mapping):
            v.add(p, f"must be a table (tier, description, owner), got {show(body)}")
            continue
        v.no_extra(body, _REASON_KEYS, p + ".")
        tier = body.get("tier")
        if not isinstance(tier, str) or tier not in tiers:
            v.add(p + ".tier", f"must be a tier among {', '.join(tiers)}, got {show(tier)}")
            tier = None
        description = _text(v, body, "description", p + ".description")
        owner = _text(v, body, "owner", p + ".owner", limit=128)
        enforcement = None
        if "enforcement" in body:
            enforcement = _enforcement(v, body["enforcement"], p + ".enforcement", allow_ok=True)
            if enforcement is None:
                continue
        if tier is None or description is None or owner is None:
            continue
        reasons[name] = Reason(name, tier, description, owner, enforcement)
    return ReasonRegistry(reasons, tiers)


def parse_sources(v: ProblemCollector, data: Mapping[str, Any]) -> ConfidenceRouting:
    """`[sources.<system>]` confidence thresholds of the Label Checker."""
    raw = v.table(data, "sources", "sources")
    if not raw:
        return NO_ROUTING
    out: dict[str, SourceThresholds] = {}
    for system, body in raw.items():
        p = f"sources.{system}"
        if not isinstance(system, str) or not _SYSTEM_RE.fullmatch(system):
            v.add(p, f"source systems match {_SYSTEM_RE.pattern}")
            continue
        if not isinstance(body, Mapping):
            v.add(p, f"must be a table (hold_below, drop_below), got {show(body)}")
            continue
        v.no_extra(body, _SOURCE_KEYS, p + ".")
        hold = _fraction(v, body["hold_below"], p + ".hold_below") \
            if "hold_below" in body else None
        drop = _fraction(v, body["drop_below"], p + ".drop_below") \
            if "drop_below" in body else None
        if hold is not None and drop is not None and drop > hold:
            v.add(p + ".drop_below", f"must not be above hold_below ({hold:g}), got {drop:g}")
            continue
        out[system] = SourceThresholds(hold_below=hold, drop_below=drop)
    return ConfidenceRouting(out)


def parse_min_confidence(v: ProblemCollector, t: Mapping[str, Any], path: str) -> float | None:
    if "min_confidence" not in t:
        return None
    return _fraction(v, t["min_confidence"], path)


def parse_escalate(v: ProblemCollector, t: Mapping[str, Any], path: str,
                   registry: ReasonRegistry | None) -> list[EscalationRule] | None:
    """The `escalate` list at `path`; None when absent (a surface then inherits the default)."""
    if "escalate" not in t:
        return None
    raw = t["escalate"]
    if not isinstance(raw, list):
        v.add(path, f"must be a list of rules ([[...escalate]] tables), got {show(raw)}")
        return []
    if raw and registry is None:
        v.add(path, "escalation rules count signals by severity tier: register the reasons "
                    "first ([reasons.<name>] with tier, description, owner)")
        return []
    assert registry is not None or not raw
    rules: list[EscalationRule] = []
    names: set[str] = set()
    for i, body in enumerate(raw):
        p = f"{path}[{i}]"
        if not isinstance(body, Mapping):
            v.add(p, f"must be a table (name, when, over, enforce, reason), got {show(body)}")
            continue
        assert registry is not None
        rule = _rule(v, body, p, registry)
        if rule is None:
            continue
        if rule.name in names:
            v.add(p + ".name", f"rule name {rule.name!r} is used twice in this list")
            continue
        names.add(rule.name)
        rules.append(rule)
    return rules


def _rule(v: ProblemCollector, t: Mapping[str, Any], p: str,
          registry: ReasonRegistry) -> EscalationRule | None:
    before = len(v.items)
    v.no_extra(t, _RULE_KEYS, p + ".")
    name = _text(v, t, "name", p + ".name", limit=64)
    when: Condition | None = None
    raw_when = t.get("when")
    if raw_when is None:
        v.add(p + ".when", "is required, e.g. \"high >= 1 or medium >= 2\"")
    elif not isinstance(raw_when, str):
        v.add(p + ".when", f"must be a string, got {show(raw_when)}")
    else:
        try:
            when = Condition.parse(raw_when, registry.tiers)
        except SelectorSyntaxError as exc:
            v.add(p + ".when", exc.problem)
    over = Selector.all()
    if "over" in t:
        raw_over = t["over"]
        if not isinstance(raw_over, str):
            v.add(p + ".over", f"must be a selector string, got {show(raw_over)}")
        else:
            try:
                over = Selector.parse(raw_over)
            except SelectorSyntaxError as exc:
                v.add(p + ".over", exc.problem)
    reason = t.get("reason")
    registered = None
    if not isinstance(reason, str):
        v.add(p + ".reason", f"is required: the registered reason the rule enforces with, "
                             f"got {show(reason)}")
    else:
        registered = registry.get(reason)
        if registered is None:
            v.add(p + ".reason", registry.unknown_reason_problem(reason))
    enforce = None
    if "enforce" in t:
        enforce = _enforcement(v, t["enforce"], p + ".enforce", allow_ok=False)
    elif registered is not None:
        if registered.enforcement is None or registered.enforcement is Enforcement.ALLOW:
            v.add(p + ".enforce", f"is required: reason {registered.name!r} has no default "
                                  "enforcement of limit, block or remove")
        else:
            enforce = registered.enforcement
    if len(v.items) > before or name is None or when is None or enforce is None \
            or not isinstance(reason, str):
        return None
    return EscalationRule(name=name, when=when, enforce=enforce, reason=reason, over=over)
