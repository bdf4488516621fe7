"""Request handling for the Label Store service: auth, bodies, parameters and error answers.

Every request is checked here, once, at the boundary: the bearer token and its
role, Content-Type, body size (counted while the body streams in), envelope
shape and parameters. Anything wrong becomes a `Problem`, answered as
`{"error": {"code", "message", "field", "index"}}` with its HTTP status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from .._errors import EntityKeyError, InvalidInputError, LabelValidationError
from ..model import wire as _wire
from ..model.keys import canonical_key
from ..model.label import Source
from .config import Role, TokenEntry, hash_token

log = logging.getLogger(__name__)

MAX_INT = 2**63 - 1  # sequence numbers are signed 64-bit in every backend


class Problem(Exception):
    """An error answer: status, machine code, human message, and where the problem is."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        index: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.index = index
        self.extra = dict(extra or {})


def respond(request: Request, payload: dict[str, Any], status: int = 200) -> Response:
    fmt = _wire.format_of(request.headers.get("accept"))
    return Response(_wire.encode(payload, fmt), status_code=status, media_type=_wire.media_type(fmt))


def problem_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    body: dict[str, Any] = {"error": exc.code, "message": exc.message}
    if exc.field is not None:
        body["field"] = exc.field
    if exc.index is not None:
        body["index"] = exc.index
    body.update(exc.extra)
    headers = {"WWW-Authenticate": 'Bearer realm="enforce-sdk"'} if exc.status == 401 else None
    response = respond(request, body, exc.status)
    if headers:
        response.headers.update(headers)
    return response


HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def http_exception_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    message = f"{request.method} {request.url.path}: {exc.detail}"
    response = problem_response(request, Problem(exc.status_code, code, message))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def storage_error_response(request: Request, exc: Exception) -> Response:
    log.error("storage failed on %s %s: %s", request.method, request.url.path, exc)
    message = f"the storage backend failed: {exc}"
    if request.method in ("POST", "DELETE") and request.url.path != "/v1/labels/query":
        message += ("; the write may have been applied before the failure: retry it with the "
                    "same Idempotency-Key to learn what it did")
    problem = Problem(503, "storage_unavailable", message)
    return problem_response(request, problem)


def internal_error_response(request: Request, exc: Exception) -> Response:
    return problem_response(request, Problem(500, "internal", "internal error; see the store log"))


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    role: Role
    token: TokenEntry

    def check_source(self, source: Source, index: int | None = None) -> None:
        """Refuse (403, naming the source) a write this token may not make."""
        if not self.token.may_write_as(source.system, source.type.value):
            allowed = ", ".join(str(g) for g in self.token.sources) or "none"
            raise Problem(403, "forbidden",
                          f"token {self.name!r} may not write as source {source.key} "
                          f"(its sources: {allowed})", field="source", index=index)


def authenticate(tokens: Mapping[str, TokenEntry], request: Request, role: Role) -> Caller:
    """The caller a request's bearer token names, if its role is at least `role`."""
    header = request.headers.get("authorization")
    if not header:
        raise Problem(401, "unauthorized", "missing Authorization: Bearer <token> header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "unauthorized", "Authorization header must be 'Bearer <token>'")
    entry = tokens.get(hash_token(token.strip()))
    if entry is None:
        raise Problem(401, "unauthorized", "unknown token")
    if entry.role < role:
        raise Problem(
            403, "forbidden",
            f"token {entry.name!r} has role {entry.role.wire}; this needs {role.wire}",
        )
    return Caller(entry.name, entry.role, entry)

async def read_body(request: Request, limit: int) -> dict[str, Any]:
    """Read and decode an object body, enforcing Content-Type and size while streaming."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        fmt: _wire.Format = "json"
    elif _wire.format_of(media) == "msgpack":
        fmt = "msgpack"
    else:
        raise Problem(
            415, "unsupported_media_type",
            f"Content-Type {content_type or '(none)'!r} is not supported; "
            "send application/json or application/msgpack",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(413, "too_large", f"body of {declared} bytes exceeds the limit of {limit}",
                       field="body")
    buf = bytearray()
    try:
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > limit:
                raise Problem(413, "too_large", f"body exceeds the limit of {limit} bytes",
                               field="body")
    except ClientDisconnect as exc:
        raise Problem(400, "bad_request", "client disconnected while sending the body") from exc
    try:
        return _wire.decode(bytes(buf), fmt)
    except InvalidInputError as exc:
        raise Problem(400, "malformed_body", exc.problem, field=exc.field) from exc

def check_text(value: str, field: str) -> None:
    """Refuse a string that is not valid Unicode text: a JSON body can carry a lone
    surrogate (`"\\ud800"`), which no UTF-8 storage or answer can hold."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Problem(400, "bad_request", "not valid Unicode text (lone surrogate)",
                      field=field) from None


