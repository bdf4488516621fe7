"""The console's mass actions: query labels with counts, export them, retract them as a job.

Anyone signed in may query and export; retracting needs an admin, a reason, and
a dry run first: the confirm form carries the count the dry run showed, and the
job runs only if the query still matches that many (else the admin sees the new
count). The job runs in the background (store/mass.run_retract, each chunk an
audited write as `console:<admin> job:<id>`); its page shows progress, and a job
that failed or was interrupted resumes from its cursor.
"""

from __future__ import annotations

import asyncio
import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from ..mass import QUERY_FIELDS, LabelQuery, QueryError, new_job, run_retract, select
from ..mass_api import MAX_REASON, export_stream
from ..storage.base import AppliedBatch, WriteKey, WriteOp
from ..storage.console_records import MassJob
from .answers import SECURITY_HEADERS, Denied
from .host import PageHost
from .settings import ConsoleRole


class MassPages:
    def __init__(self, console: PageHost) -> None:
        self.c = console
        self.storage = console.storage
        self._running: dict[str, asyncio.Task[MassJob]] = {}  # job id -> task, this process

    def _query(self, raw: dict[str, str]) -> tuple[LabelQuery, dict[str, str]]:
        fields = {k: raw.get(k, "").strip() for k in QUERY_FIELDS}
        try:
            return LabelQuery.parse(fields), fields
        except QueryError as exc:
            raise Denied(400, f"the query cannot be read: {exc}") from None

    async def index(self, request: Request) -> Response:
        person = self.c.require(request, ConsoleRole.VIEWER)
        params = {k: v for k, v in request.query_params.items() if k in QUERY_FIELDS}
        query, fields = self._query(params)
        found = None
        if params:
            found = await run_in_threadpool(select, self.storage, query)
        jobs = await run_in_threadpool(lambda: self.storage.jobs(limit=20))
        return self.c.render(request, "mass.html", person, fields=fields, found=found,
                             export=request.url.query, jobs=jobs, dry=False, reason="",
                             changed=False,
                             may_retract=person.may(ConsoleRole.ADMIN))

    async def export(self, request: Request) -> Response:
        self.c.require(request, ConsoleRole.VIEWER)
        query, _ = self._query({k: v for k, v in request.query_params.items()
                                if k in QUERY_FIELDS})
        headers = {**SECURITY_HEADERS,
                   "Content-Disposition": 'attachment; filename="labels.jsonl"'}
        return StreamingResponse(export_stream(self.storage, query),
                                 media_type="application/x-ndjson", headers=headers)

    async def retract(self, request: Request) -> Response:
        person = self.c.require(request, ConsoleRole.ADMIN)
        form = await self.c.form(request, person)
        query, fields = self._query(form)
        if query.empty:
            raise Denied(400, "an empty query matches every label: name at least one field")
        reason = form.get("retract_reason", "").strip()
        if not reason:
            raise Denied(400, "a reason is required: say why these labels are retracted")
        if len(reason) > MAX_REASON:
            raise Denied(400, f"the reason has {len(reason)} characters, more than {MAX_REASON}")
        found = await run_in_threadpool(select, self.storage, query)
        expected = form.get("expected", "")
        if form.get("step") != "run" or expected != str(found.total):
            # the dry run (again, if the matches changed since the admin saw them)
            changed = form.get("step") == "run"
            return self.c.render(request, "mass.html", person, fields=fields, found=found,
                                 export="", jobs=[], dry=True, reason=reason, changed=changed,
                                 may_retract=True)
        job = new_job(query, reason, person.actor, self.c.service.clock())
        await run_in_threadpool(self.storage.save_job, job)
        self._start(job)
        return RedirectResponse(f"/console/mass/jobs/{job.id}", 303, headers=SECURITY_HEADERS)

    def _start(self, job: MassJob) -> None:
        service = self.c.service

        async def write(ops: list[WriteOp], actor: str, key: WriteKey) -> AppliedBatch:
            return await service.write(ops, f"{actor} job:{job.id}", key)

        task = asyncio.get_running_loop().create_task(
            run_retract(job, self.storage, write, service.clock), name=f"mass-retract-{job.id}")
        self._running[job.id] = task
        task.add_done_callback(lambda _t: self._running.pop(job.id, None))

    async def job(self, request: Request) -> Response:
        person = self.c.require(request, ConsoleRole.VIEWER)
        job = await self._get(request)
        return self.c.render(request, "job.html", person, job=job,
                             query=json.loads(job.query), running=job.id in self._running,
                             may_retract=person.may(ConsoleRole.ADMIN))

    async def resume(self, request: Request) -> Response:
        person = self.c.require(request, ConsoleRole.ADMIN)
        await self.c.form(request, person)
        job = await self._get(request)
        if job.state != "done" and job.id not in self._running:
            self._start(job)
        return RedirectResponse(f"/console/mass/jobs/{job.id}", 303, headers=SECURITY_HEADERS)

    async def _get(self, request: Request) -> MassJob:
        raw = request.path_params["job_id"]
        job = await run_in_threadpool(self.storage.job, raw) if 0 < len(raw) <= 64 else None
        if job is None:
            raise Denied(404, f"there is no job {raw!r}")
        return job

    def routes(self) -> list[Route]:
        p = self.c.page
        return [
            Route("/mass", p(self.index), methods=["GET"]),
            Route("/mass/export", p(self.export), methods=["GET"]),
            Route("/mass/retract", p(self.retract), methods=["POST"]),
            Route("/mass/jobs/{job_id}", p(self.job), methods=["GET"]),
            Route("/mass/jobs/{job_id}/resume", p(self.resume), methods=["POST"]),
        ]
