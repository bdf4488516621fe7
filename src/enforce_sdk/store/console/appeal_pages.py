"""The console's appeals: the queue of open appeals, one appeal's page, and deciding it.

Upheld: a human `allow` label from `appeals/human/<reviewer>` (metadata: the
appeal id, the note, the contested sources), which the resolver's appeal rule
lets win over older negatives on every surface that selects it; the label and
the appeal's new state are written in one transaction (LabelStorage.decide_appeal),
so a second reviewer gets a conflict and nothing half-done. Denied: recorded with
the note, labels unchanged. Either way the appeals outbox gets the event
(GET /v1/appeals/events) for the product to tell the user.
"""

from __future__ import annotations

from datetime import datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ...model.label import Source, SourceType
from ...model.records import LabelStatus
from ..appeals_api import contested_labels
from ..requests import entity_param
from ..storage.base import PutOp
from ..storage.console_records import (
    APPEAL_STATES,
    MAX_STATEMENT,
    Appeal,
    AppealConflictError,
)
from . import queue as q
from .answers import SECURITY_HEADERS, Denied
from .host import PageHost
from .settings import ConsoleRole

APPEALS_SYSTEM = "appeals"  # the source system of upheld appeals (weight it in the SDK config)


def upheld_label(appeal: Appeal, reasons: list[str], person: str, note: str,
                 now: datetime) -> dict[str, object]:
    """The allow label (wire form, for the Label Checker) that upholds `appeal`."""
    return {
        "entity": appeal.entity,
        "source": Source(APPEALS_SYSTEM, SourceType.HUMAN, person).to_dict(),
        "enforcement": "allow", "reason": reasons[0] if reasons else "appeal",
        "created_at": now.isoformat(),
        "metadata": {"appeal": appeal.id, "note": note, "contests": ",".join(appeal.contested)},
    }


class AppealPages:
    def __init__(self, console: PageHost) -> None:
        self.c = console
        self.storage = console.storage

    def _need_records(self) -> None:
        if not self.storage.keeps_console_records:
            raise q.ReviewProblem(501, str(self.storage.no_console_records()))

    async def index(self, request: Request) -> Response:
        person = self.c.require(request, ConsoleRole.VIEWER)
        state = request.query_params.get("state", "open")
        if state not in (*APPEAL_STATES, "all"):
            state = "open"
        found = await run_in_threadpool(self.storage.appeals,
                                        state=None if state == "all" else state, limit=500)
        done = {"upheld": "Upheld: an allow label from appeals/human now stands.",
                "denied": "Denied: recorded; the labels are unchanged.",
                "opened": "Appeal opened."}.get(request.query_params.get("done", ""), "")
        return self.c.render(request, "appeals.html", person, appeals=found, state=state,
                             states=APPEAL_STATES, done=done)

    async def show(self, request: Request) -> Response:
        person = self.c.require(request, ConsoleRole.VIEWER)
        appeal = await self._get(request)
        labels = await run_in_threadpool(self.storage.labels_of, appeal.entity)
        contested = [s for s in labels if s.label.source.key in appeal.contested]
        return self.c.render(request, "appeal.html", person, appeal=appeal, contested=contested,
                             may_review=person.may(ConsoleRole.REVIEWER))

    async def _get(self, request: Request) -> Appeal:
        raw = request.path_params["appeal_id"]
        if not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
            raise Denied(400, f"not an appeal id: {raw!r}")
        appeal = await run_in_threadpool(self.storage.appeal, int(raw))
        if appeal is None:
            raise Denied(404, f"there is no appeal {raw}")
        return appeal

    async def decide(self, request: Request) -> Response:
        person = self.c.require(request, ConsoleRole.REVIEWER)
        fields = await self.c.form(request, person)
        self._need_records()
        appeal = await self._get(request)
        action = fields.get("action", "")
        if action not in ("uphold", "deny"):
            raise Denied(400, f"action must be uphold or deny, got {action!r}")
        note = q.check_note(fields.get("note", ""))
        now = self.c.service.clock()
        ops: list[PutOp] = []
        if action == "uphold":
            stored = await run_in_threadpool(self.storage.labels_of, appeal.entity)
            reasons = [s.label.reason for s in stored if s.label.source.key in appeal.contested
                       and s.status is LabelStatus.ACTIVE]
            ops = self.c.service.checker.check([upheld_label(appeal, reasons, person.name, note,
                                                             now)])
        try:
            _, head = await run_in_threadpool(
                lambda: self.storage.decide_appeal(appeal.id, upheld=action == "uphold",
                                                   note=note, ops=ops, actor=person.actor,
                                                   now=now))
        except AppealConflictError as exc:
            raise q.ReviewProblem(409, str(exc)) from exc
        self.c.service.notify_head(head)
        return RedirectResponse(f"/console/appeals?done={'upheld' if ops else 'denied'}", 303,
                                headers=SECURITY_HEADERS)

    async def open(self, request: Request) -> Response:
        """A reviewer opens an appeal for a user (e.g. one who wrote in by mail)."""
        person = self.c.require(request, ConsoleRole.REVIEWER)
        fields = await self.c.form(request, person)
        self._need_records()
        entity = entity_param(fields.get("entity", ""))
        statement = fields.get("statement", "").strip()
        if not statement:
            raise Denied(400, "the appeal needs the user's statement")
        if len(statement) > MAX_STATEMENT:
            raise Denied(400, f"the statement has {len(statement)} characters, more than "
                         f"{MAX_STATEMENT}")
        now = self.c.service.clock()

        def work() -> Appeal:
            contested = contested_labels(self.storage, entity, None)
            return self.storage.open_appeal(entity, contested, appellant=person.actor,
                                            statement=statement, ref=None, now=now)

        appeal = await run_in_threadpool(work)
        return RedirectResponse(f"/console/appeals/{appeal.id}", 303, headers=SECURITY_HEADERS)

    def routes(self) -> list[Route]:
        p = self.c.page
        return [
            Route("/appeals", p(self.index), methods=["GET"]),
            Route("/appeals/open", p(self.open), methods=["POST"]),
            Route("/appeals/{appeal_id}", p(self.show), methods=["GET"]),
            Route("/appeals/{appeal_id}/decide", p(self.decide), methods=["POST"]),
        ]
