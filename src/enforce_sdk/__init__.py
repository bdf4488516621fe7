"""enforce_sdk: decide in-process whether to show content, from labels in the Label Store."""

from ._errors import (
    AuthError,
    ConfigError,
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

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "ConfigError",
    "EnforceError",
    "Enforcement",
    "EntityKeyError",
    "FeedTooOldError",
    "InvalidInputError",
    "Label",
    "LabelValidationError",
    "NativeError",
    "SelectorSyntaxError",
    "SnapshotError",
    "Source",
    "SourceType",
    "StorageError",
    "StoreError",
    "StoreResponseError",
    "StoreUnavailableError",
    "UnknownSurfaceError",
    "__version__",
    "canonical_key",
    "domain_key_from_url",
]
