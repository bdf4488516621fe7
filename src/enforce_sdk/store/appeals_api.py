"""The appeals endpoints of the v1 API: a product opens an appeal and learns its outcome.

- `POST /v1/appeals` (appellant or admin): open an appeal on an entity, contesting
  some or (by default) all of its active negative labels.
- `GET /v1/appeals/{id}` (appellant or above): one appeal, its state and decision.
- `GET /v1/appeals/events?after=SEQ&limit=N` (appellant or above): the outbox of
  appeal events (opened, upheld, denied) in order, for a notifier that tells users.

Reviewers decide appeals in the console (store/console); an upheld appeal is a
human `allow` label from `appeals/human/<reviewer>`, the resolver's appeal rule.
"""

from __future__ import annotations

from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._errors import InvalidInputError
from ..model.label import Enforcement, format_time
from ..model.records import LabelStatus
from .config import Role, StoreConfig
from .requests import (
    Problem,
    authenticate,
    check_fields,
    check_text,
    entity_param,
    int_param,
    read_body,
    respond,
    source_key_param,
)
from .storage.base import LabelStorage
from .storage.console_records import MAX_STATEMENT, Appeal, AppealEvent


class AppealsHost(Protocol):
    config: StoreConfig
    storage: LabelStorage

    def clock(self) -> Any: ...


def appeal_dict(appeal: Appeal) -> dict[str, Any]:
    return {
        "id": appeal.id, "entity": appeal.entity, "labels": list(appeal.contested),
        "appellant": appeal.appellant, "statement": appeal.statement, "ref": appeal.ref,
        "state": appeal.state, "opened_at": format_time(appeal.opened_at),
        "decided_by": appeal.decided_by,
        "decided_at": None if appeal.decided_at is None else format_time(appeal.decided_at),
        "decision_note": appeal.decision_note,
    }


def event_dict(event: AppealEvent) -> dict[str, Any]:
    return {"seq": event.seq, "event": event.event, "at": format_time(event.at),
            "appeal": appeal_dict(event.appeal)}


def contested_labels(storage: LabelStorage, entity: str, wanted: list[str] | None) -> list[str]:
    """The source keys an appeal contests: `wanted` (each must be an active label of the
    entity), or every active label stricter than allow. Raises Problem naming the problem."""
    active = {s.label.source.key: s.label for s in storage.labels_of(entity)
              if s.status is LabelStatus.ACTIVE}
    if wanted is None:
        found = [k for k, lab in active.items() if lab.enforcement > Enforcement.ALLOW]
        if not found:
            raise Problem(422, "nothing_to_appeal",
                          f"{entity} has no active label stricter than allow", field="entity")
        return found
    for i, key in enumerate(wanted):
        if key not in active:
            raise Problem(422, "nothing_to_appeal", f"{entity} has no active label from {key}",
                          field="labels", index=i)
    return wanted


class AppealsApi:
    def __init__(self, service: AppealsHost) -> None:
        self.service = service
        self.storage = service.storage
        self._tokens = {t.token_sha256: t for t in service.config.tokens}
        self._max_body = service.config.limits.max_body_bytes

    def _appellant(self, request: Request) -> str:
        caller = authenticate(self._tokens, request, Role.APPELLANT)
        if caller.role not in (Role.APPELLANT, Role.ADMIN):
            raise Problem(403, "forbidden", f"token {caller.name!r} has role {caller.role.wire}; "
                          "opening appeals needs an appellant (or admin) token")
        return caller.name

    def _records(self) -> None:
        if not self.storage.keeps_console_records:
            raise Problem(501, "not_supported", str(self.storage.no_console_records()))

    async def open(self, request: Request) -> Response:
        appellant = self._appellant(request)
        self._records()
        body = await read_body(request, self._max_body)
        check_fields(body, {"entity", "statement", "ref", "labels"})
        raw_entity = body.get("entity")
        if not isinstance(raw_entity, str):
            raise Problem(400, "bad_key", "must be an entity key string", field="entity")
        entity = entity_param(raw_entity)
        statement = body.get("statement")
        if not isinstance(statement, str) or not statement.strip():
            raise Problem(400, "bad_request", "a statement (the user's words) is required",
                          field="statement")
        if len(statement) > MAX_STATEMENT:
            raise Problem(413, "too_large", f"{len(statement)} characters, more than "
                          f"{MAX_STATEMENT}", field="statement")
        check_text(statement, "statement")
        ref = body.get("ref")
        if ref is not None and (not isinstance(ref, str) or not ref.strip() or len(ref) > 200):
            raise Problem(400, "bad_request", "must be a non-empty string of at most 200 "
                          "characters", field="ref")
        if ref is not None:
            check_text(ref, "ref")
        raw_labels = body.get("labels")
        wanted = None
        if raw_labels is not None:
            if not isinstance(raw_labels, list) or not raw_labels:
                raise Problem(400, "bad_request", "must be a non-empty list of source keys",
                              field="labels")
            wanted = [source_key_param(k, "labels", i) for i, k in enumerate(raw_labels)]

        def work() -> Appeal:
            contested = contested_labels(self.storage, entity, wanted)
            return self.storage.open_appeal(entity, contested, appellant=appellant,
                                            statement=statement, ref=ref,
                                            now=self.service.clock())

        try:
            appeal = await run_in_threadpool(work)
        except InvalidInputError as exc:
            raise Problem(400, "bad_request", exc.problem, field=exc.field) from exc
        return respond(request, {"appeal": appeal_dict(appeal)}, 201)

    async def get(self, request: Request) -> Response:
        authenticate(self._tokens, request, Role.APPELLANT)
        self._records()
        raw = request.path_params["appeal_id"]
        if not raw.isdigit() or int(raw) < 1 or len(raw) > 18:
            raise Problem(400, "bad_parameter", f"must be an appeal id, got {raw!r}", field="id")
        appeal = await run_in_threadpool(self.storage.appeal, int(raw))
        if appeal is None:
            raise Problem(404, "not_found", f"there is no appeal {raw}")
        return respond(request, {"appeal": appeal_dict(appeal)})

    async def events(self, request: Request) -> Response:
        authenticate(self._tokens, request, Role.APPELLANT)
        self._records()
        after = int_param(request, "after", 0, 0)
        limit = int_param(request, "limit", 100, 1, 1000)
        found = await run_in_threadpool(self.storage.appeal_events, after, limit=limit)
        return respond(request, {"events": [event_dict(e) for e in found],
                                 "next": found[-1].seq if found else after})

    def routes(self) -> list[Route]:
        return [
            Route("/v1/appeals", self.open, methods=["POST"]),
            Route("/v1/appeals/events", self.events, methods=["GET"]),
            Route("/v1/appeals/{appeal_id}", self.get, methods=["GET"]),
        ]


def appeal_routes(service: AppealsHost) -> list[Route]:
    return AppealsApi(service).routes()



