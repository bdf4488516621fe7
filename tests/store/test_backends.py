"""open_storage: sqlite URL forms, the scheme registry, unknown schemes."""

from __future__ import annotations

from pathlib import Path

import pytest

from enforce_sdk import ConfigError
from enforce_sdk.store import LabelStorage
from enforce_sdk.store.storage import backends as _backends
from enforce_sdk.store.storage.backends import open_storage, register_backend, sqlite_path
from tests.store._memory_storage import MemoryStorage


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///abs/dir/labels.db", Path("/abs/dir/labels.db")),
        ("sqlite:////abs/labels.db", Path("/abs/labels.db")),
        ("sqlite:var/labels.db", Path("var/labels.db")),
        ("sqlite:./var/labels.db", Path("var/labels.db")),
        ("sqlite://./var/labels.db", Path("var/labels.db")),
        ("SQLITE:///x.db", Path("/x.db")),
    ],
)
def test_sqlite_url_forms(url: str, path: Path) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize("url", ["sqlite://host/x.db", "sqlite:///", "sqlite:///x.db?mode=ro",
                                 "sqlite:"])
def test_bad_sqlite_urls(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        sqlite_path(url)
    assert info.value.field == "storage.url"


def test_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown storage scheme 'postgres'.*sqlite:"):
        open_storage("postgres://db/labels")
    with pytest.raises(ConfigError, match="not a storage URL"):
        open_storage("labels.db")


def test_registered_opener_receives_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_backends, "_OPENERS", dict(_backends._OPENERS))
    seen: list[str] = []

    def opener(url: str) -> LabelStorage:
        seen.append(url)
        return MemoryStorage()

    register_backend("Memory", opener)
    assert isinstance(open_storage("memory://x"), MemoryStorage)
    assert seen == ["memory://x"]
    assert "memory" in _backends.backend_schemes()
