"""Idempotency keys through a real Label Store (HTTP on loopback, SQLite underneath).

A keyed write is applied at most once: a retry of the same request, after a
lost answer or a 503 that came after the write was applied, answers the first
outcome and stores nothing twice; the same key with another request is 422; a
key still being applied is 409.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from enforce_sdk import Enforcement, Label, Source, SourceType
from enforce_sdk._errors import StorageError
from enforce_sdk.model.records import Outcome
from enforce_sdk.store import SQLiteStorage, StoreConfig
from enforce_sdk.store.server import ThreadedStoreServer, start_in_thread
from enforce_sdk.store.storage.base import AppliedBatch, WriteKey, WriteOp
from enforce_sdk.store_client.client import LabelStoreClient
from tests.helpers import wait_until

WRITER, OTHER = "writer-token-1", "writer-token-2"
LABEL: dict[str, Any] = {
    "source": {"system": "spam_model", "type": "automated", "name": "v1"},
    "enforcement": "block", "reason": "spam", "created_at": "2026-01-01T00:00:00Z",
}


def labels(*entities: str) -> dict[str, Any]:
    return {"labels": [{**LABEL, "entity": e} for e in entities]}


class FaultyStorage(SQLiteStorage):
    """SQLite with faults a test turns on: fail after applying, or hold a batch mid-apply."""

    fail_after_apply = False
    hold: threading.Event | None = None
    entered = threading.Event()

    def _apply_once(self, ops: list[WriteOp], *, actor: str, now: datetime,
                    key: WriteKey) -> AppliedBatch:
        self.entered.set()
        if self.hold is not None:
            self.hold.wait(30)
        applied = super()._apply_once(ops, actor=actor, now=now, key=key)
        if self.fail_after_apply:
            self.fail_after_apply = False
            raise StorageError("injected: the connection to storage broke after the commit")
        return applied


@pytest.fixture
def storage(tmp_path: Path) -> FaultyStorage:
    return FaultyStorage(tmp_path / "labels.db")


@pytest.fixture
def server(storage: FaultyStorage) -> Iterator[ThreadedStoreServer]:
    config = StoreConfig.from_dict({"tokens": [
        {"name": "w1", "role": "writer", "token": WRITER, "sources": ["*"]},
        {"name": "w2", "role": "writer", "token": OTHER, "sources": ["*"]},
    ]})
    with start_in_thread(config, storage=storage) as running:
        yield running


def post(server: ThreadedStoreServer, body: dict[str, Any], key: str | None,
         path: str = "/v1/labels", token: str = WRITER) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return httpx.post(server.url + path, json=body, headers=headers, timeout=30)


def changes(server: ThreadedStoreServer) -> list[tuple[int, str, str]]:
    page = server.service.storage.changes(0)
    return [(c.seq, c.entity, c.action.value) for c in page.changes]


def test_a_retry_answers_the_first_outcome_and_applies_nothing(
        server: ThreadedStoreServer) -> None:
    first = post(server, labels("pin:1", "pin:2"), "batch-0001")
    assert first.status_code == 200
    assert "Idempotent-Replayed" not in first.headers
    assert [r["outcome"] for r in first.json()["results"]] == ["written", "written"]
    retry = post(server, labels("pin:1", "pin:2"), "batch-0001")
    assert retry.status_code == 200
    assert retry.json() == first.json()  # the same answer, "written" and the same head
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert changes(server) == [(1, "pin:1", "put"), (2, "pin:2", "put")]


def test_a_lost_answer_is_recovered_by_the_retry(server: ThreadedStoreServer) -> None:
    body = json.dumps(labels("pin:7")).encode()
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/labels HTTP/1.1\r\nHost: store\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + WRITER.encode() + b"\r\nIdempotency-Key: lost-1\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        # the client goes away without reading the answer: it never learns what happened
    wait_until(lambda: server.service.storage.head_seq() == 1, "the write to be applied")
    retry = post(server, labels("pin:7"), "lost-1")
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert [r["outcome"] for r in retry.json()["results"]] == ["written"]
    assert changes(server) == [(1, "pin:7", "put")]


def test_a_503_after_the_write_was_applied_is_recovered_by_the_retry(
        server: ThreadedStoreServer, storage: FaultyStorage) -> None:
    storage.fail_after_apply = True
    failed = post(server, labels("pin:1", "pin:2"), "batch-503")
    assert failed.status_code == 503
    assert "Idempotency-Key" in failed.json()["message"]
    assert storage.head_seq() == 2  # it was applied all the same
    retry = post(server, labels("pin:1", "pin:2"), "batch-503")
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert [r["outcome"] for r in retry.json()["results"]] == ["written", "written"]
    assert retry.json()["head"] == 2
    assert changes(server) == [(1, "pin:1", "put"), (2, "pin:2", "put")]


def test_the_same_key_with_another_body_is_refused_with_422(server: ThreadedStoreServer) -> None:
    assert post(server, labels("pin:1"), "k-1").status_code == 200
    other = post(server, labels("pin:2"), "k-1")
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    assert other.json()["field"] == "Idempotency-Key"
    assert changes(server) == [(1, "pin:1", "put")]


def test_keys_belong_to_their_writer(server: ThreadedStoreServer) -> None:
    assert post(server, labels("pin:1"), "shared").status_code == 200
    theirs = post(server, labels("pin:2"), "shared", token=OTHER)  # another token's key space
    assert theirs.status_code == 200
    assert "Idempotent-Replayed" not in theirs.headers


def test_a_key_being_applied_is_refused_with_409(server: ThreadedStoreServer,
                                                 storage: FaultyStorage) -> None:
    storage.hold = threading.Event()
    storage.entered.clear()
    answers: list[httpx.Response] = []
    first = threading.Thread(target=lambda: answers.append(post(server, labels("pin:1"), "busy")))
    first.start()
    try:
        assert storage.entered.wait(30)
        second = post(server, labels("pin:1"), "busy")
        assert second.status_code == 409
        assert second.json()["error"] == "in_progress"
    finally:
        storage.hold.set()
        first.join(30)
    assert [a.status_code for a in answers] == [200]
    assert post(server, labels("pin:1"), "busy").headers["Idempotent-Replayed"] == "true"


def test_retract_and_delete_take_keys_too(server: ThreadedStoreServer) -> None:
    post(server, labels("pin:1", "pin:2"), None)
    source = "spam_model/automated/v1"
    retract = {"retract": [{"entity": "pin:1", "source": source}]}
    first = post(server, retract, "r-1", path="/v1/labels/retract")
    again = post(server, retract, "r-1", path="/v1/labels/retract")
    assert [r["outcome"] for r in again.json()["results"]] == ["deleted"]
    assert again.json() == first.json()
    headers = {"Authorization": f"Bearer {WRITER}", "Idempotency-Key": "d-1"}
    url = f"{server.url}/v1/labels/pin:2"
    deleted = httpx.delete(url, params={"source": source}, headers=headers)
    replay = httpx.delete(url, params={"source": source}, headers=headers)
    assert (deleted.json()["outcome"], replay.json()["outcome"]) == ("deleted", "deleted")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert [c[2] for c in changes(server)] == ["put", "put", "delete", "delete"]


@pytest.mark.parametrize("bad", ["", "x" * 256, "tab\there", "é"])
def test_a_malformed_key_is_refused_with_400(server: ThreadedStoreServer, bad: str) -> None:
    headers: Sequence[tuple[bytes, bytes]] = [
        (b"Authorization", f"Bearer {WRITER}".encode()), (b"Idempotency-Key", bad.encode())]
    got = httpx.post(server.url + "/v1/labels", json=labels("pin:1"), headers=list(headers))
    assert got.status_code == 400
    assert got.json()["field"] == "Idempotency-Key"
    assert changes(server) == []


# -- the producer client: keys and re-sends, end to end --------------------------------------

MODEL_LABELS = [Label(f"pin:{i}", Source("spam_model", SourceType.AUTOMATED, "v1"),
                      Enforcement.BLOCK, "spam", datetime(2026, 1, 1).astimezone())
                for i in range(3)]


def test_the_client_resends_after_a_503_and_reports_what_the_first_attempt_did(
        server: ThreadedStoreServer, storage: FaultyStorage) -> None:
    storage.fail_after_apply = True
    with LabelStoreClient(server.url, token=WRITER, sleep=lambda s: None) as client:
        results = client.put(MODEL_LABELS)
    assert [(r.outcome, r.replayed) for r in results] == [(Outcome.WRITTEN, True)] * 3
    assert [c[0] for c in changes(server)] == [1, 2, 3]  # stored once


def test_the_client_resends_after_a_timeout_and_the_batch_is_stored_once(
        server: ThreadedStoreServer, storage: FaultyStorage) -> None:
    hold = storage.hold = threading.Event()
    # The first attempt is held in storage until the client, having timed out, backs off.
    with LabelStoreClient(server.url, token=WRITER, timeout=0.5,
                          sleep=lambda s: hold.set()) as client:
        results = client.put(MODEL_LABELS)
    assert [(r.outcome, r.replayed) for r in results] == [(Outcome.WRITTEN, True)] * 3
    assert [c[0] for c in changes(server)] == [1, 2, 3]
