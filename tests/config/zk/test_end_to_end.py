"""A config pushed with the CLI changes decisions on running EnforcementClients.

Real Label Store (subprocess), real ZooKeeper, the CLI's guardrail sampling the
store's change feed, and two clients each watching the config node.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from enforce_sdk import Enforcement, Label, Source, SourceType
from enforce_sdk.cli._config import config
from enforce_sdk.client.client import EnforcementClient
from enforce_sdk.config.zk_source import ZooKeeperConfigSource
from enforce_sdk.store_client.client import LabelStoreClient
from tests.config.zk._helpers import ADMIN, ROOT, document, write_around_the_cli
from tests.fixtures.store_server import StoreServerProcess
from tests.fixtures.zookeeper import wait_for

REVIEW = Source("review_tool", SourceType.HUMAN, "alice")


@pytest.fixture
def labeled_store(store_server: StoreServerProcess) -> StoreServerProcess:
    """Ten pins limited by a human reviewer, one blocked."""
    now = datetime.now(UTC) - timedelta(minutes=1)
    labels = [Label(f"pin:{i}", REVIEW, Enforcement.LIMIT, "spam", now) for i in range(10)]
    labels.append(Label("pin:99", REVIEW, Enforcement.BLOCK, "porn", now))
    with LabelStoreClient(store_server.url, token=store_server.tokens["writer"]) as writer:
        writer.put(labels)
    return store_server


@pytest.fixture
def clients(zk_hosts: str, labeled_store: StoreServerProcess, tmp_path: Path
            ) -> Iterator[list[EnforcementClient]]:
    env = {"ENFORCE_ZK_HOSTS": zk_hosts, "ENFORCE_ZK_PATH": ROOT, "ENFORCE_ZK_AUTH": ADMIN}
    first = tmp_path / "v1.json"
    first.write_text(json.dumps(document(1)))
    res = CliRunner().invoke(config, ["push", str(first)], env=env)
    assert res.exit_code == 0, res.output
    made = [
        EnforcementClient(
            labeled_store.url,
            ZooKeeperConfigSource(zk_hosts, ROOT, cache_path=tmp_path / f"cache{i}.json"),
            token=labeled_store.tokens["reader"],
        )
        for i in range(2)
    ]
    yield made
    for client in made:
        client.close()


def test_cli_push_changes_decisions_on_running_clients(
    zk_hosts: str, labeled_store: StoreServerProcess, clients: list[EnforcementClient],
    tmp_path: Path,
) -> None:
    for client in clients:
        assert client.check("pin:3", "home_feed").visible  # limit < block: shown
        assert not client.check("pin:99", "home_feed").visible
    env = {"ENFORCE_ZK_HOSTS": zk_hosts, "ENFORCE_ZK_PATH": ROOT, "ENFORCE_ZK_AUTH": ADMIN,
           "ENFORCE_STORE_URL": labeled_store.url,
           "ENFORCE_STORE_TOKEN": labeled_store.tokens["reader"]}
    wider = tmp_path / "v2.json"
    wider.write_text(json.dumps(document(2, home_feed="limit")))

    # the guardrail samples the store: 10 of 11 entities would become hidden
    refused = CliRunner().invoke(config, ["push", str(wider)], env=env)
    assert refused.exit_code == 1, refused.output
    assert "home_feed" in refused.output and "guardrail refused" in refused.output
    assert all(c.check("pin:3", "home_feed").visible for c in clients)

    forced = CliRunner().invoke(config, ["push", str(wider), "--force", "-m", "hide limits"],
                                env=env)
    assert forced.exit_code == 0, forced.output
    for client in clients:
        wait_for(lambda c=client: not c.check("pin:3", "home_feed").visible,
                 what="the new config to change the decision")
        assert client.check("pin:3", "search").visible  # other surface unchanged

    # a rollback is a change like any other: guarded when a sample is at hand
    guarded = CliRunner().invoke(config, ["rollback", "1"], env=env)
    assert guarded.exit_code == 1 and "guardrail refused" in guarded.output
    back = CliRunner().invoke(config, ["rollback", "1", "--force"], env=env)
    assert back.exit_code == 0, back.output
    for client in clients:
        wait_for(lambda c=client: c.check("pin:3", "home_feed").visible,
                 what="the rollback to change the decision back")


def test_a_bad_document_written_around_the_cli_shows_in_the_client_stats(
    zk_hosts: str, clients: list[EnforcementClient],
) -> None:
    before = [c.check("pin:3", "home_feed") for c in clients]
    write_around_the_cli(zk_hosts, b'{"version": 9, "surfaces": ')
    for client, decision in zip(clients, before, strict=True):
        wait_for(lambda c=client: c.stats.to_dict()["config_source"]["rejected"] == 1,
                 what="the client's stats to count the rejection")
        stats = client.stats.to_dict()
        assert stats["config_version"] == 1 and stats["config_source"]["origin"] == "zookeeper"
        assert client.check("pin:3", "home_feed").enforcement == decision.enforcement
