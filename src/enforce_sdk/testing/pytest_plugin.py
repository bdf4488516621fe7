"""The test kit's pytest fixture: `pytest_plugins = ["enforce_sdk.testing.pytest_plugin"]`.

`enforce_labels` is a fresh `TestLabels` per test; every client it made and the
test did not close is closed after the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import TestLabels


@pytest.fixture
def enforce_labels() -> Iterator[TestLabels]:
    """An empty in-memory label source (enforce_sdk.testing.TestLabels)."""
    labels = TestLabels()
    yield labels
    labels.close_clients()
