"""What the reviewer console keeps besides labels: review notes, appeals and their outbox.

Optional per backend: a backend that keeps them sets `keeps_console_records`
(SQLite does; Redis Cluster does not yet, and says so when asked). The label
writes the console makes are ordinary audited write batches; these records
hold what a label write cannot: a reviewer's note on a retraction or an
escalation, and an appeal's life (opened, then upheld or denied, with who and
why). Appeal events (opened / upheld / denied) form an outbox with their own
growing sequence numbers, which a notifier polls (GET /v1/appeals/events) to
tell the user.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ..._errors import InvalidInputError, StorageError

REVIEW_ACTIONS = ("approve", "reject", "escalate")
APPEAL_STATES = ("open", "upheld", "denied")
MAX_STATEMENT = 2000  # characters of an appellant's statement
MAX_NOTE = 500  # characters of a reviewer's note


@dataclass(frozen=True, slots=True)
class ReviewRecord:
    """A reviewer's decision on a held label, with the note the console requires.

    `label_seq` is the sequence number of the pending label as the reviewer saw it:
    one record per (entity, source, label_seq, action), so a second reviewer doing
    the same is refused (ReviewConflictError). The label write the decision made
    (approve: a human label; reject: a retraction) is audited on its own.
    """

    entity: str
    source_key: str
    label_seq: int
    action: str  # one of REVIEW_ACTIONS
    actor: str
    note: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Appeal:
    """An appeal against the labels (`contested` source keys) on one entity."""

    id: int
    entity: str
    contested: tuple[str, ...]
    appellant: str  # who opened it: an API token name or console:<person>
    statement: str
    ref: str | None  # the product's own reference (a ticket, a user id), if given
    state: str  # one of APPEAL_STATES
    opened_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_note: str | None = None


@dataclass(frozen=True, slots=True)
class AppealEvent:
    """One outbox entry: the appeal as it was after `event` (opened, upheld or denied)."""

    seq: int
    event: str
    at: datetime
    appeal: Appeal


@dataclass(frozen=True, slots=True)
class MassJob:
    """A mass retraction: what it matches, why, and how far it got (so it can resume).

    `cursor` is the last (entity, source key) the job has dealt with, in key order;
    labels after it are still to do. `state`: running, done or failed.
    """

    id: str
    actor: str  # console:<person> or a token name
    query: str  # the LabelQuery as JSON
    reason: str
    state: str
    cursor: tuple[str, str] | None
    matched: int  # labels matched so far
    retracted: int  # of which retracted (the rest were gone already)
    created_at: datetime
    updated_at: datetime
    error: str | None = None


class ReviewConflictError(StorageError):
    """Someone already recorded this action on this version of the label."""


class AppealConflictError(StorageError):
    """The appeal is not open (any more): someone decided it."""


class NoConsoleRecordsError(StorageError):
    """This backend does not keep the console's records."""


def _text(value: object, where: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"must be a non-empty string, got {value!r}", field=where)
    if len(value) > limit:
        raise InvalidInputError(f"has {len(value)} characters, more than {limit}", field=where)
    return value


