"""Builders shared by the storage contract tests: labels, sources, ops and a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from enforce_sdk.model.label import Enforcement, Label, Source, SourceType
from enforce_sdk.model.records import LabelStatus
from enforce_sdk.store import DeleteOp, PutOp

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
MODEL = Source("spam_model", SourceType.AUTOMATED, "v3")
MODEL2 = Source("bot_detector", SourceType.AUTOMATED, "rt")
HUMAN = Source("review_tool", SourceType.HUMAN, "queue_a")
ACTOR = "test-writer"


def label(
    entity: str = "pin:1",
    source: Source = MODEL,
    enforcement: Enforcement = Enforcement.BLOCK,
    reason: str = "spam",
    created_at: datetime = T0,
    **fields: Any,
) -> Label:
    return Label(entity, source, enforcement, reason, created_at, **fields)


def put(lbl: Label, *, pending: bool = False, decides: bool = False) -> PutOp:
    status = LabelStatus.PENDING if pending else LabelStatus.ACTIVE
    return PutOp(lbl, status=status, decides_pending=decides)


def delete(entity: str, source: Source = MODEL) -> DeleteOp:
    return DeleteOp(entity, source.key)


class Clock:
    """A fake wall clock: each call to `now()` is one second after the previous one."""

    def __init__(self, start: datetime = T0) -> None:
        self.current = start

    def now(self) -> datetime:
        self.current += timedelta(seconds=1)
        return self.current
