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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .._errors import EntityKeyError, LabelValidationError
from ..model.keys import canonical_key
from ..model.label import Enforcement, Label, SourceType, metadata_size, metadata_within
from ..model.records import LabelStatus
from .config import StoreConfig
from .storage.base import PutOp


class LabelRejectedError(LabelValidationError):
    """A label of a write batch fails validation; `index` is its position in the batch.

    `too_large` is true when the label breaks a size limit rather than the schema
    (the HTTP service answers 413 instead of 422).
    """

    def __init__(self, message: str, *, index: int, field: str | None, too_large: bool = False):
        self.index = index
        self.too_large = too_large
        super().__init__(message, field=field)
        self.args = (f"label {index}: {self}",)


class LabelChecker:
    """Validates write batches and turns them into storage ops."""

    def __init__(self, *, trusted_entities: Iterable[str] = (), max_metadata_bytes: int = 2048):
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

    @classmethod
    def from_config(cls, config: StoreConfig) -> LabelChecker:
        return cls(
            trusted_entities=config.checker.trusted_entities,
            max_metadata_bytes=config.limits.max_metadata_bytes,
        )

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

    def op_for(self, label: Label) -> PutOp:
        """The storage op for one valid label, with its status decided."""
        if label.source.type is SourceType.HUMAN:
            return PutOp(label, LabelStatus.ACTIVE, decides_pending=True)
        if label.enforcement >= Enforcement.LIMIT and label.entity in self.trusted_entities:
            return PutOp(label, LabelStatus.PENDING)
        return PutOp(label, LabelStatus.ACTIVE)

    def check(self, raw_labels: Sequence[object]) -> list[PutOp]:
        """Validate a whole batch, then plan it: nothing is planned unless every label is valid."""
        return [self.op_for(label) for label in self.parse(raw_labels)]
