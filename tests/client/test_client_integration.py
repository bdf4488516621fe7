"""EnforcementClient against the real Label Store service, and against faulty servers."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from enforce_sdk import Enforcement, Label, Source, SourceType
from enforce_sdk.client.client import EnforcementClient
from enforce_sdk.config.source import StaticConfigSource
from enforce_sdk.store_client.client import LabelStoreClient
from tests.fixtures.store_server import StoreServerProcess

REVIEW = Source("review_tool", SourceType.HUMAN, "alice")
MODEL = Source("spam_domain_model", SourceType.AUTOMATED, "v3")

CONFIG: dict[str, Any] = {
    "version": 1,
    "surfaces": {
        "home_feed": {"hide_from": "limit", "related": {"domain": "block"}},
        "search": {
            "hide_from": "block",
            "fail_mode": "closed",
            "selector": 'type = human or (system = "spam_domain_model" and confidence >= 0.9)',
        },
    },
    "cache": {"ttl": "1s", "negative_ttl": "1s", "serve_stale_for": "1m"},
    "store": {"timeout": "300ms", "retries": 0},
}


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def writer(store_server: StoreServerProcess) -> Iterator[LabelStoreClient]:
    with LabelStoreClient(store_server.url, token=store_server.tokens["writer"]) as client:
        yield client


def client_for(url: str, token: str | None = None, **kw: Any) -> EnforcementClient:
    return EnforcementClient(url, CONFIG, token=token, **kw)


def test_decisions_from_the_real_store_with_selector_and_links(
    store_server: StoreServerProcess, writer: LabelStoreClient
) -> None:
    writer.put(
        [
            Label("pin:1", REVIEW, Enforcement.BLOCK, "porn", now() - timedelta(minutes=5)),
            Label("pin:2", MODEL, Enforcement.BLOCK, "spam", now(), confidence=0.5),
            Label("domain:spam.example", MODEL, Enforcement.BLOCK, "spam", now(), confidence=0.95),
        ]
    )
    with client_for(store_server.url, store_server.tokens["reader"]) as client:
        d1, d2, d3, d4 = client.check_many(
            ["pin:1", "pin:2", "pin:3", "pin:4"],
            "home_feed",
            [None, None, {"domain": "http://www.spam.example/a"}, None],
        )
        assert client.stats.fetches == 1
        assert (d1.visible, d2.visible, d3.visible, d4.visible) == (False, False, False, True)
        assert d1.label is not None and d1.label.source == REVIEW
        assert d3.decided_by == "domain:spam.example"
        # search's selector drops the low-confidence model label on pin:2
        assert client.check("pin:2", "search").visible
        assert not client.check("pin:1", "search").visible


def test_a_new_label_is_seen_after_the_cache_ttl(
    store_server: StoreServerProcess, writer: LabelStoreClient
) -> None:
    with client_for(store_server.url, store_server.tokens["reader"]) as client:
        assert client.check("pin:9", "home_feed").visible
        writer.put(Label("pin:9", REVIEW, Enforcement.REMOVE, "hate", now()))
        deadline = time.monotonic() + 10
        while client.check("pin:9", "home_feed").visible:
            assert time.monotonic() < deadline, "label never became visible to the client"
            time.sleep(0.05)


def test_store_stopped_mid_run_then_back(
    store_server: StoreServerProcess, writer: LabelStoreClient
) -> None:
    writer.put(Label("pin:1", REVIEW, Enforcement.BLOCK, "porn", now()))
    skew = [0.0]
    with client_for(
        store_server.url, store_server.tokens["reader"], timer=lambda: time.monotonic() + skew[0]
    ) as client:
        assert not client.check("pin:1", "home_feed").visible
        store_server.kill()
        skew[0] += 2  # past the 1 s TTL, within the 1 min stale window
        stale = client.check("pin:1", "home_feed")
        assert (
            not stale.visible
            and stale.degraded
            and (stale.degraded_detail or "").startswith("stale: store unreachable (")
        )
        never_seen = client.check_many(["pin:50", "pin:51"], "search")
        assert all(d.degraded and not d.visible for d in never_seen)  # search fails closed
        assert client.stats.fetch_errors >= 2
        store_server.start()
        deadline = time.monotonic() + 10
        while True:
            d = client.check("pin:50", "search")
            if not d.degraded:
                break
            assert time.monotonic() < deadline, "client did not recover after the store came back"
            time.sleep(0.05)
        assert d.visible


class _FaultServer(http.server.ThreadingHTTPServer):
    mode = "garbage"


class _FaultHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        mode = self.server.mode  # type: ignore[attr-defined]
        if mode == "hang":
            time.sleep(2)
        status, body, ctype = {
            "garbage": (200, b"\xc1\xff not msgpack", "application/msgpack"),
            "wrong_shape": (
                200,
                b'{"schema": 1, "labels": {"pin:1": [{"entity": 5}]}, "head": 1}',
                "application/json",
            ),
            "500": (500, b'{"error": "boom"}', "application/json"),
            "hang": (200, b"{}", "application/json"),
        }[mode]
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # in "hang" the client timed out first
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fault_server() -> Iterator[_FaultServer]:
    server = _FaultServer(("127.0.0.1", 0), _FaultHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("mode", ["garbage", "wrong_shape", "500", "hang"])
def test_faulty_store_answers_are_degraded_never_raised(
    fault_server: _FaultServer, mode: str
) -> None:
    fault_server.mode = mode
    url = f"http://127.0.0.1:{fault_server.server_address[1]}"
    with client_for(url) as client:
        start = time.monotonic()
        feed, search = client.check("pin:1", "home_feed"), client.check("pin:1", "search")
        elapsed = time.monotonic() - start
        assert feed.visible and feed.degraded and "fail_open" in (feed.degraded_detail or "")
        assert not search.visible and search.degraded
        assert client.stats.fetch_errors == 2
    # the store answered (bad data, a 500): a store error; it did not answer: unreachable
    problem = "store unreachable" if mode == "hang" else "store error"
    assert (feed.degraded_detail or "").startswith(f"fail_open: {problem}: "), feed.degraded_reason
    assert (search.degraded_detail or "").startswith(f"fail_closed: {problem}: ")
    if mode == "500":
        assert "label store answered 500" in (feed.degraded_detail or "")
    if mode == "hang":
        assert elapsed < 1.5  # two 300 ms timeouts, not the server's 2 s


def test_a_config_swap_changes_the_request_timeout(fault_server: _FaultServer) -> None:
    url = f"http://127.0.0.1:{fault_server.server_address[1]}"
    slow = {**CONFIG, "store": {"timeout": "5s", "retries": 0}}
    source = StaticConfigSource(slow)
    fault_server.mode = "500"  # answers at once: the connection (and per-loop state) exist
    with EnforcementClient(url, source, follow_changes=False) as client:
        assert "store error" in (client.check("pin:1", "home_feed").degraded_detail or "")
        source.push({**slow, "version": 2, "store": {"timeout": "100ms", "retries": 0}})
        fault_server.mode = "hang"  # answers after 2 s
        start = time.monotonic()
        d = client.check("pin:2", "home_feed")
        elapsed = time.monotonic() - start
    # the request itself timed out after 100 ms (not the server's answer at 2 s, nor the
    # caller giving up on a request still running with the old 5 s timeout)
    assert (d.degraded_detail or "").startswith("fail_open: store unreachable: "), d.degraded_reason
    assert "ReadTimeout" in (d.degraded_detail or "")
    assert elapsed < 1.9


def test_unreachable_port_fails_open_quickly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with client_for(f"http://127.0.0.1:{port}") as client:
        d = client.check("pin:1", "home_feed")
    assert d.visible and d.degraded


def test_feed_follower_makes_writes_and_retractions_visible_without_waiting_for_the_ttl(
    store_server: StoreServerProcess, writer: LabelStoreClient
) -> None:
    slow_ttl = {**CONFIG, "cache": {"ttl": "1h", "negative_ttl": "1h"}}
    with EnforcementClient(
        store_server.url, slow_ttl, token=store_server.tokens["reader"]
    ) as client:
        assert client.follower is not None
        assert client.check("pin:77", "home_feed").visible  # cached negative for an hour
        writer.put(Label("pin:77", REVIEW, Enforcement.BLOCK, "spam", now()))
        deadline = time.monotonic() + 5
        while client.check("pin:77", "home_feed").visible:
            assert time.monotonic() < deadline, "write not visible within 5 s despite the feed"
            time.sleep(0.02)
        writer.delete("pin:77", REVIEW)
        while not client.check("pin:77", "home_feed").visible:
            assert time.monotonic() < deadline, "retraction not visible within 5 s"
            time.sleep(0.02)
        assert client.stats.feed_changes >= 2
        assert client.stats.to_dict()["feed_lag_seconds"] < 15
