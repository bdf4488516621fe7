"""enforce_sdk: decide in-process whether to show content, from labels in the Label Store.

This module is the public facade: the names in `__all__` are the API, whatever
folder they live in (see docs/architecture.md). Optional extras and heavy
dependencies load lazily (PEP 562 `__getattr__`): `ZooKeeperConfigSource` and
`ZooKeeperConfigStore` import kazoo (the `[zookeeper]` extra) only when first
used, so a service with a file config never imports it;
`AsyncEnforcementClient` imports asyncio only when first used; numpy loads on
the first bloom mask (native/lazy_numpy). tests/test_lazy_imports.py holds this.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._errors import (
    AuthError,
    ConfigConflictError,
    ConfigError,
    ConfigPermissionError,
    ConfigSourceError,
    EnforceError,
    EntityKeyError,
    FeedTooOldError,
    InvalidInputError,
    LabelValidationError,
    NativeError,
    NotReadyError,
    SelectorSyntaxError,
    SnapshotError,
    StorageError,
    StoreError,
    StoreResponseError,
    StoreUnavailableError,
    UnknownSurfaceError,
    WriteOutcomeUnknownError,
)
from .client.client import EnforcementClient
from .client.hooks import Hooks
from .client.stats import Stats
from .client.status import ClientStatus
from .config.document import EnforcementConfig
from .config.source import ConfigMeta, ConfigSource, FileConfigSource, StaticConfigSource
from .model.keys import canonical_key, domain_key_from_url
from .model.label import Enforcement, Label, Source, SourceType
from .native.bloom import BloomFilter, signature, signatures
from .policy.decision import Cause, Decision
from .policy.selector import Selector
from .policy.surface import SurfaceConfig
from .store_client.client import LabelStoreClient

if _TYPE_CHECKING:
    from .client.async_client import AsyncEnforcementClient
    from .config.zk_admin import ZooKeeperConfigStore
    from .config.zk_source import ZooKeeperConfigSource

__version__ = "0.1.0"

# name -> module that defines it, imported on first access (module __getattr__, PEP 562)
_LAZY = {
    "AsyncEnforcementClient": "enforce_sdk.client.async_client",
    "ZooKeeperConfigSource": "enforce_sdk.config.zk_source",
    "ZooKeeperConfigStore": "enforce_sdk.config.zk_admin",
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'enforce_sdk' has no attribute {name!r}")
    import importlib

    try:
        value = getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name != "kazoo":
            raise
        raise ImportError(
            f"enforce_sdk.{name} needs ZooKeeper support: pip install 'enforce-sdk[zookeeper]'"
        ) from exc
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "AsyncEnforcementClient",
    "AuthError",
    "BloomFilter",
    "Cause",
    "ClientStatus",
    "ConfigConflictError",
    "ConfigError",
    "ConfigMeta",
    "ConfigPermissionError",
    "ConfigSource",
    "ConfigSourceError",
    "Decision",
    "EnforceError",
    "Enforcement",
    "EnforcementClient",
    "EnforcementConfig",
    "EntityKeyError",
    "FeedTooOldError",
    "FileConfigSource",
    "Hooks",
    "InvalidInputError",
    "Label",
    "LabelStoreClient",
    "LabelValidationError",
    "NativeError",
    "NotReadyError",
    "Selector",
    "SelectorSyntaxError",
    "SnapshotError",
    "Source",
    "SourceType",
    "StaticConfigSource",
    "Stats",
    "StorageError",
    "StoreError",
    "StoreResponseError",
    "StoreUnavailableError",
    "SurfaceConfig",
    "UnknownSurfaceError",
    "WriteOutcomeUnknownError",
    "ZooKeeperConfigSource",
    "ZooKeeperConfigStore",
    "__version__",
    "canonical_key",
    "domain_key_from_url",
    "signature",
    "signatures",
]
