"""Shared pieces of the ZooKeeper config tests: documents, credentials, a recording callback."""

from __future__ import annotations

import copy
import threading
from typing import Any

from kazoo.client import KazooClient

from enforce_sdk.config.document import EnforcementConfig
from enforce_sdk.config.source import ConfigMeta

ADMIN = "config-admin:admin-secret"
SDK = "sdk-host:sdk-secret"
ROOT = "/enforce_sdk/test"

_BASE: dict[str, Any] = {
    "version": 1,
    "cache": {"ttl": "60s", "negative_ttl": "30s"},
    "surfaces": {
        "home_feed": {"hide_from": "block", "fail_mode": "open"},
        "search": {"hide_from": "block", "fail_mode": "closed"},
    },
}


def document(version: int = 1, **surface_hide_from: str) -> dict[str, Any]:
    """A valid config document; `home_feed="limit"` changes that surface's hide_from."""
    doc = copy.deepcopy(_BASE)
    doc["version"] = version
    for surface, hide_from in surface_hide_from.items():
        doc["surfaces"].setdefault(surface, {})["hide_from"] = hide_from
    return doc


class Recorder:
    """An on_update callback that remembers what it was given."""

    def __init__(self) -> None:
        self.updates: list[tuple[EnforcementConfig, ConfigMeta]] = []
        self.lock = threading.Lock()

    def __call__(self, config: EnforcementConfig, meta: ConfigMeta) -> None:
        with self.lock:
            self.updates.append((config, meta))

    @property
    def versions(self) -> list[int]:
        with self.lock:
            return [c.version for c, _ in self.updates]


def admin_client(hosts: str) -> KazooClient:
    """A raw kazoo client with the admin identity, for writing around the CLI."""
    zk = KazooClient(hosts=hosts, auth_data=[("digest", ADMIN)])
    zk.start(timeout=15)
    return zk


def write_around_the_cli(hosts: str, payload: bytes) -> None:
    """Set the config node's bytes straight through kazoo (no validation, no history)."""
    from enforce_sdk.config.zk_layout import ConfigLayout

    zk = admin_client(hosts)
    try:
        zk.set(ConfigLayout(ROOT).config, payload)
    finally:
        zk.stop()
