"""The Label Checker with the SDK config's policy, over real HTTP: a store process started with
`serve --sdk-config FILE` (tests/fixtures/store_server.py), the file rewritten to push.

The registry refuses unregistered reasons with suggestions, a push extends it without a
restart, stored labels with unregistered reasons keep serving and are counted; confidence
routing holds (pending, audited like the trusted-entity hold) and drops (422, counted).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from enforce_sdk import Label, Source, SourceType
from enforce_sdk.model.records import Action, LabelStatus, Outcome
from enforce_sdk.store_client.client import LabelStoreClient
from tests.fixtures.store_server import StoreServerFactory, StoreServerProcess
from tests.helpers import wait_until

T0 = datetime(2026, 11, 1, tzinfo=UTC)
MODEL = Source("spam_model", SourceType.AUTOMATED, "v1")
REVIEWER = Source("review_tool", SourceType.HUMAN, "rev-1")
REASONS = {
    "spam": {"tier": "medium", "description": "Unsolicited bulk content", "owner": "spam-team",
             "enforcement": "block"},
    "scam": {"tier": "high", "description": "Fraud for money", "owner": "trust-fraud"},
    "appeal_upheld": {"tier": "low", "description": "An appeal was upheld", "owner": "appeals"},
}


def sdk_document(version: int, *, reasons: dict[str, Any] | None = None,
                 sources: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"version": version, "surfaces": {"home_feed": {"hide_from": "limit"}}}
    if reasons is not None:
        doc["reasons"] = reasons
    if sources is not None:
        doc["sources"] = sources
    return doc


def write(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc))


def raw_label(entity: str = "pin:1", reason: str = "spam", *, source: Source = MODEL,
              **extra: Any) -> dict[str, Any]:
    return {"entity": entity, "source": {"system": source.system, "type": source.type.value,
                                         "name": source.name},
            "enforcement": "block", "reason": reason, "created_at": "2026-11-01T00:00:00Z",
            **extra}


def post(server: StoreServerProcess, *labels: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + "/v1/labels", json={"schema": 1, "labels": list(labels)},
                      headers={"Authorization": f"Bearer {server.tokens['writer']}"},
                      timeout=10.0)


def ready(server: StoreServerProcess) -> dict[str, Any]:
    answer = httpx.get(server.url + "/readyz", timeout=5.0)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.fixture
def sdk_path(tmp_path: Path) -> Path:
    path = tmp_path / "sdk.json"
    write(path, sdk_document(1, reasons=REASONS,
                             sources={"spam_model": {"hold_below": 0.7, "drop_below": 0.2}}))
    return path


@pytest.fixture
def server(store_server_factory: StoreServerFactory, sdk_path: Path) -> StoreServerProcess:
    return store_server_factory(sdk_config=str(sdk_path))


@pytest.fixture
def reader(server: StoreServerProcess) -> Iterator[LabelStoreClient]:
    with LabelStoreClient(server.url, token=server.tokens["reader"]) as c:
        yield c


@pytest.fixture
def writer(server: StoreServerProcess) -> Iterator[LabelStoreClient]:
    with LabelStoreClient(server.url, token=server.tokens["writer"]) as c:
        yield c


def test_a_misspelt_reason_is_refused_with_a_suggestion_and_nothing_is_stored(
        server: StoreServerProcess, reader: LabelStoreClient) -> None:
    answer = post(server, raw_label("pin:1"), raw_label("pin:2", "spamm"))
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "unknown_reason" and body["field"] == "reason" and body["index"] == 1
    assert body["reason"] == "spamm" and body["suggestions"] == ["spam", "scam"]
    assert "reason 'spamm' is not registered; did you mean 'spam', 'scam'?" in body["message"]
    assert reader.get_many(["pin:1", "pin:2"]) == {}  # all or nothing
    assert ready(server)["policy"]["checker"]["refused_unregistered"] == 1


def test_a_push_extends_the_registry_without_a_restart(
        server: StoreServerProcess, sdk_path: Path) -> None:
    assert post(server, raw_label("pin:3", "clickbait")).status_code == 422
    write(sdk_path, sdk_document(2, reasons={**REASONS, "clickbait": {
        "tier": "low", "description": "Misleading teaser", "owner": "quality"}}))
    wait_until(lambda: ready(server)["sdk_config"]["version"] == 2, "version 2 applied")
    assert post(server, raw_label("pin:3", "clickbait")).status_code == 200
    assert ready(server)["policy"]["reasons"] == 4


def test_a_low_confidence_automated_label_waits_in_the_review_queue(
        server: StoreServerProcess, writer: LabelStoreClient, reader: LabelStoreClient) -> None:
    held = Label("pin:5", MODEL, "block", "spam", T0, confidence=0.55)
    (result,) = writer.put(held)
    assert result.outcome is Outcome.PENDING
    assert reader.get_many(["pin:5"]) == {}  # not served
    page = reader.pending()
    assert [(p.label, p.status) for p in page.pending] == [(held, LabelStatus.PENDING)]
    assert page.pending[0].label.confidence == 0.55
    # a confident label of the same system, and a human label, are not held
    sure = Label("pin:6", MODEL, "block", "spam", T0, confidence=0.9)
    assert writer.put(sure)[0].outcome is Outcome.WRITTEN
    # the human decision: audited as the trusted-entity hold is (pend, then dismiss)
    human = Label("pin:5", REVIEWER, "block", "spam", T0)
    assert writer.put(human)[0].outcome is Outcome.WRITTEN
    assert reader.pending().pending == []
    assert reader.get_many(["pin:5"]) == {"pin:5": [human]}
    actions = [(e.action, e.source_key) for e in reader.history("pin:5").events]
    assert sorted(actions[:2]) == sorted([(Action.PUT, REVIEWER.key), (Action.DISMISS, MODEL.key)])
    assert actions[2:] == [(Action.PEND, MODEL.key)]
    assert ready(server)["policy"]["checker"]["held_low_confidence"] == 1


def test_noise_below_drop_below_is_refused_and_counted(server: StoreServerProcess,
                                                       reader: LabelStoreClient) -> None:
    answer = post(server, raw_label("pin:7", confidence=0.1))
    assert answer.status_code == 422
    body = answer.json()
    assert (body["error"], body["field"], body["index"]) == ("low_confidence", "confidence", 0)
    assert (body["confidence"], body["drop_below"]) == (0.1, 0.2)
    assert "confidence 0.1 is below drop_below 0.2 of source system 'spam_model'" in body["message"]
    assert reader.get_many(["pin:7"]) == {}
    assert ready(server)["policy"]["checker"]["dropped_low_confidence"] == 1
    # other systems, labels without confidence and human labels are not routed
    other = Source("other_model", SourceType.AUTOMATED, "v1")
    assert post(server, raw_label("pin:8", source=other, confidence=0.1)).status_code == 200
    assert post(server, raw_label("pin:9")).status_code == 200
    assert post(server, raw_label("pin:10", source=REVIEWER, confidence=0.1)).status_code == 200


def test_the_registry_is_served_and_described_on_entity_answers(
        server: StoreServerProcess, writer: LabelStoreClient, reader: LabelStoreClient) -> None:
    registry = httpx.get(server.url + "/v1/reasons", timeout=5.0,
                         headers={"Authorization": f"Bearer {server.tokens['reader']}"}).json()
    assert registry["sdk_config"] == 1
    assert registry["registry"]["tiers"] == ["high", "medium", "low"]
    assert registry["registry"]["reasons"]["spam"] == REASONS["spam"]
    writer.put(Label("pin:11", MODEL, "block", "spam", T0))
    got = reader.get("pin:11")
    assert got.reasons == {"spam": REASONS["spam"]}


def test_stored_labels_with_unregistered_reasons_keep_serving_and_are_counted(
        store_server_factory: StoreServerFactory, tmp_path: Path) -> None:
    sdk = tmp_path / "sdk.json"
    write(sdk, sdk_document(1))  # no registry yet: any well-formed reason is accepted
    server = store_server_factory(sdk_config=str(sdk))
    assert "unregistered_stored" not in ready(server)["policy"]
    assert post(server, raw_label("pin:20", "legacy_policy"), raw_label("pin:21", "spam"),
                raw_label("pin:22", "legacy_policy", source=REVIEWER)).status_code == 200
    write(sdk, sdk_document(2, reasons=REASONS))
    wait_until(lambda: (ready(server)["policy"].get("unregistered_stored") or {}).get(
        "version") == 2, "the scan of version 2")
    scan = ready(server)["policy"]["unregistered_stored"]
    assert (scan["labels"], scan["reasons"], scan["entities_scanned"]) == (
        2, {"legacy_policy": 2}, 3)
    with LabelStoreClient(server.url, token=server.tokens["reader"]) as reader:
        assert len(reader.get_many(["pin:20", "pin:21", "pin:22"])) == 3  # still served
        assert reader.get("pin:20").reasons == {"legacy_policy": None}


def test_without_an_sdk_config_any_well_formed_reason_is_accepted(
        store_server: StoreServerProcess) -> None:
    assert post(store_server, raw_label("pin:30", "spamm", confidence=0.01)).status_code == 200
    assert "policy" not in ready(store_server)


def test_labels_get_and_pending_show_tier_description_and_confidence(
        server: StoreServerProcess, writer: LabelStoreClient) -> None:
    from click.testing import CliRunner

    from enforce_sdk.cli import main

    writer.put([Label("pin:40", MODEL, "block", "spam", T0, confidence=0.9),
                Label("pin:40", REVIEWER, "limit", "scam", T0),
                Label("pin:41", MODEL, "block", "spam", T0, confidence=0.55)])
    env = {"ENFORCE_STORE_URL": server.url, "ENFORCE_STORE_TOKEN": server.tokens["reader"]}
    got = CliRunner().invoke(main, ["labels", "get", "pin:40"], env=env)
    assert got.exit_code == 0, got.output
    assert "reasons:" in got.output
    assert "scam            high     Fraud for money  (owner trust-fraud)" in got.output
    as_json = json.loads(CliRunner().invoke(main, ["labels", "get", "pin:40", "--json"],
                                            env=env).output)
    assert as_json["reasons"]["scam"]["tier"] == "high"
    pending = CliRunner().invoke(main, ["labels", "pending"], env=env)
    assert "1 labels pending review" in pending.output and "confidence=0.55" in pending.output


def test_policy_figures_are_metrics(server: StoreServerProcess) -> None:
    assert post(server, raw_label("pin:50", "spamm")).status_code == 422
    wait_until(lambda: ready(server)["policy"].get("unregistered_stored") is not None,
               "the first scan")
    page = httpx.get(server.url + "/metrics", timeout=5.0,
                     headers={"Authorization": f"Bearer {server.tokens['reader']}"})
    assert page.status_code == 200, page.text
    assert 'enforce_store_policy_refused_unregistered{worker="0"} 1.0' in page.text
    assert 'enforce_store_policy_unregistered_stored_labels{worker="0"} 0.0' in page.text
