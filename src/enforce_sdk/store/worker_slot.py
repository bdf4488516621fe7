"""What a store worker knows of its siblings: its slot, and head notices between them.

The master (store/workers) forks `count` workers that share one listening
socket and a run directory. Each worker runs the whole app on its own storage
handle; what they must share goes through the run directory:

- the bloom snapshot file (store/shared_bloom), kept by worker 0;
- head notices: after a write, a worker sends the new head as one Unix
  datagram to every sibling's socket (`head-<i>.sock`), so a change-feed
  long-poll parked on another worker wakes at once rather than at its next
  poll of storage. Notices are hints: a sibling not up yet, or one whose
  queue is full, misses one, and its storage poller (`feed.poll_interval_seconds`)
  still finds the write. A worker restarted in the same slot binds the same
  path, so its siblings reach it again without being told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
_HEAD = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    """Worker `index` of `count`, sharing `run_dir` with its siblings."""

    index: int
    count: int
    run_dir: Path

    @property
    def keeps_shared_state(self) -> bool:
        """Worker 0 does what must happen once: the bloom snapshot, pruning, purging."""
        return self.index == 0

    @property
    def bloom_path(self) -> Path:
        return self.run_dir / "bloom.snapshot"

    def notice_path(self, index: int) -> Path:
        return self.run_dir / f"head-{index}.sock"


class HeadNotices:
    """Tell sibling workers the head after a write here; hear theirs on the event loop."""

    def __init__(self, slot: WorkerSlot) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        path = slot.notice_path(slot.index)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by this slot's previous worker
        self._sock.bind(str(path))
        self._peers = [str(slot.notice_path(i)) for i in range(slot.count) if i != slot.index]
        self._loop: asyncio.AbstractEventLoop | None = None

    def send(self, head: int) -> None:
        """Tell every sibling (without blocking; a sibling that cannot take it misses it)."""
        notice = _HEAD.pack(head)
        for peer in self._peers:
            with contextlib.suppress(OSError):  # not bound yet, restarting, or its queue is full
                self._sock.sendto(notice, peer)

    def listen(self, on_head: Callable[[int], None]) -> None:
        """Call `on_head` with the highest head heard, on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._drain, on_head)

    def _drain(self, on_head: Callable[[int], None]) -> None:
        highest = -1
        while True:
            try:
                notice = self._sock.recv(64)
            except (BlockingIOError, InterruptedError):
                break
            if len(notice) == _HEAD.size:
                highest = max(highest, _HEAD.unpack(notice)[0])
        if highest >= 0:
            on_head(highest)

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._sock.fileno())
        self._loop = None
        self._sock.close()
