"""`enforce-sdk serve --sdk-config`: the store follows the SDK config from a file or ZooKeeper.

Real store processes (tests/fixtures/store_server.py) and a real ZooKeeper
(tests/fixtures/zookeeper.py); what the store applied shows in `/readyz`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from enforce_sdk._errors import ConfigError
from enforce_sdk.cli._policy_feed import sdk_config_feed
from enforce_sdk.config.zk_admin import ZooKeeperConfigStore
from tests.config.zk._helpers import ADMIN, ROOT, document
from tests.fixtures.store_server import StoreServerFactory, StoreServerProcess
from tests.helpers import wait_until


def applied(server: StoreServerProcess) -> dict[str, Any] | None:
    answer = httpx.get(server.url + "/readyz", timeout=5.0)
    assert answer.status_code == 200, answer.text
    sdk: dict[str, Any] | None = answer.json().get("sdk_config")
    return sdk


def write_document(path: Path, version: int, hide_from: str = "block") -> None:
    path.write_text(json.dumps(document(version, home_feed=hide_from)))


def test_the_store_follows_a_file_and_keeps_the_last_good_version(
        store_server_factory: StoreServerFactory, tmp_path: Path) -> None:
    sdk = tmp_path / "sdk.json"
    write_document(sdk, 1)
    server = store_server_factory(sdk_config=str(sdk))
    assert applied(server) == {"version": 1, "origin": f"file:{sdk}"}

    write_document(sdk, 2, "limit")
    wait_until(lambda: (applied(server) or {}).get("version") == 2, "version 2 applied")

    sdk.write_text('{"version": 3, "surfaces": {"home_feed": {"hide_from": "bogus"}}}')
    wait_until(lambda: "rejected, keeping the applied version" in server.log_text(),
               "the invalid version logged as rejected")
    assert applied(server) == {"version": 2, "origin": f"file:{sdk}"}


def test_a_store_without_sdk_config_reports_none(
        store_server_factory: StoreServerFactory) -> None:
    assert applied(store_server_factory()) is None


def test_every_worker_feeds_itself(store_server_factory: StoreServerFactory,
                                   tmp_path: Path) -> None:
    sdk = tmp_path / "sdk.json"
    write_document(sdk, 4)
    server = store_server_factory(workers=2, sdk_config=str(sdk))
    # Fresh connections land on either worker: each must have applied the document.
    for _ in range(8):
        assert (applied(server) or {}).get("version") == 4


def test_the_store_follows_zookeeper_pushes(store_server_factory: StoreServerFactory,
                                            zk_hosts: str) -> None:
    with ZooKeeperConfigStore(zk_hosts, ROOT, auth=ADMIN) as admin:
        admin.push(document(1), expected=None)
        server = store_server_factory(sdk_config=f"zk://{zk_hosts}{ROOT}")
        first = applied(server)
        assert first is not None and first["version"] == 1
        assert first["origin"].startswith("zookeeper:")
        admin.push(document(2, home_feed="limit"), expected=admin.current())
    wait_until(lambda: (applied(server) or {}).get("version") == 2, "the pushed version applied")


def test_a_store_given_an_invalid_sdk_config_does_not_start(tmp_path: Path) -> None:
    sdk = tmp_path / "sdk.toml"
    sdk.write_text('version = 1\n[surfaces.home_feed]\nhide_from = "sometimes"\n')
    done = subprocess.run(
        [sys.executable, "-m", "enforce_sdk.cli", "serve", "--port", "0",
         "--db", str(tmp_path / "labels.db"), "--sdk-config", str(sdk), "--no-access-log"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert done.returncode != 0
    assert "surfaces.home_feed.hide_from" in done.stderr + done.stdout


@pytest.mark.parametrize("spec, message", [
    ("sdk.yaml", "give a .toml or .json file"),
    ("zk://", "no ZooKeeper hosts"),
])
def test_a_spec_that_names_no_source_is_refused(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sdk_config_feed(spec)
