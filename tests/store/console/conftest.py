"""A real Label Store (uvicorn on a thread, SQLite in tmp) with the console and people.

`console_store` serves the console with three people (one per role), the SDK
config of docs/examples/enforce.toml applied to its LivePolicy (as
`enforce-sdk serve --sdk-config` does), and a trusted entity `user:42`.
`ConsoleSession` is an httpx client signed in as one of them that reads each
form's CSRF token from the page, as a browser does.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from enforce_sdk.config.document import EnforcementConfig
from enforce_sdk.store.config import StoreConfig
from enforce_sdk.store.console.auth import hash_password
from enforce_sdk.store.live_policy import PolicyView
from enforce_sdk.store.server import ThreadedStoreServer, start_in_thread
from enforce_sdk.store.storage.sqlite import SQLiteStorage

ROOT = Path(__file__).resolve().parents[3]
SDK_CONFIG = ROOT / "docs" / "examples" / "enforce.toml"
PASSWORDS = {"vera": "viewer-pass-1", "rita": "reviewer-pass-1", "rob": "reviewer-pass-2",
             "ada": "admin-pass-1"}
ROLES = {"vera": "viewer", "rita": "reviewer", "rob": "reviewer", "ada": "admin"}
WRITER_TOKEN = "writer-token-0123456789"
APPELLANT_TOKEN = "appellant-token-0123456789"
READER_TOKEN = "reader-token-0123456789"
ADMIN_TOKEN = "admin-token-0123456789"
_CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
HASHES = {name: hash_password(pw) for name, pw in PASSWORDS.items()}


def policy_view(version: int = 1) -> PolicyView:
    document = tomllib.loads(SDK_CONFIG.read_text())
    config = EnforcementConfig.from_dict(document)
    return PolicyView(version=version, origin=f"file:{SDK_CONFIG}", surfaces=config.surfaces,
                      resolvers=config.resolvers, document=document)


def store_config(tmp_path: Path, **console: Any) -> StoreConfig:
    return StoreConfig.from_dict({
        "storage": {"url": f"sqlite://{tmp_path / 'labels.db'}"},
        "checker": {"trusted_entities": ["user:42", "pin:7"]},
        "limits": {"max_metadata_bytes": 1024},
        "tokens": [{"name": "test-writer", "role": "writer", "sources": ["*"],
                    "token": WRITER_TOKEN},
                   {"name": "product-appeals", "role": "appellant", "token": APPELLANT_TOKEN},
                   {"name": "feed-hosts", "role": "reader", "token": READER_TOKEN},
                   {"name": "ops-admin", "role": "admin", "token": ADMIN_TOKEN}],
        "console": {"users": [{"name": n, "role": ROLES[n], "password_hash": HASHES[n]}
                              for n in PASSWORDS], **console},
    })


@pytest.fixture
def console_store(tmp_path: Path) -> Iterator[ThreadedStoreServer]:
    config = store_config(tmp_path)
    server = start_in_thread(config, storage=SQLiteStorage(tmp_path / "labels.db"))
    server.service.live_policy.set(policy_view())
    try:
        yield server
    finally:
        server.stop()


def put_labels(server: ThreadedStoreServer, *labels: dict[str, Any]) -> list[str]:
    """Write through the v1 API as a producer; the outcomes."""
    answer = httpx.post(f"{server.url}/v1/labels", json={"labels": list(labels)},
                        headers={"Authorization": f"Bearer {WRITER_TOKEN}"})
    assert answer.status_code == 200, answer.text
    return [r["outcome"] for r in answer.json()["results"]]


def label(entity: str, source: str = "spam_domain_model/automated/v3", enforcement: str = "block",
          reason: str = "spam", **extra: Any) -> dict[str, Any]:
    system, kind, name = source.split("/")
    return {"entity": entity, "source": {"system": system, "type": kind, "name": name},
            "enforcement": enforcement, "reason": reason,
            "created_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(), **extra}


@dataclass
class ConsoleSession:
    """A browser-like client: cookies kept, CSRF tokens read from the pages."""

    client: httpx.Client

    def csrf(self, path: str) -> str:
        page = self.client.get(path)
        assert page.status_code == 200, page.text
        match = _CSRF_RE.search(page.text)
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def post(self, path: str, form: dict[str, str], *, from_page: str) -> httpx.Response:
        return self.client.post(path, data={**form, "csrf": self.csrf(from_page)})


def sign_in(server: ThreadedStoreServer, name: str) -> ConsoleSession:
    client = httpx.Client(base_url=server.url, follow_redirects=False)
    session = ConsoleSession(client)
    answer = session.post("/console/login", {"name": name, "password": PASSWORDS[name]},
                          from_page="/console/login")
    assert answer.status_code == 303, answer.text
    return session
