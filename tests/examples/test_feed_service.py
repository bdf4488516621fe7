"""examples/feed_service.py served by a real uvicorn against the real Label Store.

Both endpoints (async client and sync client) must hide exactly the pins the
labels say to hide on the home feed: a pin's own label, its link domain's and
its creator's, each by the surface's rules in docs/examples/enforce.toml. And
the snippet docs/async-and-prefork.md shows is the code this test runs.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from examples.feed_service import DEFAULT_CONFIG, PAGE_SIZE, candidates, create_app

from enforce_sdk import Enforcement, Label, LabelStoreClient, Source, SourceType
from tests.fixtures.store_server import StoreServerProcess

ROOT = Path(__file__).resolve().parents[2]
REVIEW = Source("review_tool", SourceType.HUMAN, "alice")
AGO = datetime.now(UTC) - timedelta(hours=1)


@pytest.fixture
def labeled_store(store_server: StoreServerProcess) -> StoreServerProcess:
    with LabelStoreClient(store_server.url, token=store_server.tokens["writer"]) as writer:
        writer.put(
            [
                Label("pin:3", REVIEW, Enforcement.LIMIT, "spam", AGO),  # hidden: limit hides
                Label("pin:4", REVIEW, Enforcement.ALLOW, "spam", AGO),  # explicit clearance
                Label("domain:site2.example", REVIEW, Enforcement.BLOCK, "spam", AGO),
                Label(
                    "domain:site5.example", REVIEW, Enforcement.LIMIT, "spam", AGO
                ),  # below block
                Label("user:1007", REVIEW, Enforcement.REMOVE, "hate", AGO),
                Label("user:1008", REVIEW, Enforcement.BLOCK, "spam", AGO),  # below remove
            ]
        )
    return store_server


def expected_shown(page: int) -> list[str]:
    """What the labels above hide, worked out from the rules rather than the SDK."""
    shown = []
    for item in candidates(page):
        i = int(item["id"].split(":")[1])
        if i == 3 or i % 7 == 2 or 1000 + i % 11 == 1007:
            continue
        shown.append(item["id"])
    return shown


@pytest.fixture
def feed_url(labeled_store: StoreServerProcess) -> Iterator[str]:
    app = create_app(labeled_store.url, str(DEFAULT_CONFIG), token=labeled_store.tokens["reader"])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(20)
    sock.close()


@pytest.mark.parametrize("endpoint", ["/feed", "/feed-sync"])
def test_the_feed_hides_what_the_labels_say(feed_url: str, endpoint: str) -> None:
    with httpx.Client(base_url=feed_url, timeout=10) as http:
        for page in (0, 1, 0):  # the repeated page is answered from the cache
            body = http.get(endpoint, params={"page": page}).raise_for_status().json()
            shown = [item["id"] for item in body["items"]]
            assert shown == expected_shown(page)
            assert body["hidden"] == PAGE_SIZE - len(shown) > 0


def test_both_endpoints_agree_under_concurrent_requests(feed_url: str) -> None:
    async def fetch_all() -> list[list[str]]:
        async with httpx.AsyncClient(base_url=feed_url, timeout=10) as http:
            responses = await asyncio.gather(
                *(
                    http.get(endpoint, params={"page": page})
                    for page in range(2, 6)
                    for endpoint in ("/feed", "/feed-sync")
                )
            )
            return [[it["id"] for it in r.raise_for_status().json()["items"]] for r in responses]

    results = asyncio.run(fetch_all())
    expected = [expected_shown(page) for page in range(2, 6) for _ in range(2)]
    assert results == expected


@pytest.mark.parametrize("doc_path", ["docs/async-and-prefork.md", "README.md"])
def test_the_docs_show_the_code_the_tests_run(doc_path: str) -> None:
    doc = (ROOT / doc_path).read_text()
    snippets = re.findall(r"```python\n(.*?)```", doc, re.S)
    snippet = next((s for s in snippets if "AsyncEnforcementClient(" in s), None)
    assert snippet is not None, f"{doc_path} shows no feed service snippet"
    source = (ROOT / "examples" / "feed_service.py").read_text()
    region = re.search(r"# --8<-- \[start:feed\]\n(.*?)    # --8<-- \[end:feed\]", source, re.S)
    assert region is not None
    body = "\n".join(line[4:] for line in region.group(1).rstrip().splitlines()) + "\n"
    assert body in snippet