def check_fields(body: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(str(k) for k in body if k not in allowed and k != "schema")
    if extra:
        raise Problem(400, "bad_request",
                       f"unknown field(s) {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})",
                       field=extra[0])

QUERY_FORMS = ("labels", "compact")


def query_form(request: Request, body: Mapping[str, Any]) -> bool:
    """Whether a query asks for the compact form (model/compact), which is msgpack only."""
    form = body.get("form", "labels")
    if form not in QUERY_FORMS:
        raise Problem(400, "bad_request", f"must be one of {', '.join(QUERY_FORMS)}, "
                      f"got {form!r:.40}", field="form")
    if form == "compact" and _wire.format_of(request.headers.get("accept")) != "msgpack":
        raise Problem(406, "not_acceptable", "the compact form is msgpack only: send "
                      f"Accept: {_wire.MSGPACK_TYPE}", field="form")
    return bool(form == "compact")


def batch_items(body: Mapping[str, Any], name: str, limit: int) -> list[Any]:
    items = body.get(name)
    if items is None:
        raise Problem(400, "bad_request", f"body must have a {name!r} list", field=name)
    if not isinstance(items, list):
        raise Problem(400, "bad_request", f"must be a list, got {type(items).__name__}",
                       field=name)
    if not items:
        raise Problem(400, "bad_request", "must not be empty", field=name)
    if len(items) > limit:
        raise Problem(413, "too_large", f"{len(items)} items, more than the limit of {limit}",
                       field=name)
    return items

def int_param(request: Request, name: str, default: int | None, lo: int,
               clamp: int | None = None) -> int:
    """An integer query parameter >= lo; values above `clamp` are lowered to it (a page
    limit is an upper bound, so a client's larger default still works)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise Problem(400, "bad_parameter", f"query parameter {name!r} is required",
                           field=name)
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Problem(400, "bad_parameter", f"must be an integer, got {raw!r}", field=name) from None
    if value < lo:
        raise Problem(400, "bad_parameter", f"must be >= {lo}, got {value}", field=name)
    if value > MAX_INT:
        raise Problem(400, "bad_parameter", f"must be <= {MAX_INT}, got {raw}", field=name)
    return value if clamp is None else min(value, clamp)

def entity_param(raw: str, field: str = "entity", index: int | None = None) -> str:
    try:
        return canonical_key(raw)
    except EntityKeyError as exc:
        raise Problem(400, "bad_key", exc.problem, field=field, index=index) from exc

def path_entity(request: Request) -> str:
    """The canonical entity key of a /v1/labels/{entity} path, checked as raw bytes first:
    the server decodes percent-escapes that are not UTF-8 to U+FFFD (pin:%FF would read
    as pin:\ufffd), which must be refused, not looked up."""
    raw_path = request.scope.get("raw_path")
    if isinstance(raw_path, bytes):
        try:
            unquote_to_bytes(raw_path).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Problem(400, "bad_key", f"the path is not UTF-8 once percent-decoded "
                          f"(byte {exc.start})", field="entity") from None
    return entity_param(request.path_params["entity"])


def source_key_param(raw: object, field: str = "source", index: int | None = None) -> str:
    if not isinstance(raw, str):
        raise Problem(400, "bad_request",
                       f"must be a string system/type/name, got {type(raw).__name__}",
                       field=field, index=index)
    try:
        return Source.from_key(raw).key
    except LabelValidationError as exc:
        raise Problem(400, "bad_request", exc.problem, field=field, index=index) from exc


def wait_param(raw: str | None, max_wait: float) -> float:
    if raw is None or raw == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise Problem(400, "bad_parameter", f"must be a number of seconds, got {raw!r}",
                       field="wait") from None
    if not 0 <= value < float("inf"):
        raise Problem(400, "bad_parameter", f"must be a finite number >= 0, got {raw!r}",
                       field="wait")
    return min(value, max_wait)
