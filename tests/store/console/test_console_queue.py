"""The review queue against a real store: roles, required note, approve/reject/escalate, conflicts."""

from __future__ import annotations

import html
import re
import threading

import httpx

from enforce_sdk.model.records import LabelStatus
from enforce_sdk.store.server import ThreadedStoreServer
from tests.store.console.conftest import WRITER_TOKEN, ConsoleSession, label, put_labels, sign_in

HELD = "bot_detector/automated/stream"


def _hold(server: ThreadedStoreServer, entity: str = "user:42", **kw: object) -> int:
    """A label held for review (automated negative on a trusted entity); its version."""
    assert put_labels(server, label(entity, HELD, "limit", "spam", confidence=0.7, **kw)) == [
        "pending"]
    held = server.service.storage.labels_of(entity)
    return next(s.seq for s in held if s.label.source.key == HELD)


def _decide(session: ConsoleSession, action: str, seq: int, note: str = "checked the account",
            entity: str = "user:42") -> httpx.Response:
    return session.post("/console/queue/decide",
                        {"entity": entity, "source": HELD, "seq": str(seq), "action": action,
                         "note": note}, from_page="/console/queue")


def _v1_get(server: ThreadedStoreServer, entity: str) -> dict[str, object]:
    answer = httpx.get(f"{server.url}/v1/labels/{entity}",
                       headers={"Authorization": f"Bearer {WRITER_TOKEN}"})
    assert answer.status_code == 200
    body: dict[str, object] = answer.json()
    return body


def test_queue_lists_held_labels_oldest_first_and_filters(console_store: ThreadedStoreServer
                                                          ) -> None:
    _hold(console_store, "user:42")
    put_labels(console_store, label("pin:7", "nsfw_model/automated/v1", "block", "porn"))
    session = sign_in(console_store, "vera")
    page = session.client.get("/console/queue").text
    entities = re.findall(r'data-entity="([^"]+)"', page)
    assert entities == ["user:42", "pin:7"]  # oldest first, not by key
    assert "2 held labels" in page
    assert 'name="action"' not in page  # a viewer sees no action buttons
    only_porn = session.client.get("/console/queue", params={"reason": "porn"}).text
    assert re.findall(r'data-entity="([^"]+)"', only_porn) == ["pin:7"]
    by_source = session.client.get("/console/queue", params={"source": "bot_detector"}).text
    assert re.findall(r'data-entity="([^"]+)"', by_source) == ["user:42"]


def test_a_viewer_cannot_act(console_store: ThreadedStoreServer) -> None:
    seq = _hold(console_store)
    viewer = sign_in(console_store, "vera")
    csrf = viewer.csrf("/console/lookup")
    answer = viewer.client.post("/console/queue/decide", data={
        "entity": "user:42", "source": HELD, "seq": str(seq), "action": "reject",
        "note": "no", "csrf": csrf})
    assert answer.status_code == 403
    assert "vera is a viewer" in html.unescape(answer.text)
    assert [s.status for s in console_store.service.storage.labels_of("user:42")] == [
        LabelStatus.PENDING]


def test_the_decide_form_needs_its_csrf_token(console_store: ThreadedStoreServer) -> None:
    seq = _hold(console_store)
    reviewer = sign_in(console_store, "rita")
    answer = reviewer.client.post("/console/queue/decide", data={
        "entity": "user:42", "source": HELD, "seq": str(seq), "action": "reject", "note": "x"})
    assert answer.status_code == 403 and "CSRF" in answer.text
    other = sign_in(console_store, "rob")  # another session's token is no good either
    answer = reviewer.client.post("/console/queue/decide", data={
        "entity": "user:42", "source": HELD, "seq": str(seq), "action": "reject", "note": "x",
        "csrf": other.csrf("/console/queue")})
    assert answer.status_code == 403
    assert len(console_store.service.storage.labels_of("user:42")) == 1


def test_a_note_is_required(console_store: ThreadedStoreServer) -> None:
    seq = _hold(console_store)
    answer = _decide(sign_in(console_store, "rita"), "reject", seq, note="   ")
    assert answer.status_code == 400 and "a note is required" in answer.text
    assert len(console_store.service.storage.labels_of("user:42")) == 1


