"""`POST /v1/labels/query` in the compact form: stored bodies, spliced, beside the full form.

A real Label Store process on SQLite (tests/fixtures/store_server.py). The
compact answer is the fast path; the full form is the reference: both must
decode to the same labels for the same keys.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from enforce_sdk import Enforcement, Label, Source, SourceType
from enforce_sdk.model import wire
from enforce_sdk.store_client.client import LabelStoreClient
from enforce_sdk.store_client.query import parse_query
from tests.fixtures.store_server import StoreServerProcess

NOW = datetime.now(UTC).replace(microsecond=0)
MODEL = Source("spam_model", SourceType.AUTOMATED, "v1")
OTHER = Source("bot_detector", SourceType.AUTOMATED, "rt")
REVIEWER = Source("review_tool", SourceType.HUMAN, "alice")


def post(server: StoreServerProcess, body: dict[str, Any], accept: str = wire.MSGPACK_TYPE
         ) -> httpx.Response:
    return httpx.post(server.url + "/v1/labels/query", content=wire.encode(body, "msgpack"),
                      headers={**server.headers("reader"), "Accept": accept,
                               "Content-Type": wire.MSGPACK_TYPE}, timeout=10)


def seed(server: StoreServerProcess) -> None:
    labels = [
        Label("pin:1", MODEL, Enforcement.BLOCK, "spam", NOW, confidence=0.75,
              metadata={"run": "r1", "note": "<script>x</script>"}),
        Label("pin:1", OTHER, Enforcement.LIMIT, "bots", NOW,
              expires_at=NOW + timedelta(days=1)),
        Label("pin:2", MODEL, Enforcement.REMOVE, "spam", NOW - timedelta(days=2),
              expires_at=NOW - timedelta(days=1)),  # expired: served by neither form
        Label("user:7", REVIEWER, Enforcement.ALLOW, "appeal_upheld", NOW),
        Label("domain:example.com", MODEL, Enforcement.BLOCK, "phishing", NOW),
    ]
    with LabelStoreClient(server.url, token=server.tokens["writer"]) as writer:
        writer.put(labels)


def test_the_compact_answer_decodes_to_what_the_full_answer_says(
        store_server: StoreServerProcess) -> None:
    seed(store_server)
    keys = ["pin:1", "PIN:1", "pin:2", "user:7", "domain:example.com", "pin:404"]
    full = post(store_server, {"keys": keys})
    compact = post(store_server, {"keys": keys, "form": "compact"})
    assert full.status_code == compact.status_code == 200, compact.text
    assert compact.headers["content-type"] == wire.MSGPACK_TYPE
    assert len(compact.content) < len(full.content)
    fast = parse_query(wire.decode(compact.content, "msgpack"))
    reference = parse_query(wire.decode(full.content, "msgpack"))
    assert fast.labels == reference.labels
    assert fast.head == reference.head > 0
    assert sorted(fast.labels) == ["PIN:1", "domain:example.com", "pin:1", "user:7"]
    assert [lab.source for lab in fast.labels["pin:1"]] == [OTHER, MODEL]  # by source key


def test_the_sdk_reads_in_compact_form_and_agrees_with_the_json_client(
        store_server: StoreServerProcess) -> None:
    seed(store_server)
    keys = ["pin:1", "pin:2", "user:7", "domain:example.com", "pin:404"]
    token = store_server.tokens["reader"]
    with LabelStoreClient(store_server.url, token=token) as fast, \
            LabelStoreClient(store_server.url, token=token, wire="json") as reference:
        assert fast._compact and not reference._compact
        assert fast.get_many(keys) == reference.get_many(keys)
        assert fast._compact  # the store took the compact form: no fallback happened


@pytest.mark.parametrize("body, accept, status, message", [
    ({"keys": ["pin:1"], "form": "compact"}, wire.JSON_TYPE, 406, "msgpack only"),
    ({"keys": ["pin:1"], "form": "tiny"}, wire.MSGPACK_TYPE, 400, "must be one of"),
    ({"keys": ["pin:1"], "form": 3}, wire.MSGPACK_TYPE, 400, "must be one of"),
])
def test_a_form_the_store_cannot_give_is_refused_by_name(
        store_server: StoreServerProcess, body: dict[str, Any], accept: str, status: int,
        message: str) -> None:
    answer = post(store_server, body, accept)
    assert answer.status_code == status
    problem = wire.decode(answer.content, wire.format_of(answer.headers["content-type"]))
    assert problem["field"] == "form" and message in problem["message"]


def test_against_a_store_without_the_compact_form_the_sdk_falls_back_once() -> None:
    asked: list[dict[str, Any]] = []

    def older_store(request: httpx.Request) -> httpx.Response:
        body = wire.decode(request.content, "msgpack")
        asked.append(body)
        if "form" in body:  # what a store before the compact form answers
            problem = {"error": "bad_request", "message": "unknown field(s) form",
                       "field": "form"}
            return httpx.Response(400, content=wire.encode(problem, "msgpack"),
                                  headers={"Content-Type": wire.MSGPACK_TYPE})
        label = Label("pin:1", MODEL, Enforcement.BLOCK, "spam", NOW)
        answer = {"labels": {"pin:1": [label.to_wire()]}, "head": 3}
        return httpx.Response(200, content=wire.encode(answer, "msgpack"),
                              headers={"Content-Type": wire.MSGPACK_TYPE})

    with LabelStoreClient("http://store.test", transport=httpx.MockTransport(older_store)) as c:
        first = c.get_many(["pin:1"])
        second = c.get_many(["pin:1"])
    assert first == second and [lab.reason for lab in first["pin:1"]] == ["spam"]
    assert [("form" in body) for body in asked] == [True, False, False]
