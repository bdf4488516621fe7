"""Dry run of a config change: how the share of hidden entities moves on each surface.

The push guardrail runs the old and the new config's resolvers over the same
sample of stored labels and compares, per surface, the share of sampled
entities that the surface would hide. A change that moves any surface by more
than the threshold is refused unless forced. The sample comes from a JSONL
label export and/or from the Label Store (recently changed entities, then
their labels). Only each entity's own labels are resolved: linked entities
(image, domain, creator) are not part of the sample.

Escalation rules are reported one by one: for every rule of the new config,
on how many sampled entities it fires, and how many decisions it changes (the
surface's enforcement with the rule against without it), marked new, changed
or unchanged against the old config.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from .._errors import InvalidInputError, LabelValidationError
from ..model.label import Label
from ..policy.escalation import Escalation
from ..policy.resolver import Resolver
from ..policy.surface import SurfaceConfig
from ..store_client.client import LabelStoreClient
from .document import EnforcementConfig

Sample = Mapping[str, Sequence[Label]]
DEFAULT_SAMPLE_SIZE = 5000
DEFAULT_MAX_SHIFT = 0.02  # two percentage points of the sampled entities


@dataclass(frozen=True, slots=True)
class SurfaceShift:
    """Hidden entities of the sample on one surface, before and after the change."""

    surface: str
    total: int
    hidden_before: int | None  # None: the surface is new
    hidden_after: int | None  # None: the surface is removed

    @property
    def share_before(self) -> float:
        return (self.hidden_before or 0) / self.total if self.total else 0.0

    @property
    def share_after(self) -> float:
        return (self.hidden_after or 0) / self.total if self.total else 0.0

    @property
    def shift(self) -> float:
        """Change in hidden share (after - before); 0 for an added or removed surface."""
        if self.hidden_before is None or self.hidden_after is None:
            return 0.0
        return self.share_after - self.share_before

    def describe(self) -> str:
        if self.hidden_before is None:
            return f"{self.surface}: new surface, hides {self.share_after:.2%} of the sample"
        if self.hidden_after is None:
            return (f"{self.surface}: surface removed (products checking it will get "
                    "UnknownSurfaceError)")
        return (f"{self.surface}: hidden {self.share_before:.2%} -> {self.share_after:.2%} "
                f"({self.shift:+.2%}, {self.hidden_before} -> {self.hidden_after} "
                f"of {self.total})")


@dataclass(frozen=True, slots=True)
class RuleEffect:
    """One escalation rule of the new config over the sample."""

    surface: str
    rule: str
    status: str  # "new", "changed" or "unchanged" against the old config's rule of that name
    fires: int  # sampled entities on which it fires
    changes: int  # sampled entities whose enforcement differs with the rule and without it

    def describe(self) -> str:
        return (f"{self.surface}: rule {self.rule!r} ({self.status}) fires on {self.fires}, "
                f"changes {self.changes} sampled entities")


@dataclass(frozen=True, slots=True)
class DryRunReport:
    entities: int
    surfaces: tuple[SurfaceShift, ...]
    rules: tuple[RuleEffect, ...] = ()

    def violations(self, max_shift: float) -> list[SurfaceShift]:
        """Surfaces whose hidden share moves by more than `max_shift`, or that are removed."""
        return [s for s in self.surfaces
                if abs(s.shift) > max_shift or (s.hidden_before is not None
                                                 and s.hidden_after is None)]


def _hidden(config: EnforcementConfig, surface: str, sample: Sample, now: float) -> int:
    resolver = config.resolver(surface)
    hidden = 0
    for entity, labels in sample.items():
        decision = resolver.resolve(entity, {entity: labels} if labels else {}, {}, now)
        if not decision.visible:
            hidden += 1
    return hidden


def dry_run(old: EnforcementConfig | None, new: EnforcementConfig, sample: Sample,
            now: float) -> DryRunReport:
    """Resolve every sampled entity on every surface under both configs."""
    old_surfaces = set(old.surfaces) if old is not None else set()
    names = sorted(old_surfaces | set(new.surfaces))
    shifts = []
    for name in names:
        before = _hidden(old, name, sample, now) if old is not None and name in old_surfaces else None
        after = _hidden(new, name, sample, now) if name in new.surfaces else None
        shifts.append(SurfaceShift(name, len(sample), before, after))
    rules = [effect for name in sorted(new.surfaces)
             for effect in _rule_effects(old, new.surface(name), sample, now)]
    return DryRunReport(len(sample), tuple(shifts), tuple(rules))


def _rule_effects(old: EnforcementConfig | None, surface: SurfaceConfig, sample: Sample,
                  now: float) -> list[RuleEffect]:
    esc = surface.escalation
    if esc is None or not esc.rules:
        return []
    old_rules = {}
    if old is not None and surface.name in old.surfaces:
        old_esc = old.surface(surface.name).escalation
        old_rules = {r.name: r.to_dict() for r in (old_esc.rules if old_esc else ())}
    full = Resolver(surface)
    decided = {entity: full.resolve(entity, {entity: labels} if labels else {}, {}, now)
               for entity, labels in sample.items()}
    out = []
    for rule in esc.rules:
        without = Resolver(replace(surface, escalation=Escalation(
            [r for r in esc.rules if r is not rule], esc.tiers, esc.tier_of)))
        fires = changes = 0
        for entity, labels in sample.items():
            d = decided[entity]
            if any(c.escalation is not None and c.escalation.rule == rule.name for c in d.causes):
                fires += 1
                other = without.resolve(entity, {entity: labels} if labels else {}, {}, now)
                changes += other.enforcement != d.enforcement
        was = old_rules.get(rule.name)
        status = "new" if was is None else ("unchanged" if was == rule.to_dict() else "changed")
        out.append(RuleEffect(surface.name, rule.name, status, fires, changes))
    return out


# -- the sample ------------------------------------------------------------------------------


def read_label_export(stream: IO[str], *, name: str = "<sample>") -> dict[str, list[Label]]:
    """Labels by entity from JSONL: one label per line, or `{"entity": k, "labels": [...]}`."""
    out: dict[str, list[Label]] = {}
    for lineno, line in enumerate(stream, 1):
        text = line.strip()
        if not text:
            continue
        try:
            row = json.loads(text)
            if isinstance(row, dict) and "labels" in row and "source" not in row:
                labels = [Label.from_dict(item) for item in row["labels"] or ()]
                entity = str(row.get("entity", ""))
                bucket = out.setdefault(labels[0].entity if labels else entity, [])
                bucket.extend(labels)
            else:
                label = Label.from_dict(row)
                out.setdefault(label.entity, []).append(label)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{name} line {lineno}: malformed JSON: {exc.msg}",
                                    field="sample") from exc
        except LabelValidationError as exc:
            raise InvalidInputError(f"{name} line {lineno}: {exc}", field="sample") from exc
    return out


def load_sample_file(path: str | Path) -> dict[str, list[Label]]:
    with open(path, encoding="utf-8") as stream:
        return read_label_export(stream, name=str(path))


def fetch_store_sample(store: LabelStoreClient, size: int, *, page: int = 1000) -> dict[str, list[Label]]:
    """The labels of up to `size` recently changed, still-labeled entities of the store."""
    head = store.changes(after=0, limit=1)
    start = max(head.oldest - 1, head.head - 20 * size, 0)
    entities: dict[str, None] = {}
    after = start
    while after < head.head:
        chunk = store.changes(after=after, limit=page)
        if not chunk.changes:
            break
        for change in chunk.changes:
            if change.labeled:
                entities.pop(change.entity, None)
                entities[change.entity] = None  # keep most recent last
            else:
                entities.pop(change.entity, None)
        after = chunk.next
    recent = list(entities)[-size:]
    found: dict[str, list[Label]] = {}
    for i in range(0, len(recent), store.max_batch_keys):
        found.update(store.get_many(recent[i: i + store.max_batch_keys]))
    return {k: found.get(k, []) for k in recent if found.get(k)}


def merge_samples(parts: Iterable[Mapping[str, Sequence[Label]]], size: int,
                  seed: int = 0) -> dict[str, list[Label]]:
    """Union of samples (labels of one entity merged), cut to `size` entities at random."""
    merged: dict[str, dict[tuple[str, str], Label]] = {}
    for part in parts:
        for entity, labels in part.items():
            bucket = merged.setdefault(entity, {})
            for label in labels:
                bucket[label.key] = label
    keys = sorted(merged)
    if len(keys) > size:
        keys = sorted(random.Random(seed).sample(keys, size))
    return {k: list(merged[k].values()) for k in keys}


def report_dict(report: DryRunReport, max_shift: float) -> dict[str, Any]:
    """JSON form of a dry run (for --json output and logs)."""
    bad = {s.surface for s in report.violations(max_shift)}
    return {
        "entities": report.entities,
        "max_shift": max_shift,
        "surfaces": [
            {"surface": s.surface, "total": s.total, "hidden_before": s.hidden_before,
             "hidden_after": s.hidden_after, "shift": s.shift, "violation": s.surface in bad}
            for s in report.surfaces
        ],
        "rules": [
            {"surface": r.surface, "rule": r.rule, "status": r.status, "fires": r.fires,
             "changes": r.changes}
            for r in report.rules
        ],
    }
