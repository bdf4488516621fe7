"""The trusted header of a fronting proxy: off by default, accepted only from listed proxies."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from enforce_sdk._errors import ConfigError
from enforce_sdk.store.config import StoreConfig
from enforce_sdk.store.server import start_in_thread
from enforce_sdk.store.storage.sqlite import SQLiteStorage
from tests.store.console.conftest import store_config


def _serve(tmp_path: Path, **console: object) -> tuple[str, object]:
    server = start_in_thread(store_config(tmp_path, **console),
                             storage=SQLiteStorage(tmp_path / "labels.db"))
    return server.url, server


def test_header_names_the_person_when_it_comes_from_a_trusted_proxy(tmp_path: Path) -> None:
    url, server = _serve(tmp_path, trusted_header="X-Forwarded-User",
                         trusted_proxies=["127.0.0.1"])
    try:
        page = httpx.get(f"{url}/console/queue", headers={"X-Forwarded-User": "rita"})
        assert page.status_code == 200 and "rita (reviewer)" in page.text
        assert "Sign out" not in page.text  # the proxy owns the session
        stranger = httpx.get(f"{url}/console/queue", headers={"X-Forwarded-User": "mallory"})
        assert stranger.status_code == 303  # not a configured person: sign in
    finally:
        server.stop()  # type: ignore[attr-defined]


def test_header_from_anyone_else_is_ignored(tmp_path: Path) -> None:
    url, server = _serve(tmp_path, trusted_header="X-Forwarded-User",
                         trusted_proxies=["10.9.8.7"])
    try:
        page = httpx.get(f"{url}/console/queue", headers={"X-Forwarded-User": "ada"})
        assert page.status_code == 303
    finally:
        server.stop()  # type: ignore[attr-defined]


def test_off_by_default_and_needs_proxies(tmp_path: Path) -> None:
    assert StoreConfig.from_dict({}).console.trusted_header is None
    with pytest.raises(ConfigError, match="trusted_header needs the addresses"):
        StoreConfig.from_dict({"console": {"trusted_header": "X-Forwarded-User"}})
