"""The console's pages under /console/: login, Lookup, the entity page and the review queue.

Every page is rendered server-side (Jinja2, autoescaped: label metadata is
producer-written text and shows as text) and works without JavaScript. Every
answer carries the console's security headers (a CSP without inline script,
frame-ancestors 'none'); every form carries the session's CSRF token and every
POST checks it before anything else.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from ..._errors import StorageError, WriteKeyReusedError
from ...model.label import format_time
from ..checker import LabelRejectedError
from ..requests import Problem, path_entity
from . import queue as q
from .answers import SECURITY_HEADERS, Denied
from .appeal_pages import AppealPages
from .auth import COOKIE_PATH, PRE_SESSION_COOKIE, SESSION_COOKIE, ConsoleAuth, Person
from .host import ConsoleHost, Handler
from .lookup import SearchError, entity_page, parse_links, parse_search
from .mass_pages import MassPages
from .settings import ConsoleRole

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 64 * 1024
DONE_MESSAGES = {  # ?done=... after a POST/redirect/GET: fixed texts, nothing reflected
    "approve": "Approved: a human label confirms it.",
    "reject": "Rejected: the held label was retracted.",
    "escalate": "Escalated: the label stays held, marked for a senior reviewer.",
}


class Console:
    """The console's request handlers, bound to one Label Store service."""

    def __init__(self, service: ConsoleHost) -> None:
        self.service = service
        self.storage = service.storage
        self.auth = ConsoleAuth(service.config.console)
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("enforce_sdk.store.console", "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined)
        self.env.filters["time"] = lambda t: "" if t is None else format_time(t)
        self.env.filters["q"] = lambda s: quote(str(s), safe=":")
        self._css = resources.files("enforce_sdk.store.console").joinpath(
            "static/console.css").read_bytes()

    # -- plumbing --------------------------------------------------------------------

    def render(self, request: Request, template: str, person: Person | None,
               http_status: int = 200, **context: Any) -> HTMLResponse:
        csrf = None if person is None else self.auth.csrf_token(person.nonce)
        html = self.env.get_template(template).render(person=person, csrf=csrf, **context)
        return HTMLResponse(html, status_code=http_status, headers=SECURITY_HEADERS)

    def person(self, request: Request) -> Person | None:
        client = request.client.host if request.client else None
        headers = {k.lower(): v for k, v in request.headers.items()}
        return self.auth.person(request.cookies.get(SESSION_COOKIE), headers, client)

    def require(self, request: Request, role: ConsoleRole) -> Person:
        person = self.person(request)
        if person is None:
            raise Denied(401, "sign in to use the console")
        if not person.may(role):
            raise Denied(403, f"{person.name} is a {person.role.wire}; this needs a {role.wire}")
        return person

    async def form(self, request: Request, person: Person | None,
                   nonce: str | None = None) -> dict[str, str]:
        """The POSTed form, after its CSRF token is checked (before anything else is)."""
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            raise Denied(415, f"send the form as application/x-www-form-urlencoded, not {media!r}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise Denied(413, f"the form is larger than {MAX_FORM_BYTES} bytes")
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20,
                              strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError) as exc:
            raise Denied(400, f"the form cannot be read: {exc}") from None
        fields: dict[str, str] = {}
        for name, value in pairs:
            if name in fields:
                raise Denied(400, f"the form has field {name!r} twice")
            fields[name] = value
        check = nonce if nonce is not None else (None if person is None else person.nonce)
        if check is None or not self.auth.csrf_ok(check, fields.get("csrf")):
            raise Denied(403, "the form's CSRF token is missing or stale: reload the page "
                         "and submit again")
        return fields

    def page(self, handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except Denied as exc:
                if exc.status == 401 and request.method == "GET":
                    target = request.url.path + (f"?{request.url.query}" if request.url.query
                                                 else "")
                    return RedirectResponse(f"/console/login?{urlencode({'next': target})}",
                                            303, headers=SECURITY_HEADERS)
                return self.render(request, "error.html", self.person(request), exc.status,
                                   status=exc.status, message=exc.message)
            except LabelRejectedError as exc:
                return self.render(request, "error.html", self.person(request), 400,
                                   status=400, message=f"the label was refused: {exc}")
            except q.ReviewProblem as exc:
                return self.render(request, "error.html", self.person(request), exc.status,
                                   status=exc.status, message=exc.message)
            except Problem as exc:
                return self.render(request, "error.html", self.person(request), exc.status,
                                   status=exc.status, message=exc.message)
            except StorageError as exc:
                log.error("console %s %s: storage failed: %s", request.method,
                          request.url.path, exc)
                return self.render(request, "error.html", self.person(request), 503,
                                   status=503, message=f"the storage backend failed: {exc}")
        return run

    # -- login -----------------------------------------------------------------------

    async def login_form(self, request: Request, *, status: int = 200,
                         message: str = "") -> Response:
        cookie, nonce = self.auth.new_pre_session()
        response = self.render(request, "login.html", None, status, message=message,
                               login_csrf=self.auth.csrf_token(nonce),
                               next=_safe_next(request.query_params.get("next")))
        response.set_cookie(PRE_SESSION_COOKIE, cookie, max_age=3600, path=COOKIE_PATH,
                            httponly=True, samesite="strict", secure=self._secure(request))
        return response

    async def login(self, request: Request) -> Response:
        nonce = self.auth.pre_session_nonce(request.cookies.get(PRE_SESSION_COOKIE))
        if nonce is None:
            return await self.login_form(request, status=403, message="the login form expired "
                                         "(or cookies are off): try again")
        fields = await self.form(request, None, nonce)
        name, password = fields.get("name", ""), fields.get("password", "")
        user = await run_in_threadpool(self.auth.check_password, name, password)
        if user is None:
            log.warning("console login refused for %r from %s", name[:64],
                        request.client.host if request.client else "?")
            return await self.login_form(request, status=401,
                                         message="unknown user or wrong password")
        log.info("console login: %s (%s)", user.name, user.role.wire)
        response = RedirectResponse(_safe_next(fields.get("next")), 303, headers=SECURITY_HEADERS)
        response.set_cookie(SESSION_COOKIE, self.auth.new_session(user),
                            max_age=int(self.auth.settings.session_seconds), path=COOKIE_PATH,
                            httponly=True, samesite="strict", secure=self._secure(request))
        response.delete_cookie(PRE_SESSION_COOKIE, path=COOKIE_PATH)
        return response

    async def logout(self, request: Request) -> Response:
        person = self.require(request, ConsoleRole.VIEWER)
        await self.form(request, person)
        response = RedirectResponse("/console/login", 303, headers=SECURITY_HEADERS)
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
        return response

    def _secure(self, request: Request) -> bool:
        return self.auth.settings.secure_cookies or request.url.scheme == "https"

    # -- lookup ----------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/console/lookup", 303, headers=SECURITY_HEADERS)

    async def lookup(self, request: Request) -> Response:
        person = self.require(request, ConsoleRole.VIEWER)
        text = request.query_params.get("q", "")
        links = {k: v for k, v in request.query_params.items() if k in ("image", "domain",
                                                                         "creator", "board") and v}
        if not text:
            return self.render(request, "lookup.html", person, query="", candidates=[],
                               message="")
        try:
            candidates = parse_search(text)
        except SearchError as exc:
            return self.render(request, "lookup.html", person, 400, query=text, candidates=[],
                               message=str(exc))
        if len(candidates) == 1:
            target = f"/console/entity/{quote(candidates[0], safe=':')}"
            if links:
                target += "?" + urlencode(links)
            return RedirectResponse(target, 303, headers=SECURITY_HEADERS)
        return self.render(request, "lookup.html", person, query=text, candidates=candidates,
                           message="")

    async def entity(self, request: Request) -> Response:
        person = self.require(request, ConsoleRole.VIEWER)
        entity = path_entity(request)
        related, problems = parse_links(request.query_params)
        before_raw = request.query_params.get("before")
        before = None
        if before_raw:
            if not before_raw.isdigit() or int(before_raw) < 1:
                raise Denied(400, f"before must be a sequence number, got {before_raw!r}")
            before = int(before_raw)
        now = self.service.clock()
        view = self.service.live_policy.current()
        data = await run_in_threadpool(entity_page, self.storage, view, entity, related,
                                       now=now, before=before)
        links = urlencode(related)
        return self.render(request, "entity.html", person, page=data, problems=problems,
                           links=links, now=now, may_review=person.may(ConsoleRole.REVIEWER))

    # -- review queue ----------------------------------------------------------------

    async def queue(self, request: Request) -> Response:
        person = self.require(request, ConsoleRole.VIEWER)
        reason = request.query_params.get("reason", "").strip()
        source = request.query_params.get("source", "").strip()
        items, truncated = await run_in_threadpool(q.held_labels, self.storage, reason=reason,
                                                   source=source)
        done = DONE_MESSAGES.get(request.query_params.get("done", ""), "")
        return self.render(request, "queue.html", person, items=items, truncated=truncated,
                           reason=reason, source=source, done=done,
                           may_review=person.may(ConsoleRole.REVIEWER),
                           queue_limit=q.QUEUE_LIMIT)

    async def decide(self, request: Request) -> Response:
        person = self.require(request, ConsoleRole.REVIEWER)
        fields = await self.form(request, person)
        action = fields.get("action", "")
        if action not in ("approve", "reject", "escalate"):
            raise Denied(400, f"action must be approve, reject or escalate, got {action!r}")
        entity, source_key = fields.get("entity", ""), fields.get("source", "")
        seq_raw = fields.get("seq", "")
        if not seq_raw.isdigit():
            raise Denied(400, f"seq must be the label's version number, got {seq_raw!r}")
        seq = int(seq_raw)
        note = q.check_note(fields.get("note", ""))
        now = self.service.clock()
        held = await run_in_threadpool(q.find_held, self.storage, entity, source_key, seq)
        if action == "escalate":
            await run_in_threadpool(q.record, self.storage, held, action, person.actor, note, now)
        else:
            if not self.storage.keeps_console_records:
                await run_in_threadpool(q.record, self.storage, held, action, person.actor,
                                        note, now)  # answers 501 before anything is written
            ops = (self.service.checker.check([q.approval(held.label, person.name, note, now)])
                   if action == "approve" else [q.retraction(held.label)])
            key = q.review_key(entity, source_key, seq, action, person.actor, note, now)
            try:
                applied = await self.service.write(list(ops), person.actor, key)
            except Problem as exc:  # the key was used by another decision
                if isinstance(exc.__cause__, WriteKeyReusedError):
                    raise await run_in_threadpool(q.reused, exc.__cause__, self.storage, entity,
                                                  source_key, seq) from exc
                raise
            if not applied.replayed:
                await run_in_threadpool(q.record, self.storage, held, action, person.actor,
                                        note, now)
        log.info("console review: %s %s %s %s", person.actor, action, entity, source_key)
        back = fields.get("back", "")
        target = back if back.startswith("/console/") and "//" not in back else "/console/queue"
        sep = "&" if "?" in target else "?"
        return RedirectResponse(f"{target}{sep}done={action}", 303, headers=SECURITY_HEADERS)

    async def css(self, request: Request) -> Response:
        headers = {**SECURITY_HEADERS, "Cache-Control": "max-age=300"}
        return Response(self._css, media_type="text/css", headers=headers)

    def routes(self) -> list[Route]:
        p = self.page
        return [
            Route("/", p(self.home), methods=["GET"]),
            Route("/login", p(self.login_form), methods=["GET"]),
            Route("/login", p(self.login), methods=["POST"]),
            Route("/logout", p(self.logout), methods=["POST"]),
            Route("/lookup", p(self.lookup), methods=["GET"]),
            Route("/entity/{entity:path}", p(self.entity), methods=["GET"]),
            Route("/queue", p(self.queue), methods=["GET"]),
            Route("/queue/decide", p(self.decide), methods=["POST"]),
            Route("/static/console.css", self.css, methods=["GET"]),
            *AppealPages(self).routes(),
            *MassPages(self).routes(),
        ]


def _safe_next(raw: str | None) -> str:
    """A redirect target after login: a console path only (no open redirect)."""
    if raw and raw.startswith("/console/") and "//" not in raw and "\\" not in raw:
        return raw
    return "/console/lookup"


def console_routes(service: ConsoleHost) -> Mount:
    """The console, mounted at /console."""
    return Mount("/console", routes=Console(service).routes())


