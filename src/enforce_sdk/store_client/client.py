"""LabelStoreClient: a synchronous client of the Label Store v1 HTTP API (httpx).

Producers write with it (put / delete / retract_many); the SDK reads with it
(get_many / changes). Every write request carries an `Idempotency-Key` (one per
batch) and is retried with the same key on a transport failure, a timeout or
a 408/409/5xx answer: the store applies a batch at most once and answers a
retry with the first attempt's outcome (`WriteResult.replayed`). When every
attempt failed, WriteOutcomeUnknownError names the key to retry with later.
Every request is bounded whole by its timeout (store_client/deadline). Response
parsing lives in module-level functions so an async face (store_client/async_client)
can share it; errors are translated in one place for both faces: `_translate_errors` (httpx exceptions) and `decode_response`
(error statuses), each re-raised `from` the httpx error:

    httpx.TransportError (connect, read, timeout...) -> StoreUnavailableError
    401 / 403                                        -> AuthError
    410 (feed position past retention)               -> FeedTooOldError
    any other status >= 400                          -> StoreResponseError

Safe to share between threads (httpx.Client is). `close()` may come from
another thread while a change-feed long-poll is in flight: it shuts the
poll's socket down, so the poll ends at once (raising StoreUnavailableError)
instead of holding its thread until the store answers.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx

from .._errors import (
    AuthError,
    FeedTooOldError,
    InvalidInputError,
    StoreError,
    StoreResponseError,
    StoreUnavailableError,
    WriteOutcomeUnknownError,
)
from .._tracing import client_span
from ..model import wire as _wire
from ..model.label import Label, Source, parse_time
from ..model.records import Action, AuditEvent, ChangeRecord, LabelStatus, Outcome, StoredLabel
from ..native.bloom import BloomFilter
from .deadline import DeadlineTransport, RequestTimeout, deadline
from .feed_sockets import FeedSockets
from .query import LabelsQuery, parse_query, query_request, refuses_compact

DEFAULT_MAX_BATCH_KEYS = 1000
DEFAULT_MAX_BATCH_LABELS = 1000
# Answers after which a keyed write is sent again with its key: the request did not
# arrive whole (408), its first attempt is still being applied (409), or the store
# failed, possibly after applying it (5xx). The key makes every re-send safe.
RETRY_WRITE_STATUSES = frozenset({408, 409, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What the store did with one label write or retraction.

    `replayed`: the answer came from an earlier attempt of the same batch whose
    answer was lost (the outcome is what that attempt did; nothing was re-applied).
    """

    entity: str
    source: str  # source key system/type/name
    outcome: Outcome
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class EntityLabels:
    """Every label of one entity: served (`labels`) and held for review (`pending`)."""

    entity: str
    labels: list[Label]
    pending: list[Label]
    # reason -> {tier, description, owner[, enforcement]} (None: not registered), when the
    # store follows an SDK config with a reason registry; empty otherwise
    reasons: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    events: list[AuditEvent]  # newest first
    next_before: int | None  # pass as `before` for the next page; None at the end


@dataclass(frozen=True, slots=True)
class ChangesPage:
    changes: list[ChangeRecord]  # ascending seq
    head: int
    oldest: int
    next: int  # pass as `after` for the next page


@dataclass(frozen=True, slots=True)
class BloomDownload:
    """A bloom snapshot fetched from the store; `etag` asks for the next one only if it changed."""

    bloom: BloomFilter  # its `seq` is the change sequence number it reflects
    etag: str | None
    capacity: int | None = None  # keys the store sized it for (None: an older store)
    fp_rate: float | None = None  # its FP rate at `capacity` keys


@dataclass(frozen=True, slots=True)
class PendingPage:
    pending: list[StoredLabel]
    next: str | None  # cursor for `after`; None at the end


