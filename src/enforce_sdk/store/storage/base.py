"""The storage contract every Label Store backend implements.

The entity is the primary key and the source is the feature key: a backend
holds at most one label per (entity, source key). `apply` runs a whole batch
of writes atomically: the label rows, one audit event per effective change and
one change record per effective change commit together or not at all. Change
records carry a global sequence number that only grows.

Label status: `active` labels are served by reads; `pending` labels (an
automated negative on a trusted entity, see the Label Checker) are stored and
listed for review but not served.

Records (StoredLabel, AuditEvent, ChangeRecord, ...) live in model/records: the SDK
reads them too. The behaviour is pinned by tests/contract/, which every backend must pass.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..._errors import InvalidInputError
from ...model.label import Label
from ...model.records import AuditEvent, ChangePage, LabelStatus, Outcome, StoredLabel


@dataclass(frozen=True, slots=True)
class PutOp:
    """Upsert `label` with `status`.

    If `decides_pending` is true (a human-source label), every *other* pending
    label on the same entity is dismissed in the same transaction.
    """

    label: Label
    status: LabelStatus = LabelStatus.ACTIVE
    decides_pending: bool = False


@dataclass(frozen=True, slots=True)
class DeleteOp:
    """Retract the label of `source_key` on `entity` (active or pending)."""

    entity: str
    source_key: str


WriteOp = PutOp | DeleteOp










class LabelStorage(abc.ABC):
    """A Label Store backend. Implementations must be safe for use from many threads."""

    @abc.abstractmethod
    def apply(self, ops: Sequence[WriteOp], *, actor: str, now: datetime) -> list[Outcome]:
        """Apply all ops atomically, in order; return one Outcome per op.

        Ops on the same (entity, source) later in the batch see the earlier ones.
        Durable on return: an acknowledged batch survives a crash of the process.
        """

    @abc.abstractmethod
    def get_many(
        self, entities: Iterable[str], *, include_pending: bool = False
    ) -> dict[str, list[StoredLabel]]:
        """Labels of each entity that has any; entities without labels are absent."""

    @abc.abstractmethod
    def history(
        self, entity: str, *, limit: int = 100, before_seq: int | None = None
    ) -> list[AuditEvent]:
        """Audit events of one entity, newest first, with seq < before_seq if given."""

    @abc.abstractmethod
    def changes(self, after_seq: int, *, limit: int = 1000) -> ChangePage:
        """Change records with seq > after_seq in ascending order, at most `limit`.

        Callers compare `after_seq` with `oldest` to detect a position past retention.
        """

    @abc.abstractmethod
    def head_seq(self) -> int:
        """The newest committed sequence number (0 when nothing was ever written)."""

    @abc.abstractmethod
    def prune_changes(self, older_than: datetime) -> int:
        """Drop change records made before `older_than`; return how many. Audit is kept."""

    @abc.abstractmethod
    def pending(
        self, *, limit: int = 100, after: tuple[str, str] | None = None
    ) -> list[StoredLabel]:
        """Pending labels ordered by (entity, source key), starting after the given key."""

    @abc.abstractmethod
    def iter_labeled_entities(self) -> Iterator[str]:
        """Every entity that has at least one active label (for the bloom snapshot)."""

    @abc.abstractmethod
    def count_labels(self) -> dict[LabelStatus, int]:
        """Number of stored labels by status."""

    def ping(self) -> None:
        """Raise StorageError if the backend cannot serve (used by readiness)."""
        self.head_seq()

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and files."""


# -- argument checks every backend applies at its boundary (the contract's input rules) ---


def check_str(value: object, where: str) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"must be a non-empty string, got {value!r}", field=where)


def check_int(value: object, where: str, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"must be an integer >= {minimum}, got {value!r}", field=where)


def check_aware(value: object, where: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidInputError(f"must be a time-zone aware datetime, got {value!r}", field=where)
    return value


def check_ops(ops: Sequence[WriteOp]) -> list[WriteOp]:
    """Type-check every op before anything is written, so a bad batch stores nothing."""
    if isinstance(ops, str | bytes) or not isinstance(ops, Sequence):
        raise InvalidInputError(f"must be a sequence of write ops, got {type(ops).__name__}",
                                field="ops")
    for index, op in enumerate(ops):
        where = f"ops[{index}]"
        if isinstance(op, PutOp):
            if not isinstance(op.label, Label):
                raise InvalidInputError("label must be a Label", field=where)
            if not isinstance(op.status, LabelStatus):
                raise InvalidInputError(f"status must be a LabelStatus, got {op.status!r}",
                                        field=where)
        elif isinstance(op, DeleteOp):
            check_str(op.entity, f"{where}.entity")
            check_str(op.source_key, f"{where}.source_key")
        else:
            raise InvalidInputError(f"must be a PutOp or DeleteOp, got {type(op).__name__}",
                                    field=where)
    return list(ops)
