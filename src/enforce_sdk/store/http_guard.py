"""The Label Store's HTTP/1.1 edge: limits and timeouts enforced before a request reaches the app.

uvicorn's h11 protocol parses requests but bounds little of what a client may
send: h11 checks the size of a request head only while it is incomplete (a
whole 64 KB head in one read passes), counts no header fields, accepts
`Transfer-Encoding` beside `Content-Length`, and nothing times out reading a
head or a body, so a client that stops sending holds its connection forever.
`GuardedH11Protocol` is uvicorn's h11 protocol with those rules added (the
values are the `[http]` section of the store config):

- a request head over `max_header_bytes`, or with more than `max_header_count`
  fields, is answered `431` and the connection closed;
- `Transfer-Encoding` together with `Content-Length` is answered `400` (a proxy
  in front that frames the request the other way would let a second, hidden
  request through: request smuggling);
- a head not complete within `header_timeout_seconds` of the connection (or of
  its first byte, between keep-alive requests) is answered `408` and the
  connection closed (silently if not a byte of it came);
- a body not complete within `body_timeout_seconds` of its head is answered
  `408` (the app sees the client disconnect) and the connection closed.

Refusals use the API's error shape. `ScrubQuery` keeps query strings (which
may carry secrets, `?access_token=...`) out of the access log.

The protocol builds on uvicorn's `H11Protocol` internals (its `conn`, `cycle`
and `send_400_response`), so the server extra pins uvicorn and h11 to the
versions tested (pyproject.toml); tests/store/test_http_edges.py holds every
rule against the real server.
"""

from __future__ import annotations

import asyncio
import http
import logging
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..model import wire as _wire
from .config import HttpSection

log = logging.getLogger(__name__)

_CODES = {400: "bad_request", 408: "request_timeout", 431: "too_large"}


def _error_body(status: int, message: str) -> bytes:
    code = _CODES.get(status, "bad_request")
    return _wire.encode({"error": code, "message": message}, "json")


def head_problem(request: h11.Request, limits: HttpSection) -> tuple[int, str] | None:
    """(status, message) if a parsed request head breaks a rule of the edge, else None."""
    headers = request.headers
    if len(headers) > limits.max_header_count:
        return 431, (f"the request has {len(headers)} header fields, more than the limit of "
                     f"{limits.max_header_count}")
    size = len(request.method) + len(request.target) + 11  # request line, with its CRLF
    size += sum(len(name) + len(value) + 4 for name, value in headers)
    if size > limits.max_header_bytes:
        return 431, (f"the request head has {size} bytes, more than the limit of "
                     f"{limits.max_header_bytes}")
    names = {name for name, _ in headers}  # h11 gives lower-case names
    if b"transfer-encoding" in names and b"content-length" in names:
        return 400, ("Transfer-Encoding and Content-Length together are refused: "
                     "send one of them")
    return None


class GuardedConnection(h11.Connection):
    """A server-side h11 connection that refuses request heads breaking the edge's rules.

    A refusal raises h11's RemoteProtocolError, as a malformed request does, and
    is kept in `refusal` (status, message) for the answer.
    """

    def __init__(self, limits: HttpSection) -> None:
        # h11 bounds an *incomplete* head by this; head_problem bounds a complete one.
        super().__init__(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self.limits = limits
        self.refusal: tuple[int, str] | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            message = str(exc)
            if status == 431:
                message = f"the request head is longer than {self.limits.max_header_bytes} bytes"
            self.refusal = (status, message)
            raise
        if isinstance(event, h11.Request):
            problem = head_problem(event, self.limits)
            if problem is not None:
                self.refusal = problem
                raise h11.RemoteProtocolError(problem[1], error_status_hint=problem[0])
        return event


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header limits, framing rules and read timeouts.

    Subclassed per server with its `limits` (see `protocol_class`).
    """

    limits: ClassVar[HttpSection] = HttpSection()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn: GuardedConnection = GuardedConnection(self.limits)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    # -- timers ------------------------------------------------------------------------

    def _watch(self) -> None:
        """Arm or drop the head and body timers for where the client is in its request."""
        if self.transport is None or self.transport.is_closing():
            self._cancel_timers()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            self._cancel_body_timer()
            # Bytes of a head came since the last response (uvicorn's keep-alive timer
            # stops at the first byte): the rest of the head must follow in time.
            if self._head_timer is None and self.conn.trailing_data[0]:
                self._arm_head_timer()
        elif state is h11.SEND_BODY:
            self._cancel_head_timer()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self.limits.body_timeout_seconds,
                                                        self._body_timed_out)
        else:
            self._cancel_timers()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.header_timeout_seconds,
                                                self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:  # part of a head came: say why the connection ends
            message = (f"the request head did not arrive within "
                       f"{self.limits.header_timeout_seconds:g} seconds")
            log.warning("%s: %s", self._peer(), message)
            self.transport.write(_raw_response(408, message))
        self.transport.close()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        message = (f"the request body did not arrive within "
                   f"{self.limits.body_timeout_seconds:g} seconds")
        log.warning("%s: %s", self._peer(), message)
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # The app is waiting for the body: it sees a disconnect, and its answer is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
            self._send_error(408, message)
        self.transport.close()

    # -- refusals ----------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        """Answer a refused or malformed request head (uvicorn calls this) and close."""
        status, message = self.conn.refusal or (400, msg)
        self.conn.refusal = None
        log.warning("%s: refused a request (%d): %s", self._peer(), status, message)
        self._send_error(status, message)
        self.transport.close()

    def _send_error(self, status: int, message: str) -> None:
        body = _error_body(status, message)
        headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
                   (b"content-length", str(len(body)).encode())]
        try:
            out = self.conn.send(h11.Response(status_code=status, headers=headers,
                                              reason=http.HTTPStatus(status).phrase.encode()))
            out = (out or b"") + (self.conn.send(h11.Data(data=body)) or b"")
            out += self.conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:  # h11 cannot answer in its state: answer raw
            out = _raw_response(status, message)
        self.transport.write(out)

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "client"


def _raw_response(status: int, message: str) -> bytes:
    """A complete error answer outside h11's state machine (no request was parsed)."""
    body = _error_body(status, message)
    head = (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
            "content-type: application/json\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


def protocol_class(limits: HttpSection) -> type[GuardedH11Protocol]:
    """The protocol class a uvicorn server with these limits serves with."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


class ScrubQuery(logging.Filter):
    """Drops the query string from uvicorn access-log lines: it may carry secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path, sep, _ = args[2].partition("?")
            if sep:
                record.args = (*args[:2], path + "?[query redacted]", *args[3:])
        return True


def scrub_access_log() -> None:
    """Install ScrubQuery on uvicorn's access logger (once per process)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, ScrubQuery) for f in logger.filters):
        logger.addFilter(ScrubQuery())
