"""The service in-process over MemoryStorage: clock-driven retention, storage failures,
long-poll wake-ups, error bodies for unknown routes. The same API is exercised through a
real server on SQLite in test_server_*.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enforce_sdk import Enforcement, Label, Source, SourceType, StorageError
from enforce_sdk.model.records import LabelStatus
from enforce_sdk.model.wire import Format, decode, encode
from enforce_sdk.store import PutOp, StoreConfig, create_app
from tests.helpers import FakeClock
from tests.model.test_label import labels
from tests.store._memory_storage import MemoryStorage

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TOKENS = {"reader": "reader-token-1", "writer": "writer-token-1"}
CONFIG = StoreConfig.from_dict({
    "limits": {"max_wait_seconds": 5},
    "feed": {"retention_seconds": 60, "poll_interval_seconds": 0.02},
    "tokens": [{"name": f"t-{role}", "role": role, "token": tok,
                **({"sources": ["*"]} if role == "writer" else {})} for role, tok in TOKENS.items()],
})
AUTH = {"Authorization": f"Bearer {TOKENS['writer']}"}


def label(entity: str = "pin:1", name: str = "v1") -> Label:
    return Label(entity, Source("spam_model", SourceType.AUTOMATED, name), Enforcement.BLOCK,
                 "spam", T0)


def label_body(*labels: Label) -> dict[str, Any]:
    return {"labels": [lb.to_dict() for lb in labels]}


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture
def clock() -> FakeClock[datetime]:
    return FakeClock(T0)


@pytest.fixture
async def http(storage: MemoryStorage, clock: FakeClock[datetime]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(CONFIG, storage, clock=clock)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=transport, base_url="http://store"
    ) as c:
        c.service = app.state.service  # type: ignore[attr-defined]
        yield c


async def test_writes_are_stamped_with_the_injected_clock(
    http: httpx.AsyncClient, storage: MemoryStorage, clock: FakeClock[datetime]
) -> None:
    clock.now = T0 + timedelta(hours=3)
    r = await http.post("/v1/labels", json=label_body(label()), headers=AUTH)
    assert r.status_code == 200
    (event,) = storage.history("pin:1")
    assert event.at == T0 + timedelta(hours=3)
    assert event.actor == "t-writer"


async def test_write_batches_are_logged_with_actor_and_counts(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="enforce_sdk.store")
    body = label_body(label("pin:1"), label("pin:2"))
    await http.post("/v1/labels", json=body, headers=AUTH)
    await http.post("/v1/labels", json=body, headers=AUTH)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("enforce_sdk.store")]
    assert "write batch actor=t-writer ops=2 written=2 head=2" in messages
    assert "write batch actor=t-writer ops=2 noop=2 head=2" in messages


async def test_prune_past_retention_answers_410(
    http: httpx.AsyncClient, storage: MemoryStorage, clock: FakeClock[datetime]
) -> None:
    service = http.service  # type: ignore[attr-defined]
    await http.post("/v1/labels", json=label_body(label("pin:1"), label("pin:2")), headers=AUTH)
    assert await service.prune_once() == 0
    clock.now = T0 + timedelta(seconds=61)
    await http.post("/v1/labels", json=label_body(label("pin:3")), headers=AUTH)
    assert await service.prune_once() == 2

    r = await http.get("/v1/changes", params={"after": 0}, headers=AUTH)
    assert r.status_code == 410
    body = r.json()
    assert {k: body[k] for k in ("schema", "error", "field", "oldest", "head")} == {
        "schema": 1, "error": "too_old", "field": "after", "oldest": 3, "head": 3}
    assert "retention" in body["message"]
    ok = await http.get("/v1/changes", params={"after": 2}, headers=AUTH)
    assert ok.status_code == 200
    assert [c["entity"] for c in ok.json()["changes"]] == ["pin:3"]


async def test_expired_labels_are_not_served_then_purged_as_expire_changes(
    storage: MemoryStorage, clock: FakeClock[datetime]
) -> None:
    tokens = {"reader": "reader-token-1", "writer": "writer-token-1", "admin": "admin-token-1"}
    config = StoreConfig.from_dict({
        "storage": {"expired_grace_seconds": 3600},
        "tokens": [{"name": f"t-{role}", "role": role, "token": tok,
                    **({"sources": ["*"]} if role == "writer" else {})}
                   for role, tok in tokens.items()],
    })
    app = create_app(config, storage, clock=clock)
    short = replace(label("pin:1"), expires_at=T0 + timedelta(minutes=10))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://store"
    ) as http:
        service = app.state.service
        as_admin = {"Authorization": f"Bearer {tokens['admin']}"}
        await http.post("/v1/labels", json=label_body(short, label("pin:2")), headers=AUTH)

        async def served() -> list[str]:
            r = await http.post("/v1/labels/query", json={"keys": ["pin:1", "pin:2"]},
                                headers=AUTH)
            return sorted(r.json()["labels"])

        assert await served() == ["pin:1", "pin:2"]
        clock.now = T0 + timedelta(minutes=10)
        assert await served() == ["pin:2"]  # expired: skipped, though still stored
        got = (await http.get("/v1/labels/pin:1", headers=AUTH)).json()
        assert (got["labels"], got["pending"]) == ([], [])
        assert await service.purge_expired_once() == 0  # within the grace
        assert storage.count_labels()[LabelStatus.ACTIVE] == 2

        clock.now = T0 + timedelta(minutes=70)
        assert (await http.post("/v1/expired/purge", headers=AUTH)).status_code == 403
        r = await http.post("/v1/expired/purge", headers=as_admin)
        assert (r.status_code, r.json()) == (200, {"schema": 1, "purged": 1, "head": 3})
        changes = (await http.get("/v1/changes", params={"after": 2}, headers=AUTH)).json()
        assert [(c["seq"], c["entity"], c["action"], c["labeled"])
                for c in changes["changes"]] == [(3, "pin:1", "expire", False)]
        [event, _] = (await http.get("/v1/history/pin:1", headers=AUTH)).json()["events"]
        assert (event["action"], event["actor"], event["after"]) == ("expire", "store:expiry",
                                                                     None)
        assert Label.from_dict(event["before"]) == short
        assert storage.count_labels()[LabelStatus.ACTIVE] == 1


async def test_storage_failure_is_503_and_not_ready(
    http: httpx.AsyncClient, storage: MemoryStorage
) -> None:
    storage.fail_with = StorageError("disk on fire")
    r = await http.post("/v1/labels/query", json={"keys": ["pin:1"]}, headers=AUTH)
    assert r.status_code == 503
    assert r.json()["error"] == "storage_unavailable"
    assert "disk on fire" in r.json()["message"]
    ready = await http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["error"] == "not_ready"
    assert (await http.get("/healthz")).json() == {"schema": 1, "status": "ok"}


async def test_unexpected_error_is_500_with_error_body(
    http: httpx.AsyncClient, storage: MemoryStorage
) -> None:
    storage.fail_with = RuntimeError("bug")
    r = await http.get("/v1/labels/pin:1", headers=AUTH)
    assert r.status_code == 500
    assert r.json()["error"] == "internal"


async def test_unknown_route_and_method_have_error_bodies(http: httpx.AsyncClient) -> None:
    r = await http.get("/v2/nothing", headers={"Accept": "application/msgpack"})
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/msgpack"
    assert decode(r.content, "msgpack")["error"] == "not_found"
    r = await http.put("/v1/labels", headers=AUTH)
    assert r.status_code == 405
    assert r.json()["error"] == "method_not_allowed"
    assert "POST" in r.headers["allow"]


async def test_app_shutdown_leaves_storage_to_its_owner(storage: MemoryStorage) -> None:
    app = create_app(CONFIG, storage)
    async with app.router.lifespan_context(app):
        pass
    assert not storage.closed  # run() owns and closes the storage, not the app


async def _long_poll_then(write: str, storage: MemoryStorage) -> dict[str, Any]:
    # Without storage polling only an in-process wake-up can answer before the 5 s wait ends.
    interval = 0.02 if write == "other-process" else 3600
    config = replace(CONFIG, feed=replace(CONFIG.feed, poll_interval_seconds=interval))
    app = create_app(config, storage)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://store") as c:
        poll = asyncio.create_task(
            c.get("/v1/changes", params={"after": 0, "wait": 5}, headers=AUTH))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while app.state.service.watcher.waiters == 0 and loop.time() < deadline:
            await asyncio.sleep(0.005)
        assert app.state.service.watcher.waiters == 1, "the long-poll never started waiting"
        if write == "api":
            r = await c.post("/v1/labels", json=label_body(label()), headers=AUTH)
            assert r.status_code == 200
        elif write == "other-process":  # a write straight into storage, as a peer process does
            await asyncio.to_thread(storage.apply, [PutOp(label())], actor="peer", now=T0)
        else:
            app.state.service.watcher.close()
        response = await poll
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_long_poll_wakes_on_a_write_through_this_process(storage: MemoryStorage) -> None:
    body = await _long_poll_then("api", storage)
    assert [(c["seq"], c["entity"], c["action"]) for c in body["changes"]] == [(1, "pin:1", "put")]
    assert body["next"] == 1


async def test_long_poll_wakes_on_a_write_by_another_process(storage: MemoryStorage) -> None:
    body = await _long_poll_then("other-process", storage)
    assert [c["entity"] for c in body["changes"]] == ["pin:1"]


async def test_long_poll_is_released_at_shutdown(storage: MemoryStorage) -> None:
    body = await _long_poll_then("shutdown", storage)
    assert body["changes"] == [] and body["next"] == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(labels(), min_size=1, max_size=6, unique_by=lambda lb: lb.key),
       st.sampled_from(["json", "msgpack"]))
def test_any_valid_labels_round_trip_through_the_api(batch: list[Label], fmt: Format) -> None:
    async def scenario() -> tuple[int, dict[str, Any], dict[str, Any]]:
        # Read before any label could expire (each expires after it was created).
        first = min(lb.created_at for lb in batch)
        app = create_app(CONFIG, MemoryStorage(), clock=lambda: first)
        media = {"Content-Type": f"application/{fmt}", "Accept": f"application/{fmt}", **AUTH}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://store") as c:
            form = [lb.to_wire() if fmt == "msgpack" else lb.to_dict() for lb in batch]
            put = await c.post("/v1/labels", headers=media,
                               content=encode({"labels": form}, fmt))
            keys = [lb.entity for lb in batch]
            got = await c.post("/v1/labels/query", headers=media,
                               content=encode({"keys": keys}, fmt))
        return (put.status_code, decode(got.content, fmt), decode(put.content, fmt))

    status, found, written = asyncio.run(scenario())
    assert status == 200, written
    assert [r["outcome"] for r in written["results"]] == ["written"] * len(batch)
    served = {(e, Label.from_dict(d).source.key): Label.from_dict(d)
              for e, items in found["labels"].items() for d in items}
    assert served == {lb.key: lb for lb in batch}
