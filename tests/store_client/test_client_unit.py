"""LabelStoreClient against httpx.MockTransport: requests, parsing, error translation."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import msgpack
import pytest

from enforce_sdk import (
    AuthError,
    Enforcement,
    FeedTooOldError,
    InvalidInputError,
    Label,
    Source,
    SourceType,
    StoreResponseError,
    StoreUnavailableError,
    WriteOutcomeUnknownError,
)
from enforce_sdk.model.records import Action, Outcome
from enforce_sdk.model.wire import decode, encode
from enforce_sdk.store_client.client import LabelStoreClient, entity_path

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LABEL = Label("pin:1", Source("spam_model", SourceType.AUTOMATED, "v1"), Enforcement.BLOCK,
              "spam", T0)
Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, **kw: Any) -> LabelStoreClient:
    return LabelStoreClient("http://store.test", token="tok", transport=httpx.MockTransport(handler),
                            **kw)


def answer(payload: dict[str, Any], status: int = 200, fmt: str = "msgpack") -> httpx.Response:
    media = "application/msgpack" if fmt == "msgpack" else "application/json"
    return httpx.Response(status, content=encode(payload, fmt),  # type: ignore[arg-type]
                          headers={"content-type": media})


def test_put_sends_msgpack_with_token_and_parses_results() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = decode(request.content, "msgpack")
        results = [{"entity": d["entity"], "source": "spam_model/automated/v1", "outcome": "written"}
                   for d in body["labels"]]
        return answer({"results": results, "head": 7})

    with client(handler) as c:
        results = c.put(LABEL)
    assert [(r.entity, r.source, r.outcome) for r in results] == [
        ("pin:1", "spam_model/automated/v1", Outcome.WRITTEN)]
    (request,) = seen
    assert request.method == "POST" and request.url.path == "/v1/labels"
    assert request.headers["authorization"] == "Bearer tok"
    assert request.headers["content-type"] == "application/msgpack"
    sent = msgpack.unpackb(request.content, timestamp=3)
    assert sent["schema"] == 1
    assert Label.from_dict(sent["labels"][0]) == LABEL
    assert isinstance(sent["labels"][0]["created_at"], datetime)  # msgpack timestamp, not text


def test_put_chunks_by_max_batch_labels() -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        labels = decode(request.content, "json")["labels"]
        sizes.append(len(labels))
        return answer({"results": [{"entity": d["entity"], "source": "s/human/n", "outcome": "noop"}
                                   for d in labels], "head": 1}, fmt="json")

    labels = [Label(f"pin:{i}", Source("s", SourceType.HUMAN, "n"), Enforcement.BLOCK, "spam", T0)
              for i in range(5)]
    with client(handler, wire="json", max_batch_labels=2) as c:
        results = c.put(iter(labels))
    assert sizes == [2, 2, 1]
    assert [r.entity for r in results] == [f"pin:{i}" for i in range(5)]


def test_get_many_maps_aliases_and_chunks() -> None:
    calls: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys = decode(request.content, "msgpack")["keys"]
        calls.append(keys)
        labels = {}
        aliases = {}
        for k in keys:
            canonical = k.strip().lower()
            if canonical != k:
                aliases[k] = canonical
            if canonical == "pin:1":
                labels[canonical] = [LABEL.to_wire()]
        return answer({"labels": labels, "aliases": aliases, "head": 10 + len(calls)})

    with client(handler, max_batch_keys=2) as c:
        found = c.get_many(["PIN:1 ", "pin:2", "pin:3"])
        query = c.query(["pin:1"])
    assert calls[:2] == [["PIN:1 ", "pin:2"], ["pin:3"]]
    assert found == {"pin:1": [LABEL], "PIN:1 ": [LABEL]}
    assert found["pin:1"] is found["PIN:1 "]
    assert query.head == 13


def test_changes_long_poll_params_and_parsing_json() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer({"changes": [{"seq": 5, "entity": "pin:1", "source": "a/human/b",
                                    "action": "put", "at": "2026-01-01T00:00:00Z", "labeled": True}],
                       "head": 9, "oldest": 2, "next": 5}, fmt="json")

    with client(handler, wire="json", timeout=1.0) as c:
        page = c.changes(4, limit=10, wait=2.5)
    (change,) = page.changes
    assert (change.seq, change.entity, change.source_key, change.action, change.at, change.labeled) \
        == (5, "pin:1", "a/human/b", Action.PUT, T0, True)
    assert (page.head, page.oldest, page.next) == (9, 2, 5)
    params = seen[0].url.params
    assert (params["after"], params["limit"], params["wait"]) == ("4", "10", "2.5")
    assert seen[0].extensions["timeout"]["read"] == pytest.approx(3.5)  # wait + timeout


def test_entity_is_percent_encoded_in_paths() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer({"outcome": "deleted", "head": 3})

    with client(handler) as c:
        assert c.delete("image:a/b?c#d%e", Source("s", SourceType.HUMAN, "n")) is Outcome.DELETED
    assert seen[0].url.raw_path.startswith(b"/v1/labels/image:a%2Fb%3Fc%23d%25e?")
    assert seen[0].url.params["source"] == "s/human/n"
    assert entity_path("/x/", "pin:1") == "/x/pin:1"


def _raise(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc
    return handler


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("eh")],
)
def test_transport_failures_become_store_unavailable(exc: Exception) -> None:
    with client(_raise(exc)) as c, pytest.raises(StoreUnavailableError) as info:
        c.get("pin:1")
    assert info.value.__cause__ is exc
    assert "GET /v1/labels/pin:1" in str(info.value)


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(401, AuthError), (403, AuthError), (410, FeedTooOldError), (422, StoreResponseError),
     (400, StoreResponseError), (413, StoreResponseError), (500, StoreResponseError),
     (503, StoreResponseError)],
)
def test_error_statuses_are_translated(status: int, error_type: type[StoreResponseError]) -> None:
    body = {"error": "some_code", "message": "what went wrong", "field": "labels", "index": 3}

    with client(lambda r: answer(body, status)) as c, pytest.raises(error_type) as info:
        c.changes(0)
    assert type(info.value) is error_type
    assert info.value.status == status
    assert info.value.detail == body
    assert isinstance(info.value.__cause__, httpx.HTTPStatusError)
    assert "what went wrong" in str(info.value)


def test_non_protocol_error_body_is_kept_as_text() -> None:
    with client(lambda r: httpx.Response(502, text="bad gateway from proxy")) as c, \
            pytest.raises(StoreResponseError) as info:
        c.health()
    assert info.value.status == 502
    assert info.value.detail == "bad gateway from proxy"


def test_unexpected_success_shape_is_a_response_error() -> None:
    with client(lambda r: answer({"nothing": 1})) as c, pytest.raises(StoreResponseError) as info:
        c.get_many(["pin:1"])
    assert "unexpected response" in str(info.value)
    with client(lambda r: httpx.Response(200, content=b"\xc1garbage",
                                         headers={"content-type": "application/msgpack"})) as c, \
            pytest.raises(StoreResponseError, match="unreadable response"):
        c.health()


def test_ready_is_false_on_503_and_raises_on_auth_or_transport() -> None:
    with client(lambda r: answer({"error": "not_ready", "message": "down"}, 503)) as c:
        assert c.ready() is False
    with client(lambda r: answer({"status": "ready", "head": 0})) as c:
        assert c.ready() is True
    with client(_raise(httpx.ConnectError("refused"))) as c, pytest.raises(StoreUnavailableError):
        c.ready()


def test_json_wire_sends_rfc3339_labels() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return answer({"results": [], "head": 0}, fmt="json")

    with client(handler, wire="json") as c:
        c.put([LABEL])
    body = json.loads(seen[0])
    assert body["labels"][0]["created_at"] == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"url": "store:8080"}, "url"), ({"url": "ftp://x"}, "url"), ({"wire": "xml"}, "wire"),
    ({"max_batch_keys": 0}, "max_batch_keys"),
])
def test_bad_client_arguments_are_rejected_up_front(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"url": "http://store.test", **kwargs}
    with pytest.raises(InvalidInputError) as info:
        LabelStoreClient(args.pop("url"), **args)
    assert info.value.field == field


# -- writes are keyed and re-sent safely ------------------------------------------------------


def _written(request: httpx.Request, replayed: bool = False) -> httpx.Response:
    body = decode(request.content, "msgpack")
    results = [{"entity": d["entity"], "source": "spam_model/automated/v1", "outcome": "written"}
               for d in body["labels"]]
    response = answer({"results": results, "head": 3})
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def test_a_write_is_resent_with_its_key_after_a_503_and_a_timeout() -> None:
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        if len(keys) == 1:
            return answer({"error": "storage_unavailable", "message": "down"}, 503)
        if len(keys) == 2:
            raise httpx.ReadTimeout("no answer", request=request)
        return _written(request, replayed=True)

    slept: list[float] = []
    with client(handler, sleep=slept.append) as c:
        [result] = c.put(LABEL)
    assert len(set(keys)) == 1 and len(keys) == 3
    assert (result.outcome, result.replayed) == (Outcome.WRITTEN, True)
    assert slept == [0.5, 1.0]


def test_each_batch_gets_its_own_key_and_a_given_key_is_used() -> None:
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        return _written(request)

    with client(handler, max_batch_labels=1) as c:
        c.put([LABEL, LABEL])
        c.put([LABEL, LABEL], idempotency_key="batch-7")
    assert keys[0] != keys[1]
    assert keys[2:] == ["batch-7", "batch-7.1"]


def test_a_refusal_is_not_resent() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return answer({"error": "invalid_label", "message": "bad"}, 422)

    with client(handler, sleep=lambda s: None) as c, pytest.raises(StoreResponseError):
        c.put(LABEL)
    assert len(calls) == 1


def test_when_every_attempt_fails_the_error_names_the_key_to_retry_with() -> None:
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        raise httpx.ConnectError("refused", request=request)

    with (client(handler, write_retries=2, sleep=lambda s: None) as c,
          pytest.raises(WriteOutcomeUnknownError) as err):
        c.retract_many([("pin:1", "spam_model/automated/v1")])
    assert len(keys) == 3 and err.value.idempotency_key == keys[0]
    assert isinstance(err.value, StoreUnavailableError)  # callers that catch that still do
    assert "at most once" in str(err.value)
