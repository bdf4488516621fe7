"""The parts store workers share, in one process: the shared bloom snapshot file, head
notices between worker slots, and the master's restart budget."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from enforce_sdk import Enforcement, Label, Source, SourceType, StorageError
from enforce_sdk.native.bloom import BloomFilter
from enforce_sdk.store import PutOp
from enforce_sdk.store.shared_bloom import SharedBloomSnapshots, write_snapshot_file
from enforce_sdk.store.worker_slot import HeadNotices, WorkerSlot
from enforce_sdk.store.workers import RestartBudget, listen
from tests.store._memory_storage import MemoryStorage

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MODEL = Source("spam_model", SourceType.AUTOMATED, "v1")


def put(storage: MemoryStorage, *entities: str) -> None:
    storage.apply([PutOp(Label(e, MODEL, Enforcement.BLOCK, "spam", T0)) for e in entities],
                  actor="t", now=T0)


class CountingStorage(MemoryStorage):
    """Counts full iterations of the labeled entities: one per full bloom build."""

    iterations = 0

    def iter_labeled_entities(self):  # type: ignore[no-untyped-def]
        self.iterations += 1
        return super().iter_labeled_entities()


def test_two_processes_share_one_build(tmp_path: Path) -> None:
    storage = CountingStorage()
    put(storage, "pin:1")
    path = tmp_path / "bloom.snapshot"
    builder = SharedBloomSnapshots(storage, 0.01, path)  # worker 0
    follower = SharedBloomSnapshots(storage, 0.01, path)  # worker 1, its own handle
    assert follower.current is None
    first = builder.refresh()
    served = follower.latest()
    assert (served.etag, served.data, served.seq) == (first.etag, first.data, 1)
    assert follower.current is served  # cached while the file is unchanged
    assert storage.iterations == 1 and follower.full_builds == 0

    put(storage, "pin:2")
    assert follower.current is served  # nothing refreshed yet: still the shared one
    second = builder.refresh()
    assert second.etag != first.etag and storage.iterations == 1  # from the feed
    assert follower.current is None  # the file was replaced: read it again
    again = follower.latest()
    assert again.etag == second.etag and "pin:2" in BloomFilter.from_bytes(again.data)


def test_a_rebuild_elsewhere_is_adopted_by_the_builder(tmp_path: Path) -> None:
    storage = CountingStorage()
    put(storage, "pin:1")
    path = tmp_path / "bloom.snapshot"
    builder = SharedBloomSnapshots(storage, 0.01, path)
    other = SharedBloomSnapshots(storage, 0.01, path)
    first = builder.refresh()
    same = other.rebuild()  # an unchanged store: the same bytes keep their ETag
    assert same.etag == first.etag
    put(storage, "pin:2")
    rebuilt = other.rebuild()
    assert rebuilt.etag.split(".")[0] != first.etag.split(".")[0]  # a new build
    put(storage, "pin:3")
    caught_up = builder.refresh()  # goes on from the other's build, from the feed
    assert caught_up.etag.split(".")[0] == rebuilt.etag.split(".")[0]
    assert caught_up.seq == 3 and storage.iterations == 3
    assert other.latest().etag == caught_up.etag


def test_the_first_reader_builds_when_there_is_no_file_yet(tmp_path: Path) -> None:
    storage = CountingStorage()
    put(storage, "pin:1")
    path = tmp_path / "bloom.snapshot"
    snapshot = SharedBloomSnapshots(storage, 0.01, path).latest()
    assert path.exists() and snapshot.seq == 1
    assert SharedBloomSnapshots(storage, 0.01, path).latest().etag == snapshot.etag
    assert storage.iterations == 1


def test_a_foreign_file_is_an_error_not_a_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "bloom.snapshot"
    path.write_bytes(b"not a snapshot")
    with pytest.raises(StorageError, match="not a shared bloom snapshot"):
        SharedBloomSnapshots(MemoryStorage(), 0.01, path).latest()


def test_the_file_round_trips_every_field(tmp_path: Path) -> None:
    storage = MemoryStorage()
    put(storage, "pin:1")
    path = tmp_path / "bloom.snapshot"
    built = SharedBloomSnapshots(storage, 0.01, path).refresh()
    write_snapshot_file(path, built)
    assert SharedBloomSnapshots(storage, 0.01, path).latest() == built
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_head_notices_reach_every_sibling_but_the_sender(tmp_path: Path) -> None:
    async def scenario() -> dict[int, list[int]]:
        heard: dict[int, list[int]] = {0: [], 1: [], 2: []}
        notices = [HeadNotices(WorkerSlot(i, 3, tmp_path)) for i in range(3)]
        try:
            for i, n in enumerate(notices):
                n.listen(heard[i].append)
            notices[0].send(7)
            notices[0].send(9)  # both queued before a read: the highest is what counts
            while not (heard[1] and heard[2]):
                await asyncio.sleep(0)
            return heard
        finally:
            for n in notices:
                n.close()

    heard = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert heard[1] in ([9], [7, 9]) and heard[2] in ([9], [7, 9]) and heard[0] == []


def test_a_notice_to_a_sibling_not_up_is_dropped(tmp_path: Path) -> None:
    notices = HeadNotices(WorkerSlot(0, 2, tmp_path))  # worker 1 never bound its socket
    try:
        notices.send(3)  # no error: its storage poller will find the write
    finally:
        notices.close()


def test_restart_budget_counts_deaths_within_the_window() -> None:
    now = [0.0]
    budget = RestartBudget(limit=2, window=60.0, clock=lambda: now[0])
    assert budget.allow() and budget.allow()
    assert not budget.allow()  # a third death within 60 s
    now[0] = 61.0  # the three are out of the window
    assert budget.allow() and budget.allow() and not budget.allow()


def test_connections_on_a_workers_socket_turn_nagle_off() -> None:
    """asyncio sets TCP_NODELAY only on sockets that say TCP; without it each
    response would wait out the client's delayed ACK (tens of ms)."""
    sock = listen("127.0.0.1", 0)
    nodelay: list[int] = []

    async def scenario() -> None:
        accepted = asyncio.Event()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                conn = transport.get_extra_info("socket")
                nodelay.append(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()
                accepted.set()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            await asyncio.wait_for(accepted.wait(), 10)
            writer.close()

    asyncio.run(scenario())
    assert nodelay and nodelay[0] != 0
