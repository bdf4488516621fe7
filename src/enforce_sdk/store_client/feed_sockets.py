"""The sockets a store client's change-feed polls went out on, so close() can end a long-poll.

A long-poll waits up to its `wait` for a change; closing the httpx client from
another thread does not wake the thread blocked reading its socket, so close()
used to wait the follower out. `FeedSockets` learns each new connection's socket
through httpx's `trace` request extension (the feed's requests carry it) and
shuts them down on close(), which ends a read in flight at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import weakref
from typing import Any


class FeedSockets:
    """The sockets change-feed polls went out on, so `close()` can cut a long-poll short.

    Learned through httpx's `trace` request extension: a new connection reports
    its network stream, whose socket is kept (weakly) until it closes. A socket
    closed from another thread does not wake a thread blocked reading it;
    shutting it down does.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event not in ("connection.connect_tcp.complete",
                         "connection.connect_unix_socket.complete"):
            return
        stream = info.get("return_value")
        sock = None if stream is None else stream.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            with self._lock:
                self._sockets.add(sock)

    def shut_down(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
