"""AsyncLabelStoreReader: the SDK's batch read of the Label Store over httpx.AsyncClient.

Only what the async client's read path needs (`POST /v1/labels/query` in
batches); writes, history and the change feed stay on the sync
LabelStoreClient. Request encoding, error translation and response parsing
are store_client/client's, so both faces speak the same protocol and raise the same
errors (StoreUnavailableError, StoreResponseError, AuthError).

An httpx.AsyncClient belongs to the event loop it first makes connections in:
use one reader per loop (AsyncEnforcementClient does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal

import httpx

from .._errors import StoreResponseError, StoreUnavailableError
from .._tracing import client_span
from ..model import wire as _wire
from ..model.label import Label
from .client import (
    DEFAULT_MAX_BATCH_KEYS,
    _parsing,
    _translate_errors,
    connection_settings,
    decode_response,
    span_name,
)
from .deadline import RequestTimeout
from .query import parse_query, query_request, refuses_compact

QUERY_PATH = "/v1/labels/query"


class AsyncLabelStoreReader(RequestTimeout[httpx.AsyncClient]):
    """Async batch reads of one Label Store. Use `async with`, or call aclose()."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 5.0,
        wire: Literal["msgpack", "json"] = "msgpack",
        transport: httpx.AsyncBaseTransport | None = None,
        max_batch_keys: int = DEFAULT_MAX_BATCH_KEYS,
    ) -> None:
        self.url, self._fmt, headers = connection_settings(url, token, wire, max_batch_keys)
        self.max_batch_keys = max_batch_keys
        self._compact = self._fmt == "msgpack"  # reads ask for stored bodies (model/compact)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )
        self._timeout = timeout

    async def get_many(self, keys: Sequence[str]) -> dict[str, list[Label]]:
        """Active labels by key (canonical and as sent); keys without any are absent.

        One round trip per `max_batch_keys` keys, made one after the other.
        """
        labels: dict[str, list[Label]] = {}
        for start in range(0, len(keys), self.max_batch_keys):
            chunk = list(keys[start : start + self.max_batch_keys])
            try:
                body = await self._post_query(query_request(chunk, self._compact))
            except StoreResponseError as exc:
                if not (self._compact and refuses_compact(exc)):
                    raise
                self._compact = False  # an older store: full form from now on
                body = await self._post_query(query_request(chunk, False))
            with _parsing(f"POST {QUERY_PATH}"):
                labels.update(parse_query(body).labels)
        return labels

    async def _post_query(self, request: dict[str, Any]) -> dict[str, Any]:
        what = f"POST {QUERY_PATH}"
        content = _wire.encode(request, self._fmt)
        sent: dict[str, str] = {}  # `traceparent` when tracing (_tracing)
        try:
            with client_span(span_name("POST", QUERY_PATH), sent, {"server.address": self.url}), \
                    _translate_errors(what):
                async with asyncio.timeout(self._timeout):  # the whole request, body too
                    response = await self._http.post(QUERY_PATH, content=content,
                                                     headers=sent)
        except TimeoutError:
            raise StoreUnavailableError(
                f"{what}: no complete answer within {self._timeout:g}s") from None
        return decode_response(response, what)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncLabelStoreReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
