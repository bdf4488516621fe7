"""The Label Store service: the single source of truth for labels (the `[server]` extra).

This is the store's facade: run it (`run`, `create_app`, `LabelStoreService`),
configure it (`StoreConfig`), and pick a backend (`open_storage`,
`SQLiteStorage`, `RedisClusterStorage`, all behind `LabelStorage`). Names load
on first use, so importing one backend does not import the web stack or the
other backends. The records a backend returns (`StoredLabel`, `AuditEvent`,
`ChangeRecord`, ...) live in `enforce_sdk.model.records` and are re-exported here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..model.records import (
        Action,
        AuditEvent,
        ChangePage,
        ChangeRecord,
        LabelStatus,
        Outcome,
        StoredLabel,
    )
    from .app import LabelStoreService, create_app
    from .bloom_snapshot import BloomSnapshot, BloomSnapshots
    from .checker import LabelChecker, LabelRejectedError
    from .config import Role, StorageSection, StoreConfig, TokenEntry, hash_token
    from .head_watcher import HeadWatcher
    from .server import run
    from .storage.backends import check_storage_url, open_storage
    from .storage.base import DeleteOp, ExpireOp, LabelStorage, PutOp, WriteOp
    from .storage.redis_cluster.storage import RedisClusterStorage
    from .storage.sqlite import SQLiteStorage

_WHERE = {
    "enforce_sdk.model.records": ("Action", "AuditEvent", "ChangePage", "ChangeRecord",
                                  "LabelStatus", "Outcome", "StoredLabel"),
    "enforce_sdk.store.app": ("LabelStoreService", "create_app"),
    "enforce_sdk.store.bloom_snapshot": ("BloomSnapshot", "BloomSnapshots"),
    "enforce_sdk.store.checker": ("LabelChecker", "LabelRejectedError"),
    "enforce_sdk.store.config": ("Role", "StorageSection", "StoreConfig", "TokenEntry",
                                 "hash_token"),
    "enforce_sdk.store.head_watcher": ("HeadWatcher",),
    "enforce_sdk.store.server": ("run",),
    "enforce_sdk.store.storage.backends": ("check_storage_url", "open_storage"),
    "enforce_sdk.store.storage.base": ("DeleteOp", "ExpireOp", "LabelStorage", "PutOp",
                                       "WriteOp"),
    "enforce_sdk.store.storage.redis_cluster.storage": ("RedisClusterStorage",),
    "enforce_sdk.store.storage.sqlite": ("SQLiteStorage",),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "Action",
    "AuditEvent",
    "BloomSnapshot",
    "BloomSnapshots",
    "ChangePage",
    "ChangeRecord",
    "DeleteOp",
    "ExpireOp",
    "HeadWatcher",
    "LabelChecker",
    "LabelRejectedError",
    "LabelStatus",
    "LabelStorage",
    "LabelStoreService",
    "Outcome",
    "PutOp",
    "RedisClusterStorage",
    "Role",
    "SQLiteStorage",
    "StorageSection",
    "StoreConfig",
    "StoredLabel",
    "TokenEntry",
    "WriteOp",
    "check_storage_url",
    "create_app",
    "hash_token",
    "open_storage",
    "run",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'enforce_sdk.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))
