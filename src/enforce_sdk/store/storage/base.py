"""The storage contract every Label Store backend implements.

The entity is the primary key and the source is the feature key: a backend
holds at most one label per (entity, source key). `apply` runs a whole batch
of writes atomically: the label rows, one audit event per effective change and
one change record per effective change commit together or not at all. Change
records carry a global sequence number that only grows.

Label status: `active` labels are served by reads; `pending` labels (an
automated negative on a trusted entity, see the Label Checker) are stored and
listed for review but not served.

Expiry: reads (`get_many`) skip labels whose `expires_at` has passed; the store
removes them later with `purge_expired` (an `ExpireOp` per entity: every
removal audited and fed as `expire`, all of one entity's in one transaction).

Records (StoredLabel, AuditEvent, ChangeRecord, ...) live in model/records: the SDK
reads them too. The behaviour is pinned by tests/store/storage/, which every backend must pass.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ..._errors import InvalidInputError, WriteKeyReusedError
from ...model.compact import encode_body
from ...model.label import Label
from ...model.records import AuditEvent, ChangePage, LabelStatus, Outcome, StoredLabel
from .console_records import MAX_NOTE, Appeal, ConsoleRecords


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


@dataclass(frozen=True, slots=True)
class ExpireOp:
    """Remove every label of `entity` (active or pending) that expired at or before `before`.

    The store's purge: each removed label gets an `expire` audit event and change
    record. Outcome `deleted` if it removed any, else `noop`. Not an API write.
    """

    entity: str
    before: datetime


WriteOp = PutOp | DeleteOp | ExpireOp

PURGE_ACTOR = "store:expiry"  # the audit actor of the store's own purges
_PURGE_BATCH = 256  # entities per apply batch of a purge


@dataclass(frozen=True, slots=True)
class WriteKey:
    """The idempotency key of one write request, as `apply_once` takes it.

    `key` names the request among every writer's (the service makes it from the
    writer's token name and the client's `Idempotency-Key`); `fingerprint` is a
    digest of the request, so a key sent again with another request is refused;
    the outcome is kept at least until `expires_at`.
    """

    key: str
    fingerprint: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AppliedBatch:
    """What `apply_once` did, or (`replayed`) what the key's first attempt did.

    `seq` is the sequence number of the batch's last change, or the head the
    batch was a no-op at: every change of the batch is at or below it.
    """

    outcomes: list[Outcome]
    seq: int
    replayed: bool = False


class LabelStorage(ConsoleRecords, abc.ABC):
    """A Label Store backend. Implementations must be safe for use from many threads.

    The public methods check their arguments here, once for every backend (the
    contract's input rules: a bad argument raises InvalidInputError naming it,
    and nothing is written), then call the backend's underscored method, which
    trusts them.
    """

    def apply(self, ops: Sequence[WriteOp], *, actor: str, now: datetime) -> list[Outcome]:
        """Apply all ops atomically, in order; return one Outcome per op.

        Ops on the same (entity, source) later in the batch see the earlier ones.
        Durable on return: an acknowledged batch survives a crash of the process.
        """
        checked = check_ops(ops)
        if not isinstance(actor, str) or not actor.strip():
            raise InvalidInputError(f"must be a non-empty string, got {actor!r}", field="actor")
        check_aware(now, "now")
        if not checked:
            return []
        return self._apply(checked, actor=actor, now=now)

    def apply_once(self, ops: Sequence[WriteOp], *, actor: str, now: datetime,
                   key: WriteKey) -> AppliedBatch:
        """apply() at most once per `key`: the outcome is stored atomically with the batch.

        If the key already recorded an outcome (not expired at `now`) for the same
        fingerprint, that outcome is returned with `replayed` set and nothing is
        applied; for another fingerprint WriteKeyReusedError is raised. So a retry
        after a lost answer, a timeout or a StorageError raised after the commit
        never applies a batch twice. A no-op batch records its outcome too.
        """
        checked = check_ops(ops)
        if not isinstance(actor, str) or not actor.strip():
            raise InvalidInputError(f"must be a non-empty string, got {actor!r}", field="actor")
        check_aware(now, "now")
        if not isinstance(key, WriteKey):
            raise InvalidInputError(f"must be a WriteKey, got {type(key).__name__}", field="key")
        check_str(key.key, "key.key")
        check_str(key.fingerprint, "key.fingerprint")
        check_aware(key.expires_at, "key.expires_at")
        if not checked:
            raise InvalidInputError("a keyed write needs at least one op", field="ops")
        return self._apply_once(checked, actor=actor, now=now, key=key)

    def prune_write_keys(self, now: datetime) -> int:
        """Drop idempotency records that expired before `now`; return how many."""
        return self._prune_write_keys(check_aware(now, "now"))

    def get_many(
        self, entities: Iterable[str], *, include_pending: bool = False,
        now: datetime | None = None,
    ) -> dict[str, list[StoredLabel]]:
        """Unexpired labels of each entity that has any; entities without them are absent.

        A label whose `expires_at` is at or before `now` (default: the wall clock)
        is not returned, though it stays stored until `purge_expired` removes it.
        """
        if isinstance(entities, str | bytes):
            raise InvalidInputError("must be an iterable of entity keys, not one string",
                                    field="entities")
        keys = list(dict.fromkeys(entities))
        for key in keys:
            check_str(key, "entities")
        at = datetime.now(UTC) if now is None else check_aware(now, "now")
        return without_expired(self._get_many(keys, include_pending=include_pending), at)

    def get_bodies(self, entities: Iterable[str], *, now: datetime
                   ) -> dict[str, list[tuple[str, bytes]]]:
        """Active unexpired labels as (source key, compact body) pairs (model/compact),
        by entity, in source-key order; entities without any are absent.

        What the store sends in a compact read. A backend that keeps compact bodies
        returns its stored bytes without decoding them; this default encodes what
        `get_many` returns.
        """
        if isinstance(entities, str | bytes):
            raise InvalidInputError("must be an iterable of entity keys, not one string",
                                    field="entities")
        keys = list(dict.fromkeys(entities))
        for key in keys:
            check_str(key, "entities")
        return self._get_bodies(keys, check_aware(now, "now"))

    def _get_bodies(self, keys: list[str], now: datetime) -> dict[str, list[tuple[str, bytes]]]:
        found = without_expired(self._get_many(keys, include_pending=False), now)
        return {entity: [(s.label.source.key, encode_body(s.label)) for s in stored]
                for entity, stored in found.items()}

    def purge_expired(self, before: datetime, *, now: datetime, actor: str = PURGE_ACTOR) -> int:
        """Remove every label that expired at or before `before`; return how many entities lost one.

        One `ExpireOp` per entity, a few hundred entities per atomic batch, so an
        entity is never half purged. `now` is the time recorded on the audit events.
        """
        check_aware(before, "before")
        purged = 0
        batch: dict[str, None] = {}
        for entity in self._expired_entities(before):
            batch[entity] = None
            if len(batch) >= _PURGE_BATCH:
                purged += self._purge_batch(list(batch), before, actor, now)
                batch = {}
        if batch:
            purged += self._purge_batch(list(batch), before, actor, now)
        return purged

    def _purge_batch(self, entities: list[str], before: datetime, actor: str,
                     now: datetime) -> int:
        outcomes = self.apply([ExpireOp(e, before) for e in entities], actor=actor, now=now)
        return sum(o is Outcome.DELETED for o in outcomes)

    def history(
        self, entity: str, *, limit: int = 100, before_seq: int | None = None
    ) -> list[AuditEvent]:
        """Audit events of one entity, newest first, with seq < before_seq if given."""
        check_str(entity, "entity")
        check_int(limit, "limit", minimum=1)
        if before_seq is not None:
            check_int(before_seq, "before_seq", minimum=0)
        return self._history(entity, limit=limit, before_seq=before_seq)

    def changes(self, after_seq: int, *, limit: int = 1000) -> ChangePage:
        """Change records with seq > after_seq in ascending order, at most `limit`.

        Callers compare `after_seq` with `oldest` to detect a position past retention.
        """
        check_int(after_seq, "after_seq", minimum=0)
        check_int(limit, "limit", minimum=1)
        return self._changes(after_seq, limit=limit)

    def prune_changes(self, older_than: datetime) -> int:
        """Drop change records made before `older_than`; return how many. Audit is kept."""
        return self._prune_changes(check_aware(older_than, "older_than"))

    def pending(
        self, *, limit: int = 100, after: tuple[str, str] | None = None
    ) -> list[StoredLabel]:
        """Pending labels ordered by (entity, source key), starting after the given key."""
        check_int(limit, "limit", minimum=1)
        if after is not None and not (
            isinstance(after, tuple) and len(after) == 2 and all(isinstance(p, str) for p in after)
        ):
            raise InvalidInputError(f"must be (entity, source key), got {after!r}", field="after")
        return self._pending(limit=limit, after=after)

    def labels_of(self, entity: str) -> list[StoredLabel]:
        """Every stored label of one entity: active, pending and expired-not-yet-purged."""
        check_str(entity, "entity")
        return self._get_many([entity], include_pending=True).get(entity, [])

    def decide_appeal(self, appeal_id: int, *, upheld: bool, note: str, ops: Sequence[WriteOp],
                      actor: str, now: datetime) -> tuple[Appeal, int]:
        """Decide an open appeal in one transaction: apply `ops` (an upheld appeal's allow
        label; none for a denial), set its state and append its outbox event. Returns the
        decided appeal and the head after it. AppealConflictError (nothing written) if the
        appeal is not open, e.g. another reviewer decided it first."""
        check_int(appeal_id, "appeal_id", minimum=1)
        check_str(note, "note")
        if len(note) > MAX_NOTE:
            raise InvalidInputError(f"has {len(note)} characters, more than {MAX_NOTE}",
                                    field="note")
        checked = check_ops(ops)
        check_str(actor, "actor")
        check_aware(now, "now")
        if not self.keeps_console_records:
            raise self.no_console_records()
        return self._decide_appeal(appeal_id, "upheld" if upheld else "denied", note, checked,
                                   actor=actor, now=now)

    def _decide_appeal(self, appeal_id: int, state: str, note: str, ops: list[WriteOp], *,
                       actor: str, now: datetime) -> tuple[Appeal, int]:
        raise self.no_console_records()

    def scan_labels(self, *, after: tuple[str, str] | None = None,
                    limit: int = 1000) -> list[StoredLabel]:
        """Stored labels (active and pending, expired included) in (entity, source key)
        order after `after`: the mass actions' scan. Optional: SQLite implements it."""
        check_int(limit, "limit", minimum=1)
        if after is not None and not (isinstance(after, tuple) and len(after) == 2
                                      and all(isinstance(p, str) for p in after)):
            raise InvalidInputError(f"must be (entity, source key), got {after!r}", field="after")
        return self._scan_labels(after, limit)

    def _scan_labels(self, after: tuple[str, str] | None, limit: int) -> list[StoredLabel]:
        raise self.no_console_records()

    # -- what a backend implements (arguments already checked) ------------------------

    @abc.abstractmethod
    def _apply(self, ops: list[WriteOp], *, actor: str, now: datetime) -> list[Outcome]:
        """apply() of a checked, non-empty batch."""

    @abc.abstractmethod
    def _apply_once(self, ops: list[WriteOp], *, actor: str, now: datetime,
                    key: WriteKey) -> AppliedBatch:
        """apply_once() of a checked, non-empty batch and a checked key."""

    @abc.abstractmethod
    def _prune_write_keys(self, now: datetime) -> int:
        """prune_write_keys() with an aware datetime."""

    @abc.abstractmethod
    def _get_many(self, keys: list[str], *, include_pending: bool) -> dict[str, list[StoredLabel]]:
        """get_many() of distinct, checked keys (possibly none)."""

    @abc.abstractmethod
    def _history(self, entity: str, *, limit: int, before_seq: int | None) -> list[AuditEvent]:
        """history() with checked arguments."""

    @abc.abstractmethod
    def _changes(self, after_seq: int, *, limit: int) -> ChangePage:
        """changes() with checked arguments."""

    @abc.abstractmethod
    def _prune_changes(self, older_than: datetime) -> int:
        """prune_changes() with an aware datetime."""

    @abc.abstractmethod
    def _pending(self, *, limit: int, after: tuple[str, str] | None) -> list[StoredLabel]:
        """pending() with checked arguments."""

    @abc.abstractmethod
    def _expired_entities(self, before: datetime) -> Iterator[str]:
        """Entities holding a label that expired at or before `before`, for purge_expired.

        May repeat an entity or name one whose label changed since (the ExpireOp
        re-checks); must not miss one that held such a label when it began.
        """

    @abc.abstractmethod
    def head_seq(self) -> int:
        """The newest committed sequence number (0 when nothing was ever written)."""

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


def without_expired(
    found: Mapping[str, list[StoredLabel]], now: datetime
) -> dict[str, list[StoredLabel]]:
    """`found` without the labels expired at `now` (and without entities left with none)."""
    out: dict[str, list[StoredLabel]] = {}
    for entity, stored in found.items():
        live = [s for s in stored if not s.label.is_expired(now)]
        if live:
            out[entity] = live
    return out


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
        elif isinstance(op, ExpireOp):
            check_str(op.entity, f"{where}.entity")
            check_aware(op.before, f"{where}.before")
        else:
            raise InvalidInputError(
                f"must be a PutOp, DeleteOp or ExpireOp, got {type(op).__name__}", field=where)
    return list(ops)


def recorded_outcome(key: WriteKey, fingerprint: str, outcomes: Sequence[str],
                     seq: int) -> AppliedBatch:
    """A key's recorded first outcome, replayed; refused if the request is another one."""
    if fingerprint != key.fingerprint:
        raise WriteKeyReusedError("this idempotency key was already used for a different "
                                  "request; send a new key with a new request",
                                  field="Idempotency-Key")
    return AppliedBatch([Outcome(o) for o in outcomes], seq, replayed=True)
