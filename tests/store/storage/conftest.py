"""Runs every contract test against every storage backend.

A backend `<name>` takes part by appending its name to BACKENDS and providing a
`<name>_storage_factory` fixture (see tests/fixtures/sqlite_storage.py): a
callable that opens a handle on ONE fresh store isolated for the test; calling
it again opens another handle on the same data; all handles close at teardown.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from enforce_sdk.store import LabelStorage

BACKENDS = ["sqlite", "redis_cluster", "memory"]

StorageFactory = Callable[[], LabelStorage]


@pytest.fixture(params=BACKENDS, ids=BACKENDS)
def storage_factory(request: pytest.FixtureRequest) -> StorageFactory:
    factory: StorageFactory = request.getfixturevalue(f"{request.param}_storage_factory")
    return factory


@pytest.fixture
def storage(storage_factory: StorageFactory) -> LabelStorage:
    return storage_factory()


@pytest.fixture
def memory_storage_factory() -> StorageFactory:
    """The unit tests' in-memory double: every handle shares the first one's data."""
    from tests.store._memory_storage import MemoryStorage

    first = MemoryStorage()
    handles = iter([first])
    return lambda: next(handles, None) or MemoryStorage(first)
