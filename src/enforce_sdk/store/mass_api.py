"""The mass-action endpoints of the v1 API (store/mass): select, export, retract by query.

- `POST /v1/labels/select` (reader): counts of what a query matches, and a sample.
- `GET /v1/labels/export?FIELD=VALUE...` (reader): every match as JSONL, the form
  `enforce-sdk labels import` reads.
- `POST /v1/jobs/retract` (admin): `{"where": {...}, "reason": "...", "dry_run": true}`
  answers the selection; without dry_run it retracts every match as one job (audited
  as `<token> job:<id>`) and answers the job.
- `GET /v1/jobs/{id}` (reader), `POST /v1/jobs/{id}/resume` (admin): a job's state;
  resume an interrupted one from its cursor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..model.label import format_time
from ..model.records import StoredLabel
from .config import Role, StoreConfig
from .mass import (
    SCAN_PAGE,
    LabelQuery,
    QueryError,
    Selection,
    export_line,
    new_job,
    run_retract,
    select,
)
from .requests import Problem, authenticate, check_fields, check_text, read_body, respond
from .storage.base import AppliedBatch, LabelStorage, WriteKey, WriteOp
from .storage.console_records import MassJob

MAX_REASON = 500


class MassHost(Protocol):
    config: StoreConfig
    storage: LabelStorage

    def clock(self) -> datetime: ...

    async def write(self, ops: list[WriteOp], actor: str,
                    key: WriteKey | None = None) -> AppliedBatch: ...


def parse_query(raw: object, *, allow_empty: bool = True) -> LabelQuery:
    if not isinstance(raw, Mapping):
        raise Problem(400, "bad_request", "must be an object of query fields", field="where")
    try:
        query = LabelQuery.parse(raw)
    except QueryError as exc:
        raise Problem(400, "bad_query", str(exc), field=exc.field) from exc
    if not allow_empty and query.empty:
        raise Problem(400, "bad_query", "an empty query matches every label: name at least "
                      "one field", field="where")
    return query


def check_reason(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise Problem(400, "bad_request", "a reason is required (it is kept with the job)",
                      field="reason")
    if len(raw) > MAX_REASON:
        raise Problem(400, "bad_request", f"{len(raw)} characters, more than {MAX_REASON}",
                      field="reason")
    check_text(raw, "reason")
    return raw.strip()


def selection_dict(found: Selection) -> dict[str, Any]:
    return {"total": found.total, "by_source": dict(found.by_source),
            "by_reason": dict(found.by_reason), "by_enforcement": dict(found.by_enforcement),
            "by_status": dict(found.by_status),
            "sample": [{"label": s.label.to_dict(), "status": s.status.value}
                       for s in found.sample]}


def job_dict(job: MassJob) -> dict[str, Any]:
    return {"id": job.id, "actor": job.actor, "query": job.query, "reason": job.reason,
            "state": job.state, "matched": job.matched, "retracted": job.retracted,
            "cursor": None if job.cursor is None else "|".join(job.cursor),
            "created_at": format_time(job.created_at), "updated_at": format_time(job.updated_at),
            "error": job.error}


async def export_stream(storage: LabelStorage, query: LabelQuery) -> AsyncIterator[bytes]:
    after: tuple[str, str] | None = None
    while True:
        page: list[StoredLabel] = await run_in_threadpool(storage.scan_labels, after=after,
                                                          limit=SCAN_PAGE)
        lines = "".join(export_line(s.label) for s in page if query.matches(s))
        if lines:
            yield lines.encode("utf-8")
        if len(page) < SCAN_PAGE:
            return
        after = page[-1].label.key


class MassApi:
    def __init__(self, service: MassHost) -> None:
        self.service = service
        self.storage = service.storage
        self._tokens = {t.token_sha256: t for t in service.config.tokens}
        self._max_body = service.config.limits.max_body_bytes

    async def select(self, request: Request) -> Response:
        authenticate(self._tokens, request, Role.READER)
        body = await read_body(request, self._max_body)
        check_fields(body, {"where"})
        query = parse_query(body.get("where", {}))
        found = await run_in_threadpool(select, self.storage, query)
        return respond(request, selection_dict(found))

    async def export(self, request: Request) -> Response:
        authenticate(self._tokens, request, Role.READER)
        query = parse_query(dict(request.query_params))
        return StreamingResponse(export_stream(self.storage, query),
                                 media_type="application/x-ndjson")

    async def retract(self, request: Request) -> Response:
        caller = authenticate(self._tokens, request, Role.ADMIN)
        body = await read_body(request, self._max_body)
        check_fields(body, {"where", "reason", "dry_run"})
        query = parse_query(body.get("where"), allow_empty=False)
        reason = check_reason(body.get("reason"))
        dry = body.get("dry_run", False)
        if not isinstance(dry, bool):
            raise Problem(400, "bad_request", "must be true or false", field="dry_run")
        if dry:
            found = await run_in_threadpool(select, self.storage, query)
            return respond(request, {"dry_run": True, **selection_dict(found)})
        job = new_job(query, reason, caller.name, self.service.clock())
        job = await run_retract(job, self.storage, self._writer(job), self.service.clock)
        return respond(request, {"job": job_dict(job)})

    def _writer(self, job: MassJob) -> Any:
        async def write(ops: list[WriteOp], actor: str, key: WriteKey) -> AppliedBatch:
            return await self.service.write(ops, f"{actor} job:{job.id}", key)
        return write

    async def _job(self, request: Request) -> MassJob:
        raw = request.path_params["job_id"]
        job = await run_in_threadpool(self.storage.job, raw) if len(raw) <= 64 else None
        if job is None:
            raise Problem(404, "not_found", f"there is no job {raw!r}")
        return job

    async def get_job(self, request: Request) -> Response:
        authenticate(self._tokens, request, Role.READER)
        return respond(request, {"job": job_dict(await self._job(request))})

    async def resume(self, request: Request) -> Response:
        authenticate(self._tokens, request, Role.ADMIN)
        job = await self._job(request)
        if job.state == "done":
            return respond(request, {"job": job_dict(job)})
        job = await run_retract(job, self.storage, self._writer(job), self.service.clock)
        return respond(request, {"job": job_dict(job)})

    def routes(self) -> list[Route]:
        return [
            Route("/v1/labels/select", self.select, methods=["POST"]),
            Route("/v1/labels/export", self.export, methods=["GET"]),
            Route("/v1/jobs/retract", self.retract, methods=["POST"]),
            Route("/v1/jobs/{job_id}", self.get_job, methods=["GET"]),
            Route("/v1/jobs/{job_id}/resume", self.resume, methods=["POST"]),
        ]