def _bloom_design(headers: httpx.Headers) -> tuple[int | None, float | None]:
    """(capacity, fp_rate) a snapshot was sized for, from its headers; None where absent or bad."""
    capacity: int | None = None
    fp_rate: float | None = None
    with contextlib.suppress(KeyError, ValueError):
        capacity = int(headers["x-bloom-capacity"])
        capacity = capacity if capacity > 0 else None
    with contextlib.suppress(KeyError, ValueError):
        fp_rate = float(headers["x-bloom-fp-rate"])
        fp_rate = fp_rate if 0.0 < fp_rate < 1.0 else None
    return capacity, fp_rate


# -- error translation (the one place) -------------------------------------------------------


@contextlib.contextmanager
def _translate_errors(what: str) -> Iterator[None]:
    """Turn httpx failures and error statuses raised inside into this package's errors."""
    try:
        yield
    except httpx.HTTPStatusError as exc:
        raise _status_error(exc.response) from exc
    except httpx.HTTPError as exc:
        raise StoreUnavailableError(f"{what}: {type(exc).__name__}: {exc}") from exc


def _status_error(response: httpx.Response) -> StoreResponseError:
    detail: Any
    try:
        body = _wire.decode(response.content, _wire.format_of(response.headers.get("content-type")))
        detail = {k: v for k, v in body.items() if k != "schema"}
    except InvalidInputError:
        detail = response.text[:500] or response.reason_phrase
    status = response.status_code
    if status in (401, 403):
        return AuthError(status, detail)
    if status == 410:
        return FeedTooOldError(status, detail)
    return StoreResponseError(status, detail)


@contextlib.contextmanager
def _parsing(what: str) -> Iterator[None]:
    """A 2xx answer that does not have the documented shape is a protocol error."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StoreResponseError(200, f"{what}: unexpected response: {exc!r}") from exc


# -- response parsing, shared by every face ----------------------------------------------------


def _time(value: object) -> datetime:
    return value if isinstance(value, datetime) else parse_time(value, "at")


def parse_changes(body: Mapping[str, Any]) -> ChangesPage:
    changes = [
        ChangeRecord(seq=c["seq"], entity=c["entity"], source_key=c["source"],
                     action=Action(c["action"]), at=_time(c["at"]), labeled=bool(c["labeled"]))
        for c in body["changes"]
    ]
    return ChangesPage(changes, int(body["head"]), int(body["oldest"]), int(body["next"]))


def parse_history(body: Mapping[str, Any]) -> HistoryPage:
    events = [
        AuditEvent(
            seq=e["seq"], entity=e["entity"], source_key=e["source"], action=Action(e["action"]),
            actor=e["actor"], at=_time(e["at"]),
            before=None if e["before"] is None else Label.from_dict(e["before"]),
            after=None if e["after"] is None else Label.from_dict(e["after"]),
            status=None if e["status"] is None else LabelStatus(e["status"]),
        )
        for e in body["events"]
    ]
    return HistoryPage(events, body["next_before"])


def parse_results(body: Mapping[str, Any], replayed: bool = False) -> list[WriteResult]:
    return [WriteResult(r["entity"], r["source"], Outcome(r["outcome"]), replayed)
            for r in body["results"]]


def decode_response(response: httpx.Response, what: str) -> dict[str, Any]:
    """The decoded body of a store answer; an error status raises its translated error."""
    if response.status_code >= 400:
        try:
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:  # chained, so the httpx error stays visible
            raise _status_error(response) from exc
    try:
        return _wire.decode(response.content,
                            _wire.format_of(response.headers.get("content-type")))
    except InvalidInputError as exc:
        raise StoreResponseError(response.status_code,
                                 f"{what}: unreadable response: {exc}") from exc


def _nth_key(key: str | None, index: int) -> str | None:
    return key if key is None or index == 0 else f"{key}.{index}"


def span_name(method: str, path: str) -> str:
    """A trace span's name for a store call: the route, never an entity key."""
    return f"enforce_sdk store {method} {'/'.join(path.split('/')[:3])}"


