"""The store client's pool never closes a connection a request may be using, nor does the store.

httpcore 1.0.9 closes "surplus" idle connections (more connections in the pool
than its keep-alive limit, busy ones counted) outside its lock, including one
it has just handed to a waiting request: that request then read a closed
socket. Seen in the default test run as `ReadError: [Errno 9] Bad file
descriptor` on 2 of 256 concurrent async checks (benchmarks/bench_async.py).
Here more requests than httpcore's default keep-alive limit (20) are in flight
at once over a fake network, and no connection may be closed until the client is.

With the pool keeping its idle connections, the next run of that benchmark lost
3 reads to "connection reset by peer" / "server disconnected without sending a
response": idle connections reused just as the store (uvicorn's default 5 s)
closed them, the client's own limit being 5 s too. The store now keeps them
well past the client's limit, so the client always closes first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpcore
import httpx

from enforce_sdk.store import StoreConfig
from enforce_sdk.store.server import start_in_thread
from enforce_sdk.store_client.deadline import KEEPALIVE_EXPIRY, DeadlineTransport

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


def test_the_store_keeps_idle_connections_longer_than_the_client_reuses_them(
        tmp_path: Path) -> None:
    config = StoreConfig.from_dict({"storage": {"url": f"sqlite://{tmp_path / 'labels.db'}"}})
    with start_in_thread(config) as server:
        kept = server._server.config.timeout_keep_alive
    # a client starved for seconds between picking a connection and sending on it still
    # sends before the store gives up on that connection
    assert kept >= KEEPALIVE_EXPIRY + 20
