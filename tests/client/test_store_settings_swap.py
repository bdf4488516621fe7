"""A config swap reaches the client's own store connections: timeout and batch size.

The behaviour (a request timing out by the swapped timeout) is tested against a
slow server in test_client_integration.py, for both clients; here, what each
client's connection holds after a swap.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from enforce_sdk import InvalidInputError
from enforce_sdk.client.async_client import AsyncEnforcementClient
from enforce_sdk.client.client import EnforcementClient
from enforce_sdk.client.threaded_reader import ThreadedStoreReader
from enforce_sdk.config.source import StaticConfigSource
from enforce_sdk.store_client.async_client import AsyncLabelStoreReader
from enforce_sdk.store_client.client import LabelStoreClient

URL = "http://127.0.0.1:9"  # nothing listens: no request is made here
CONFIG: dict[str, Any] = {
    "version": 1,
    "surfaces": {"home_feed": {}},
    "store": {"timeout": "2s", "max_batch_keys": 500, "retries": 0},
}
SWAPPED: dict[str, Any] = {**CONFIG, "version": 2,
                           "store": {"timeout": "100ms", "max_batch_keys": 7, "retries": 2}}


def test_sync_client_connection_takes_the_swapped_timeout_and_batch_size() -> None:
    source = StaticConfigSource(CONFIG)
    with EnforcementClient(URL, source, follow_changes=False) as client:
        store = client._store
        assert isinstance(store, LabelStoreClient)
        assert store.timeout == 2.0 and store._http.timeout == httpx.Timeout(2.0)
        source.push(SWAPPED)
        assert client._store is store
        assert store.timeout == 0.1 and store._http.timeout == httpx.Timeout(0.1)
        assert store.max_batch_keys == 7 and client._fetcher.max_batch_keys == 7
        assert client._fetcher.retries == 2


def test_async_client_connections_take_the_swapped_timeout_and_batch_size() -> None:
    source = StaticConfigSource(CONFIG)
    client = AsyncEnforcementClient(URL, source, follow_changes=False)

    async def use() -> None:
        assert (await client.check("pin:1", "home_feed")).degraded  # makes this loop's reader
        (state,) = client._loops.values()
        reader = state.reader
        assert isinstance(reader, ThreadedStoreReader)
        assert reader.client._http.timeout == httpx.Timeout(2.0)
        source.push(SWAPPED)
        assert reader.client.timeout == 0.1 and reader.client._http.timeout == httpx.Timeout(0.1)
        assert reader.client.max_batch_keys == 7 and state.fetcher.max_batch_keys == 7
        await client.aclose()

    asyncio.run(use())


def test_the_store_client_timeout_is_validated() -> None:
    with LabelStoreClient(URL) as store:
        for bad in (0, -1.0, float("nan")):
            with pytest.raises(InvalidInputError, match="timeout"):
                store.timeout = bad
        assert store.timeout == 5.0


def test_a_caller_waits_for_every_attempt_and_the_backoffs_between() -> None:
    from enforce_sdk.client.base import wait_timeout as _wait_timeout
    from enforce_sdk.config.document import StoreSettings

    # 3 attempts of 0.25 s, backoffs of 0.1 + 0.2 s, and 1 s of slack
    settings = StoreSettings(timeout=0.25, retries=2, retry_backoff=0.1)
    assert _wait_timeout(settings) == pytest.approx(0.75 + 0.3 + 1.0)
    assert _wait_timeout(StoreSettings(timeout=0.5, retries=0, retry_backoff=9.0)) == 1.5


def test_the_async_reader_timeout_is_validated_and_applied() -> None:
    reader = AsyncLabelStoreReader(URL, timeout=2.0)
    try:
        reader.timeout = 0.1
        assert reader._http.timeout == httpx.Timeout(0.1)
        with pytest.raises(InvalidInputError, match="timeout"):
            reader.timeout = 0
        assert reader.timeout == 0.1
    finally:
        asyncio.run(reader.aclose())