def entity_path(prefix: str, entity: str) -> str:
    """URL path for an entity: every character outside the unreserved set percent-encoded."""
    return prefix + quote(entity, safe=":@")


def connection_settings(
    url: str, token: str | None, wire: str, max_batch_keys: int
) -> tuple[str, _wire.Format, dict[str, str]]:
    """Validate what every store client is built from; (base URL, body format, headers)."""
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise InvalidInputError(f"must be an http:// or https:// URL, got {url!r}", field="url")
    if wire not in ("msgpack", "json"):
        raise InvalidInputError(f"must be 'msgpack' or 'json', got {wire!r}", field="wire")
    if max_batch_keys < 1:
        raise InvalidInputError("must be >= 1", field="max_batch_keys")
    fmt: _wire.Format = "msgpack" if wire == "msgpack" else "json"
    media = _wire.media_type(fmt)
    headers = {"Accept": media, "Content-Type": media}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return url.rstrip("/"), fmt, headers


class LabelStoreClient(RequestTimeout[httpx.Client]):
    """Synchronous client of one Label Store. Use as a context manager or call close()."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 5.0,
        wire: Literal["msgpack", "json"] = "msgpack",
        transport: httpx.BaseTransport | None = None,
        max_batch_keys: int = DEFAULT_MAX_BATCH_KEYS,
        max_batch_labels: int = DEFAULT_MAX_BATCH_LABELS,
        write_retries: int = 3,
        retry_backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url, self._fmt, headers = connection_settings(url, token, wire, max_batch_keys)
        self._compact = self._fmt == "msgpack"  # reads ask for stored bodies (model/compact)
        if max_batch_labels < 1:
            raise InvalidInputError("must be >= 1", field="max_batch_labels")
        if write_retries < 0:
            raise InvalidInputError("must be >= 0", field="write_retries")
        self.write_retries = write_retries  # re-sends of a write batch, with its key
        self.retry_backoff = retry_backoff  # seconds before the first re-send, doubled each time
        self._sleep = sleep
        self._timeout = timeout
        self.max_batch_keys = max_batch_keys
        self.max_batch_labels = max_batch_labels
        # The default transport bounds each request whole (store_client/deadline): a store
        # that drips its answer cannot hold a call past its timeout.
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout,
                                  transport=transport or DeadlineTransport())
        self._feed_sockets = FeedSockets()

    # -- plumbing --------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: Mapping[str, str | int | float] | None = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self._send(method, path, body=body, params=params, timeout=timeout,
                          headers=headers, extensions=extensions)[0]

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: Mapping[str, str | int | float] | None = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], httpx.Headers]:
        content = None if body is None else _wire.encode(body, self._fmt)
        what = f"{method} {path}"
        seconds = self._timeout if timeout is None else timeout
        sent = dict(headers or {})  # plus `traceparent` when tracing (_tracing)
        with client_span(span_name(method, path), sent, {"server.address": self.url}), \
                _translate_errors(what), deadline(seconds):
            response = self._http.request(method, path, content=content, params=params,
                                          headers=sent, timeout=seconds,
                                          extensions=extensions)
        return decode_response(response, what), response.headers

    def _write(
        self,
        method: str,
        path: str,
        key: str | None,
        *,
        body: dict[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Send one write batch under an idempotency key (a new one if None), re-sending it
        with that key on failures that leave its outcome open; (answer, replayed)."""
        key = key or uuid.uuid4().hex
        what = f"{method} {path}"
        for attempt in range(self.write_retries + 1):
            if attempt:
                self._sleep(min(self.retry_backoff * 2 ** (attempt - 1), 10.0))
            try:
                answer, headers = self._send(method, path, body=body, params=params,
                                             headers={"Idempotency-Key": key})
                return answer, headers.get("idempotent-replayed") == "true"
            except StoreResponseError as exc:
                if exc.status not in RETRY_WRITE_STATUSES:
                    raise  # refused: nothing was stored
                last: StoreError = exc
            except StoreUnavailableError as exc:
                last = exc
        raise WriteOutcomeUnknownError(
            f"{what}: no answer after {self.write_retries + 1} attempts (last: {last}); the "
            f"batch was applied at most once: send it again with idempotency_key={key!r} to "
            "learn its outcome", idempotency_key=key) from last

    def _label_form(self, label: Label) -> dict[str, Any]:
        return label.to_wire() if self._fmt == "msgpack" else label.to_dict()

    # -- writes ----------------------------------------------------------------------------

    def put(self, labels: Label | Iterable[Label], *,
            idempotency_key: str | None = None) -> list[WriteResult]:
        """Write labels; batches of `max_batch_labels` are each all-or-nothing, applied at
        most once (see the module doc). `idempotency_key`: the key of a batch sent before
        (WriteOutcomeUnknownError names it); batch i after the first gets `<key>.<i>`."""
        batch: list[Label] = [labels] if isinstance(labels, Label) else list(labels)
        results: list[WriteResult] = []
        for i, start in enumerate(range(0, len(batch), self.max_batch_labels)):
            chunk = batch[start:start + self.max_batch_labels]
            body, replayed = self._write(
                "POST", "/v1/labels", _nth_key(idempotency_key, i),
                body={"labels": [self._label_form(lb) for lb in chunk]})
            with _parsing("POST /v1/labels"):
                results.extend(parse_results(body, replayed))
        return results

    def delete(self, entity: str, source: Source | str, *,
               idempotency_key: str | None = None) -> Outcome:
        """Retract one source's label on an entity: DELETED or NOT_FOUND."""
        key = source.key if isinstance(source, Source) else source
        body, _ = self._write("DELETE", entity_path("/v1/labels/", entity), idempotency_key,
                              params={"source": key})
        with _parsing("DELETE /v1/labels"):
            return Outcome(body["outcome"])

    def retract_many(self, pairs: Iterable[tuple[str, Source | str]], *,
                     idempotency_key: str | None = None) -> list[WriteResult]:
        """Retract (entity, source) pairs; batches of `max_batch_labels` are all-or-nothing,
        applied at most once (keys as in `put`)."""
        items = [{"entity": e, "source": s.key if isinstance(s, Source) else s} for e, s in pairs]
        results: list[WriteResult] = []
        for i, start in enumerate(range(0, len(items), self.max_batch_labels)):
            body, replayed = self._write(
                "POST", "/v1/labels/retract", _nth_key(idempotency_key, i),
                body={"retract": items[start:start + self.max_batch_labels]})
            with _parsing("POST /v1/labels/retract"):
                results.extend(parse_results(body, replayed))
        return results

    # -- reads -----------------------------------------------------------------------------

    def get(self, entity: str) -> EntityLabels:
        body = self._call("GET", entity_path("/v1/labels/", entity))
        with _parsing("GET /v1/labels"):
            return EntityLabels(
                body["entity"],
                [Label.from_dict(d) for d in body["labels"]],
                [Label.from_dict(d) for d in body["pending"]],
                _reasons(body.get("reasons")),
            )

    def query(self, keys: Sequence[str]) -> LabelsQuery:
        """Active labels of many keys in as few round trips as `max_batch_keys` allows.

        The result maps canonical keys and, where they differ, the keys as sent;
        keys without active labels are absent. `head` is the lowest head of the
        round trips made, so every returned label is at least that fresh.
        """
        if isinstance(keys, str):
            keys = [keys]
        labels: dict[str, list[Label]] = {}
        head: int | None = None
        for start in range(0, len(keys), self.max_batch_keys):
            chunk = list(keys[start:start + self.max_batch_keys])
            try:
                body = self._call("POST", "/v1/labels/query",
                                  body=query_request(chunk, self._compact))
            except StoreResponseError as exc:
                if not (self._compact and refuses_compact(exc)):
                    raise
                self._compact = False  # an older store: full form from now on
                body = self._call("POST", "/v1/labels/query", body=query_request(chunk, False))
            with _parsing("POST /v1/labels/query"):
                part = parse_query(body)
            labels.update(part.labels)
            head = part.head if head is None else min(head, part.head)
        return LabelsQuery(labels, head or 0)

    def get_many(self, keys: Iterable[str]) -> dict[str, list[Label]]:
        """Active labels by key (canonical and as sent); keys without any are absent."""
        return self.query(keys if isinstance(keys, Sequence) else list(keys)).labels

    def history(self, entity: str, limit: int = 50, before: int | None = None) -> HistoryPage:
        params: dict[str, int] = {"limit": limit}
        if before is not None:
            params["before"] = before
        body = self._call("GET", entity_path("/v1/history/", entity), params=params)
        with _parsing("GET /v1/history"):
            return parse_history(body)

    def changes(self, after: int, limit: int = 1000, wait: float = 0.0) -> ChangesPage:
        """Change records after `after`; with `wait` > 0, long-poll until one arrives.

        Raises FeedTooOldError when `after` is past the feed's retention.
        """
        params: dict[str, int | float] = {"after": after, "limit": limit}
        if wait > 0:
            params["wait"] = wait
        body = self._call("GET", "/v1/changes", params=params, timeout=self._timeout + wait,
                          extensions={"trace": self._feed_sockets.trace})
        with _parsing("GET /v1/changes"):
            return parse_changes(body)

    def pending(self, limit: int = 100, after: str | None = None) -> PendingPage:
        """Labels held for review, by (entity, source); `after` is a page's `next` cursor."""
        params: dict[str, int | str] = {"limit": limit}
        if after is not None:
            params["after"] = after
        body = self._call("GET", "/v1/pending", params=params)
        with _parsing("GET /v1/pending"):
            return PendingPage(
                [StoredLabel(Label.from_dict(p["label"]), LabelStatus.PENDING, int(p["seq"]))
                 for p in body["pending"]],
                body["next"],
            )

    def bloom_snapshot(
        self, etag: str | None = None, timeout: float | None = None
    ) -> BloomDownload | None:
        """The store's bloom snapshot; None if `etag` (of a previous download) is still current.

        Raises SnapshotError for a corrupt snapshot, the usual store errors otherwise.
        """
        headers = {"Accept": "application/octet-stream"}
        if etag is not None:
            headers["If-None-Match"] = etag
        what = "GET /v1/bloom"
        seconds = self._timeout if timeout is None else timeout
        with _translate_errors(what), deadline(seconds):
            response = self._http.get("/v1/bloom", headers=headers, timeout=seconds)
        if response.status_code == 304:
            return None
        if response.status_code >= 400:
            decode_response(response, what)  # raises the translated error
        if response.status_code != 200:
            raise StoreResponseError(response.status_code, f"{what}: unexpected status")
        return BloomDownload(BloomFilter.from_bytes(response.content), response.headers.get("etag"),
                             *_bloom_design(response.headers))

    def rebuild_bloom(self) -> dict[str, Any]:
        """Have the store rebuild its bloom snapshot now (admin); returns its figures."""
        return self._call("POST", "/v1/bloom/rebuild", timeout=max(self._timeout, 300.0))

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/healthz")

    def ready(self) -> bool:
        """Whether the store answers /readyz with 200 (its storage is reachable)."""
        try:
            self._call("GET", "/readyz")
        except StoreResponseError as exc:
            if exc.status == 503:
                return False
            raise
        return True

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections; a change-feed poll in flight on another thread ends now."""
        self._feed_sockets.shut_down()
        self._http.close()

    def __enter__(self) -> LabelStoreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reasons(raw: object) -> dict[str, Mapping[str, Any] | None]:
    """The `reasons` of an entity answer, checked for shape (absent from older stores)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, dict)) for k, v in raw.items()):
        raise TypeError("reasons must map reason names to objects or null")
    return dict(raw)
