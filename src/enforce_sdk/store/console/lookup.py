"""What the Lookup pages show: parsing a search, and gathering one entity's page.

The per-surface decisions come from the live SDK config's own `Resolver`s and
`Decision.explain()` (store/live_policy): the console computes nothing of its own
about enforcement, so what it shows is what an SDK host with that config decides
for the same labels.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ..._errors import EntityKeyError
from ...model.keys import canonical_key, domain_key_from_url
from ...model.label import Label, format_time
from ...model.records import Action, AuditEvent, LabelStatus
from ...policy.decision import Decision
from ...policy.links import related_key
from ..live_policy import PolicyView
from ..storage.base import LabelStorage
from ..storage.console_records import Appeal, ReviewRecord

LINK_KINDS = ("image", "domain", "creator", "board")  # what a reviewer may name, as the SDK
HISTORY_PAGE = 20


class SearchError(ValueError):
    """A search the console cannot read; the message says why."""


def parse_search(text: str) -> list[str]:
    """The entity keys a search names: a key, a URL (its domain key), or a bare id
    (as a pin and as a user). Raises SearchError naming the problem."""
    raw = text.strip()
    if not raw:
        raise SearchError("type an entity key (pin:123, user:42, domain:example.com), "
                           "an id, or a URL")
    if raw.isdigit():
        return [f"pin:{raw}", f"user:{raw}"]
    lowered = raw.lower()
    if "://" in raw or lowered.startswith("www.") or (":" not in raw and "." in raw):
        try:
            return [domain_key_from_url(raw)]
        except EntityKeyError as exc:
            raise SearchError(f"{raw!r} is not a key and not a web link: {exc.problem}") from None
    try:
        return [canonical_key(raw)]
    except EntityKeyError as exc:
        raise SearchError(f"{raw!r} is not an entity key: {exc.problem}") from None


def parse_links(params: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The linked entities a reviewer named (kind -> canonical key), and problems."""
    related: dict[str, str] = {}
    problems: list[str] = []
    for kind in LINK_KINDS:
        value = (params.get(kind) or "").strip()
        if not value:
            continue
        try:
            related[kind] = related_key(kind, value)
        except EntityKeyError as exc:
            problems.append(f"{kind} {value!r}: {exc.problem}")
    return related, problems


@dataclass(frozen=True, slots=True)
class LabelRow:
    label: Label
    state: str  # active | pending | expired | retracted | dismissed | purged
    seq: int
    note: str = ""  # who retracted, for a label gone from the store

    @property
    def metadata_json(self) -> str:
        return json.dumps(dict(self.label.metadata), ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True, slots=True)
class SurfaceRow:
    surface: str
    decision: Decision
    explanation: str


@dataclass(frozen=True, slots=True)
class TimelineRow:
    event: AuditEvent

    @property
    def what(self) -> str:
        e = self.event
        before = "-" if e.before is None else f"{e.before.enforcement.wire} {e.before.reason}"
        after = "-" if e.after is None else f"{e.after.enforcement.wire} {e.after.reason}"
        return f"{before} -> {after}"


@dataclass
class EntityPage:
    entity: str
    related: dict[str, str]
    labels: list[LabelRow]
    surfaces: list[SurfaceRow]
    policy: PolicyView | None
    timeline: list[TimelineRow]
    next_before: int | None
    reviews: list[ReviewRecord]
    link_labels: dict[str, list[LabelRow]] = field(default_factory=dict)
    appeals: list[Appeal] = field(default_factory=list)


def _rows(storage: LabelStorage, entity: str, now: datetime) -> list[LabelRow]:
    rows = []
    for stored in storage.labels_of(entity):
        state = ("expired" if stored.label.is_expired(now) else
                 "pending" if stored.status is LabelStatus.PENDING else "active")
        rows.append(LabelRow(stored.label, state, stored.seq))
    return rows


_GONE = {Action.DELETE: "retracted", Action.DISMISS: "dismissed", Action.EXPIRE: "purged"}


def _gone(events: list[AuditEvent], present: set[str]) -> list[LabelRow]:
    """Labels the history shows removed (newest removal per source) and not written since."""
    out: list[LabelRow] = []
    seen = set(present)
    for e in events:  # newest first
        if e.source_key in seen:
            continue
        seen.add(e.source_key)
        if e.action in _GONE and e.before is not None:
            out.append(LabelRow(e.before, _GONE[e.action], e.seq,
                                f"{_GONE[e.action]} by {e.actor} at {format_time(e.at)}"))
    return out


def entity_page(storage: LabelStorage, policy: PolicyView | None, entity: str,
                related: dict[str, str], *, now: datetime, before: int | None) -> EntityPage:
    """Everything the entity page shows (blocking storage reads: run it in a thread)."""
    rows = _rows(storage, entity, now)
    events = storage.history(entity, limit=HISTORY_PAGE, before_seq=before)
    if before is None:
        rows += _gone(storage.history(entity, limit=200), {r.label.source.key for r in rows})
    keys = [entity, *related.values()]
    served = storage.get_many(keys, include_pending=False, now=now)
    labels = {k: [s.label for s in stored if s.status is LabelStatus.ACTIVE]
              for k, stored in served.items()}
    surfaces = []
    if policy is not None:
        at = time.time()
        for name, resolver in policy.resolvers.items():
            decision = resolver.resolve(entity, labels, related, at)
            surfaces.append(SurfaceRow(name, decision, decision.explain()))
    link_labels = {kind: _rows(storage, key, now) for kind, key in related.items()}
    return EntityPage(entity, related, rows, surfaces, policy,
                      [TimelineRow(e) for e in events],
                      events[-1].seq if len(events) == HISTORY_PAGE else None,
                      storage.reviews(entity, limit=50), link_labels,
                      storage.appeals(entity=entity, limit=50))
