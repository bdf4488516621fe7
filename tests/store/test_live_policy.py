"""LivePolicy: the store's holder of the SDK config (store/live_policy)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from enforce_sdk.config.document import EnforcementConfig
from enforce_sdk.store.live_policy import LivePolicy, PolicyView


def view(version: int, hide_from: str = "block") -> PolicyView:
    doc: dict[str, Any] = {"version": version,
                           "surfaces": {"home_feed": {"hide_from": hide_from}}}
    config = EnforcementConfig.from_dict(doc)
    return PolicyView(version, "test", config.surfaces, config.resolvers, config.to_dict())


def test_a_new_live_policy_has_no_view() -> None:
    assert LivePolicy().current() is None


def test_set_applies_newer_versions_and_ignores_older_ones(caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    live = LivePolicy()
    seen: list[int] = []
    live.subscribe(lambda v: seen.append(v.version))
    live.set(view(2))
    live.set(view(3, "limit"))
    with caplog.at_level(logging.WARNING):
        live.set(view(1))
    current = live.current()
    assert current is not None and current.version == 3
    assert current.surfaces["home_feed"].hide_from.wire == "limit"
    assert seen == [2, 3]
    assert "older than the applied 3" in caplog.text


def test_a_failing_subscriber_does_not_keep_the_version_from_others(
        caplog: pytest.LogCaptureFixture) -> None:
    live = LivePolicy()
    seen: list[int] = []

    def broken(_view: PolicyView) -> None:
        raise RuntimeError("listener bug")

    live.subscribe(broken)
    live.subscribe(lambda v: seen.append(v.version))
    with caplog.at_level(logging.ERROR):
        live.set(view(5))
    assert seen == [5]
    current = live.current()
    assert current is not None and current.version == 5
    assert "listener of SDK config version 5 failed" in caplog.text
