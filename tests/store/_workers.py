"""Helpers for tests of a store master with several workers: connections pinned to a worker.

The kernel hands each new connection to one worker; a client limited to one
kept-alive connection stays with that worker, and `/healthz` says which one.
The configs here keep idle connections open for a minute so none is dropped
(and re-opened, maybe to another worker) in the middle of a test.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from enforce_sdk.model.label import Enforcement, Label, Source, SourceType
from tests.fixtures.store_server import StoreServerProcess

MODEL = Source("spam_model", SourceType.AUTOMATED, "v1")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEEP_ALIVE = {"keep_alive_seconds": 60}


def label(entity: str) -> Label:
    return Label(entity, MODEL, Enforcement.BLOCK, "spam", T0)


def pinned_clients(server: StoreServerProcess, role: str = "admin",
                   attempts: int = 300) -> dict[int, httpx.Client]:
    """One client per worker, each on its own single kept-alive connection."""
    clients: dict[int, httpx.Client] = {}
    for _ in range(attempts):
        client = httpx.Client(base_url=server.url, headers=server.headers(role), timeout=30,
                              limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        worker = client.get("/healthz").json()["worker"]
        if worker in clients:
            client.close()
        else:
            clients[worker] = client
        if len(clients) == server.workers:
            return clients
    for client in clients.values():
        client.close()
    pytest.fail(f"{attempts} connections reached only workers {sorted(clients)}")


def worker_of(client: httpx.Client) -> int:
    worker = client.get("/healthz").json()["worker"]
    assert isinstance(worker, int)
    return worker


def put(client: httpx.Client, *entities: str) -> int:
    """Write labels through this client's worker; the head after the write."""
    r = client.post("/v1/labels", json={"labels": [label(e).to_dict() for e in entities]})
    assert r.status_code == 200, r.text
    head = r.json()["head"]
    assert isinstance(head, int)
    return head


def long_poll(client: httpx.Client, after: int, wait: float) -> tuple[threading.Thread,
                                                                      list[Any]]:
    """GET /v1/changes?after=&wait= on a thread; the answer (or error) lands in the list."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(client.get("/v1/changes", params={"after": after, "wait": wait}))
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def worker_pids(server: StoreServerProcess) -> set[int]:
    """The master's live children (Linux /proc)."""
    assert server.proc is not None
    path = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children")
    try:
        return {int(p) for p in path.read_text().split()}
    except FileNotFoundError:
        return set()
