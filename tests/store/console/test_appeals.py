"""Appeals against a real store: the API (its own role, validation, outbox) and the console."""

from __future__ import annotations

import re
from typing import Any

import httpx

from enforce_sdk.store.server import ThreadedStoreServer
from tests.store.console.conftest import (
    APPELLANT_TOKEN,
    READER_TOKEN,
    WRITER_TOKEN,
    ConsoleSession,
    label,
    put_labels,
    sign_in,
)

MODEL = "spam_domain_model/automated/v3"


def _api(server: ThreadedStoreServer, method: str, path: str, token: str = APPELLANT_TOKEN,
         **kw: Any) -> httpx.Response:
    return httpx.request(method, server.url + path,
                         headers={"Authorization": f"Bearer {token}"}, **kw)


def _open(server: ThreadedStoreServer, entity: str = "pin:5", **body: Any) -> dict[str, Any]:
    answer = _api(server, "POST", "/v1/appeals",
                  json={"entity": entity, "statement": "it is my own photo", **body})
    assert answer.status_code == 201, answer.text
    appeal: dict[str, Any] = answer.json()["appeal"]
    return appeal


def _decide(session: ConsoleSession, appeal_id: int, action: str,
            note: str = "original content") -> httpx.Response:
    return session.post(f"/console/appeals/{appeal_id}/decide", {"action": action, "note": note},
                        from_page=f"/console/appeals/{appeal_id}")


def test_open_an_appeal_and_read_it_back(console_store: ThreadedStoreServer) -> None:
    put_labels(console_store, label("pin:5", confidence=0.95),
               label("pin:5", "review_tool/human/rev-1", "allow", "spam"))
    appeal = _open(console_store, "PIN:5", ref="ticket-77")
    assert appeal["entity"] == "pin:5" and appeal["state"] == "open"
    assert appeal["labels"] == [MODEL]  # the negative labels only, by default
    assert (appeal["appellant"], appeal["ref"]) == ("product-appeals", "ticket-77")
    again = _api(console_store, "GET", f"/v1/appeals/{appeal['id']}")
    assert again.json()["appeal"] == appeal


def test_appeal_input_is_checked_and_nothing_is_stored(console_store: ThreadedStoreServer
                                                        ) -> None:
    put_labels(console_store, label("pin:5"))
    cases = [
        ({"entity": "pin:5"}, 400, "statement"),
        ({"entity": "nokind", "statement": "x"}, 400, "entity"),
        ({"entity": "pin:6", "statement": "x"}, 422, "entity"),  # nothing to appeal
        ({"entity": "pin:5", "statement": "x", "labels": ["a/human/b"]}, 422, "labels"),
        ({"entity": "pin:5", "statement": "x", "labels": "all"}, 400, "labels"),
        ({"entity": "pin:5", "statement": "x" * 2001}, 413, "statement"),
        ({"entity": "pin:5", "statement": "x", "extra": 1}, 400, "extra"),
    ]
    for body, status, field in cases:
        answer = _api(console_store, "POST", "/v1/appeals", json=body)
        assert (answer.status_code, answer.json().get("field")) == (status, field), body
    events = _api(console_store, "GET", "/v1/appeals/events").json()
    assert events["events"] == []


def test_appeals_have_their_own_role(console_store: ThreadedStoreServer) -> None:
    put_labels(console_store, label("pin:5"))
    body = {"entity": "pin:5", "statement": "mine"}
    for token in (READER_TOKEN, WRITER_TOKEN):
        answer = _api(console_store, "POST", "/v1/appeals", token, json=body)
        assert answer.status_code == 403 and "appellant" in answer.json()["message"]
    # and an appellant token reads no labels
    assert _api(console_store, "GET", "/v1/labels/pin:5").status_code == 403
    assert _api(console_store, "POST", "/v1/appeals", "nope", json=body).status_code == 401


def test_uphold_writes_an_allow_label_the_resolver_honours(console_store: ThreadedStoreServer
                                                           ) -> None:
    put_labels(console_store, label("pin:5", confidence=0.95))
    appeal = _open(console_store)
    reviewer = sign_in(console_store, "rita")
    listed = reviewer.client.get("/console/appeals").text
    assert f'data-appeal="{appeal["id"]}"' in listed and "it is my own photo" in listed
    answer = _decide(reviewer, appeal["id"], "uphold")
    assert answer.status_code == 303, answer.text
    served = _api(console_store, "GET", "/v1/labels/pin:5", WRITER_TOKEN).json()["labels"]
    allow = next(lb for lb in served if lb["enforcement"] == "allow")
    assert allow["source"] == {"system": "appeals", "type": "human", "name": "rita"}
    assert allow["metadata"] == {"appeal": appeal["id"], "note": "original content",
                                 "contests": MODEL}
    page = reviewer.client.get("/console/entity/pin:5").text
    assert "pin:5 on home_feed: allow (visible)" in page  # the appeal rule, from the resolver
    assert "upheld by console:rita" in page and "appeals/human/rita" in page
    events = _api(console_store, "GET", "/v1/appeals/events").json()["events"]
    assert [e["event"] for e in events] == ["opened", "upheld"]
    assert events[1]["appeal"]["decided_by"] == "console:rita"
    after = _api(console_store, "GET", "/v1/appeals/events",
                 params={"after": events[0]["seq"]}).json()
    assert [e["event"] for e in after["events"]] == ["upheld"]


def test_deny_keeps_the_labels_and_second_decision_conflicts(console_store: ThreadedStoreServer
                                                             ) -> None:
    put_labels(console_store, label("pin:5"))
    appeal = _open(console_store)
    before = console_store.service.storage.labels_of("pin:5")
    assert _decide(sign_in(console_store, "rita"), appeal["id"], "deny", "spam ring").status_code \
        == 303
    assert console_store.service.storage.labels_of("pin:5") == before
    late = _decide(sign_in(console_store, "rob"), appeal["id"], "uphold", "looks fine")
    assert late.status_code == 409
    assert "already denied by console:rita" in late.text
    assert console_store.service.storage.labels_of("pin:5") == before  # nothing written
    state = _api(console_store, "GET", f"/v1/appeals/{appeal['id']}").json()["appeal"]
    assert (state["state"], state["decision_note"]) == ("denied", "spam ring")


def test_a_viewer_cannot_decide_and_reviewer_opens_from_console(console_store: ThreadedStoreServer
                                                                ) -> None:
    put_labels(console_store, label("pin:5"))
    appeal = _open(console_store)
    viewer = sign_in(console_store, "vera")
    page = viewer.client.get(f"/console/appeals/{appeal['id']}").text
    assert 'value="uphold"' not in page
    refused = viewer.client.post(f"/console/appeals/{appeal['id']}/decide",
                                 data={"action": "uphold", "note": "x",
                                       "csrf": viewer.csrf("/console/appeals")})
    assert refused.status_code == 403
    reviewer = sign_in(console_store, "rita")
    opened = reviewer.post("/console/appeals/open", {"entity": "pin:5", "statement": "by mail"},
                           from_page="/console/entity/pin:5")
    assert opened.status_code == 303
    new_id = int(re.search(r"/console/appeals/(\d+)$", opened.headers["location"]).group(1))
    assert new_id == appeal["id"] + 1
    state = _api(console_store, "GET", f"/v1/appeals/{new_id}").json()["appeal"]
    assert (state["appellant"], state["statement"]) == ("console:rita", "by mail")
