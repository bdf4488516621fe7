"""enforce_sdk: decide in-process whether to show content, from labels in the Label Store."""

from ._async_client import AsyncEnforcementClient
from ._bloom import BloomFilter, signature, signatures
from ._client import EnforcementClient
from ._config import EnforcementConfig, SurfaceConfig
from ._config_source import ConfigMeta, ConfigSource, FileConfigSource, StaticConfigSource
from ._decision import Cause, Decision
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
    SelectorSyntaxError,
    SnapshotError,
    StorageError,
    StoreError,
    StoreResponseError,
    StoreUnavailableError,
    UnknownSurfaceError,
)
from ._keys import canonical_key, domain_key_from_url
from ._model import Enforcement, Label, Source, SourceType
from ._selector import Selector
from ._stats import Stats
from ._store_client import LabelStoreClient
from ._zk_admin import ZooKeeperConfigStore
from ._zk_source import ZooKeeperConfigSource

__version__ = "0.1.0"

__all__ = [
    "AsyncEnforcementClient",
    "AuthError",
    "BloomFilter",
    "Cause",
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
    "InvalidInputError",
    "Label",
    "LabelStoreClient",
    "LabelValidationError",
    "NativeError",
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
    "ZooKeeperConfigSource",
    "ZooKeeperConfigStore",
    "__version__",
    "canonical_key",
    "domain_key_from_url",
    "signature",
    "signatures",
]
