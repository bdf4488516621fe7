"""OpenTelemetry spans when the `[otel]` extra is installed; nothing otherwise.

The SDK's store calls are CLIENT spans that carry W3C `traceparent` to the
store; the store's handling is a SERVER span continuing that trace, and its
storage calls are spans inside it. So a slow check shows, in one trace, the
product request, the SDK's store read, the store's handling and the SQL.

Without opentelemetry-api installed every function here returns a shared
no-op context (a dict lookup and a call: nothing is imported, allocated or
propagated). With it, spans go to whatever tracer provider the host
configured (none configured: OpenTelemetry's own no-op provider).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

_NOOP = contextlib.nullcontext()
_state: dict[str, Any] = {}  # "api": the opentelemetry modules, or None when absent


def _api() -> Any:
    try:
        return _state["api"]
    except KeyError:
        pass
    try:
        from opentelemetry import propagate, trace
    except ModuleNotFoundError:
        _state["api"] = None
        return None
    _state["api"] = api = (trace, propagate, trace.get_tracer("enforce_sdk"))
    return api


def enabled() -> bool:
    """Whether opentelemetry-api is installed (spans are made)."""
    return _api() is not None


def client_span(name: str, headers: MutableMapping[str, str],
                attributes: Mapping[str, Any] | None = None) -> contextlib.AbstractContextManager[Any]:
    """A CLIENT span around a store call; its context is injected into `headers`."""
    api = _api()
    if api is None:
        return _NOOP
    return _client(api, name, headers, attributes)


@contextlib.contextmanager
def _client(api: Any, name: str, headers: MutableMapping[str, str],
            attributes: Mapping[str, Any] | None) -> Iterator[Any]:
    trace, propagate, tracer = api
    with tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT,
                                      attributes=attributes) as span:
        propagate.inject(headers)
        yield span


def server_span(name: str, headers: Mapping[str, str]) -> contextlib.AbstractContextManager[Any]:
    """A SERVER span continuing the trace the request's `traceparent` names (if any)."""
    api = _api()
    if api is None:
        return _NOOP
    trace, propagate, tracer = api
    made: contextlib.AbstractContextManager[Any] = tracer.start_as_current_span(
        name, kind=trace.SpanKind.SERVER, context=propagate.extract(headers))
    return made


def span(name: str, attributes: Mapping[str, Any] | None = None
         ) -> contextlib.AbstractContextManager[Any]:
    """An INTERNAL span in the current trace (a storage call)."""
    api = _api()
    if api is None:
        return _NOOP
    made: contextlib.AbstractContextManager[Any] = api[2].start_as_current_span(
        name, attributes=attributes)
    return made
