"""The HTTP edge of a real Label Store, spoken to over raw sockets (store/http_guard).

Each case sends what a hostile or broken client sends (oversized or too many
header fields, Transfer-Encoding beside Content-Length, a head or a body that
never finishes) and checks the answer, that the connection is released, and
that nothing was stored. Timeouts are configured short; the tests wait for the
server's answer with a generous socket deadline and never assert a duration.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.store_server import StoreServerProcess, StoreServerStartError
from tests.helpers import wait_until

HTTP = {"max_header_bytes": 8192, "max_header_count": 40, "header_timeout_seconds": 0.5,
        "body_timeout_seconds": 0.5, "keep_alive_seconds": 30}
DEADLINE = 15.0  # socket timeout: far above the configured timeouts
LABEL: dict[str, Any] = {
    "entity": "pin:1",
    "source": {"system": "spam_model", "type": "automated", "name": "v1"},
    "enforcement": "block", "reason": "spam", "created_at": "2026-01-01T00:00:00Z",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServerProcess]:
    proc = StoreServerProcess(tmp_path_factory.mktemp("store-http-edges"),
                              sections={"http": dict(HTTP)}, access_log=True)
    try:
        proc.start()
    except StoreServerStartError as exc:
        pytest.fail(f"Label Store did not start: {exc}")
    yield proc
    proc.kill()


def connect(server: StoreServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (fails on the deadline)."""
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"the server kept the connection open; got so far {out[:300]!r}")
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def status_and_body(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else {}


def head(server: StoreServerProcess, method: str, path: str, *extra: str,
         role: str = "writer", length: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: store", f"Authorization: Bearer "
             f"{server.tokens[role]}", "Content-Type: application/json", *extra]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def stored_head(server: StoreServerProcess) -> int:
    got = httpx.get(f"{server.url}/readyz", timeout=DEADLINE)
    assert got.status_code == 200
    return int(got.json()["head"])


def test_transfer_encoding_with_content_length_is_refused_and_stores_nothing(
        server: StoreServerProcess) -> None:
    before = stored_head(server)
    body = json.dumps({"labels": [LABEL]}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    with connect(server) as sock:
        sock.sendall(head(server, "POST", "/v1/labels", "Transfer-Encoding: chunked",
                          length=len(body)) + chunked)
        status, answer = status_and_body(read_until_closed(sock))
    assert status == 400
    assert "Transfer-Encoding and Content-Length" in answer["message"]
    assert stored_head(server) == before


@pytest.mark.parametrize("extra", [
    ["X-Big: " + "a" * 65536],  # one 64 KB field, sent in one piece
    [f"X-F{i}: v" for i in range(2000)],  # 2,000 small fields
], ids=["64KB-field", "2000-fields"])
def test_oversized_request_heads_are_refused_with_431(server: StoreServerProcess,
                                                      extra: list[str]) -> None:
    with connect(server) as sock:
        sock.sendall(head(server, "GET", "/healthz", *extra))
        status, answer = status_and_body(read_until_closed(sock))
    assert status == 431
    assert answer["error"] == "too_large"


def test_a_head_growing_past_the_limit_in_pieces_is_refused(server: StoreServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: store\r\n")
        try:
            for _ in range(20):  # 20 KB in 1 KB pieces, never finishing the head
                sock.sendall(b"X-Piece: " + b"b" * 1024 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may refuse and close before every piece is sent
        status, _ = status_and_body(read_until_closed(sock))
    assert status == 431


def test_a_head_that_never_finishes_is_answered_408_and_the_connection_closed(
        server: StoreServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: store\r\n")  # no blank line, ever
        status, answer = status_and_body(read_until_closed(sock))
    assert status == 408
    assert answer["error"] == "request_timeout"


def test_a_connection_that_sends_nothing_is_closed(server: StoreServerProcess) -> None:
    with connect(server) as sock:
        assert read_until_closed(sock) == b""


def test_a_short_body_is_answered_408_the_connection_released_and_nothing_stored(
        server: StoreServerProcess) -> None:
    before = stored_head(server)
    body = json.dumps({"labels": [LABEL]}).encode()
    with connect(server) as sock:
        # Content-Length promises the whole body; a third of it comes, then nothing.
        sock.sendall(head(server, "POST", "/v1/labels", length=len(body)) + body[:len(body) // 3])
        status, answer = status_and_body(read_until_closed(sock))
    assert status == 408
    assert "body" in answer["message"]
    assert stored_head(server) == before


def test_keep_alive_requests_are_served_and_the_next_head_is_timed_too(
        server: StoreServerProcess) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: store\r\n\r\n"
    with connect(server) as sock:
        for _ in range(2):
            sock.sendall(request)
            got = b""
            while b'"ok"' not in got:
                chunk = sock.recv(4096)
                assert chunk, "the server closed a healthy keep-alive connection"
                got += chunk
            assert got.startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # a third head that stalls
        status, _ = status_and_body(read_until_closed(sock))
    assert status == 408


def test_query_strings_stay_out_of_the_access_log(server: StoreServerProcess) -> None:
    secret = "s3cr3t-access-token-value"
    got = httpx.get(f"{server.url}/v1/changes",
                    params={"after": 0, "access_token": secret},
                    headers=server.headers("reader"), timeout=DEADLINE)
    assert got.status_code == 200
    wait_until(lambda: "/v1/changes?" in server.log_text(), "the access log line")
    log = server.log_text()
    assert secret not in log
    assert "access_token" not in log
    assert "/v1/changes?[query redacted]" in log
