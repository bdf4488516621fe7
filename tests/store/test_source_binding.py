"""Writers bound to their sources, against a real Label Store (tests/fixtures/store_server.py).

`bot_writer` may write and retract `bot_detector/automated` labels only; `writer` has
`sources = ["*"]`; `admin` may act on any source.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.store_server import StoreServerProcess

T = "2026-01-01T00:00:00Z"


def body(*labels: tuple[str, str, str]) -> dict[str, Any]:
    return {"labels": [
        {"entity": entity, "source": dict(zip(("system", "type", "name"), source.split("/"),
                                                 strict=True)),
         "enforcement": enforcement, "reason": "spam", "created_at": T}
        for entity, source, enforcement in labels
    ]}


@pytest.fixture
def http(store_server: StoreServerProcess) -> httpx.Client:
    return httpx.Client(base_url=store_server.url, timeout=10)


def head(http: httpx.Client, server: StoreServerProcess) -> int:
    r = http.get("/v1/changes", params={"after": 0, "limit": 1}, headers=server.headers("reader"))
    return int(r.json()["head"])


def test_a_bound_writer_writes_its_own_sources(http: httpx.Client,
                                               store_server: StoreServerProcess) -> None:
    r = http.post("/v1/labels", json=body(("user:7", "bot_detector/automated/v2", "limit")),
                  headers=store_server.headers("bot_writer"))
    assert r.status_code == 200 and r.json()["results"][0]["outcome"] == "written", r.text
    events = http.get("/v1/history/user:7", headers=store_server.headers("reader")).json()
    assert events["events"][0]["actor"] == "test-bot-writer"  # the audit names the token


@pytest.mark.parametrize(("labels", "index", "source"), [
    ([("pin:1", "review_tool/human/rev-0042", "allow")], 0, "review_tool/human/rev-0042"),
    ([("pin:1", "bot_detector/human/x", "block")], 0, "bot_detector/human/x"),  # no human grant
    ([("pin:1", "bot_detector/automated/v2", "block"), ("pin:2", "spam_model/automated/v1",
                                                         "block")], 1, "spam_model/automated/v1"),
])
def test_a_forged_source_is_403_naming_it_and_nothing_is_stored(
    http: httpx.Client, store_server: StoreServerProcess,
    labels: list[tuple[str, str, str]], index: int, source: str,
) -> None:
    before = head(http, store_server)
    r = http.post("/v1/labels", json=body(*labels), headers=store_server.headers("bot_writer"))
    assert r.status_code == 403, r.text
    error = r.json()
    assert error["error"] == "forbidden" and error["field"] == "source"
    assert error["index"] == index and source in error["message"]
    assert "bot_detector/automated" in error["message"]  # what it may write, said
    assert head(http, store_server) == before


def test_a_bound_writer_cannot_retract_or_delete_another_sources_label(
    http: httpx.Client, store_server: StoreServerProcess,
) -> None:
    human = "review_tool/human/rev-1"
    r = http.post("/v1/labels", json=body(("pin:9", human, "block")),
                  headers=store_server.headers("writer"))
    assert r.status_code == 200, r.text
    before = head(http, store_server)
    bot = store_server.headers("bot_writer")
    r = http.delete("/v1/labels/pin:9", params={"source": human}, headers=bot)
    assert r.status_code == 403 and human in r.json()["message"], r.text
    r = http.post("/v1/labels/retract", json={"retract": [{"entity": "pin:9", "source": human}]},
                  headers=bot)
    assert r.status_code == 403 and r.json()["index"] == 0, r.text
    assert head(http, store_server) == before
    admin = http.delete("/v1/labels/pin:9", params={"source": human},
                        headers=store_server.headers("admin"))
    assert admin.status_code == 200 and admin.json()["outcome"] == "deleted"


def test_a_bound_writer_cannot_forge_the_human_that_decides_a_pending_label(
    http: httpx.Client, store_server: StoreServerProcess,
) -> None:
    """The issue's attack: a model's token wrote as a human reviewer, dismissing another
    producer's pending label on a trusted entity and serving an allow."""
    pending = http.post("/v1/labels", json=body(("user:42", "spam_model/automated/v1", "block")),
                        headers=store_server.headers("writer"))
    assert pending.json()["results"][0]["outcome"] == "pending"
    forged = http.post("/v1/labels", json=body(("user:42", "review_tool/human/rev-0042", "allow")),
                       headers=store_server.headers("bot_writer"))
    assert forged.status_code == 403
    listed = http.get("/v1/pending", headers=store_server.headers("reader")).json()
    assert [p["label"]["entity"] for p in listed["pending"]] == ["user:42"]  # waits for a human
