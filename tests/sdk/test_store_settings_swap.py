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
from enforce_sdk._async_client import AsyncEnforcementClient
from enforce_sdk._async_store import AsyncLabelStoreReader
from enforce_sdk._client import EnforcementClient
from enforce_sdk._config_source import StaticConfigSource
from enforce_sdk._store_client import LabelStoreClient

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
        assert isinstance(reader, AsyncLabelStoreReader)
        assert reader._http.timeout == httpx.Timeout(2.0)
        source.push(SWAPPED)
        assert reader._http.timeout == httpx.Timeout(0.1)
        assert reader.max_batch_keys == 7 and state.fetcher.max_batch_keys == 7
        await client.aclose()

    asyncio.run(use())


def test_the_store_client_timeout_is_validated() -> None:
    with LabelStoreClient(URL) as store:
        for bad in (0, -1.0, float("nan")):
            with pytest.raises(InvalidInputError, match="timeout"):
                store.timeout = bad
        assert store.timeout == 5.0
