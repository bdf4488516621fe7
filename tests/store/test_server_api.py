"""The v1 API through a real Label Store process on SQLite, driven by LabelStoreClient."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]
import pytest

from enforce_sdk import AuthError, Enforcement, FeedTooOldError, Label, Source, SourceType
from enforce_sdk.model.records import Action, LabelStatus, Outcome
from enforce_sdk.model.wire import decode
from enforce_sdk.store_client.client import ChangesPage, LabelStoreClient
from tests.fixtures.store_server import StoreServerFactory, StoreServerProcess
from tests.helpers import wait_until

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MODEL = Source("spam_model", SourceType.AUTOMATED, "v1")
REVIEWER = Source("review_tool", SourceType.HUMAN, "alice")


def label(entity: str, source: Source = MODEL, enforcement: str = "block", **kw: Any) -> Label:
    return Label(entity, source, Enforcement.parse(enforcement), kw.pop("reason", "spam"),
                 kw.pop("created_at", T0), **kw)


@pytest.fixture
def writer(store_server: StoreServerProcess) -> Iterator[LabelStoreClient]:
    with LabelStoreClient(store_server.url, token=store_server.tokens["writer"]) as c:
        yield c


@pytest.fixture
def reader(store_server: StoreServerProcess) -> Iterator[LabelStoreClient]:
    with LabelStoreClient(store_server.url, token=store_server.tokens["reader"]) as c:
        yield c


def connections_to(server: StoreServerProcess) -> int:
    assert server.proc is not None
    return sum(1 for c in psutil.Process(server.proc.pid).net_connections("tcp")
               if c.status == psutil.CONN_ESTABLISHED)


@pytest.mark.parametrize("wire", ["json", "msgpack"])
def test_write_read_round_trip(store_server: StoreServerProcess, wire: str) -> None:
    # Expiring, but not before the test ends: the store does not serve expired labels.
    rich = label("domain:Shop.Example.com", confidence=0.93,
                 expires_at=datetime.now(UTC) + timedelta(days=30),
                 metadata={"model_run": "2026-01-01", "score": 0.93, "flag": True, "none": None})
    other = label("pin:1", REVIEWER, "remove", reason="porn")
    with LabelStoreClient(store_server.url, token=store_server.tokens["writer"],
                          wire=wire) as c:  # type: ignore[arg-type]
        results = c.put([rich, other])
        assert [(r.entity, r.source, r.outcome) for r in results] == [
            ("domain:example.com", MODEL.key, Outcome.WRITTEN),
            ("pin:1", REVIEWER.key, Outcome.WRITTEN),
        ]
        got = c.get("domain:example.com")
        assert (got.entity, got.labels, got.pending) == ("domain:example.com", [rich], [])
        found = c.get_many(["domain:WWW.EXAMPLE.com", "pin:1", "pin:2"])
        assert found == {"domain:example.com": [rich], "domain:WWW.EXAMPLE.com": [rich],
                         "pin:1": [other]}
        assert c.query(["pin:1"]).head == 2


def test_json_request_with_msgpack_answer(store_server: StoreServerProcess) -> None:
    with httpx.Client(base_url=store_server.url) as http:
        r = http.post("/v1/labels", json={"labels": [label("pin:7").to_dict()]},
                      headers={**store_server.headers("writer"), "Accept": "application/msgpack"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/msgpack"
    assert decode(r.content, "msgpack") == {
        "schema": 1, "head": 1,
        "results": [{"entity": "pin:7", "source": MODEL.key, "outcome": "written"}]}


def test_identical_rewrite_is_noop(writer: LabelStoreClient) -> None:
    first = label("pin:1")
    assert writer.put(first)[0].outcome is Outcome.WRITTEN
    head = writer.changes(0).head
    assert writer.put(first)[0].outcome is Outcome.NOOP
    assert writer.changes(0).head == head
    assert len(writer.history("pin:1").events) == 1
    changed = label("pin:1", enforcement="limit")
    assert writer.put(changed)[0].outcome is Outcome.WRITTEN
    assert writer.get("pin:1").labels == [changed]


def test_sources_do_not_overwrite_each_other(writer: LabelStoreClient) -> None:
    a, b = label("pin:1"), label("pin:1", REVIEWER, "allow")
    writer.put(a)
    writer.put(b)
    assert sorted(writer.get("pin:1").labels, key=lambda lb: lb.source.key) == [b, a]


def test_trusted_entity_pending_flow(store_server: StoreServerProcess, writer: LabelStoreClient,
                                     reader: LabelStoreClient) -> None:
    auto = label("user:42")
    (result,) = writer.put(auto)
    assert result.outcome is Outcome.PENDING
    assert reader.get_many(["user:42"]) == {}  # pending labels are not served
    assert reader.get("user:42").labels == []
    assert reader.get("user:42").pending == [auto]
    page = reader.pending()
    assert [(p.label, p.status) for p in page.pending] == [(auto, LabelStatus.PENDING)]
    assert page.pending[0].seq == 1 and page.next is None
    assert reader.changes(0).changes[0].labeled is False

    human = label("user:42", REVIEWER, "allow", reason="appeal_upheld")
    assert writer.put(human)[0].outcome is Outcome.WRITTEN
    got = reader.get("user:42")
    assert (got.labels, got.pending) == ([human], [])
    assert reader.pending().pending == []
    assert reader.get_many(["user:42"]) == {"user:42": [human]}
    actions = [(e.action, e.source_key, e.actor) for e in reader.history("user:42").events]
    assert (Action.DISMISS, MODEL.key, "test-writer") in actions
    assert actions[-1] == (Action.PEND, MODEL.key, "test-writer")
    assert {c.action for c in reader.changes(0).changes} == {Action.PEND, Action.DISMISS, Action.PUT}


def test_pending_pages_with_a_cursor(writer: LabelStoreClient, reader: LabelStoreClient) -> None:
    names = [Source("spam_model", SourceType.AUTOMATED, f"v{i}") for i in range(3)]
    writer.put([label("domain:partner.com", s) for s in names])
    first = reader.pending(limit=2)
    assert [p.label.source for p in first.pending] == names[:2]
    assert first.next == f"domain:partner.com|{names[1].key}"
    second = reader.pending(limit=2, after=first.next)
    assert [p.label.source for p in second.pending] == names[2:]
    assert second.next is None


def test_history_pages_newest_first(writer: LabelStoreClient, reader: LabelStoreClient) -> None:
    versions = [label("pin:9", created_at=T0 + timedelta(minutes=i)) for i in range(5)]
    for v in versions:
        writer.put(v)
    assert writer.delete("pin:9", MODEL) is Outcome.DELETED
    page = reader.history("pin:9", limit=4)
    assert [e.seq for e in page.events] == [6, 5, 4, 3]
    assert page.events[0].action is Action.DELETE and page.events[0].after is None
    assert page.events[0].before == versions[-1]
    assert page.events[1].after == versions[-1] and page.events[1].before == versions[-2]
    assert page.events[1].status is LabelStatus.ACTIVE and page.events[1].actor == "test-writer"
    assert page.next_before == 3
    rest = reader.history("pin:9", limit=4, before=page.next_before)
    assert [e.seq for e in rest.events] == [2, 1]
    assert rest.events[-1].before is None and rest.next_before is None


def test_delete_and_retract(writer: LabelStoreClient, reader: LabelStoreClient) -> None:
    writer.put([label("pin:1"), label("pin:2"), label("pin:3", REVIEWER)])
    assert writer.delete("pin:1", MODEL.key) is Outcome.DELETED
    assert writer.delete("pin:1", MODEL.key) is Outcome.NOT_FOUND
    results = writer.retract_many([("pin:2", MODEL), ("pin:3", REVIEWER.key), ("pin:4", MODEL)])
    assert [r.outcome for r in results] == [Outcome.DELETED, Outcome.DELETED, Outcome.NOT_FOUND]
    assert reader.get_many(["pin:1", "pin:2", "pin:3"]) == {}
    assert [c.labeled for c in reader.changes(3).changes] == [False, False, False]


def test_awkward_entity_ids_survive_the_url(writer: LabelStoreClient) -> None:
    entity = "pin:a/b?c#d%20e&f"
    writer.put(label(entity))
    assert writer.get(entity).labels == [label(entity)]
    assert [e.entity for e in writer.history(entity).events] == [entity]
    assert writer.delete(entity, MODEL) is Outcome.DELETED


def test_change_feed_pages(writer: LabelStoreClient, reader: LabelStoreClient) -> None:
    writer.put([label(f"pin:{i}") for i in range(5)])
    writer.delete("pin:0", MODEL)
    page = reader.changes(0, limit=4)
    assert [(c.seq, c.entity, c.action, c.labeled) for c in page.changes] == [
        (1, "pin:0", Action.PUT, True), (2, "pin:1", Action.PUT, True),
        (3, "pin:2", Action.PUT, True), (4, "pin:3", Action.PUT, True)]
    assert (page.head, page.oldest, page.next) == (6, 1, 4)
    rest = reader.changes(page.next)
    assert [(c.seq, c.entity, c.action, c.labeled) for c in rest.changes] == [
        (5, "pin:4", Action.PUT, True), (6, "pin:0", Action.DELETE, False)]
    assert reader.changes(6) == ChangesPage([], 6, 1, 6)


def _long_poll(client: LabelStoreClient, after: int, wait: float) -> tuple[threading.Thread,
                                                                           list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(client.changes(after, wait=wait))
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_long_poll_returns_when_a_write_arrives(store_server: StoreServerProcess,
                                                writer: LabelStoreClient) -> None:
    writer.put(label("pin:1"))
    with LabelStoreClient(store_server.url, token=store_server.tokens["reader"]) as poller:
        thread, out = _long_poll(poller, 1, wait=10)  # the fixture's max_wait_seconds
        wait_until(lambda: connections_to(store_server) >= 2, "the long-poll to connect")
        writer.put(label("pin:2"))
        thread.join(15)
    (page,) = out
    assert isinstance(page, ChangesPage), page
    assert [(c.seq, c.entity) for c in page.changes] == [(2, "pin:2")]


def test_long_poll_sees_writes_of_another_store_process(
    store_server: StoreServerProcess, store_server_factory: StoreServerFactory
) -> None:
    peer = store_server_factory(storage={"url": f"sqlite://{store_server.db_path}"})
    assert peer.url != store_server.url
    with LabelStoreClient(peer.url, token=peer.tokens["reader"]) as poller, \
            LabelStoreClient(store_server.url, token=store_server.tokens["writer"]) as writer:
        thread, out = _long_poll(poller, 0, wait=10)
        wait_until(lambda: connections_to(peer) >= 1, "the long-poll to connect")
        writer.put(label("pin:5"))
        thread.join(15)
        (page,) = out
        assert isinstance(page, ChangesPage), page
        assert [c.entity for c in page.changes] == ["pin:5"]
        assert poller.get_many(["pin:5"]) == {"pin:5": [label("pin:5")]}


def test_feed_past_retention_is_410(store_server_factory: StoreServerFactory) -> None:
    server = store_server_factory(feed={"retention_seconds": 0.2, "prune_interval_seconds": 0.05})
    with LabelStoreClient(server.url, token=server.tokens["writer"]) as c:
        c.put([label("pin:1"), label("pin:2")])
        assert [ch.seq for ch in c.changes(0).changes] == [1, 2]

        def pruned() -> bool:
            try:
                c.changes(0)
            except FeedTooOldError:
                return True
            return False

        wait_until(pruned, "the change records to be pruned")
        with pytest.raises(FeedTooOldError) as info:
            c.changes(1)
        assert info.value.status == 410
        assert info.value.detail["error"] == "too_old"
        assert (info.value.detail["oldest"], info.value.detail["head"]) == (3, 2)
        assert c.changes(2) == ChangesPage([], 2, 3, 2)  # the head itself is still a valid position
        assert c.get_many(["pin:1"]) == {"pin:1": [label("pin:1")]}  # labels are not pruned


def test_feed_position_past_the_head_is_410(store_server: StoreServerProcess,
                                             writer: LabelStoreClient) -> None:
    """A follower ahead of the store (restored from a backup, or changes lost in a
    failover) must reload, or it would skip the numbers handed out again."""
    writer.put([label("pin:1"), label("pin:2")])
    head = writer.changes(0).head
    with pytest.raises(FeedTooOldError) as info:
        writer.changes(head + 1)
    assert info.value.status == 410
    assert info.value.detail["error"] == "too_old"
    assert info.value.detail["head"] == head
    with pytest.raises(FeedTooOldError):
        writer.changes(head + 5, wait=5)  # a long-poll too: no empty page after the wait
    assert writer.changes(head, wait=0).changes == []  # the head itself is a valid position


def test_health_and_readiness(store_server: StoreServerProcess, writer: LabelStoreClient) -> None:
    assert writer.health() == {"schema": 1, "status": "ok"}
    assert writer.ready() is True
    writer.put(label("pin:1"))
    with httpx.Client(base_url=store_server.url) as http:
        assert http.get("/readyz").json() == {"schema": 1, "status": "ready", "head": 1}


def test_wrong_token_via_client_is_auth_error(store_server: StoreServerProcess) -> None:
    with LabelStoreClient(store_server.url, token="nope") as c, pytest.raises(AuthError) as info:
        c.get("pin:1")
    assert info.value.status == 401
    with LabelStoreClient(store_server.url, token=store_server.tokens["reader"]) as c, \
            pytest.raises(AuthError) as info:
        c.put(label("pin:1"))
    assert info.value.status == 403


def test_acknowledged_writes_survive_kill_9(store_server: StoreServerProcess) -> None:
    with LabelStoreClient(store_server.url, token=store_server.tokens["writer"]) as c:
        c.put([label(f"pin:{i}") for i in range(50)])
    store_server.kill()
    store_server.start()
    with LabelStoreClient(store_server.url, token=store_server.tokens["reader"]) as c:
        assert len(c.get_many([f"pin:{i}" for i in range(50)])) == 50
        assert c.changes(0).head == 50


def test_graceful_stop_releases_long_polls(store_server: StoreServerProcess) -> None:
    with LabelStoreClient(store_server.url, token=store_server.tokens["reader"]) as poller:
        thread, out = _long_poll(poller, 0, wait=10)
        wait_until(lambda: connections_to(store_server) >= 1, "the long-poll to connect")
        store_server.stop()
        thread.join(15)
    (page,) = out
    assert page == ChangesPage([], 0, 1, 0), page  # answered, not cut off
    assert "Application shutdown complete" in store_server.log_text()
    store_server.restart()
    with LabelStoreClient(store_server.url, token=store_server.tokens["reader"]) as c:
        assert c.ready()