def _aware(value: object, where: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidInputError(f"must be a time-zone aware datetime, got {value!r}", field=where)
    return value


def _count(value: object, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"must be an integer >= {minimum}, got {value!r}", field=where)
    return value


class ConsoleRecords:
    """The console-records part of the storage contract (LabelStorage inherits it)."""

    keeps_console_records = False

    def no_console_records(self) -> NoConsoleRecordsError:
        """The error this backend raises for what it does not keep (naming itself)."""
        return NoConsoleRecordsError(
            f"the {type(self).__name__} backend does not keep the console's review notes and "
            "appeals yet: use the SQLite backend for them")

    # -- reviews -----------------------------------------------------------------------

    def add_review(self, record: ReviewRecord) -> None:
        """Keep `record`; ReviewConflictError if its (entity, source, label_seq, action) is taken."""
        if not isinstance(record, ReviewRecord):
            raise InvalidInputError(f"must be a ReviewRecord, got {type(record).__name__}",
                                    field="record")
        _text(record.entity, "record.entity", 1024)
        _text(record.source_key, "record.source_key", 1024)
        _count(record.label_seq, "record.label_seq", 0)
        if record.action not in REVIEW_ACTIONS:
            raise InvalidInputError(f"must be one of {', '.join(REVIEW_ACTIONS)}, got "
                                    f"{record.action!r}", field="record.action")
        _text(record.actor, "record.actor", 200)
        _text(record.note, "record.note", MAX_NOTE)
        _aware(record.at, "record.at")
        self._add_review(record)

    def reviews(self, entity: str, *, limit: int = 100) -> list[ReviewRecord]:
        """The review records of one entity, newest first."""
        _text(entity, "entity", 1024)
        return self._reviews(entity, limit=_count(limit, "limit", 1))

    # -- appeals -----------------------------------------------------------------------

    def open_appeal(self, entity: str, contested: Sequence[str], *, appellant: str,
                    statement: str, ref: str | None, now: datetime) -> Appeal:
        """Open an appeal (and its `opened` outbox event, in one transaction)."""
        _text(entity, "entity", 1024)
        if isinstance(contested, str) or not contested:
            raise InvalidInputError("must name at least one contested label (source key)",
                                    field="labels")
        for i, key in enumerate(contested):
            _text(key, f"labels[{i}]", 1024)
        _text(appellant, "appellant", 200)
        _text(statement, "statement", MAX_STATEMENT)
        if ref is not None:
            _text(ref, "ref", 200)
        _aware(now, "now")
        return self._open_appeal(entity, tuple(dict.fromkeys(contested)), appellant, statement,
                                 ref, now)

    def appeal(self, appeal_id: int) -> Appeal | None:
        return self._appeal(_count(appeal_id, "appeal_id", 1))

    def appeals(self, *, state: str | None = None, entity: str | None = None,
                limit: int = 100) -> list[Appeal]:
        """Appeals oldest first, of one state and/or one entity if given."""
        if state is not None and state not in APPEAL_STATES:
            raise InvalidInputError(f"must be one of {', '.join(APPEAL_STATES)}, got {state!r}",
                                    field="state")
        if entity is not None:
            _text(entity, "entity", 1024)
        return self._appeals(state, entity, _count(limit, "limit", 1))

    def appeal_events(self, after: int, *, limit: int = 100) -> list[AppealEvent]:
        """Outbox events with seq > after, oldest first."""
        return self._appeal_events(_count(after, "after", 0), _count(limit, "limit", 1))

    # -- mass jobs and the label scan they use ------------------------------------------

    def save_job(self, job: MassJob) -> None:
        """Insert or update a mass job's record."""
        if not isinstance(job, MassJob):
            raise InvalidInputError(f"must be a MassJob, got {type(job).__name__}", field="job")
        self._save_job(job)

    def job(self, job_id: str) -> MassJob | None:
        return self._job(_text(job_id, "job_id", 64))

    def jobs(self, *, limit: int = 50) -> list[MassJob]:
        """Mass jobs, newest first."""
        return self._jobs(_count(limit, "limit", 1))

    # -- what a backend that keeps them implements -------------------------------------

    def _save_job(self, job: MassJob) -> None:
        raise self.no_console_records()

    def _job(self, job_id: str) -> MassJob | None:
        return None

    def _jobs(self, limit: int) -> list[MassJob]:
        return []

    def _add_review(self, record: ReviewRecord) -> None:
        raise self.no_console_records()

    def _reviews(self, entity: str, *, limit: int) -> list[ReviewRecord]:
        return []

    def _open_appeal(self, entity: str, contested: tuple[str, ...], appellant: str,
                     statement: str, ref: str | None, now: datetime) -> Appeal:
        raise self.no_console_records()

    def _appeal(self, appeal_id: int) -> Appeal | None:
        return None

    def _appeals(self, state: str | None, entity: str | None, limit: int) -> list[Appeal]:
        return []

    def _appeal_events(self, after: int, limit: int) -> list[AppealEvent]:
        return []
