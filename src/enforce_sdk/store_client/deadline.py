"""One deadline per store request: connect, send, response headers and body, all of it.

httpx's timeouts bound each socket operation, not a request: a store (or a proxy
in front of it) that sends one byte every 100 ms holds a request with a 250 ms
timeout for as long as it likes. `DeadlineTransport` is an httpx transport over
httpcore's connection pool whose network streams bound every connect, read and
write by what is left of the deadline of the request in progress (set with
`deadline(seconds)` around the request, body read included). Past it, a read
still takes bytes already received (a thread that was not scheduled in time does
not fail a response that arrived), then raises a timeout; httpcore drops the
connection, so its pool slot is free at once.

Outside `deadline(...)` the transport behaves as httpx's own (per-operation
timeouts only).

The pool keeps as many idle connections as it may open (`max_connections`):
httpcore 1.0.9 closes "surplus" idle connections whenever the pool holds more
connections, busy ones included, than its keep-alive limit, and does so outside
its lock, so it can close a connection it has just handed to a waiting request.
That request then reads a closed socket (EBADF) or waits for its deadline. With
one origin per client and no surplus to close, the pool never closes a
connection that a request may be about to use; idle ones still close after
`keepalive_expiry` (KEEPALIVE_EXPIRY), well before the Label Store closes its end
(30 s), so a request is never sent on a connection the store is closing.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

import httpcore
import httpx

from .._errors import InvalidInputError

_DEADLINE: ContextVar[float | None] = ContextVar("enforce_sdk_store_deadline", default=None)
KEEPALIVE_EXPIRY = 5.0  # seconds an idle connection may be reused; the store keeps it 30 s
_LAST_CHANCE = 1e-6  # seconds: a read past the deadline only takes what is already there

# httpcore's errors as httpx's (what store_client/client translates), most specific first.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Bound the store requests made inside (this thread or task) to `seconds` in all."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _bounded(timeout: float | None) -> float | None:
    """`timeout` shortened to what is left of the current deadline (a last chance past it)."""
    end = _DEADLINE.get()
    if end is None:
        return timeout
    left = max(end - time.monotonic(), _LAST_CHANCE)
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    """A network stream whose operations end by the request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_tcp(host, port, _bounded(timeout), local_address,
                                               socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None
                            ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_unix_socket(path, _bounded(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes], request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx(self._request):
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            with _as_httpx(self._request):
                close()


@contextlib.contextmanager
def _as_httpx(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except httpcore.TimeoutException as exc:
        left = _DEADLINE.get()
        raise _translate(exc, request, " (request deadline passed)"
                         if left is not None and time.monotonic() >= left else "") from exc
    except Exception as exc:
        mapped = _translate(exc, request, "")
        if mapped is exc:
            raise
        raise mapped from exc


def _translate(exc: Exception, request: httpx.Request, note: str) -> Exception:
    for core, mapped in _ERRORS:
        if isinstance(exc, core):
            return mapped(f"{exc or type(exc).__name__}{note}", request=request)
    return exc


class DeadlineTransport(httpx.BaseTransport):
    """httpx's HTTP/1.1 transport, with `deadline(...)` bounding each request whole."""

    def __init__(self, *, max_connections: int = 100, keepalive_expiry: float = KEEPALIVE_EXPIRY,
                 network_backend: httpcore.NetworkBackend | None = None) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,  # none surplus: see the module docstring
            keepalive_expiry=keepalive_expiry,
            network_backend=_Backend(network_backend),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        url = request.url
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port,
                             target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx(request):
            response = self._pool.handle_request(core)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_Body(response.stream, request),
                              extensions=response.extensions)

    def close(self) -> None:
        self._pool.close()


_Http = TypeVar("_Http", httpx.Client, httpx.AsyncClient)


class RequestTimeout(Generic[_Http]):
    """The `timeout` of a store client over the httpx client it holds in `_http`."""

    _http: _Http
    _timeout: float

    @property
    def timeout(self) -> float:
        """Seconds per request, all of it (connect, send, headers and body: one deadline).

        Settable while in use: every request reads it when it starts (the
        change feed's long polls add their `wait`).
        """
        return self._timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        if not value > 0:
            raise InvalidInputError(f"must be > 0 seconds, got {value!r}", field="timeout")
        self._timeout = value
        self._http.timeout = httpx.Timeout(value)
