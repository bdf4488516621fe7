"""The records both sides of the wire speak: stored labels, audit events, change records.

The store's backends produce them and the SDK's store client parses them back,
so they live below both (the SDK never imports the store to read a record).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from .label import Label


class LabelStatus(enum.StrEnum):
    ACTIVE = "active"
    PENDING = "pending"


class Outcome(enum.StrEnum):
    """What one write op did."""

    WRITTEN = "written"  # a new or changed active label
    PENDING = "pending"  # stored as pending review, not served
    NOOP = "noop"  # identical to what was stored (label and status): nothing changed
    DELETED = "deleted"  # a stored label was retracted
    NOT_FOUND = "not_found"  # retract of a label that did not exist: nothing changed


class Action(enum.StrEnum):
    """The kind of an audit event / change record."""

    PUT = "put"  # active label written
    PEND = "pend"  # label stored as pending review
    DELETE = "delete"  # label retracted by its producer
    DISMISS = "dismiss"  # pending label dismissed because a human source decided
    EXPIRE = "expire"  # label removed by the store's purge, past its expires_at and the grace


@dataclass(frozen=True, slots=True)
class StoredLabel:
    label: Label
    status: LabelStatus
    seq: int  # sequence number of the change that last wrote it


@dataclass(frozen=True, slots=True)
class AuditEvent:
    seq: int
    entity: str
    source_key: str
    action: Action
    actor: str  # the authenticated writer identity
    at: datetime
    before: Label | None
    after: Label | None
    status: LabelStatus | None  # status of `after`, None for delete/dismiss


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    seq: int
    entity: str
    source_key: str
    action: Action
    at: datetime
    labeled: bool  # whether the entity has at least one active label after this change


@dataclass(frozen=True, slots=True)
class ChangePage:
    changes: list[ChangeRecord]
    head: int  # the newest sequence number the backend has committed
    oldest: int  # the oldest sequence number still retained (head + 1 if none)
