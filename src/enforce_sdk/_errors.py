"""The project's exceptions: one root, one subclass per kind of failure.

    EnforceError
    ├── InvalidInputError          bad input from a caller; names what is wrong
    │   ├── EntityKeyError         a key that is not `kind:id` in canonical form
    │   ├── LabelValidationError   a label field that fails the schema
    │   ├── SelectorSyntaxError    a selector that does not parse (with position)
    │   ├── ConfigError            a config document that fails validation
    │   ├── UnknownSurfaceError    a surface the applied config does not define
    │   └── WriteKeyReusedError    an idempotency key sent again with another request
    ├── StoreError                 talking to the Label Store service failed
    │   ├── StoreUnavailableError  transport failure or timeout
    │   │   └── WriteOutcomeUnknownError  a keyed write's retries ran out: applied or not
    │   └── StoreResponseError     the store answered with an error status
    │       ├── AuthError          401 / 403
    │       └── FeedTooOldError    410: the change feed no longer holds S
    ├── NotReadyError              wait_until_ready(): the token, the store or the feed is not usable
    ├── StorageError               a storage backend failed (server side)
    ├── ConfigSourceError          reading or writing config at its source failed
    │   ├── ConfigConflictError    a compare-and-set push lost to a concurrent writer
    │   └── ConfigPermissionError  the source's ACLs refused the identity
    └── NativeError                the C extension reported an error
        └── SnapshotError          a bloom snapshot is truncated, corrupt or foreign

Errors from underlying libraries (httpx, kazoo, sqlite3, redis, C return codes)
are translated where they are caught and re-raised `from` the original.
"""

from __future__ import annotations

from typing import Any


class EnforceError(Exception):
    """Root of every error this package raises."""


class InvalidInputError(EnforceError, ValueError):
    """Input from a caller is invalid. `field` names the offending field if known."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        self.problem = message
        super().__init__(f"{field}: {message}" if field else message)


class EntityKeyError(InvalidInputError):
    """An entity key is malformed (not `kind:id`) or not canonicalisable."""


class LabelValidationError(InvalidInputError):
    """A label (or one of its fields) fails the label schema."""


class SelectorSyntaxError(InvalidInputError):
    """A selector expression failed to parse; `position` is a 0-based offset."""

    def __init__(self, message: str, *, text: str, position: int, expected: str) -> None:
        self.text = text
        self.position = position
        self.expected = expected
        pointer = f"\n  {text}\n  {' ' * position}^"
        super().__init__(
            f"{message} at position {position}: expected {expected}{pointer}", field="selector"
        )


class ConfigError(InvalidInputError):
    """A config document is invalid; the message names the path of the bad value."""


class UnknownSurfaceError(InvalidInputError, KeyError):
    """check() was called with a surface the applied config does not define."""

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return self.problem if self.field is None else f"{self.field}: {self.problem}"


class WriteKeyReusedError(InvalidInputError):
    """An idempotency key already names a different write of the same writer."""


class StoreError(EnforceError):
    """A call to the Label Store service failed."""


class StoreUnavailableError(StoreError):
    """The store could not be reached or did not answer in time."""


class WriteOutcomeUnknownError(StoreUnavailableError):
    """A write's every attempt failed without an answer saying what it did.

    It was applied at most once (the attempts shared `idempotency_key`): send it
    again with the same key, within the store's retention, to learn its outcome.
    """

    def __init__(self, message: str, *, idempotency_key: str) -> None:
        self.idempotency_key = idempotency_key
        super().__init__(message)


class StoreResponseError(StoreError):
    """The store answered with an error status; `status` and `detail` say which."""

    def __init__(self, status: int, detail: Any) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"label store answered {status}: {detail}")


class AuthError(StoreResponseError):
    """The store refused the credentials (401) or the role (403)."""


class FeedTooOldError(StoreResponseError):
    """The change feed no longer holds the requested position; reload a snapshot."""


class NotReadyError(EnforceError):
    """A client is not ready to decide: `component` says what is not usable.

    `component` is "token" (the store refused it: retrying will not help),
    "store" (unreachable or failing until the timeout) or "feed" (the change
    feed could not start).
    """

    def __init__(self, message: str, *, component: str) -> None:
        self.component = component
        super().__init__(message)


class StorageError(EnforceError):
    """A storage backend failed while serving a request."""


class ConfigSourceError(EnforceError):
    """The config source (e.g. ZooKeeper) could not be read or written."""


class ConfigConflictError(ConfigSourceError):
    """A compare-and-set config push lost: someone else pushed since it was read."""


class ConfigPermissionError(ConfigSourceError):
    """The config source refused the operation for this identity (ACL or auth)."""


class NativeError(EnforceError):
    """The native extension returned an error code."""


class SnapshotError(NativeError):
    """A bloom snapshot cannot be loaded: truncated, corrupt, foreign or future version."""