def test_approve_writes_a_confirming_human_label(console_store: ThreadedStoreServer) -> None:
    seq = _hold(console_store)
    answer = _decide(sign_in(console_store, "rita"), "approve", seq, note="bot <b>ring</b>")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/queue?done=approve"
    served = _v1_get(console_store, "user:42")
    assert served["pending"] == []
    (active,) = served["labels"]  # type: ignore[misc]
    assert active["source"] == {"system": "console", "type": "human", "name": "rita"}
    assert (active["enforcement"], active["reason"]) == ("limit", "spam")
    assert active["metadata"] == {"review": "approve", "confirms": HELD, "note": "bot <b>ring</b>"}
    history = console_store.service.storage.history("user:42", limit=5)
    assert {e.actor for e in history[:2]} == {"console:rita"}  # the write and the dismissal
    page = sign_in(console_store, "vera").client.get("/console/entity/user:42").text
    assert "console:rita" in page and "bot &lt;b&gt;ring&lt;/b&gt;" in page


def test_reject_retracts_and_keeps_the_note(console_store: ThreadedStoreServer) -> None:
    seq = _hold(console_store)
    assert _decide(sign_in(console_store, "rita"), "reject", seq, "false positive").status_code \
        == 303
    assert console_store.service.storage.labels_of("user:42") == []
    (event, *_) = console_store.service.storage.history("user:42", limit=1)
    assert (event.action.value, event.actor) == ("delete", "console:rita")
    (review,) = console_store.service.storage.reviews("user:42")
    assert (review.action, review.actor, review.note) == ("reject", "console:rita",
                                                          "false positive")


def test_escalate_keeps_the_label_held_and_marks_it(console_store: ThreadedStoreServer) -> None:
    seq = _hold(console_store)
    assert _decide(sign_in(console_store, "rita"), "escalate", seq, "need policy").status_code \
        == 303
    page = sign_in(console_store, "vera").client.get("/console/queue").text
    assert "escalated by console:rita" in page and "need policy" in page
    assert [s.status for s in console_store.service.storage.labels_of("user:42")] == [
        LabelStatus.PENDING]
    again = _decide(sign_in(console_store, "rob"), "escalate", seq, "me too")
    assert again.status_code == 409 and "console:rita already did escalate" in again.text


def test_second_reviewer_gets_a_conflict_and_nothing_is_lost(console_store: ThreadedStoreServer
                                                             ) -> None:
    seq = _hold(console_store)
    rita, rob = sign_in(console_store, "rita"), sign_in(console_store, "rob")
    assert _decide(rita, "approve", seq, "confirmed").status_code == 303
    second = _decide(rob, "reject", seq, "looks fine to me")
    assert second.status_code == 409
    assert "console:rita" in second.text
    (active,) = _v1_get(console_store, "user:42")["labels"]  # type: ignore[misc]
    assert active["source"]["name"] == "rita"  # rob's reject did nothing


def test_simultaneous_decisions_one_wins_one_conflicts(console_store: ThreadedStoreServer
                                                       ) -> None:
    """Both forms pass the pre-check; the storage's write key lets exactly one through."""
    seq = _hold(console_store)
    sessions = [sign_in(console_store, "rita"), sign_in(console_store, "rob")]
    forms = [{"entity": "user:42", "source": HELD, "seq": str(seq), "action": a, "note": "n",
              "csrf": s.csrf("/console/queue")} for s, a in zip(sessions, ("approve", "reject"),
                                                               strict=True)]
    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def go(i: int) -> None:
        barrier.wait()
        statuses.append(sessions[i].client.post("/console/queue/decide", data=forms[i])
                        .status_code)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses) == [303, 409]
    labels = console_store.service.storage.labels_of("user:42")
    approved = [s for s in labels if s.label.source.system == "console"]
    assert (len(labels), len(approved)) in ((0, 0), (1, 1))  # reject won, or approve won
