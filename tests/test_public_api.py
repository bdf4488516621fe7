"""The public API is exactly what __init__ re-exports: nothing leaks, nothing goes missing."""

from __future__ import annotations

import inspect

import enforce_sdk

EXPECTED = {
    # clients and what they return
    "EnforcementClient", "AsyncEnforcementClient", "Decision", "Cause", "Stats",
    "ClientStatus", "Hooks",
    # labels
    "Label", "Source", "SourceType", "Enforcement", "canonical_key", "domain_key_from_url",
    # config
    "EnforcementConfig", "SurfaceConfig", "Selector", "ConfigSource", "ConfigMeta",
    "FileConfigSource", "StaticConfigSource", "ZooKeeperConfigSource", "ZooKeeperConfigStore",
    # the store's producer client
    "LabelStoreClient",
    # native
    "BloomFilter", "signature", "signatures",
    # errors
    "EnforceError", "InvalidInputError", "EntityKeyError", "LabelValidationError",
    "SelectorSyntaxError", "ConfigError", "UnknownSurfaceError", "StoreError",
    "StoreUnavailableError", "StoreResponseError", "AuthError", "FeedTooOldError",
    "StorageError", "ConfigSourceError", "ConfigConflictError", "ConfigPermissionError",
    "NativeError", "SnapshotError", "WriteOutcomeUnknownError", "NotReadyError",
    "__version__",
}


def test_all_is_exactly_the_public_api() -> None:
    assert set(enforce_sdk.__all__) == EXPECTED
    assert len(enforce_sdk.__all__) == len(set(enforce_sdk.__all__))


def test_every_public_name_resolves() -> None:
    for name in enforce_sdk.__all__:
        assert getattr(enforce_sdk, name) is not None, name


def test_every_error_derives_from_the_root() -> None:
    errors = [getattr(enforce_sdk, n) for n in enforce_sdk.__all__ if n.endswith("Error")]
    assert errors
    for cls in errors:
        assert inspect.isclass(cls) and issubclass(cls, enforce_sdk.EnforceError), cls


WINGS = {"model", "native", "policy", "config", "store_client", "client", "store", "cli", "demo"}


def test_public_modules_stay_private() -> None:
    public = {n for n in dir(enforce_sdk) if not n.startswith("_")}
    # nothing leaks but the wings (the package's folders, docs/architecture.md)
    assert public - set(enforce_sdk.__all__) <= WINGS
