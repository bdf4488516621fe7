"""Bad input through a real Label Store on SQLite: each answer has the right status, an
error body that names the problem, and nothing is stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import msgpack
import pytest

from enforce_sdk.model.wire import decode, encode
from tests.fixtures.store_server import StoreServerProcess, StoreServerStartError

GOOD: dict[str, Any] = {
    "entity": "pin:1",
    "source": {"system": "spam_model", "type": "automated", "name": "v1"},
    "enforcement": "block",
    "reason": "spam",
    "created_at": "2026-01-01T00:00:00Z",
}


def good(i: int) -> dict[str, Any]:
    return {**GOOD, "entity": f"pin:{i}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServerProcess]:
    # One server for the module: every case asserts that it stored nothing, so they cannot
    # disturb each other (and a case that does store something fails its own assertion).
    proc = StoreServerProcess(tmp_path_factory.mktemp("store-bad-input"))
    try:
        proc.start()
    except StoreServerStartError as exc:
        pytest.fail(f"Label Store did not start: {exc}")
    yield proc
    proc.kill()


@pytest.fixture
def http(server: StoreServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def state(http: httpx.Client, server: StoreServerProcess) -> tuple[int, Any]:
    """Head of the feed and the labels of the entities the cases write: both must not move."""
    h = server.headers("reader")
    head = http.get("/readyz").json()["head"]
    keys = [f"pin:{i}" for i in range(5)] + ["user:42"]
    labels = http.post("/v1/labels/query", json={"keys": keys}, headers=h).json()["labels"]
    return head, labels


def check(response: httpx.Response, status: int, code: str, *fragments: str,
          field: str | None = None, index: int | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = decode(response.content, "msgpack" if "msgpack" in response.headers["content-type"]
                  else "json")
    assert body["schema"] == 1
    assert body["error"] == code, body
    for fragment in fragments:
        assert fragment in body["message"], body
    if field is not None:
        assert body.get("field") == field, body
    if index is not None:
        assert body.get("index") == index, body
    return body


def post(http: httpx.Client, server: StoreServerProcess, path: str, content: bytes,
         content_type: str | None = "application/json", role: str | None = "writer",
         **headers: str) -> httpx.Response:
    h = dict(headers)
    if content_type is not None:
        h["Content-Type"] = content_type
    if role is not None:
        h.update(server.headers(role))
    return http.post(path, content=content, headers=h)


def as_json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


LABEL_CASES = [
    ("wrong type of field", {**GOOD, "reason": 7}, "reason", "must match"),
    ("unknown enforcement", {**GOOD, "enforcement": "nuke"}, "enforcement", "unknown enforcement"),
    ("confidence out of range", {**GOOD, "confidence": 1.5}, "confidence", "0..1"),
    ("unknown field", {**GOOD, "colour": "red"}, "label", "colour"),
    ("bad entity", {**GOOD, "entity": "nokind"}, "entity", "kind:id"),
    ("source not an object", {**GOOD, "source": "x/y/z"}, "source", "system, type, name"),
    ("missing created_at", {k: v for k, v in GOOD.items() if k != "created_at"}, "created_at",
     "required"),
    ("naive time", {**GOOD, "created_at": "2026-01-01T00:00:00"}, "created_at", "time zone"),
    ("metadata int past 64 bits", {**GOOD, "metadata": {"n": 10**30}}, "metadata", "64-bit"),
    ("metadata lone surrogate", {**GOOD, "metadata": {"a": "\ud800"}}, "metadata", "surrogate"),
    ("metadata not an object", {**GOOD, "metadata": False}, "metadata", "must be an object"),
    ("entity lone surrogate", {**GOOD, "entity": "pin:\ud800"}, "entity", "surrogate"),
    ("domain with a port", {**GOOD, "entity": "domain:example.com:8080"}, "entity", "no port"),
    # out of range once in UTC: these were 500s with a traceback (OverflowError)
    ("created_at past year 9999 in UTC", {**GOOD, "created_at": "9999-12-31T23:59:59-01:00"},
     "created_at", "out of range"),
    ("created_at before year 1 in UTC", {**GOOD, "created_at": "0001-01-01T00:00:00+01:00"},
     "created_at", "out of range"),
    ("expires_at past year 9999 in UTC", {**GOOD, "expires_at": "9999-12-31T23:59:59-01:00"},
     "expires_at", "out of range"),
    ("confidence a 401-digit integer", {**GOOD, "confidence": 10**400}, "confidence",
     "characters)"),
    ("entity key with 200 KB of spaces", {**GOOD, "entity": "pin:1" + " " * 200_000}, "entity",
     "over the limit"),
]


@pytest.mark.parametrize(("case", "bad", "field", "fragment"), LABEL_CASES,
                         ids=[c[0] for c in LABEL_CASES])
def test_invalid_label_among_good_ones_is_422_and_nothing_stored(
    http: httpx.Client, server: StoreServerProcess, case: str, bad: dict[str, Any], field: str,
    fragment: str,
) -> None:
    before = state(http, server)
    r = post(http, server, "/v1/labels", as_json({"labels": [good(2), good(3), bad, good(4)]}))
    body = check(r, 422, "invalid_label", fragment, field=field, index=2)
    assert body["message"].startswith(f"label 2: {field}: ")
    assert state(http, server) == before


def test_invalid_label_in_msgpack_is_422(http: httpx.Client, server: StoreServerProcess) -> None:
    before = state(http, server)
    r = post(http, server, "/v1/labels",
             encode({"labels": [good(1), {**GOOD, "confidence": -0.1}]}, "msgpack"),
             "application/x-msgpack", Accept="application/msgpack")
    assert r.headers["content-type"] == "application/msgpack"
    check(r, 422, "invalid_label", "confidence", field="confidence", index=1)
    assert state(http, server) == before


@pytest.mark.parametrize(
    ("content", "content_type", "fragment"),
    [
        (b'{"labels": [', "application/json", "malformed json"),
        (b"\xc1\xc1", "application/msgpack", "malformed msgpack"),
        (msgpack.packb({"labels": [GOOD]}) + b"\x00", "application/msgpack", "malformed msgpack"),
        (b"[1, 2]", "application/json", "must be an object"),
        (b"", "application/json", "empty body"),
        (b'{"schema": 2, "labels": []}', "application/json", "unsupported schema"),
    ],
    ids=["json", "msgpack", "msgpack-trailing", "not-object", "empty", "schema"],
)
def test_malformed_body_is_400(http: httpx.Client, server: StoreServerProcess, content: bytes,
                               content_type: str, fragment: str) -> None:
    before = state(http, server)
    check(post(http, server, "/v1/labels", content, content_type), 400, "malformed_body", fragment)
    assert state(http, server) == before


@pytest.mark.parametrize(
    ("payload", "field", "fragment"),
    [
        ({"labels": {"a": 1}}, "labels", "must be a list"),
        ({"labels": []}, "labels", "must not be empty"),
        ({"label": [GOOD]}, "label", "unknown field"),
        ({}, "labels", "'labels' list"),
    ],
)
def test_bad_envelope_is_400(http: httpx.Client, server: StoreServerProcess,
                             payload: dict[str, Any], field: str, fragment: str) -> None:
    before = state(http, server)
    check(post(http, server, "/v1/labels", as_json(payload)), 400, "bad_request", fragment,
          field=field)
    assert state(http, server) == before


def test_oversized_body_is_413(http: httpx.Client, server: StoreServerProcess) -> None:
    before = state(http, server)
    limit = server.sections["limits"]["max_body_bytes"]
    padded = {"labels": [{**good(1), "metadata": {"pad": "x" * (limit + 10)}}]}
    check(post(http, server, "/v1/labels", as_json(padded)), 413, "too_large", str(limit),
          field="body")
    assert state(http, server) == before


def test_oversized_chunked_body_is_413(http: httpx.Client, server: StoreServerProcess) -> None:
    """Without Content-Length the limit is enforced while the stream is read."""
    before = state(http, server)
    limit = server.sections["limits"]["max_body_bytes"]

    def chunks() -> Iterator[bytes]:
        yield b'{"labels": ['
        for _ in range(limit // 1000 + 2):
            yield b" " * 1000

    r = http.post("/v1/labels", content=chunks(),
                  headers={"Content-Type": "application/json", **server.headers("writer")})
    assert "content-length" not in r.request.headers
    check(r, 413, "too_large", str(limit), field="body")
    assert state(http, server) == before


def test_too_many_labels_is_413(http: httpx.Client, server: StoreServerProcess) -> None:
    before = state(http, server)
    n = server.sections["limits"]["max_batch_labels"] + 1
    r = post(http, server, "/v1/labels", as_json({"labels": [good(i % 5) for i in range(n)]}))
    check(r, 413, "too_large", f"{n} items", field="labels")
    assert state(http, server) == before


def test_too_many_keys_is_413(http: httpx.Client, server: StoreServerProcess) -> None:
    n = server.sections["limits"]["max_batch_keys"] + 1
    r = post(http, server, "/v1/labels/query",
             as_json({"keys": [f"pin:{i}" for i in range(n)]}), role="reader")
    check(r, 413, "too_large", f"{n} items", field="keys")


def test_metadata_over_store_limit_is_413(http: httpx.Client, server: StoreServerProcess) -> None:
    before = state(http, server)
    limit = server.sections["limits"]["max_metadata_bytes"]
    big = {**good(3), "metadata": {"note": "x" * limit}}
    r = post(http, server, "/v1/labels", as_json({"labels": [good(1), big]}))
    check(r, 413, "too_large", f"limit of {limit} bytes", field="metadata", index=1)
    assert state(http, server) == before


@pytest.mark.parametrize(
    ("headers", "status", "fragment"),
    [
        ({}, 401, "missing Authorization"),
        ({"Authorization": "Bearer not-a-token"}, 401, "unknown token"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "Bearer"),
    ],
    ids=["missing", "wrong", "scheme"],
)
def test_bad_credentials_are_401(http: httpx.Client, server: StoreServerProcess,
                                 headers: dict[str, str], status: int, fragment: str) -> None:
    before = state(http, server)
    r = http.post("/v1/labels", json={"labels": [good(1)]}, headers=headers)
    check(r, status, "unauthorized", fragment)
    assert r.headers["www-authenticate"].startswith("Bearer")
    for method, path in [("GET", "/v1/labels/pin:1"), ("GET", "/v1/changes?after=0"),
                         ("DELETE", "/v1/labels/pin:1?source=a/human/b"), ("GET", "/v1/pending")]:
        check(http.request(method, path, headers=headers), 401, "unauthorized")
    assert state(http, server) == before


def test_reader_token_cannot_write_403(http: httpx.Client, server: StoreServerProcess) -> None:
    before = state(http, server)
    r = post(http, server, "/v1/labels", as_json({"labels": [good(1)]}), role="reader")
    check(r, 403, "forbidden", "test-reader", "reader", "writer")
    r = http.delete("/v1/labels/pin:1", params={"source": "a/human/b"},
                    headers=server.headers("reader"))
    check(r, 403, "forbidden")
    r = post(http, server, "/v1/labels/retract",
             as_json({"retract": [{"entity": "pin:1", "source": "a/human/b"}]}), role="reader")
    check(r, 403, "forbidden")
    assert state(http, server) == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_unsupported_content_type_is_415(http: httpx.Client, server: StoreServerProcess,
                                         content_type: str | None) -> None:
    before = state(http, server)
    r = post(http, server, "/v1/labels", as_json({"labels": [good(1)]}), content_type)
    check(r, 415, "unsupported_media_type", "application/json", "application/msgpack")
    assert state(http, server) == before


@pytest.mark.parametrize(
    ("params", "field", "fragment"),
    [
        ({}, "after", "required"),
        ({"after": "x"}, "after", "integer"),
        ({"after": "-1"}, "after", ">= 0"),
        ({"after": "0", "limit": "0"}, "limit", ">= 1"),
        ({"after": "0", "limit": "ten"}, "limit", "integer"),
        ({"after": str(2**63), "limit": "1"}, "after", "<= 9223372036854775807"),
        ({"after": "0", "wait": "soon"}, "wait", "number of seconds"),
        ({"after": "0", "wait": "-1"}, "wait", ">= 0"),
        ({"after": "0", "wait": "nan"}, "wait", ">= 0"),
    ],
)
def test_bad_feed_parameters_are_400(http: httpx.Client, server: StoreServerProcess,
                                     params: dict[str, str], field: str, fragment: str) -> None:
    r = http.get("/v1/changes", params=params, headers=server.headers("reader"))
    check(r, 400, "bad_parameter", fragment, field=field)


@pytest.mark.parametrize(
    ("path", "params", "status", "code", "field"),
    [
        ("/v1/history/pin:1", {"limit": "0"}, 400, "bad_parameter", "limit"),
        ("/v1/history/pin:1", {"before": "x"}, 400, "bad_parameter", "before"),
        ("/v1/history/nokind", {}, 400, "bad_key", "entity"),
        ("/v1/pending", {"limit": "-3"}, 400, "bad_parameter", "limit"),
        ("/v1/pending", {"after": "no-separator"}, 400, "bad_parameter", "after"),
        ("/v1/pending", {"after": "pin:1|not-a-source"}, 400, "bad_request", "after"),
        ("/v1/labels/nokind", {}, 400, "bad_key", "entity"),
        ("/v1/labels/pin:%FF", {}, 400, "bad_key", "entity"),  # not UTF-8: was read as U+FFFD
        ("/v1/history/pin:%C3%28", {}, 400, "bad_key", "entity"),
        ("/v1/labels/pin:a%E2%80%AEb", {}, 400, "bad_key", "entity"),  # U+202E, valid UTF-8
    ],
)
def test_bad_read_parameters_are_400(http: httpx.Client, server: StoreServerProcess, path: str,
                                     params: dict[str, str], status: int, code: str,
                                     field: str) -> None:
    check(http.get(path, params=params, headers=server.headers("reader")), status, code,
          field=field)


def test_bad_query_key_names_its_index(http: httpx.Client, server: StoreServerProcess) -> None:
    r = post(http, server, "/v1/labels/query", as_json({"keys": ["pin:1", "user:2", "nokind"]}),
             role="reader")
    check(r, 400, "bad_key", "kind:id", field="keys", index=2)
    r = post(http, server, "/v1/labels/query", as_json({"keys": ["pin:1", 5]}), role="reader")
    check(r, 400, "bad_key", "string", field="keys", index=1)


def test_bad_retract_batch_stores_nothing(http: httpx.Client, server: StoreServerProcess) -> None:
    h = server.headers("writer")
    assert http.post("/v1/labels", json={"labels": [good(0)]}, headers=h).status_code == 200
    before = state(http, server)
    good_item = {"entity": "pin:0", "source": "spam_model/automated/v1"}
    for items, code, field in [
        ([good_item, {"entity": "pin:0", "source": "nope"}], "bad_request", "source"),
        ([good_item, {"entity": "bad", "source": "a/human/b"}], "bad_key", "entity"),
        ([good_item, {"entity": 5, "source": "a/human/b"}], "bad_key", "entity"),
        ([good_item, {"entity": "pin:0", "source": "a/human/b", "x": 1}], "bad_request", "x"),
        ([good_item, "pin:0"], "bad_request", "retract"),
    ]:
        r = post(http, server, "/v1/labels/retract", as_json({"retract": items}))
        check(r, 400, code, field=field, index=1)
    r = http.delete("/v1/labels/pin:0", headers=h)
    check(r, 400, "bad_parameter", "source", field="source")
    r = http.delete("/v1/labels/pin:0", params={"source": "a/robot/b"}, headers=h)
    check(r, 400, "bad_request", "human", field="source")
    assert state(http, server) == before
