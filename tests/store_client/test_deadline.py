"""One deadline per store request: a store that drips its answer cannot hold a call.

A loopback server answers `POST /v1/labels/query` one byte at a time, 50 ms
apart, in its headers or in its body: far longer in all than the client's
timeout, with no single read ever waiting as long as it. Before the deadline
transport, each read was within its timeout and the call lasted the whole drip.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import msgpack
import pytest

from enforce_sdk import EnforcementClient, StoreUnavailableError
from enforce_sdk.store_client.client import LabelStoreClient
from tests.helpers import LOOPBACK

DRIP = 0.05  # seconds between bytes
TIMEOUT = 0.3
# Each drip sends at least 100 bytes, 50 ms apart: a call that waits it out takes 5 s or
# more. Half of that separates "ended by the deadline" from "waited for the drip" with a
# margin no stall of a loaded machine closes (this is the mechanism, not a speed).
WAITED_OUT = 100 * DRIP / 2


def _answer() -> bytes:
    body = msgpack.packb({"schema": 1, "head": 1, "labels": {}})
    head = (b"HTTP/1.1 200 OK\r\ncontent-type: application/msgpack\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n")
    return head + body


class DrippingStore:
    """Answers every request slowly: `where` = "headers" drips from the first byte,
    "body" sends the headers at once and drips the body (padded to last ~5 s)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen()
        self.url = f"http://{LOOPBACK}:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)  # the request (small)
            data = _answer()
            if self.where == "headers":
                data = data.replace(b"\r\n\r\n", b"\r\nx-pad: " + b"a" * 100 + b"\r\n\r\n")
                start = 0
            else:
                body_at = data.index(b"\r\n\r\n") + 4
                # a long body: the content-length covers 100 more bytes of padding
                body = data[body_at:]
                data = (data[:body_at].replace(
                    f"content-length: {len(body)}".encode(),
                    f"content-length: {len(body) + 100}".encode()) + body + b"\x00" * 100)
                start = data.index(b"\r\n\r\n") + 4
            try:
                conn.sendall(data[:start])
                for i in range(start, len(data)):
                    if self.stop.wait(DRIP):
                        return
                    conn.sendall(data[i:i + 1])
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture(params=["headers", "body"])
def dripping(request: pytest.FixtureRequest) -> Iterator[DrippingStore]:
    store = DrippingStore(request.param)
    yield store
    store.close()


def test_a_dripping_answer_ends_at_the_deadline(dripping: DrippingStore) -> None:
    with LabelStoreClient(dripping.url, timeout=TIMEOUT) as client:
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailableError, match=r"deadline|timed out"):
            client.get_many(["pin:1"])
        elapsed = time.monotonic() - t0
    # the drip lasts over 5 s, each byte 50 ms apart: only the deadline ends the call
    assert elapsed < WAITED_OUT, elapsed


def test_a_check_against_a_dripping_store_is_degraded_in_time(dripping: DrippingStore) -> None:
    config = {"version": 1, "surfaces": {"home": {"hide_from": "limit"}},
              "store": {"timeout": f"{int(TIMEOUT * 1000)}ms", "retries": 0}}
    with EnforcementClient(dripping.url, config, follow_changes=False) as client:
        t0 = time.monotonic()
        decision = client.check("pin:1", "home")
        elapsed = time.monotonic() - t0
    assert decision.degraded and decision.degraded_reason == "store_unreachable"
    assert elapsed < WAITED_OUT, elapsed
