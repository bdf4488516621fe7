"""A test kit for services that embed the SDK: labels in memory, configs in one line.

A feed service's unit test should not need a Label Store. `TestLabels` is an
in-memory label source that both clients read through their public `store=`
parameter; the clients it makes see every `add` and `remove` at once (it evicts
the changed keys from their caches, as the change feed would), and it can
simulate an outage so the surface's fail mode can be tested too::

    from enforce_sdk.testing import TestLabels, make_config

    def test_the_feed_hides_blocked_pins() -> None:
        labels = TestLabels()
        labels.add("pin:1", "block", reason="spam")
        with labels.client(make_config("home_feed")) as client:
            assert client.filter(["pin:1", "pin:2"], "home_feed") == ["pin:2"]
            with labels.outage():
                assert client.check("pin:3", "home_feed").degraded

With pytest, `pytest_plugins = ["enforce_sdk.testing.pytest_plugin"]` in a
conftest.py gives the `enforce_labels` fixture: a fresh `TestLabels` per test,
whose clients are closed after it. docs/testing.md shows a whole service test.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .._errors import StoreUnavailableError
from ..client.async_client import AsyncEnforcementClient
from ..client.client import EnforcementClient
from ..config.document import EnforcementConfig
from ..model.keys import canonical_key
from ..model.label import Enforcement, Label, MetadataValue, Source, SourceType

__all__ = ["TEST_SOURCE", "TestLabels", "make_config"]

TEST_SOURCE = Source("test", SourceType.HUMAN, "kit")
_NO_STORE = "http://enforce-sdk-test-labels.invalid"  # never contacted: reads go to TestLabels


def make_config(*surfaces: str, version: int = 1, **surface_fields: Any) -> EnforcementConfig:
    """A validated config with `surfaces` (default: "home_feed"), each with `surface_fields`
    (any surface key of docs/config.md: `hide_from="limit"`, `fail_mode="closed"`,
    `related={"domain": "block"}`, `select="..."`)."""
    names = surfaces or ("home_feed",)
    return EnforcementConfig.from_dict({
        "version": version,
        "surfaces": {name: dict(surface_fields) for name in names},
    })


class TestLabels:
    """Labels in memory, read by the clients it makes (and by any client given it as `store=`).

    Thread-safe. `reads` records the key batches the clients asked for, so a test
    can assert what cost a store round trip.
    """

    __test__ = False  # not a pytest test class despite its name

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._labels: dict[str, dict[str, Label]] = {}
        self._failure: Exception | None = None
        self._clients: weakref.WeakSet[EnforcementClient | AsyncEnforcementClient] = (
            weakref.WeakSet())
        self.reads: list[list[str]] = []

    # -- labels -------------------------------------------------------------------------

    def add(self, entity: str, enforcement: Enforcement | str = "block", *,
            reason: str = "policy_violation", source: Source = TEST_SOURCE,
            created_at: datetime | None = None, expires_at: datetime | None = None,
            confidence: float | None = None,
            metadata: Mapping[str, MetadataValue] | None = None) -> Label:
        """Label `entity` (validated like any label; one label per source, replaced)."""
        label = Label(entity, source, Enforcement.parse(enforcement), reason,
                      created_at or datetime.now(UTC), expires_at, confidence, metadata or {})
        return self.put(label)

    def put(self, label: Label) -> Label:
        """Store a label built by the caller."""
        if not isinstance(label, Label):
            raise TypeError(f"put() takes a Label, got {type(label).__name__}")
        with self._lock:
            self._labels.setdefault(label.entity, {})[label.source.key] = label
        self._changed([label.entity])
        return label

    def remove(self, entity: str, source: Source | None = None) -> int:
        """Retract `source`'s label on `entity`, or all of its labels; return how many."""
        key = canonical_key(entity)
        with self._lock:
            found = self._labels.get(key, {})
            if source is None:
                gone = len(found)
                self._labels.pop(key, None)
            else:
                gone = int(found.pop(source.key, None) is not None)
                if not found:
                    self._labels.pop(key, None)
        self._changed([key])
        return gone

    def clear(self) -> None:
        with self._lock:
            keys = list(self._labels)
            self._labels.clear()
        self._changed(keys)

    def labels(self, entity: str) -> list[Label]:
        with self._lock:
            return list(self._labels.get(canonical_key(entity), {}).values())

    # -- failures -----------------------------------------------------------------------

    def fail_reads(self, error: Exception | None) -> None:
        """Make every read raise `error` (None: read normally again)."""
        self._failure = error

    @contextlib.contextmanager
    def outage(self, message: str = "the test store is down") -> Iterator[None]:
        """Reads fail as an unreachable store's would, inside the block (caches cleared
        first, so checks reach the store and see it fail)."""
        self.fail_reads(StoreUnavailableError(message))
        self._changed(None)
        try:
            yield
        finally:
            self.fail_reads(None)

    # -- the clients --------------------------------------------------------------------

    def client(self, config: Any = None, **kwargs: Any) -> EnforcementClient:
        """An EnforcementClient reading these labels (config: default `make_config()`)."""
        made = EnforcementClient(_NO_STORE, config if config is not None else make_config(),
                                 store=self, **kwargs)
        self._clients.add(made)
        return made

    def async_client(self, config: Any = None, **kwargs: Any) -> AsyncEnforcementClient:
        """An AsyncEnforcementClient reading these labels."""
        made = AsyncEnforcementClient(_NO_STORE,
                                      config if config is not None else make_config(),
                                      store=_AsyncReader(self), **kwargs)
        self._clients.add(made)
        return made

    def close_clients(self) -> None:
        """Close every client made here that is still open (the fixture does, after a test).
        Call it outside a running event loop: async clients are closed with asyncio.run."""
        for made in list(self._clients):
            if isinstance(made, AsyncEnforcementClient):
                asyncio.run(made.aclose())
            else:
                made.close()

    def get_many(self, keys: Sequence[str]) -> dict[str, list[Label]]:
        """The sync store reader's read (what `store=` takes)."""
        asked = list(keys)
        self.reads.append(asked)
        failure = self._failure
        if failure is not None:
            raise failure
        with self._lock:
            return {k: list(found.values()) for k in asked
                    if (found := self._labels.get(k))}

    def close(self) -> None:
        """Nothing to release (a store reader's close)."""

    def _changed(self, keys: Iterable[str] | None) -> None:
        """Evict `keys` (None: everything) from every client made here, as the feed would."""
        for made in list(self._clients):
            if keys is None:
                made.cache.clear()
            else:
                made.cache.evict(keys)


class _AsyncReader:
    """TestLabels as the async client's store reader."""

    def __init__(self, labels: TestLabels) -> None:
        self._labels = labels

    async def get_many(self, keys: Sequence[str]) -> dict[str, list[Label]]:
        return self._labels.get_many(keys)

    async def aclose(self) -> None:
        """Nothing to release."""
