"""`--workers N`: a master and N real store processes behind one port over one SQLite file.

Requests are steered to a worker by connections pinned to it (tests/store/_workers).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from enforce_sdk.native.bloom import BloomFilter
from tests.fixtures.store_server import LISTENING_RE, StoreServerFactory, StoreServerProcess
from tests.helpers import wait_until
from tests.store._workers import KEEP_ALIVE, long_poll, pinned_clients, put, worker_pids

WAIT = 10  # the fixture's max_wait_seconds


@pytest.fixture
def two_workers(store_server_factory: StoreServerFactory) -> StoreServerProcess:
    # A storage poll far slower than any long-poll's wait: only a head notice from the
    # sibling can wake a parked long-poll before its wait runs out.
    return store_server_factory(workers=2, http=KEEP_ALIVE,
                                feed={"poll_interval_seconds": 600},
                                bloom={"rebuild_interval_seconds": 0.1})


def test_two_workers_share_the_port_and_the_file(two_workers: StoreServerProcess) -> None:
    clients = pinned_clients(two_workers)
    assert sorted(clients) == [0, 1]
    head = put(clients[0], "pin:1", "pin:2")
    got = clients[1].post("/v1/labels/query", json={"keys": ["pin:1", "pin:2", "pin:3"]})
    assert got.status_code == 200
    assert sorted(got.json()["labels"]) == ["pin:1", "pin:2"] and got.json()["head"] == head
    assert len(worker_pids(two_workers)) == 2


def test_a_long_poll_on_one_worker_is_woken_by_a_write_through_the_other(
    two_workers: StoreServerProcess,
) -> None:
    clients = pinned_clients(two_workers)
    watcher = pinned_clients(two_workers)[1]  # a second connection to worker 1
    head = put(clients[0], "pin:1")
    thread, out = long_poll(clients[1], head, wait=WAIT)
    wait_until(lambda: watcher.get("/healthz").json()["long_polls"] == 1,
               "the long-poll to park on worker 1")
    new_head = put(clients[0], "pin:2")
    thread.join(WAIT + 5)
    (answer,) = out
    assert isinstance(answer, httpx.Response), answer
    # A long-poll that ran out its wait answers no changes: this one was woken.
    assert [(c["seq"], c["entity"]) for c in answer.json()["changes"]] == [(new_head, "pin:2")]


def _snapshot(client: httpx.Client) -> httpx.Response:
    r = client.get("/v1/bloom")
    assert r.status_code == 200
    return r


def test_every_worker_serves_the_one_shared_bloom_snapshot(two_workers: StoreServerProcess) -> None:
    clients = pinned_clients(two_workers)
    first = {w: _snapshot(c) for w, c in clients.items()}
    assert first[0].headers["etag"] == first[1].headers["etag"]
    assert first[0].content == first[1].content
    build = first[0].headers["etag"].strip('"').rpartition(".")[0]

    head = put(clients[1], "pin:77")  # through the worker that does not build it

    def caught_up() -> bool:
        return all(int(_snapshot(c).headers["x-bloom-seq"]) >= head for c in clients.values())

    wait_until(caught_up, "both workers to serve a snapshot with the write", 20)
    after = {w: _snapshot(c) for w, c in clients.items()}
    assert after[0].headers["etag"] == after[1].headers["etag"] != first[0].headers["etag"]
    assert after[0].content == after[1].content
    assert "pin:77" in BloomFilter.from_bytes(after[1].content)
    # Brought up to date from the feed, not built again: the same build, a later seq.
    assert after[0].headers["etag"].strip('"').rpartition(".")[0] == build
    # An unchanged store answers 304 on either worker for the ETag of the other.
    etag = after[0].headers["etag"]
    assert clients[1].get("/v1/bloom", headers={"If-None-Match": etag}).status_code == 304

    # An admin rebuild served by worker 1 is shared too; worker 0 goes on from it.
    rebuilt = clients[1].post("/v1/bloom/rebuild")
    assert rebuilt.status_code == 200 and rebuilt.json()["seq"] == head
    assert _snapshot(clients[0]).headers["etag"] == _snapshot(clients[1]).headers["etag"] == etag


def test_a_dead_worker_is_replaced(two_workers: StoreServerProcess) -> None:
    clients = pinned_clients(two_workers)
    before = worker_pids(two_workers)
    victim = next(iter(before))
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(worker_pids(two_workers) - before) == 1, "a replacement worker")
    assert victim not in worker_pids(two_workers)
    for client in clients.values():
        client.close()
    # Both slots answer again on fresh connections, and the store is whole.
    again = pinned_clients(two_workers)
    assert put(again[0], "pin:9") == put(again[1], "pin:10") - 1
    assert "died: killed by SIGKILL; restarting it" in two_workers.log_text()


def test_sigterm_stops_every_worker_and_the_master_cleanly(
    two_workers: StoreServerProcess,
) -> None:
    clients = pinned_clients(two_workers)
    head = put(clients[0], "pin:1")
    thread, out = long_poll(clients[1], head, wait=WAIT)
    wait_until(lambda: worker_pids(two_workers) and pinned_clients(two_workers)[1]
               .get("/healthz").json()["long_polls"] == 1, "the long-poll to park")
    pids = worker_pids(two_workers)
    assert two_workers.stop() == 0
    thread.join(WAIT)
    (answer,) = out  # released by the shutdown with what it had: nothing new
    assert isinstance(answer, httpx.Response) and answer.json()["changes"] == []
    assert all(not _alive(pid) for pid in pids)
    assert "worker 0 (pid" in two_workers.log_text() and "stopped: exit code 0" in \
        two_workers.log_text()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_stop_when_their_master_is_killed(two_workers: StoreServerProcess) -> None:
    pids = worker_pids(two_workers)
    assert len(pids) == 2
    two_workers.kill()  # SIGKILL: the master cannot tell them
    wait_until(lambda: not any(_alive(pid) for pid in pids), "the orphaned workers to stop", 15)


def test_the_master_gives_up_when_workers_keep_dying(two_workers: StoreServerProcess) -> None:
    killed: set[int] = set()
    proc = two_workers.proc
    assert proc is not None

    def kill_a_worker() -> bool:
        if proc.poll() is not None:
            return True
        for pid in worker_pids(two_workers) - killed:
            killed.add(pid)
            os.kill(pid, signal.SIGKILL)
            break
        return False

    wait_until(kill_a_worker, "the master to give up", 30)
    assert proc.returncode == 1
    assert len(killed) >= 6  # RESTART_LIMIT restarts, then it stops
    assert "workers keep dying" in two_workers.log_text()


def test_a_worker_that_cannot_start_fails_the_start(tmp_path_factory: pytest.TempPathFactory,
                                                    ) -> None:
    workdir = tmp_path_factory.mktemp("store")
    (workdir / "not-a-dir").write_text("")
    server = StoreServerProcess(workdir, workers=2, sections={
        "storage": {"url": f"sqlite://{workdir / 'not-a-dir' / 'labels.db'}"}})
    with pytest.raises(Exception, match="store exited with 1"):
        server.start()
    assert "could not start" in server.log_text()
    assert "listening on" not in server.log_text()


def test_workers_1_is_the_single_process_of_today(store_server: StoreServerProcess) -> None:
    assert store_server.workers == 1
    assert httpx.get(f"{store_server.url}/healthz").json() == {"schema": 1, "status": "ok"}
    assert worker_pids(store_server) == set()


def test_the_cli_serves_with_workers_and_stops_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "enforce_sdk.cli", "serve", "--workers", "2", "--port", "0",
             "--db", str(tmp_path / "labels.db"), "--no-access-log"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_until(lambda: LISTENING_RE.search(log.read_text()) or proc.poll() is not None,
                   "the listening line", 30)
        match = LISTENING_RE.search(log.read_text())
        assert match, log.read_text()
        workers = {httpx.get(f"{match.group(1)}/healthz").json()["worker"] for _ in range(40)}
        assert workers <= {0, 1} and workers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
