"""The Label Checker: every write batch passes here before it reaches storage.

Split of duties with storage:
- here: schema validation (Label.from_dict) and store limits, all-or-nothing
  for the batch, and trusted-entity protection (deciding each label's status);
- in storage (LabelStorage.apply): duplicate suppression. An identical rewrite
  is reported as Outcome.NOOP and appends no audit event or change record;
  only storage can tell, atomically with the write, what is already stored.

Trusted-entity protection: an automated label of enforcement >= limit on a
trusted entity is stored as pending review and not served; a label from a
human source decides every other pending label on its entity (dismisses them).

Policy from the SDK config (when the store is given one, store/live_policy):
- the reason registry: a label whose reason is not registered is refused
  (422 `unknown_reason`, naming the nearest registered reasons). Without an SDK
  config, or one without `reasons`, any well-formed reason is accepted, as
  before the registry existed;
- confidence routing, per source system: an automated label whose confidence
  is below `drop_below` is refused as noise (422 `low_confidence`), below
  `hold_below` it is held pending review exactly like a trusted-entity hold.
Each batch reads the applied view once, so a push takes effect from the next
batch. `counts` tallies what the policy refused and held in this process.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._errors import EntityKeyError, LabelValidationError
from ..model.keys import canonical_key
from ..model.label import Enforcement, Label, SourceType, metadata_size, metadata_within
from ..model.records import LabelStatus
from ..policy.reasons import NO_ROUTING, ConfidenceRouting, Route
from .config import StoreConfig
from .live_policy import LivePolicy
from .storage.base import PutOp


class LabelRejectedError(LabelValidationError):
    """A label of a write batch fails validation; `index` is its position in the batch.

    `too_large` is true when the label breaks a size limit rather than the schema
    (the HTTP service answers 413 instead of 422).
    """

    def __init__(self, message: str, *, index: int, field: str | None, too_large: bool = False,
                 code: str = "invalid_label", extra: Mapping[str, Any] | None = None):
        self.index = index
        self.too_large = too_large
        self.code = "too_large" if too_large else code  # the error answer's code
        self.extra = dict(extra or {})  # more fields of the error answer
        super().__init__(message, field=field)
        self.args = (f"label {index}: {self}",)


class LabelChecker:
    """Validates write batches and turns them into storage ops."""

    def __init__(self, *, trusted_entities: Iterable[str] = (), max_metadata_bytes: int = 2048,
                 policy: LivePolicy | None = None):
        keys: set[str] = set()
        for key in trusted_entities:
            try:
                keys.add(canonical_key(key))
            except EntityKeyError as exc:
                raise LabelValidationError(
                    f"trusted entity {key!r}: {exc.problem}", field="trusted_entities"
                ) from exc
        self.trusted_entities = frozenset(keys)
        self.max_metadata_bytes = max_metadata_bytes
        self.policy = policy
        # refused_unregistered, dropped_low_confidence, held_low_confidence
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()  # batches are checked in the thread pool

    @classmethod
    def from_config(cls, config: StoreConfig, policy: LivePolicy | None = None) -> LabelChecker:
        return cls(
            trusted_entities=config.checker.trusted_entities,
            max_metadata_bytes=config.limits.max_metadata_bytes,
            policy=policy,
        )

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] += n

    def parse(self, raw_labels: Sequence[object]) -> list[Label]:
        """Validate every raw label (JSON or msgpack form); raise on the first bad one."""
        labels: list[Label] = []
        for index, raw in enumerate(raw_labels):
            try:
                label = Label.from_dict(raw)
            except LabelValidationError as exc:
                raise LabelRejectedError(exc.problem, index=index, field=exc.field) from exc
            if label.metadata and not metadata_within(label.metadata, self.max_metadata_bytes):
                raise LabelRejectedError(
                    f"{metadata_size(label.metadata)} bytes as compact JSON, larger than the "
                    f"store's limit of {self.max_metadata_bytes} bytes",
                    index=index,
                    field="metadata",
                    too_large=True,
                )
            labels.append(label)
        return labels

    def op_for(self, label: Label, routing: ConfidenceRouting = NO_ROUTING) -> PutOp:
        """The storage op for one valid label, with its status decided."""
        if label.source.type is SourceType.HUMAN:
            return PutOp(label, LabelStatus.ACTIVE, decides_pending=True)
        if label.enforcement >= Enforcement.LIMIT and label.entity in self.trusted_entities:
            return PutOp(label, LabelStatus.PENDING)
        if routing.route(label)[0] is Route.HOLD:
            return PutOp(label, LabelStatus.PENDING)
        return PutOp(label, LabelStatus.ACTIVE)

    def check(self, raw_labels: Sequence[object]) -> list[PutOp]:
        """Validate a whole batch, then plan it: nothing is planned unless every label is valid."""
        labels = self.parse(raw_labels)
        view = self.policy.current() if self.policy is not None else None
        if view is None:
            return [self.op_for(label) for label in labels]
        registry, routing = view.reasons, view.confidence
        for index, label in enumerate(labels):
            if registry is not None and label.reason not in registry:
                self._count("refused_unregistered")
                raise LabelRejectedError(
                    registry.unknown_reason_problem(label.reason), index=index, field="reason",
                    code="unknown_reason",
                    extra={"reason": label.reason, "suggestions": registry.nearest(label.reason)})
            route, threshold = routing.route(label)
            if route is Route.DROP:
                self._count("dropped_low_confidence")
                raise LabelRejectedError(
                    f"confidence {label.confidence:g} is below drop_below {threshold:g} of "
                    f"source system {label.source.system!r}: refused as noise",
                    index=index, field="confidence", code="low_confidence",
                    extra={"confidence": label.confidence, "drop_below": threshold})
        ops = [self.op_for(label, routing) for label in labels]
        held = sum(1 for op in ops if op.status is LabelStatus.PENDING
                   and routing.route(op.label)[0] is Route.HOLD)
        if held:
            self._count("held_low_confidence", held)
        return ops
