"""The design point a bloom snapshot is served with (X-Bloom-Capacity, X-Bloom-FP-Rate)."""

from __future__ import annotations

import httpx
import pytest

from enforce_sdk.store_client.client import _bloom_design


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Bloom-Capacity": "65536", "X-Bloom-FP-Rate": "0.01"}, (65536, 0.01)),
        ({}, (None, None)),  # an older store: the reader assumes the default rate
        ({"X-Bloom-Capacity": "many", "X-Bloom-FP-Rate": "1.5"}, (None, None)),
        ({"X-Bloom-Capacity": "0", "X-Bloom-FP-Rate": "nan"}, (None, None)),
        ({"X-Bloom-Capacity": "-3", "X-Bloom-FP-Rate": "0.001"}, (None, 0.001)),
    ],
)
def test_design_headers_are_read_leniently(
    headers: dict[str, str], expected: tuple[int | None, float | None]
) -> None:
    assert _bloom_design(httpx.Headers(headers)) == expected
