"""The deadline transport's pool never closes a connection on its own while the client is busy.

httpcore 1.0.9 closes "surplus" idle connections (more connections in the pool
than its keep-alive limit, busy ones counted) outside its lock, including one
it has just handed to a waiting request: that request then read a closed
socket. Seen in the default test run as `ReadError: [Errno 9] Bad file
descriptor` on 2 of 256 concurrent async checks (benchmarks/bench_async.py).
Here more requests than httpcore's default keep-alive limit (20) are in flight
at once over a fake network, and no connection may be closed until the client is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from enforce_sdk.store_client.deadline import DeadlineTransport

IN_FLIGHT = 30  # above httpcore's default max_keepalive_connections (20)
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class FakeNetwork(httpcore.NetworkBackend):
    """Connections that answer every request with ANSWER; the first answer on each waits
    until IN_FLIGHT connections are open, so that many requests are in flight at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opened = 0
        self.closed = 0
        self.all_in_flight = threading.Barrier(IN_FLIGHT)

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        with self.lock:
            self.opened += 1
        return FakeStream(self)


class FakeStream(httpcore.NetworkStream):
    def __init__(self, network: FakeNetwork) -> None:
        self.network = network
        self.owed = False  # a request was written and not yet answered
        self.first = True
        self.open = True

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        assert self.open, "a request was written to a closed connection"
        self.owed = True

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        assert self.open, "a response was read from a closed connection"
        if not self.owed:
            return b""
        if self.first:
            self.first = False
            self.network.all_in_flight.wait(timeout=60)  # a deadline, not a sleep
        self.owed = False
        return ANSWER

    def close(self) -> None:
        if self.open:
            self.open = False
            with self.network.lock:
                self.network.closed += 1

    def get_extra_info(self, info: str) -> Any:
        return None


def test_no_connection_is_closed_under_a_busy_client() -> None:
    network = FakeNetwork()
    statuses: list[int] = []
    errors: list[BaseException] = []
    http = httpx.Client(base_url="http://store.test",
                        transport=DeadlineTransport(network_backend=network))

    def get() -> None:
        try:
            for _ in range(3):  # the answers, and requests after them on reused connections
                statuses.append(http.get("/v1/healthz").status_code)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=get) for _ in range(IN_FLIGHT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    closed_while_in_use = network.closed
    http.close()
    assert errors == []
    assert statuses == [200] * (3 * IN_FLIGHT)
    assert network.opened == IN_FLIGHT  # all in flight at once, then every one reused
    assert closed_while_in_use == 0
    assert network.closed == IN_FLIGHT  # closing the client closes them all
