"""The store as an operator sees it (store/observe): /metrics after scripted traffic,
request ids echoed and logged, JSON logs. Real store processes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from enforce_sdk import Enforcement, Label, Source, SourceType
from enforce_sdk.store_client.client import LabelStoreClient
from tests.fixtures.store_server import (
    StoreServerFactory,
    StoreServerProcess,
    StoreServerStartError,
)
from tests.helpers import wait_until

REVIEW = Source("review_tool", SourceType.HUMAN, "alice")
BOT = Source("bot_detector", SourceType.AUTOMATED, "rt")


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition text; 0.0 if absent."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name + "{"):
            continue
        series, value = line.rsplit(" ", 1)
        found = dict(re.findall(r'(\w+)="([^"]*)"', series))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


def scrape(server: StoreServerProcess) -> str:
    answer = httpx.get(server.url + "/metrics", headers=server.headers("reader"), timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return answer.text


def test_metrics_count_the_scripted_traffic(store_server: StoreServerProcess) -> None:
    now = datetime.now(UTC)
    with LabelStoreClient(store_server.url, token=store_server.tokens["writer"]) as writer:
        writer.put([Label("pin:1", REVIEW, Enforcement.BLOCK, "spam", now),
                    Label("pin:2", REVIEW, Enforcement.LIMIT, "spam", now)])
        writer.put([Label("pin:1", REVIEW, Enforcement.BLOCK, "spam", now)])  # no-op
        writer.put([Label("user:42", BOT, Enforcement.BLOCK, "spam", now)])  # trusted: pending
    refused = httpx.post(store_server.url + "/v1/labels", headers=store_server.headers("writer"),
                         json={"labels": [{"entity": "pin:3"}, {"entity": "pin:4"}]})
    assert refused.status_code == 422
    with LabelStoreClient(store_server.url, token=store_server.tokens["reader"]) as reader:
        for _ in range(3):
            reader.get_many(["pin:1", "pin:2", "pin:9"])
    assert httpx.get(store_server.url + "/v1/labels/pin:1").status_code == 401

    text = scrape(store_server)
    route = {"route": "/v1/labels/query", "method": "POST", "status": "200"}
    assert metric(text, "enforce_store_requests_total", **route) == 3
    assert metric(text, "enforce_store_requests_total", route="/v1/labels", method="POST",
                  status="422") == 1
    assert metric(text, "enforce_store_requests_total", route="/v1/labels/{entity:path}",
                  method="GET", status="401") == 1
    assert metric(text, "enforce_store_request_seconds_count", route="/v1/labels/query",
                  method="POST") == 3
    for outcome, n in {"written": 2, "noop": 1, "pending": 1, "refused": 2}.items():
        assert metric(text, "enforce_store_write_outcomes_total", outcome=outcome) == n, outcome
    assert metric(text, "enforce_store_storage_seconds_count", operation="get_bodies") == 3
    assert metric(text, "enforce_store_head_seq", worker="0") == 3
    assert metric(text, "enforce_store_labels_pending", worker="0") == 1
    assert metric(text, "enforce_store_labels_active", worker="0") == 2
    assert "enforce_store_long_polls_open" in text


def test_metrics_need_a_token(store_server: StoreServerProcess) -> None:
    assert httpx.get(store_server.url + "/metrics").status_code == 401


def test_a_request_id_is_echoed_or_made_and_logged(store_server_factory: StoreServerFactory
                                                   ) -> None:
    server = store_server_factory()
    given = httpx.get(server.url + "/healthz", headers={"X-Request-Id": "trace-42.a_b"})
    assert given.headers["x-request-id"] == "trace-42.a_b"
    made = httpx.get(server.url + "/healthz", headers={"X-Request-Id": "bad id with spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    refused = httpx.get(server.url + "/v1/labels/pin:1")  # errors carry one too
    assert refused.status_code == 401 and refused.headers["x-request-id"]


def test_json_logs_carry_the_request_id(tmp_path_factory: pytest.TempPathFactory) -> None:
    server = StoreServerProcess(tmp_path_factory.mktemp("store"), access_log=True,
                                extra_args=("--log-format", "json"))
    try:
        server.start()
    except StoreServerStartError as exc:
        pytest.fail(f"Label Store did not start: {exc}")
    try:
        httpx.get(server.url + "/v1/labels/pin:1", headers={"X-Request-Id": "req-json-1"})
        wait_until(lambda: "req-json-1" in server.log_text(), "the request in the log")
        records = [json.loads(line) for line in server.log_text().splitlines()
                   if line.startswith("{")]
        assert records, server.log_text()[-2000:]
        assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
        mine = [r for r in records if r.get("request_id") == "req-json-1"]
        assert any(r["logger"] == "uvicorn.access" and "401" in r["message"] for r in mine)
    finally:
        server.stop()


def test_the_log_format_must_be_known(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "enforce_sdk.store", "--log-format", "xml"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and "--log-format" in done.stderr
