"""Mass actions: select labels by a query, count and export them, retract them all as a job.

A `LabelQuery` (source system / type / name, reason, enforcement, status,
created between) is parsed from plain strings (a form, query parameters, a
JSON body) once, naming the field of any problem. Matching scans the storage
in (entity, source) order (LabelStorage.scan_labels), a page at a time.

A retraction is a `MassJob`: it walks the matches in key order and retracts
them in chunks, each chunk one write through the store's write path (audited
with the job's actor), keyed by the job id and the chunk's first key so a
chunk is applied at most once; after each chunk the job's cursor is saved. A
job interrupted (the process stopped, the storage failed) resumes from its
cursor: nothing is retracted twice and nothing is skipped.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from starlette.concurrency import run_in_threadpool

from .._errors import LabelValidationError
from ..model.label import Enforcement, Label, SourceType, parse_time
from ..model.records import LabelStatus, StoredLabel
from .storage.base import AppliedBatch, DeleteOp, LabelStorage, WriteKey, WriteOp
from .storage.console_records import MassJob

SCAN_PAGE = 1000
CHUNK = 200  # labels per retraction write
SAMPLE = 20
QUERY_FIELDS = ("system", "type", "name", "reason", "enforcement", "status", "created_after",
                "created_before")


class QueryError(ValueError):
    """A query field that cannot be read; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class LabelQuery:
    system: str | None = None
    type: SourceType | None = None
    name: str | None = None
    reason: str | None = None
    enforcement: Enforcement | None = None
    status: LabelStatus | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, object]) -> LabelQuery:
        """From strings (blank = any); unknown fields and bad values raise QueryError."""
        extra = sorted(str(k) for k in raw if k not in QUERY_FIELDS)
        if extra:
            raise QueryError(extra[0], f"unknown field (fields: {', '.join(QUERY_FIELDS)})")
        values: dict[str, str] = {}
        for key, value in raw.items():
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                raise QueryError(key, f"must be a string, got {type(value).__name__}")
            if not _is_text(value):
                raise QueryError(key, "not valid Unicode text (lone surrogate)")
            values[key] = value.strip()
        try:
            return cls(
                system=values.get("system"),
                type=SourceType.parse(values["type"], field="type") if "type" in values else None,
                name=values.get("name"),
                reason=values.get("reason"),
                enforcement=(Enforcement.parse(values["enforcement"])
                             if "enforcement" in values else None),
                status=_status(values.get("status")),
                created_after=_time(values, "created_after"),
                created_before=_time(values, "created_before"),
            )
        except LabelValidationError as exc:
            raise QueryError(exc.field or "query", exc.problem) from None

    @property
    def empty(self) -> bool:
        return all(getattr(self, f) is None for f in QUERY_FIELDS)

    def matches(self, stored: StoredLabel) -> bool:
        lab = stored.label
        src = lab.source
        return ((self.system is None or src.system == self.system)
                and (self.type is None or src.type is self.type)
                and (self.name is None or src.name == self.name)
                and (self.reason is None or lab.reason == self.reason)
                and (self.enforcement is None or lab.enforcement is self.enforcement)
                and (self.status is None or stored.status is self.status)
                and (self.created_after is None or lab.created_at >= self.created_after)
                and (self.created_before is None or lab.created_at < self.created_before))

    def to_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in QUERY_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            out[name] = (value.isoformat() if isinstance(value, datetime)
                         else value.wire if isinstance(value, Enforcement) else str(value))
        return out


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _status(raw: str | None) -> LabelStatus | None:
    if raw is None:
        return None
    try:
        return LabelStatus(raw.lower())
    except ValueError:
        raise QueryError("status", f"must be active or pending, got {raw!r}") from None


def _time(values: Mapping[str, str], key: str) -> datetime | None:
    return parse_time(values[key], key) if key in values else None


def matching(storage: LabelStorage, query: LabelQuery,
             after: tuple[str, str] | None = None) -> Iterator[StoredLabel]:
    """Every stored label the query matches, in key order after `after`."""
    while True:
        page = storage.scan_labels(after=after, limit=SCAN_PAGE)
        yield from (s for s in page if query.matches(s))
        if len(page) < SCAN_PAGE:
            return
        after = page[-1].label.key


@dataclass
class Selection:
    total: int = 0
    by_source: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    by_enforcement: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    sample: list[StoredLabel] = field(default_factory=list)


def select(storage: LabelStorage, query: LabelQuery) -> Selection:
    """Counts of what the query matches, and the first few matches."""
    out = Selection()
    for stored in matching(storage, query):
        out.total += 1
        out.by_source[stored.label.source.key] += 1
        out.by_reason[stored.label.reason] += 1
        out.by_enforcement[stored.label.enforcement.wire] += 1
        out.by_status[stored.status.value] += 1
        if len(out.sample) < SAMPLE:
            out.sample.append(stored)
    return out


def export_line(label: Label) -> str:
    """One JSONL line in the form `enforce-sdk labels import` reads."""
    return json.dumps(label.to_dict(), separators=(",", ":"), ensure_ascii=False) + "\n"


def new_job(query: LabelQuery, reason: str, actor: str, now: datetime) -> MassJob:
    return MassJob(secrets.token_hex(8), actor, json.dumps(query.to_dict(), sort_keys=True),
                   reason, "running", None, 0, 0, now, now)


Write = Callable[[list[WriteOp], str, WriteKey], Awaitable[AppliedBatch]]


async def run_retract(job: MassJob, storage: LabelStorage, write: Write,
                      clock: Callable[[], datetime]) -> MassJob:
    """Retract what the job's query matches from its cursor on; saves progress per chunk.

    `write` is the store's write path (LabelStoreService.write). Returns the job as it
    ended (done, or failed with the error).
    """
    run_sync = run_in_threadpool
    query = LabelQuery.parse(json.loads(job.query))
    job = replace(job, state="running", error=None, updated_at=clock())
    await run_sync(storage.save_job, job)
    try:
        while True:
            chunk = await run_sync(_next_chunk, storage, query, job.cursor)
            if not chunk:
                break
            ops: list[WriteOp] = [DeleteOp(*s.label.key) for s in chunk]
            digest = hashlib.sha256(json.dumps([s.label.key for s in chunk]).encode()).hexdigest()
            # the same chunk again (a resume after a lost save) replays; another one applies
            key = WriteKey(f"mass-retract\x00{job.id}\x00{digest}", digest,
                           clock() + timedelta(days=30))
            applied = await write(ops, job.actor, key)
            retracted = sum(o.value == "deleted" for o in applied.outcomes)
            job = replace(job, cursor=chunk[-1].label.key, matched=job.matched + len(chunk),
                          retracted=job.retracted + retracted, updated_at=clock())
            await run_sync(storage.save_job, job)
    except Exception as exc:
        job = replace(job, state="failed", error=str(exc) or type(exc).__name__,
                      updated_at=clock())
        await run_sync(storage.save_job, job)
        return job
    job = replace(job, state="done", updated_at=clock())
    await run_sync(storage.save_job, job)
    return job


def _next_chunk(storage: LabelStorage, query: LabelQuery,
                cursor: tuple[str, str] | None) -> list[StoredLabel]:
    out: list[StoredLabel] = []
    for stored in matching(storage, query, cursor):
        out.append(stored)
        if len(out) >= CHUNK:
            break
    return out
