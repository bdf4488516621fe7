"""Opening a storage backend from its URL, through a registry of scheme -> opener.

Built in: `sqlite:///abs/path/labels.db` (absolute) and `sqlite:relative/path.db`
(relative to the working directory). Other backends register an opener for
their scheme with `register_backend` (e.g. `redis-cluster`), so this module
never has to import a backend it does not use.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..._errors import ConfigError
from .base import LabelStorage

StorageOpener = Callable[[str], LabelStorage]
"""Builds a backend from the full storage URL; raises ConfigError on a bad URL."""

_OPENERS: dict[str, StorageOpener] = {}


def register_backend(scheme: str, opener: StorageOpener) -> None:
    """Make `open_storage` hand URLs of `scheme` to `opener` (last registration wins)."""
    _OPENERS[scheme.lower()] = opener


def backend_schemes() -> list[str]:
    return sorted(_OPENERS)


def check_storage_url(url: str) -> str:
    """Return the scheme of a storage URL; ConfigError if it is malformed or unknown."""
    if not isinstance(url, str) or ":" not in url:
        raise ConfigError(f"{url!r} is not a storage URL (e.g. sqlite:///var/labels.db)",
                          field="storage.url")
    scheme = url.split(":", 1)[0].lower()
    if scheme not in _OPENERS:
        known = ", ".join(f"{s}:" for s in backend_schemes())
        raise ConfigError(f"unknown storage scheme {scheme!r} in {url!r} (known: {known})",
                          field="storage.url")
    return scheme


def open_storage(url: str) -> LabelStorage:
    """Open the backend a storage URL names; ConfigError for a bad or unknown URL."""
    return _OPENERS[check_storage_url(url)](url)


def sqlite_path(url: str) -> Path:
    """The database file a sqlite URL names.

    `sqlite:///abs/path.db` -> /abs/path.db; `sqlite:rel/path.db` or
    `sqlite://./rel/path.db` -> a path relative to the working directory.
    """
    if not url.lower().startswith("sqlite:"):
        raise ConfigError(f"{url!r} is not a sqlite URL", field="storage.url")
    rest = url[len("sqlite:"):]
    if rest.startswith("///"):
        path = "/" + rest[3:].lstrip("/")
    elif rest.startswith("//"):
        path = rest[2:]
        if not path.startswith("."):
            raise ConfigError(
                f"{url!r}: use sqlite:///abs/path.db for an absolute path or "
                f"sqlite:rel/path.db for a relative one (sqlite URLs take no host)",
                field="storage.url",
            )
    else:
        path = rest
    if "?" in path or "#" in path:
        raise ConfigError(f"{url!r}: sqlite URLs take no query or fragment", field="storage.url")
    if not path or path.endswith("/"):
        raise ConfigError(f"{url!r} names no database file", field="storage.url")
    return Path(path)


def _open_sqlite(url: str) -> LabelStorage:
    path = sqlite_path(url)
    from .sqlite import SQLiteStorage  # imported on use: backends load only when configured

    path.parent.mkdir(parents=True, exist_ok=True)
    return SQLiteStorage(path)


register_backend("sqlite", _open_sqlite)


def _open_redis_cluster(url: str) -> LabelStorage:
    from .redis_cluster.storage import open_redis_cluster  # imported on use, like sqlite

    return open_redis_cluster(url)


register_backend("redis-cluster", _open_redis_cluster)
