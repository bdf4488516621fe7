"""The Label Store HTTP service (Starlette): the v1 API over a LabelStorage.

Every request is validated once, at the boundary (store/requests: auth,
Content-Type, body size, envelope shape, parameters), then by the Label
Checker for labels. Storage calls block, so they run in the
thread pool; the event loop only parses, encodes and waits.

The change feed long-polls: a waiter sleeps until the newest sequence number
known to this process passes its position. Writes through this process wake
waiters at once; a shared poller re-reads the storage head every
`feed.poll_interval_seconds` while anyone waits, so writes made by other store
processes in front of the same backend wake them too.

Run as one of several workers of a master (store/workers, given a WorkerSlot),
a worker also tells its siblings the head after each write (store/worker_slot),
serves the bloom snapshot they share (store/shared_bloom), and leaves the
background upkeep (snapshot refresh, feed pruning, expiry purges) to worker 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._errors import StorageError, WriteKeyReusedError
from ..model.label import Source
from ..model.records import AuditEvent, ChangePage, LabelStatus
from .bloom_snapshot import BloomSnapshot, BloomSnapshots
from .checker import LabelChecker, LabelRejectedError
from .config import Role, StoreConfig, TokenEntry
from .head_watcher import HeadWatcher
from .human_routes import human_routes
from .idempotency import REPLAYED_HEADER, InFlightKeys, write_key
from .live_policy import LivePolicy, PolicyFeed
from .observe import ObserveMiddleware, TimedStorage, new_metrics, store_gauges
from .policy_status import PolicyStatus
from .query import answer_query, wanted_keys
from .requests import (
    Caller,
    Problem,
    authenticate,
    batch_items,
    check_fields,
    entity_param,
    http_exception_response,
    int_param,
    internal_error_response,
    path_entity,
    problem_response,
    query_form,
    read_body,
    respond,
    source_key_param,
    storage_error_response,
    wait_param,
)
from .shared_bloom import SharedBloomSnapshots
from .storage.base import AppliedBatch, DeleteOp, LabelStorage, WriteKey, WriteOp
from .worker_slot import HeadNotices, WorkerSlot

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
_DEFAULT_HISTORY_LIMIT = 50
_DEFAULT_PENDING_LIMIT = 100


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LabelStoreService:
    """Request handlers of the v1 API, bound to one config and one storage."""

    def __init__(self, config: StoreConfig, storage: LabelStorage, *, clock: Clock = _utc_now,
                 slot: WorkerSlot | None = None, policy_feed: PolicyFeed | None = None):
        self.config = config
        # Metrics of this process (store/observe); storage calls timed by operation.
        self.metrics = new_metrics(lambda: store_gauges(self), None if slot is None else slot.index)
        if self.metrics is not None:
            storage = cast(LabelStorage, TimedStorage(storage, self.metrics))
        self.storage = storage
        self.clock = clock
        self.live_policy = LivePolicy()  # the SDK config, when a feed is given (store/live_policy)
        self.checker = LabelChecker.from_config(config, self.live_policy)
        self.limits = config.limits
        self._tokens: dict[str, TokenEntry] = {t.token_sha256: t for t in config.tokens}
        for token in config.tokens:
            if token.writes_as_anyone:
                log.warning("token %r may write as any source, human included (sources = "
                            "[\"*\"]): list the sources it writes to bind it", token.name)
        self.watcher = HeadWatcher(self._read_head, config.feed.poll_interval_seconds)
        self.slot = slot
        self.bloom: BloomSnapshots | SharedBloomSnapshots = (
            BloomSnapshots(storage, config.bloom.fp_rate) if slot is None
            else SharedBloomSnapshots(storage, config.bloom.fp_rate, slot.bloom_path))
        self._notices: HeadNotices | None = None  # to sibling workers, while serving
        self._in_flight = InFlightKeys()
        self._policy_feed = policy_feed
        self.policy = PolicyStatus(self.live_policy, self.checker, storage, self._tokens)

    def _wrote(self, head: int) -> None:
        """A write here moved the head: wake this process's long-polls, then the siblings'."""
        self.watcher.advance(head)
        if self._notices is not None:
            self._notices.send(head)

    notify_head = _wrote  # for writes made outside write(): the console's appeal decisions

    async def _read_head(self) -> int:
        return await run_in_threadpool(self.storage.head_seq)

    # -- request plumbing ------------------------------------------------------------------

    def _write_key(self, request: Request, caller: Caller,
                   body: Mapping[str, Any] | None) -> WriteKey | None:
        return write_key(request, caller.name, body, now=self.clock(),
                         retention_seconds=self.config.idempotency.retention_seconds)

    async def write(self, ops: list[WriteOp], actor: str,
                    key: WriteKey | None = None) -> AppliedBatch:
        """The one write path (API and console): apply `ops` as `actor` (the audit actor),
        at most once per `key`; wakes the change feed's long-polls."""
        def work() -> AppliedBatch:
            now = self.clock()
            if key is not None:
                return self.storage.apply_once(ops, actor=actor, now=now, key=key)
            outcomes = self.storage.apply(ops, actor=actor, now=now)
            return AppliedBatch(outcomes, self.storage.head_seq())

        with self._in_flight.hold(key):
            try:
                applied = await run_in_threadpool(work)
            except WriteKeyReusedError as exc:
                raise Problem(422, "idempotency_key_reused", exc.problem, field=exc.field) from exc
        self._wrote(applied.seq)
        counts = Counter(o.value for o in applied.outcomes)
        log.info("write batch actor=%s ops=%d %s head=%d%s", actor, len(ops),
                 " ".join(f"{k}={v}" for k, v in sorted(counts.items())), applied.seq,
                 " (replayed: applied before)" if applied.replayed else "")
        if self.metrics is not None and not applied.replayed:
            self.metrics.count_outcomes([o.value for o in applied.outcomes])
        return applied

    @staticmethod
    def _written(request: Request, payload: dict[str, Any], applied: AppliedBatch) -> Response:
        response = respond(request, payload)
        if applied.replayed:
            response.headers[REPLAYED_HEADER] = "true"
        return response

    # -- endpoints -------------------------------------------------------------------------

    async def metrics_page(self, request: Request) -> Response:
        authenticate(self._tokens, request, Role.READER)
        if self.metrics is None:
            raise Problem(404, "not_found", "metrics need prometheus_client "
                          "(pip install 'enforce-sdk[server]')")
        body, media = await run_in_threadpool(self.metrics.render)
        return Response(body, media_type=media)

    async def healthz(self, request: Request) -> Response:
        if self.slot is None:
            return respond(request, {"status": "ok"})
        # Which worker answered, and how many change-feed long-polls are parked on it.
        return respond(request, {"status": "ok", "worker": self.slot.index,
                                 "long_polls": self.watcher.waiters})

    async def readyz(self, request: Request) -> Response:
        def probe() -> int:
            self.storage.ping()
            return self.storage.head_seq()

        try:
            head = await run_in_threadpool(probe)
        except Exception as exc:
            log.warning("not ready: %s", exc)
            raise Problem(503, "not_ready", f"storage is not reachable: {exc}",
                           extra={"status": "not_ready"}) from exc
        self.watcher.advance(head)
        answer: dict[str, Any] = {"status": "ready", "head": head}
        view = self.live_policy.current()
        if view is not None:
            answer["sdk_config"] = {"version": view.version, "origin": view.origin}
            answer["policy"] = self.policy.describe(view)
        return respond(request, answer)

    async def query(self, request: Request) -> Response:
        authenticate(self._tokens, request, Role.READER)
        body = await read_body(request, self.limits.max_body_bytes)
        check_fields(body, {"keys", "form"})
        compact = query_form(request, body)
        keys, aliases = wanted_keys(batch_items(body, "keys", self.limits.max_batch_keys))
        return await answer_query(request, self.storage, keys, aliases, self.clock(),
                                  compact=compact)

    async def get_entity(self, request: Request) -> Response:
        authenticate(self._tokens, request, Role.READER)
        entity = path_entity(request)
        found = await run_in_threadpool(self.storage.get_many, [entity], include_pending=True,
                                        now=self.clock())
        active: list[dict[str, Any]] = []
        pending: list[dict[str, Any]] = []
        for stored in found.get(entity, []):
            (active if stored.status is LabelStatus.ACTIVE else pending).append(stored.label.to_wire())
        return respond(request, {"entity": entity, "labels": active, "pending": pending,
                                 **self.policy.reasons_of(s.label for s in found.get(entity, []))})

    async def put_labels(self, request: Request) -> Response:
        caller = authenticate(self._tokens, request, Role.WRITER)
        body = await read_body(request, self.limits.max_body_bytes)
        check_fields(body, {"labels"})
        raw_labels = batch_items(body, "labels", self.limits.max_batch_labels)
        try:
            ops = self.checker.check(raw_labels)
        except LabelRejectedError as exc:
            if self.metrics is not None:
                self.metrics.outcomes.labels("refused").inc(len(raw_labels))
            raise Problem(413 if exc.too_large else 422, exc.code, str(exc), field=exc.field,
                          index=exc.index, extra=exc.extra) from exc
        for i, op in enumerate(ops):  # before anything is written: a refused batch stores nothing
            caller.check_source(op.label.source, i)
        applied = await self.write(list(ops), caller.name,
                                   self._write_key(request, caller, body))
        results = [
            {"entity": op.label.entity, "source": op.label.source.key, "outcome": outcome.value}
            for op, outcome in zip(ops, applied.outcomes, strict=True)
        ]
        return self._written(request, {"results": results, "head": applied.seq}, applied)

    async def delete_label(self, request: Request) -> Response:
        caller = authenticate(self._tokens, request, Role.WRITER)
        entity = path_entity(request)
        raw_source = request.query_params.get("source")
        if not raw_source:
            raise Problem(400, "bad_parameter",
                           "query parameter 'source' (system/type/name) is required", field="source")
        source = source_key_param(raw_source)
        caller.check_source(Source.from_key(source))
        applied = await self.write([DeleteOp(entity, source)], caller.name,
                                   self._write_key(request, caller, None))
        return self._written(request, {"outcome": applied.outcomes[0].value,
                                       "head": applied.seq}, applied)

    async def retract(self, request: Request) -> Response:
        caller = authenticate(self._tokens, request, Role.WRITER)
        body = await read_body(request, self.limits.max_body_bytes)
        check_fields(body, {"retract"})
        items = batch_items(body, "retract", self.limits.max_batch_labels)
        ops: list[WriteOp] = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise Problem(400, "bad_request",
                               f"must be an object with entity and source, got {type(item).__name__}",
                               field="retract", index=i)
            extra = sorted(str(k) for k in item if k not in ("entity", "source"))
            if extra:
                raise Problem(400, "bad_request", f"unknown field(s) {', '.join(extra)}",
                               field=extra[0], index=i)
            raw_entity = item.get("entity")
            if not isinstance(raw_entity, str):
                raise Problem(400, "bad_key", "must be an entity key string", field="entity",
                               index=i)
            source = source_key_param(item.get("source"), "source", i)
            caller.check_source(Source.from_key(source), i)
            ops.append(DeleteOp(entity_param(raw_entity, "entity", i), source))
        applied = await self.write(ops, caller.name, self._write_key(request, caller, body))
        results = []
        for op, outcome in zip(ops, applied.outcomes, strict=True):
            assert isinstance(op, DeleteOp)
            results.append({"entity": op.entity, "source": op.source_key, "outcome": outcome.value})
        return self._written(request, {"results": results, "head": applied.seq}, applied)

    async def history(self, request: Request) -> Response:
        authenticate(self._tokens, request, Role.READER)
        entity = path_entity(request)
        limit = int_param(request, "limit", _DEFAULT_HISTORY_LIMIT, 1,
                                self.limits.max_feed_page)
        before = request.query_params.get("before")
        before_seq = None if not before else int_param(request, "before", None, 1)
        events = await run_in_threadpool(self.storage.history, entity, limit=limit,
                                         before_seq=before_seq)
        next_before = events[-1].seq if len(events) == limit else None
        return respond(request, {"events": [_event(e) for e in events], "next_before": next_before})

    async def changes(self, request: Request) -> Response:
        authenticate(self._tokens, request, Role.READER)
        after = int_param(request, "after", None, 0)
        limit = int_param(request, "limit", self.limits.max_feed_page, 1,
                                self.limits.max_feed_page)
        wait = wait_param(request.query_params.get("wait"), self.limits.max_wait_seconds)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            seen = self.watcher.version  # before the read: a change after it is news
            page: ChangePage = await run_in_threadpool(self.storage.changes, after, limit=limit)
            if after < page.oldest - 1:
                raise Problem(
                    410, "too_old",
                    f"position {after} is past the feed's retention (oldest retained change is "
                    f"{page.oldest}); reload a snapshot",
                    field="after", extra={"oldest": page.oldest, "head": page.head},
                )
            if after > page.head:
                # The store went back (restored from a backup, or changes lost in a
                # failover): numbers above the head may be handed out again, so a
                # reader that goes on from here would skip them. Same answer: reload.
                raise Problem(
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
        return respond(request, {
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
        authenticate(self._tokens, request, Role.READER)
        limit = int_param(request, "limit", _DEFAULT_PENDING_LIMIT, 1,
                                self.limits.max_feed_page)
        cursor = request.query_params.get("after")
        after: tuple[str, str] | None = None
        if cursor:
            raw_entity, sep, raw_source = cursor.rpartition("|")
            if not sep:
                raise Problem(400, "bad_parameter", "must be a cursor ENTITY|SOURCE", field="after")
            after = (entity_param(raw_entity, "after"), source_key_param(raw_source, "after"))
        items = await run_in_threadpool(self.storage.pending, limit=limit, after=after)
        last = items[-1].label if len(items) == limit else None
        return respond(request, {
            "pending": [{"label": s.label.to_wire(), "seq": s.seq} for s in items],
            "next": f"{last.entity}|{last.source.key}" if last is not None else None,
        })

    async def bloom_snapshot(self, request: Request) -> Response:
        """The last built bloom snapshot (bytes); 304 when the reader's ETag is current."""
        authenticate(self._tokens, request, Role.READER)
        current = self.bloom.current
        snapshot = current if current is not None else await run_in_threadpool(self.bloom.latest)
        headers = _bloom_headers(snapshot)
        if request.headers.get("if-none-match") == snapshot.etag:
            return Response(status_code=304, headers=headers)
        return Response(snapshot.data, media_type="application/octet-stream", headers=headers)

    async def bloom_rebuild(self, request: Request) -> Response:
        """Build a snapshot now (in a thread) and answer its figures."""
        authenticate(self._tokens, request, Role.ADMIN)
        snapshot = await run_in_threadpool(self.bloom.rebuild)
        return respond(request, {
            "seq": snapshot.seq,
            "key_count": snapshot.key_count,
            "capacity": snapshot.capacity,
            "size_bytes": len(snapshot.data),
            "build_seconds": snapshot.build_seconds,
        })

    # -- background ------------------------------------------------------------------------

    async def refresh_bloom_forever(self) -> None:
        """Build the first snapshot at startup, then bring it up to date (from the change
        feed, rebuilt only when due) every `bloom.rebuild_interval_seconds`."""
        last: BloomSnapshot | None = None
        while True:
            try:
                snapshot = await run_in_threadpool(self.bloom.refresh)
                if snapshot is not last:
                    log.info("bloom snapshot %s: seq=%d keys=%d bytes=%d in %.3fs (%d full builds)",
                             snapshot.etag, snapshot.seq, snapshot.key_count, len(snapshot.data),
                             snapshot.build_seconds, self.bloom.full_builds)
                last = snapshot
            except Exception:
                log.exception("refreshing the bloom snapshot failed")
            await asyncio.sleep(self.config.bloom.rebuild_interval_seconds)

    async def prune_once(self) -> int:
        """Drop change records older than the feed retention, and expired idempotency
        records; return how many change records."""
        now = self.clock()
        cutoff = now - timedelta(seconds=self.config.feed.retention_seconds)
        dropped = await run_in_threadpool(self.storage.prune_changes, cutoff)
        if dropped:
            log.info("pruned %d change records older than %s", dropped, cutoff.isoformat())
        keys = await run_in_threadpool(self.storage.prune_write_keys, now)
        if keys:
            log.info("pruned %d expired idempotency records", keys)
        return dropped

    async def purge_expired_once(self) -> int:
        """Remove labels expired longer than the grace ago; return how many entities lost one."""
        now = self.clock()
        before = now - timedelta(seconds=self.config.storage.expired_grace_seconds)
        purged = await run_in_threadpool(self.storage.purge_expired, before, now=now)
        if purged:
            self._wrote(await self._read_head())
            log.info("purged the labels of %d entities that expired before %s", purged,
                     before.isoformat())
        return purged

    async def purge_expired_forever(self) -> None:
        """Every `storage.purge_interval_seconds`, starting one interval after start-up."""
        while True:
            await asyncio.sleep(self.config.storage.purge_interval_seconds)
            try:
                await self.purge_expired_once()
            except Exception:
                log.exception("purging expired labels failed")

    async def purge_expired(self, request: Request) -> Response:
        """Purge expired labels now (admin); answers how many entities lost a label."""
        authenticate(self._tokens, request, Role.ADMIN)
        purged = await self.purge_expired_once()
        return respond(request, {"purged": purged, "head": self.watcher.head})

    async def prune_forever(self) -> None:
        while True:
            try:
                await self.prune_once()
            except Exception:
                log.exception("pruning the change feed failed")
            await asyncio.sleep(self.config.feed.prune_interval_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # The SDK config first: a store asked to explain with it does not serve without it.
        # Starting may block (a ZooKeeper session), so not on the event loop.
        stop_feed: Callable[[], None] | None = None
        if self._policy_feed is not None:
            stop_feed = await asyncio.to_thread(self._policy_feed, self.live_policy)
        tasks: list[asyncio.Task[None]] = []
        if self.slot is None or self.slot.keeps_shared_state:
            tasks = [
                asyncio.create_task(self.prune_forever(), name="enforce-store-feed-pruner"),
                asyncio.create_task(self.refresh_bloom_forever(), name="enforce-store-bloom"),
                asyncio.create_task(self.purge_expired_forever(), name="enforce-store-expiry"),
            ]
        if self.slot is not None and self.slot.count > 1:
            self._notices = HeadNotices(self.slot)
            self._notices.listen(self.watcher.advance)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self._notices is not None:
                self._notices.close()
                self._notices = None
            await self.watcher.stop()
            if stop_feed is not None:
                await asyncio.to_thread(stop_feed)

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics_page, methods=["GET"]),
            Route("/v1/labels", self.put_labels, methods=["POST"]),
            Route("/v1/labels/query", self.query, methods=["POST"]),
            Route("/v1/labels/retract", self.retract, methods=["POST"]),
            Route("/v1/labels/{entity:path}", self.get_entity, methods=["GET"]),
            Route("/v1/labels/{entity:path}", self.delete_label, methods=["DELETE"]),
            Route("/v1/history/{entity:path}", self.history, methods=["GET"]),
            Route("/v1/changes", self.changes, methods=["GET"]),
            Route("/v1/pending", self.pending, methods=["GET"]),
            Route("/v1/reasons", self.policy.reasons_endpoint, methods=["GET"]),
            Route("/v1/bloom", self.bloom_snapshot, methods=["GET"]),
            Route("/v1/bloom/rebuild", self.bloom_rebuild, methods=["POST"]),
            Route("/v1/expired/purge", self.purge_expired, methods=["POST"]),
        ]


def _bloom_headers(snapshot: BloomSnapshot) -> dict[str, str]:
    return {
        "ETag": snapshot.etag,
        "X-Bloom-Seq": str(snapshot.seq),
        "X-Bloom-Key-Count": str(snapshot.key_count),
        "X-Bloom-Capacity": str(snapshot.capacity),
        "X-Bloom-FP-Rate": repr(snapshot.fp_rate),
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


def create_app(config: StoreConfig, storage: LabelStorage, *, clock: Clock = _utc_now,
               slot: WorkerSlot | None = None, policy_feed: PolicyFeed | None = None) -> Starlette:
    """The ASGI app of the Label Store; `clock` gives wall time for audit and retention;
    `slot`: this process is one of a master's workers (store/workers); `policy_feed`:
    keeps `service.live_policy` on the SDK config (store/live_policy), started at startup."""
    service = LabelStoreService(config, storage, clock=clock, slot=slot, policy_feed=policy_feed)
    app = Starlette(
        # first: /v1/labels/export and /select before /v1/labels/{entity}
        routes=[*human_routes(service), *service.routes()],  # appeals, mass actions, console
        lifespan=service.lifespan,
        exception_handlers={
            Problem: problem_response,
            HTTPException: http_exception_response,
            StorageError: storage_error_response,
            Exception: internal_error_response,
        },
        # outermost: a request id and the metrics for every answer, errors included
        middleware=[Middleware(ObserveMiddleware, metrics=lambda: service.metrics)],
    )
    app.state.service = service
    return app
