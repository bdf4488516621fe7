"""What an operator sees of a store process: Prometheus metrics, request ids, JSON logs.

- `StoreMetrics`: a prometheus_client registry of this process, served at
  `GET /metrics` (reader role): requests by route, method and status, their
  latency, storage latency by operation, write outcomes, and gauges read at
  scrape time (long-polls open, head sequence, pending labels, the bloom
  snapshot's size, keys and last build time). With `--workers N` every worker
  keeps its own registry (a scrape reaches one worker; its `worker` label says
  which): see docs/operations.md.
- `ObserveMiddleware` (pure ASGI): gives every request an id (the caller's
  `X-Request-Id` when it is 1 to 64 of `[A-Za-z0-9._-]`, else a new one),
  echoes it in the answer's `X-Request-Id`, puts it in the log context of
  everything logged while the request runs, and counts and times the request.
- `JsonLogFormatter`: one JSON object per line (`--log-format json`), with the
  request id when there is one.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._tracing import enabled as tracing_enabled
from .._tracing import server_span, span

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "enforce_store_request_id", default=None)
_ID_RE = re.compile(r"[A-Za-z0-9._\-]{1,64}")
_HEADER = b"x-request-id"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0)
WRITE_OUTCOMES = ("written", "noop", "pending", "deleted", "not_found", "refused")


class StoreMetrics:
    """This process's metrics (prometheus_client, its own registry)."""

    def __init__(self, gauges: Callable[[], dict[str, float]], worker: int | None = None
                 ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"worker": "0" if worker is None else str(worker)}
        self.requests = Counter("enforce_store_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("enforce_store_request_seconds",
                                 "time to answer a request", ["route", "method"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.storage = Histogram("enforce_store_storage_seconds",
                                 "time of a storage call", ["operation"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.outcomes = Counter("enforce_store_write_outcomes", "label writes by outcome",
                                ["outcome"], registry=self.registry)
        for outcome in WRITE_OUTCOMES:  # every series exists from the start, at 0
            self.outcomes.labels(outcome)
        self.registry.register(_Gauges(gauges, labels))

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def count_outcomes(self, outcomes: Iterator[str] | list[str]) -> None:
        for outcome in outcomes:
            self.outcomes.labels(outcome).inc()

    def timed(self, operation: str) -> _Timer:
        return _Timer(self.storage.labels(operation))


class _Timer:
    __slots__ = ("_child", "_t0")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._t0 = 0.0

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._child.observe(time.perf_counter() - self._t0)


class _Gauges:
    """Values read at scrape time; one that fails to read is left out, never an error."""

    def __init__(self, read: Callable[[], dict[str, float]], labels: dict[str, str]) -> None:
        self._read = read
        self._labels = labels

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            values = self._read()
        except Exception:  # a gauge must never break a scrape
            logging.getLogger(__name__).exception("reading the store's gauges failed")
            return
        for name, value in values.items():
            family = GaugeMetricFamily(f"enforce_store_{name}", name.replace("_", " "),
                                       labels=list(self._labels))
            family.add_metric(list(self._labels.values()), value)
            yield family


class ObserveMiddleware:
    """Request ids, and each request counted and timed by route (pure ASGI)."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], StoreMetrics | None]) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_id(scope) or uuid.uuid4().hex
        token = request_id.set(rid)
        status = 500
        header = (_HEADER, rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        t0 = time.perf_counter()
        method = scope.get("method", "")
        carrier = ({k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
                   if tracing_enabled() else {})
        try:
            with server_span(f"enforce_store {method}", carrier) as span:
                try:
                    await self.app(scope, receive, send_with_id)
                finally:
                    route = getattr(scope.get("route"), "path", None) or "(unmatched)"
                    if span is not None:
                        span.update_name(f"enforce_store {method} {route}")
                        span.set_attribute("http.response.status_code", status)
                        span.set_attribute("enforce.request_id", rid)
        finally:
            request_id.reset(token)
            metrics = self._metrics()
            if metrics is not None:
                metrics.requests.labels(route, method, str(status)).inc()
                metrics.latency.labels(route, method).observe(time.perf_counter() - t0)


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == _HEADER:
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                return None
            return text if _ID_RE.fullmatch(text) else None
    return None


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (`record.request_id`, or None)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid is not None:
            out["request_id"] = rid
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


JsonLogFormatter.converter = time.gmtime


def new_metrics(gauges: Callable[[], dict[str, float]], worker: int | None) -> StoreMetrics | None:
    """The process's StoreMetrics, or None without prometheus_client (then no /metrics)."""
    try:
        import prometheus_client  # noqa: F401
    except ModuleNotFoundError:
        logging.getLogger(__name__).warning(
            "prometheus_client is not installed: GET /metrics answers 404 "
            "(pip install 'enforce-sdk[server]')")
        return None
    return StoreMetrics(gauges, worker)


class TimedStorage:
    """A storage whose calls are timed by operation into `metrics` (everything else passes)."""

    TIMED = frozenset({"apply", "apply_once", "get_many", "get_bodies", "head_seq", "changes",
                       "history", "pending", "purge_expired", "iter_labeled_entities",
                       "count_labels"})

    def __init__(self, inner: Any, metrics: StoreMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name not in self.TIMED or not callable(value):
            return value
        child = self._metrics.storage.labels(name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                with span(f"enforce_store storage.{name}"):
                    return value(*args, **kwargs)
            finally:
                child.observe(time.perf_counter() - t0)

        return timed


def store_gauges(service: Any) -> dict[str, float]:
    """The gauges of a LabelStoreService (store/app), read at scrape time."""
    counts = {status.value: n for status, n in service.storage.count_labels().items()}
    out = {"long_polls_open": float(service.watcher.waiters),
           "head_seq": float(service.watcher.head),
           "labels_active": float(counts.get("active", 0)),
           "labels_pending": float(counts.get("pending", 0))}
    snapshot = getattr(service.bloom, "current", None)
    if snapshot is not None:
        out["bloom_snapshot_bytes"] = float(len(snapshot.data))
        out["bloom_snapshot_keys"] = float(snapshot.key_count)
        out["bloom_build_seconds"] = float(snapshot.build_seconds)
    policy = getattr(service, "policy", None)  # the SDK config's policy (store/policy_status)
    if policy is not None:
        out.update(policy.gauges())
    return out
