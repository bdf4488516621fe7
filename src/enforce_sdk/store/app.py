"""The Label Store HTTP service (Starlette): the v1 API over a LabelStorage.

Every request is validated here, once, at the boundary: auth, Content-Type,
body size (counted while the body streams in), envelope shape, parameters,
then the Label Checker for labels. Storage calls block, so they run in the
thread pool; the event loop only parses, encodes and waits.

The change feed long-polls: a waiter sleeps until the newest sequence number
known to this process passes its position. Writes through this process wake
waiters at once; a shared poller re-reads the storage head every
`feed.poll_interval_seconds` while anyone waits, so writes made by other store
processes in front of the same backend wake them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from .._errors import EntityKeyError, InvalidInputError, LabelValidationError, StorageError
from ..model import wire as _wire
from ..model.keys import canonical_key
from ..model.label import Source
from ..model.records import AuditEvent, ChangePage, LabelStatus, Outcome, StoredLabel
from .bloom_snapshot import BloomSnapshot, BloomSnapshots
from .checker import LabelChecker, LabelRejectedError
from .config import Role, StoreConfig, TokenEntry, hash_token
from .head_watcher import HeadWatcher
from .storage.base import DeleteOp, LabelStorage, WriteOp

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
_DEFAULT_HISTORY_LIMIT = 50
_DEFAULT_PENDING_LIMIT = 100
_MAX_INT = 2**63 - 1  # sequence numbers are signed 64-bit in every backend


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Problem(Exception):
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


def _respond(request: Request, payload: dict[str, Any], status: int = 200) -> Response:
    fmt = _wire.format_of(request.headers.get("accept"))
    return Response(_wire.encode(payload, fmt), status_code=status, media_type=_wire.media_type(fmt))


def _problem_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _Problem)
    body: dict[str, Any] = {"error": exc.code, "message": exc.message}
    if exc.field is not None:
        body["field"] = exc.field
    if exc.index is not None:
        body["index"] = exc.index
    body.update(exc.extra)
    headers = {"WWW-Authenticate": 'Bearer realm="enforce-sdk"'} if exc.status == 401 else None
    response = _respond(request, body, exc.status)
    if headers:
        response.headers.update(headers)
    return response


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def _http_exception_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = f"{request.method} {request.url.path}: {exc.detail}"
    response = _problem_response(request, _Problem(exc.status_code, code, message))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def _storage_error_response(request: Request, exc: Exception) -> Response:
    log.error("storage failed on %s %s: %s", request.method, request.url.path, exc)
    problem = _Problem(503, "storage_unavailable", f"the storage backend failed: {exc}")
    return _problem_response(request, problem)


def _internal_error_response(request: Request, exc: Exception) -> Response:
    return _problem_response(request, _Problem(500, "internal", "internal error; see the store log"))


@dataclass(frozen=True, slots=True)
class _Caller:
    name: str
    role: Role


class LabelStoreService:
    """Request handlers of the v1 API, bound to one config and one storage."""

    def __init__(self, config: StoreConfig, storage: LabelStorage, *, clock: Clock = _utc_now):
        self.config = config
        self.storage = storage
        self.clock = clock
        self.checker = LabelChecker.from_config(config)
        self.limits = config.limits
        self._tokens: dict[str, TokenEntry] = {t.token_sha256: t for t in config.tokens}
        self.watcher = HeadWatcher(self._read_head, config.feed.poll_interval_seconds)
        self.bloom = BloomSnapshots(storage, config.bloom.fp_rate)

    async def _read_head(self) -> int:
        return await run_in_threadpool(self.storage.head_seq)

    # -- request plumbing ------------------------------------------------------------------

    def _auth(self, request: Request, role: Role) -> _Caller:
        header = request.headers.get("authorization")
        if not header:
            raise _Problem(401, "unauthorized", "missing Authorization: Bearer <token> header")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Problem(401, "unauthorized", "Authorization header must be 'Bearer <token>'")
        entry = self._tokens.get(hash_token(token.strip()))
        if entry is None:
            raise _Problem(401, "unauthorized", "unknown token")
        if entry.role < role:
            raise _Problem(
                403, "forbidden",
                f"token {entry.name!r} has role {entry.role.wire}; this needs {role.wire}",
            )
        return _Caller(entry.name, entry.role)

    async def _body(self, request: Request) -> dict[str, Any]:
        """Read and decode an object body, enforcing Content-Type and size while streaming."""
        content_type = request.headers.get("content-type", "")
        media = content_type.split(";", 1)[0].strip().lower()
        if media == "application/json" or media.endswith("+json"):
            fmt: _wire.Format = "json"
        elif _wire.format_of(media) == "msgpack":
            fmt = "msgpack"
        else:
            raise _Problem(
                415, "unsupported_media_type",
                f"Content-Type {content_type or '(none)'!r} is not supported; "
                "send application/json or application/msgpack",
            )
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _Problem(413, "too_large", f"body of {declared} bytes exceeds the limit of {limit}",
                           field="body")
        buf = bytearray()
        try:
            async for chunk in request.stream():
                buf += chunk
                if len(buf) > limit:
                    raise _Problem(413, "too_large", f"body exceeds the limit of {limit} bytes",
                                   field="body")
        except ClientDisconnect as exc:
            raise _Problem(400, "bad_request", "client disconnected while sending the body") from exc
        try:
            return _wire.decode(bytes(buf), fmt)
        except InvalidInputError as exc:
            raise _Problem(400, "malformed_body", exc.problem, field=exc.field) from exc

    @staticmethod
    def _fields(body: Mapping[str, Any], allowed: set[str]) -> None:
        extra = sorted(str(k) for k in body if k not in allowed and k != "schema")
        if extra:
            raise _Problem(400, "bad_request",
                           f"unknown field(s) {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})",
                           field=extra[0])

    def _batch(self, body: Mapping[str, Any], name: str, limit: int) -> list[Any]:
        items = body.get(name)
        if items is None:
            raise _Problem(400, "bad_request", f"body must have a {name!r} list", field=name)
        if not isinstance(items, list):
            raise _Problem(400, "bad_request", f"must be a list, got {type(items).__name__}",
                           field=name)
        if not items:
            raise _Problem(400, "bad_request", "must not be empty", field=name)
        if len(items) > limit:
            raise _Problem(413, "too_large", f"{len(items)} items, more than the limit of {limit}",
                           field=name)
        return items

    @staticmethod
    def _int_param(request: Request, name: str, default: int | None, lo: int,
                   clamp: int | None = None) -> int:
        """An integer query parameter >= lo; values above `clamp` are lowered to it (a page
        limit is an upper bound, so a client's larger default still works)."""
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            if default is None:
                raise _Problem(400, "bad_parameter", f"query parameter {name!r} is required",
                               field=name)
            return default
        try:
            value = int(raw)
        except ValueError:
            raise _Problem(400, "bad_parameter", f"must be an integer, got {raw!r}", field=name) from None
        if value < lo:
            raise _Problem(400, "bad_parameter", f"must be >= {lo}, got {value}", field=name)
        if value > _MAX_INT:
            raise _Problem(400, "bad_parameter", f"must be <= {_MAX_INT}, got {raw}", field=name)
        return value if clamp is None else min(value, clamp)

    @staticmethod
    def _entity(raw: str, field: str = "entity", index: int | None = None) -> str:
        try:
            return canonical_key(raw)
        except EntityKeyError as exc:
            raise _Problem(400, "bad_key", exc.problem, field=field, index=index) from exc

    @staticmethod
    def _source_key(raw: object, field: str = "source", index: int | None = None) -> str:
        if not isinstance(raw, str):
            raise _Problem(400, "bad_request",
                           f"must be a string system/type/name, got {type(raw).__name__}",
                           field=field, index=index)
        try:
            return Source.from_key(raw).key
        except LabelValidationError as exc:
            raise _Problem(400, "bad_request", exc.problem, field=field, index=index) from exc

    async def _apply(self, ops: list[WriteOp], caller: _Caller) -> tuple[list[Outcome], int]:
        def work() -> tuple[list[Outcome], int]:
            outcomes = self.storage.apply(ops, actor=caller.name, now=self.clock())
            return outcomes, self.storage.head_seq()

        outcomes, head = await run_in_threadpool(work)
        self.watcher.advance(head)
        counts = Counter(o.value for o in outcomes)
        log.info("write batch actor=%s ops=%d %s head=%d", caller.name, len(ops),
                 " ".join(f"{k}={v}" for k, v in sorted(counts.items())), head)
        return outcomes, head

    # -- endpoints -------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return _respond(request, {"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        def probe() -> int:
            self.storage.ping()
            return self.storage.head_seq()

        try:
            head = await run_in_threadpool(probe)
        except Exception as exc:
            log.warning("not ready: %s", exc)
            raise _Problem(503, "not_ready", f"storage is not reachable: {exc}",
                           extra={"status": "not_ready"}) from exc
        self.watcher.advance(head)
        return _respond(request, {"status": "ready", "head": head})

    async def query(self, request: Request) -> Response:
        self._auth(request, Role.READER)
        body = await self._body(request)
        self._fields(body, {"keys"})
        raw_keys = self._batch(body, "keys", self.limits.max_batch_keys)
        aliases: dict[str, str] = {}
        wanted: dict[str, None] = {}
        for i, raw in enumerate(raw_keys):
            if not isinstance(raw, str):
                raise _Problem(400, "bad_key", f"must be a string, got {type(raw).__name__}",
                               field="keys", index=i)
            key = self._entity(raw, "keys", i)
            wanted[key] = None
            if key != raw:
                aliases[raw] = key

        def read() -> tuple[int, dict[str, list[StoredLabel]]]:
            head = self.storage.head_seq()  # first: the labels are at least as new as head
            return head, self.storage.get_many(list(wanted), include_pending=False)

        head, found = await run_in_threadpool(read)
        labels = {
            entity: [s.label.to_wire() for s in stored if s.status is LabelStatus.ACTIVE]
            for entity, stored in found.items()
        }
        payload: dict[str, Any] = {"labels": {k: v for k, v in labels.items() if v}, "head": head}
        if aliases:
            payload["aliases"] = aliases
        return _respond(request, payload)

    async def get_entity(self, request: Request) -> Response:
        self._auth(request, Role.READER)
        entity = self._entity(request.path_params["entity"])
        found = await run_in_threadpool(self.storage.get_many, [entity], include_pending=True)
        active: list[dict[str, Any]] = []
        pending: list[dict[str, Any]] = []
        for stored in found.get(entity, []):
            (active if stored.status is LabelStatus.ACTIVE else pending).append(stored.label.to_wire())
        return _respond(request, {"entity": entity, "labels": active, "pending": pending})

    async def put_labels(self, request: Request) -> Response:
        caller = self._auth(request, Role.WRITER)
        body = await self._body(request)
        self._fields(body, {"labels"})
        raw_labels = self._batch(body, "labels", self.limits.max_batch_labels)
        try:
            ops = self.checker.check(raw_labels)
        except LabelRejectedError as exc:
            status, code = (413, "too_large") if exc.too_large else (422, "invalid_label")
            raise _Problem(status, code, str(exc), field=exc.field, index=exc.index) from exc
        outcomes, head = await self._apply(list(ops), caller)
        results = [
            {"entity": op.label.entity, "source": op.label.source.key, "outcome": outcome.value}
            for op, outcome in zip(ops, outcomes, strict=True)
        ]
        return _respond(request, {"results": results, "head": head})

    async def delete_label(self, request: Request) -> Response:
        caller = self._auth(request, Role.WRITER)
        entity = self._entity(request.path_params["entity"])
        raw_source = request.query_params.get("source")
        if not raw_source:
            raise _Problem(400, "bad_parameter",
                           "query parameter 'source' (system/type/name) is required", field="source")
        source = self._source_key(raw_source)
        outcomes, head = await self._apply([DeleteOp(entity, source)], caller)
        return _respond(request, {"outcome": outcomes[0].value, "head": head})

    async def retract(self, request: Request) -> Response:
        caller = self._auth(request, Role.WRITER)
        body = await self._body(request)
        self._fields(body, {"retract"})
        items = self._batch(body, "retract", self.limits.max_batch_labels)
        ops: list[WriteOp] = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise _Problem(400, "bad_request",
                               f"must be an object with entity and source, got {type(item).__name__}",
                               field="retract", index=i)
            extra = sorted(str(k) for k in item if k not in ("entity", "source"))
            if extra:
                raise _Problem(400, "bad_request", f"unknown field(s) {', '.join(extra)}",
                               field=extra[0], index=i)
            raw_entity = item.get("entity")
            if not isinstance(raw_entity, str):
                raise _Problem(400, "bad_key", "must be an entity key string", field="entity",
                               index=i)
            ops.append(DeleteOp(self._entity(raw_entity, "entity", i),
                                self._source_key(item.get("source"), "source", i)))
        outcomes, head = await self._apply(ops, caller)
        results = []
        for op, outcome in zip(ops, outcomes, strict=True):
            assert isinstance(op, DeleteOp)
            results.append({"entity": op.entity, "source": op.source_key, "outcome": outcome.value})
        return _respond(request, {"results": results, "head": head})

    async def history(self, request: Request) -> Response:
        self._auth(request, Role.READER)
        entity = self._entity(request.path_params["entity"])
        limit = self._int_param(request, "limit", _DEFAULT_HISTORY_LIMIT, 1,
                                self.limits.max_feed_page)
        before = request.query_params.get("before")
        before_seq = None if not before else self._int_param(request, "before", None, 1)
        events = await run_in_threadpool(self.storage.history, entity, limit=limit,
                                         before_seq=before_seq)
        next_before = events[-1].seq if len(events) == limit else None
        return _respond(request, {"events": [_event(e) for e in events], "next_before": next_before})

    async def changes(self, request: Request) -> Response:
        self._auth(request, Role.READER)
        after = self._int_param(request, "after", None, 0)
        limit = self._int_param(request, "limit", self.limits.max_feed_page, 1,
                                self.limits.max_feed_page)
        wait = _wait_param(request.query_params.get("wait"), self.limits.max_wait_seconds)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            seen = self.watcher.version  # before the read: a change after it is news
            page: ChangePage = await run_in_threadpool(self.storage.changes, after, limit=limit)
            if after < page.oldest - 1:
                raise _Problem(
                    410, "too_old",
                    f"position {after} is past the feed's retention (oldest retained change is "
                    f"{page.oldest}); reload a snapshot",
                    field="after", extra={"oldest": page.oldest, "head": page.head},
                )
            if after > page.head:
                # The store went back (restored from a backup, or changes lost in a
                # failover): numbers above the head may be handed out again, so a
                # reader that goes on from here would skip them. Same answer: reload.
                raise _Problem(
                    410, "too_old",
                    f"position {after} is past the store's head {page.head} (the store went "
                    "back, e.g. restored or failed over); reload a snapshot",
                    field="after", extra={"oldest": page.oldest, "head": page.head},
                )
            self.watcher.advance(page.head)
            remaining = deadline - loop.time()
            if page.changes or remaining <= 0:
                break
            # Nothing past page.head: wait for the head to pass it *after* this read, so
            # a head this process still believes higher (it went back) is no reason to
            # read again at once.
            if not await self.watcher.wait_past(page.head, remaining, since=seen):
                break
        return _respond(request, {
            "changes": [
                {"seq": c.seq, "entity": c.entity, "source": c.source_key, "action": c.action.value,
                 "at": c.at, "labeled": c.labeled}
                for c in page.changes
            ],
            "head": page.head,
            "oldest": page.oldest,
            "next": page.changes[-1].seq if page.changes else after,
        })

    async def pending(self, request: Request) -> Response:
        self._auth(request, Role.READER)
        limit = self._int_param(request, "limit", _DEFAULT_PENDING_LIMIT, 1,
                                self.limits.max_feed_page)
        cursor = request.query_params.get("after")
        after: tuple[str, str] | None = None
        if cursor:
            raw_entity, sep, raw_source = cursor.rpartition("|")
            if not sep:
                raise _Problem(400, "bad_parameter", "must be a cursor ENTITY|SOURCE", field="after")
            after = (self._entity(raw_entity, "after"), self._source_key(raw_source, "after"))
        items = await run_in_threadpool(self.storage.pending, limit=limit, after=after)
        last = items[-1].label if len(items) == limit else None
        return _respond(request, {
            "pending": [{"label": s.label.to_wire(), "seq": s.seq} for s in items],
            "next": f"{last.entity}|{last.source.key}" if last is not None else None,
        })

    async def bloom_snapshot(self, request: Request) -> Response:
        """The last built bloom snapshot (bytes); 304 when the reader's ETag is current."""
        self._auth(request, Role.READER)
        current = self.bloom.current
        snapshot = current if current is not None else await run_in_threadpool(self.bloom.latest)
        headers = _bloom_headers(snapshot)
        if request.headers.get("if-none-match") == snapshot.etag:
            return Response(status_code=304, headers=headers)
        return Response(snapshot.data, media_type="application/octet-stream", headers=headers)

    async def bloom_rebuild(self, request: Request) -> Response:
        """Build a snapshot now (in a thread) and answer its figures."""
        self._auth(request, Role.ADMIN)
        snapshot = await run_in_threadpool(self.bloom.rebuild)
        return _respond(request, {
            "seq": snapshot.seq,
            "key_count": snapshot.key_count,
            "capacity": snapshot.capacity,
            "size_bytes": len(snapshot.data),
            "build_seconds": snapshot.build_seconds,
        })

    # -- background ------------------------------------------------------------------------

    async def rebuild_bloom_forever(self) -> None:
        """Build the first snapshot at startup, then every `bloom.rebuild_interval_seconds`."""
        while True:
            try:
                snapshot = await run_in_threadpool(self.bloom.rebuild)
                log.info("bloom snapshot built: seq=%d keys=%d bytes=%d in %.3fs", snapshot.seq,
                         snapshot.key_count, len(snapshot.data), snapshot.build_seconds)
            except Exception:
                log.exception("building the bloom snapshot failed")
            await asyncio.sleep(self.config.bloom.rebuild_interval_seconds)

    async def prune_once(self) -> int:
        """Drop change records older than the feed retention; return how many."""
        cutoff = self.clock() - timedelta(seconds=self.config.feed.retention_seconds)
        dropped = await run_in_threadpool(self.storage.prune_changes, cutoff)
        if dropped:
            log.info("pruned %d change records older than %s", dropped, cutoff.isoformat())
        return dropped

    async def prune_forever(self) -> None:
        while True:
            try:
                await self.prune_once()
            except Exception:
                log.exception("pruning the change feed failed")
            await asyncio.sleep(self.config.feed.prune_interval_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        pruner = asyncio.create_task(self.prune_forever(), name="enforce-store-feed-pruner")
        bloom = asyncio.create_task(self.rebuild_bloom_forever(), name="enforce-store-bloom")
        try:
            yield
        finally:
            for task in (pruner, bloom):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.watcher.stop()

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/v1/labels", self.put_labels, methods=["POST"]),
            Route("/v1/labels/query", self.query, methods=["POST"]),
            Route("/v1/labels/retract", self.retract, methods=["POST"]),
            Route("/v1/labels/{entity:path}", self.get_entity, methods=["GET"]),
            Route("/v1/labels/{entity:path}", self.delete_label, methods=["DELETE"]),
            Route("/v1/history/{entity:path}", self.history, methods=["GET"]),
            Route("/v1/changes", self.changes, methods=["GET"]),
            Route("/v1/pending", self.pending, methods=["GET"]),
            Route("/v1/bloom", self.bloom_snapshot, methods=["GET"]),
            Route("/v1/bloom/rebuild", self.bloom_rebuild, methods=["POST"]),
        ]


def _wait_param(raw: str | None, max_wait: float) -> float:
    if raw is None or raw == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise _Problem(400, "bad_parameter", f"must be a number of seconds, got {raw!r}",
                       field="wait") from None
    if not 0 <= value < float("inf"):
        raise _Problem(400, "bad_parameter", f"must be a finite number >= 0, got {raw!r}",
                       field="wait")
    return min(value, max_wait)


def _bloom_headers(snapshot: BloomSnapshot) -> dict[str, str]:
    return {
        "ETag": snapshot.etag,
        "X-Bloom-Seq": str(snapshot.seq),
        "X-Bloom-Key-Count": str(snapshot.key_count),
        "Cache-Control": "no-cache",
    }


def _event(e: AuditEvent) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "entity": e.entity,
        "source": e.source_key,
        "action": e.action.value,
        "actor": e.actor,
        "at": e.at,
        "before": e.before.to_wire() if e.before is not None else None,
        "after": e.after.to_wire() if e.after is not None else None,
        "status": e.status.value if e.status is not None else None,
    }


def create_app(config: StoreConfig, storage: LabelStorage, *, clock: Clock = _utc_now) -> Starlette:
    """The ASGI app of the Label Store; `clock` gives wall time for audit and retention."""
    service = LabelStoreService(config, storage, clock=clock)
    app = Starlette(
        routes=service.routes(),
        lifespan=service.lifespan,
        exception_handlers={
            _Problem: _problem_response,
            HTTPException: _http_exception_response,
            StorageError: _storage_error_response,
            Exception: _internal_error_response,
        },
    )
    app.state.service = service
    return app
