"""The test kit (enforce_sdk.testing) as a host team uses it: both clients, the fixture,
changes seen at once, outages answered by the fail mode, and the reads it records."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from enforce_sdk import ConfigError, LabelValidationError, Source, SourceType
from enforce_sdk.testing import TEST_SOURCE, TestLabels, make_config

REVIEW = Source("review_tool", SourceType.HUMAN, "alice")


def test_a_client_sees_labels_added_and_removed_at_once(enforce_labels: TestLabels) -> None:
    enforce_labels.add("pin:1", "block", reason="spam")
    client = enforce_labels.client()
    assert client.filter(["pin:1", "pin:2"], "home_feed") == ["pin:2"]
    enforce_labels.add("pin:2", "remove", reason="porn")  # pin:2 is cached as unlabeled
    assert client.filter(["pin:1", "pin:2"], "home_feed") == []
    assert enforce_labels.remove("pin:1") == 1
    decision = client.check("pin:1", "home_feed")
    assert decision.visible and decision.label is None
    assert client.check("pin:2", "home_feed").reason == "porn"


def test_sources_replace_their_own_labels(enforce_labels: TestLabels) -> None:
    enforce_labels.add("user:9", "limit", reason="spam")
    enforce_labels.add("user:9", "allow", reason="appeal_upheld", source=REVIEW)
    enforce_labels.add("user:9", "block", reason="spam")  # replaces the test source's limit
    assert {(lab.source, lab.enforcement.wire) for lab in enforce_labels.labels("user:9")} == {
        (TEST_SOURCE, "block"), (REVIEW, "allow")}
    assert enforce_labels.remove("user:9", REVIEW) == 1
    assert enforce_labels.remove("user:9", REVIEW) == 0


def test_surface_settings_come_from_the_config_builder(enforce_labels: TestLabels) -> None:
    enforce_labels.add("pin:1", "limit", reason="spam")
    config = make_config("home_feed", "search", hide_from="limit")
    client = enforce_labels.client(config)
    assert not client.check("pin:1", "home_feed").visible
    assert not client.check("pin:1", "search").visible
    assert enforce_labels.client().check("pin:1", "home_feed").visible  # default: block
    with pytest.raises(ConfigError, match="hide_from"):
        make_config(hide_from="sometimes")


def test_an_outage_is_answered_by_the_fail_mode(enforce_labels: TestLabels) -> None:
    enforce_labels.add("pin:1", "block", reason="spam")
    client = enforce_labels.client(make_config("feed"))  # fail_mode "open", the default
    closed = enforce_labels.client(make_config("feed", fail_mode="closed"))
    assert not client.check("pin:1", "feed").visible
    with enforce_labels.outage():
        opened = client.check("pin:5", "feed")
        shut = closed.check("pin:5", "feed")
    assert opened.degraded and opened.visible
    assert shut.degraded and not shut.visible
    assert not client.check("pin:5", "feed").degraded  # the store is back


def test_reads_are_recorded(enforce_labels: TestLabels) -> None:
    client = enforce_labels.client()
    client.check_many(["pin:1", "PIN:2", "pin:1"], "home_feed")
    client.check("pin:1", "home_feed")  # cached: no read
    assert enforce_labels.reads == [["pin:1", "pin:2"]]


def test_labels_are_validated_like_any_label(enforce_labels: TestLabels) -> None:
    with pytest.raises(LabelValidationError, match="reason"):
        enforce_labels.add("pin:1", reason="Not A Reason")
    now = datetime.now(UTC)
    enforce_labels.add("pin:1", created_at=now - timedelta(hours=2),
                       expires_at=now - timedelta(hours=1))  # expired: not served
    assert enforce_labels.client().check("pin:1", "home_feed").visible
    with pytest.raises(TypeError, match="Label"):
        enforce_labels.put("pin:1")  # type: ignore[arg-type]


def test_the_async_client_reads_the_same_labels() -> None:
    labels = TestLabels()
    labels.add("pin:1", "block", reason="spam")

    async def main() -> tuple[list[str], bool]:
        client = labels.async_client()
        visible = await client.filter(["pin:1", "pin:2"], "home_feed")
        labels.remove("pin:1")
        shown = (await client.check("pin:1", "home_feed")).visible
        return visible, shown

    assert asyncio.run(main()) == (["pin:2"], True)
    labels.close_clients()  # what the fixture does: the async client closed on its own loop
    assert all(c._closed for c in labels._clients)
