"""wait_until_ready, status() and hooks (client/status, client/hooks), on both faces.

Against the real Label Store (tests/fixtures/store_server.py); an unreachable
store is a loopback port nobody listens on.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from enforce_sdk import (
    AsyncEnforcementClient,
    Decision,
    Enforcement,
    EnforcementClient,
    Label,
    NotReadyError,
    Source,
    SourceType,
)
from enforce_sdk.config.document import EnforcementConfig
from enforce_sdk.config.source import ConfigMeta, StaticConfigSource
from enforce_sdk.store_client.client import LabelStoreClient
from tests.fixtures.store_server import StoreServerProcess
from tests.helpers import free_port, wait_until

REVIEW = Source("review_tool", SourceType.HUMAN, "alice")
CONFIG: dict[str, Any] = {
    "version": 1,
    "surfaces": {"home_feed": {"hide_from": "block"},
                 "search": {"hide_from": "block", "fail_mode": "closed"}},
    "cache": {"ttl": "1h", "negative_ttl": "1h"},
    "store": {"timeout": "300ms", "retries": 0},
}


@pytest.fixture
def labeled(store_server: StoreServerProcess) -> StoreServerProcess:
    with LabelStoreClient(store_server.url, token=store_server.tokens["writer"]) as writer:
        writer.put([Label("pin:7", REVIEW, Enforcement.BLOCK, "spam", datetime.now(UTC))])
    return store_server


def nowhere() -> str:
    return f"http://127.0.0.1:{free_port()}"


# -- readiness and status --------------------------------------------------------------------

def test_a_ready_client_reports_its_state(labeled: StoreServerProcess) -> None:
    with EnforcementClient(labeled.url, CONFIG, token=labeled.tokens["reader"],
                           feed_wait=0.5) as client:
        client.wait_until_ready(10)
        status = client.status()
        assert status.ready and status.store_reachable is True and status.last_error is None
        assert status.feed_following and status.feed_position is not None
        assert (status.config_version, status.config_origin) == (1, "static")
        assert status.store_url == labeled.url
        assert client.status().to_dict()["ready"] is True


def test_a_refused_token_is_named_at_once(labeled: StoreServerProcess) -> None:
    with EnforcementClient(labeled.url, CONFIG, token="wrong", follow_changes=False) as client:
        with pytest.raises(NotReadyError, match="refused this client's token") as caught:
            client.wait_until_ready(30)  # refused: no waiting out the timeout
        assert caught.value.component == "token"


def test_an_unreachable_store_is_named_after_the_timeout() -> None:
    url = nowhere()
    with EnforcementClient(url, CONFIG, follow_changes=False) as client:
        assert client.status().store_reachable is None and not client.status().ready
        with pytest.raises(NotReadyError, match="no read from the store") as caught:
            client.wait_until_ready(0.5)
        assert caught.value.component == "store"
        status = client.status()
        assert status.store_reachable is False and not status.ready
        assert status.last_error is not None and status.last_error.startswith("readiness probe")
        decision = client.check("pin:1", "home_feed")
        assert decision.degraded
        assert client.status().last_error.startswith("store read")  # type: ignore[union-attr]


def test_the_timeout_must_be_positive() -> None:
    with EnforcementClient(nowhere(), CONFIG, follow_changes=False) as client:
        for bad in (0, -1, float("nan"), True):
            with pytest.raises(ValueError, match="timeout"):
                client.wait_until_ready(bad)


# -- hooks ------------------------------------------------------------------------------------

def test_config_change_hooks_see_each_applied_version() -> None:
    source = StaticConfigSource(CONFIG)
    seen: list[tuple[int, str]] = []
    with EnforcementClient(nowhere(), source, follow_changes=False) as client:
        def record(config: EnforcementConfig, meta: ConfigMeta) -> None:
            seen.append((config.version, meta.origin))

        stop = client.hooks.on_config_change(record)
        source.push({**CONFIG, "version": 2})
        source.push({**CONFIG, "version": 2})  # not newer: not applied, not shown
        stop()
        source.push({**CONFIG, "version": 3})
        assert client.config.version == 3
    assert seen == [(2, "static")]


def test_decision_hooks_see_every_decision_of_every_call(labeled: StoreServerProcess) -> None:
    with EnforcementClient(labeled.url, CONFIG, token=labeled.tokens["reader"],
                           follow_changes=False) as client:
        unobserved = client.check
        seen: list[Decision] = []
        stop = client.hooks.on_decision(seen.append, sample=1.0)
        assert client.check is not unobserved
        assert client.check("pin:7", "home_feed").visible is False
        assert client.check("pin:7", "home_feed").visible is False  # memo / native answer too
        client.check_many(["pin:1", "pin:7"], "home_feed")
        assert client.filter(["pin:7", "pin:2", "pin:3"], "home_feed") == ["pin:2", "pin:3"]
        assert [d.entity for d in seen] == ["pin:7", "pin:7", "pin:1", "pin:7", "pin:7",
                                            "pin:2", "pin:3"]
        stop()
        assert client.check == unobserved
        client.check("pin:7", "home_feed")
        assert len(seen) == 7


def test_a_sample_shows_a_share_of_the_decisions(labeled: StoreServerProcess) -> None:
    with EnforcementClient(labeled.url, CONFIG, token=labeled.tokens["reader"],
                           follow_changes=False) as client:
        seen: list[Decision] = []
        client.hooks.on_decision(seen.append, sample=0.25)
        for _ in range(20):
            client.check_many([f"pin:{i}" for i in range(100)], "home_feed")
        assert 250 < len(seen) < 750  # 2,000 decisions at 1 in 4: 500 expected (p < 1e-40 out)
        for bad in (0, 1.5, -0.1, "1"):
            with pytest.raises(ValueError, match="sample"):
                client.hooks.on_decision(seen.append, sample=bad)  # type: ignore[arg-type]


def test_degraded_hooks_see_degraded_decisions_only(labeled: StoreServerProcess) -> None:
    with EnforcementClient(labeled.url, CONFIG, token=labeled.tokens["reader"],
                           follow_changes=False) as healthy:
        shown: list[Decision] = []
        healthy.hooks.on_degraded(shown.append)
        healthy.check_many(["pin:1", "pin:7"], "home_feed")
        assert shown == []
    with EnforcementClient(nowhere(), CONFIG, follow_changes=False) as down:
        down.hooks.on_degraded(shown.append)
        down.check("pin:1", "home_feed")
        down.check_many(["pin:2", "pin:3"], "search")
        assert [(d.entity, d.visible) for d in shown] == [
            ("pin:1", True), ("pin:2", False), ("pin:3", False)]
        assert all(d.degraded for d in shown)


def test_a_raising_hook_never_breaks_a_check(labeled: StoreServerProcess,
                                             caplog: pytest.LogCaptureFixture) -> None:
    def broken(_decision: Decision) -> None:
        raise RuntimeError("hook bug")

    with EnforcementClient(labeled.url, CONFIG, token=labeled.tokens["reader"],
                           follow_changes=False) as client:
        client.hooks.on_decision(broken, sample=1.0)
        with caplog.at_level(logging.ERROR, logger="enforce_sdk.client.hooks"):
            for _ in range(3):
                assert client.check("pin:7", "home_feed").visible is False
        assert client.stats.hook_errors == 3
        assert client.status().hook_errors == 3
        logged = [r for r in caplog.records if r.name == "enforce_sdk.client.hooks"]
        assert len(logged) == 1 and logged[0].exc_info is not None  # the first, with traceback
        with pytest.raises(TypeError, match="callable"):
            client.hooks.on_degraded("not a function")  # type: ignore[arg-type]


# -- the async face ---------------------------------------------------------------------------

def test_the_async_face_waits_and_shows_decisions(labeled: StoreServerProcess) -> None:
    async def main() -> tuple[list[str], str]:
        seen: list[str] = []
        async with AsyncEnforcementClient(labeled.url, CONFIG, token=labeled.tokens["reader"],
                                          feed_wait=0.5) as client:
            await client.wait_until_ready(10)
            assert client.status().ready
            client.hooks.on_decision(lambda d: seen.append(d.entity), sample=1.0)
            assert (await client.check("pin:7", "home_feed")).visible is False
            await client.check_many(["pin:1"], "home_feed")
            assert await client.filter(["pin:7", "pin:2"], "home_feed") == ["pin:2"]
        async with AsyncEnforcementClient(labeled.url, CONFIG, token="wrong",
                                          follow_changes=False) as refused:
            with pytest.raises(NotReadyError) as caught:
                await refused.wait_until_ready(10)
        return seen, caught.value.component

    seen, component = asyncio.run(main())
    assert seen == ["pin:7", "pin:1", "pin:7", "pin:2"]
    assert component == "token"


def test_the_feed_not_starting_is_named(labeled: StoreServerProcess,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with EnforcementClient(labeled.url, CONFIG, token=labeled.tokens["reader"],
                           feed_wait=0.5) as client:
        follower = client.follower
        assert follower is not None
        wait_until(lambda: follower.position is not None, "the feed to start")
        monkeypatch.setattr(follower, "position", None)  # as if its first page never came
        with pytest.raises(NotReadyError, match="change feed did not start") as caught:
            client.wait_until_ready(0.3)
        assert caught.value.component == "feed"



def test_a_config_change_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    source = StaticConfigSource(CONFIG)
    with EnforcementClient(nowhere(), source, follow_changes=False), \
            caplog.at_level(logging.DEBUG, logger="enforce_sdk"):
        source.push({**CONFIG, "version": 2})
    at_info = [r.getMessage() for r in caplog.records
               if r.levelno >= logging.INFO and "version 2" in r.getMessage()]
    assert at_info == ["applied config version 2 from static"]
