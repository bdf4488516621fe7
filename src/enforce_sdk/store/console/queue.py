"""The review queue: labels held as pending, and a reviewer's decision on one of them.

A decision is one audited write through the store's write path
(LabelStoreService.write), made at most once per (entity, source, label
version): the write carries an idempotency key naming that version, so when two
reviewers decide the same item the second write is refused by the storage
itself, atomically, and the console answers a conflict naming who decided.

- approve: a human label from `console/human/<person>` with the held label's
  enforcement and reason (metadata: the note and the source it confirms). A
  human label decides the entity's pending labels (the Label Checker's rule),
  so the held one is dismissed in the same transaction.
- reject: the held label is retracted.
- escalate: the label stays held; a review record (note, who, when) marks it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..._errors import LabelValidationError, WriteKeyReusedError
from ...model.label import Label, Source, SourceType
from ...model.records import LabelStatus, StoredLabel
from ..storage.base import DeleteOp, LabelStorage, WriteKey
from ..storage.console_records import ReviewConflictError, ReviewRecord

QUEUE_LIMIT = 2000  # held labels read for one queue page (sorted oldest first in memory)
MAX_NOTE = 500
CONSOLE_SYSTEM = "console"


class ReviewProblem(Exception):
    """A decision that cannot be made: `status` 400 (bad form), 409 (conflict), 501."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class QueueItem:
    stored: StoredLabel
    escalations: list[ReviewRecord]


def held_labels(storage: LabelStorage, *, reason: str, source: str) -> tuple[list[QueueItem], bool]:
    """Held labels, oldest first, filtered by reason (exact) and source (substring of the
    source key); and whether the queue holds more than QUEUE_LIMIT."""
    found: list[StoredLabel] = []
    after: tuple[str, str] | None = None
    truncated = False
    while True:
        page = storage.pending(limit=500, after=after)
        found += page
        if len(page) < 500:
            break
        if len(found) >= QUEUE_LIMIT:
            truncated = True
            break
        last = page[-1].label
        after = (last.entity, last.source.key)
    found.sort(key=lambda s: s.seq)
    items = []
    for stored in found:
        if reason and stored.label.reason != reason:
            continue
        if source and source not in stored.label.source.key:
            continue
        escalations = [r for r in storage.reviews(stored.label.entity, limit=20)
                       if r.action == "escalate" and r.source_key == stored.label.source.key
                       and r.label_seq == stored.seq]
        items.append(QueueItem(stored, escalations))
    return items, truncated


def check_note(note: str) -> str:
    note = note.strip()
    if not note:
        raise ReviewProblem(400, "a note is required: say why (it is kept with the decision)")
    if len(note) > MAX_NOTE:
        raise ReviewProblem(400, f"the note has {len(note)} characters, more than {MAX_NOTE}")
    return note


def find_held(storage: LabelStorage, entity: str, source_key: str, seq: int) -> StoredLabel:
    """The held label the reviewer saw, or a conflict saying what happened to it."""
    for stored in storage.labels_of(entity):
        if stored.label.source.key != source_key:
            continue
        if stored.status is LabelStatus.PENDING and stored.seq == seq:
            return stored
        return _conflict(storage, entity, source_key, seq,
                         f"this label changed since you loaded it (now {stored.status.value}, "
                         f"version {stored.seq})")
    return _conflict(storage, entity, source_key, seq, "this label is no longer held")


def _conflict(storage: LabelStorage, entity: str, source_key: str, seq: int,
              message: str) -> StoredLabel:
    for e in storage.history(entity, limit=50):
        if e.source_key == source_key and e.seq > seq:
            message += f": {e.action.value} by {e.actor} at {e.at.isoformat()}"
            break
    raise ReviewProblem(409, message)


def review_key(entity: str, source_key: str, seq: int, action: str, actor: str, note: str,
               now: datetime) -> WriteKey:
    """One idempotency key per held label version: a second decision on it is refused."""
    fingerprint = hashlib.sha256(f"{action}\x00{actor}\x00{note}".encode()).hexdigest()
    return WriteKey(f"console-review\x00{entity}\x00{source_key}\x00{seq}", fingerprint,
                    now + timedelta(days=30))


def approval(held: Label, person: str, note: str, now: datetime) -> dict[str, object]:
    """The human label (wire form, checked by the Label Checker) that confirms `held`."""
    try:
        source = Source(CONSOLE_SYSTEM, SourceType.HUMAN, person)
    except LabelValidationError as exc:  # names are checked at config load; belt and braces
        raise ReviewProblem(400, f"cannot write as {person!r}: {exc.problem}") from exc
    label: dict[str, object] = {
        "entity": held.entity, "source": source.to_dict(), "enforcement": held.enforcement.wire,
        "reason": held.reason, "created_at": now.isoformat(),
        "metadata": {"review": "approve", "confirms": held.source.key, "note": note},
    }
    if held.expires_at is not None and held.expires_at > now:
        label["expires_at"] = held.expires_at.isoformat()
    return label


def retraction(held: Label) -> DeleteOp:
    return DeleteOp(held.entity, held.source.key)


def record(storage: LabelStorage, held: StoredLabel, action: str, actor: str, note: str,
           now: datetime) -> None:
    """Keep the review record; a second identical action raises a conflict."""
    if not storage.keeps_console_records:
        raise ReviewProblem(501, str(storage.no_console_records()))
    try:
        storage.add_review(ReviewRecord(held.label.entity, held.label.source.key, held.seq,
                                        action, actor, note, now))
    except ReviewConflictError as exc:
        raise ReviewProblem(409, str(exc)) from exc


def reused(exc: WriteKeyReusedError, storage: LabelStorage, entity: str, source_key: str,
           seq: int) -> ReviewProblem:
    """The conflict answer when another decision already took this label version."""
    try:
        _conflict(storage, entity, source_key, seq, "another reviewer already decided this label")
    except ReviewProblem as problem:
        return problem
    raise AssertionError("unreachable")  # pragma: no cover
