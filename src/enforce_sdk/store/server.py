"""Running the Label Store: uvicorn in the foreground (`run`) or on a thread (`start_in_thread`).

Shutdown is graceful: on SIGINT/SIGTERM the server stops accepting, releases
long-polling feed readers at once (they answer with what they have), lets
in-flight requests finish, then closes the storage. Once listening it prints
`enforce-sdk store listening on http://HOST:PORT` (port 0 picks a free port;
the line names the real one), which scripts and test fixtures wait for.
Connections are served by store/http_guard: header limits, read timeouts and
framing rules, and no query strings in the access log.

Several processes behind one port: store/workers reserves it and forks
workers that each listen on it (SO_REUSEPORT) and run `serve_worker`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from .._errors import EnforceError, StorageError
from .app import LabelStoreService, create_app
from .config import StoreConfig
from .http_guard import protocol_class, scrub_access_log
from .live_policy import PolicyFeed
from .observe import JsonLogFormatter, RequestIdFilter
from .storage.backends import open_storage
from .storage.base import LabelStorage
from .worker_slot import WorkerSlot

log = logging.getLogger(__name__)
LISTENING_PREFIX = "enforce-sdk store listening on "
_GRACEFUL_SHUTDOWN_SECONDS = 10
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}



class _StoreServer(uvicorn.Server):
    """uvicorn.Server that announces its URL, releases long-polls and closes storage on exit."""

    def __init__(self, config: uvicorn.Config, service: LabelStoreService,
                 announce: Callable[[str], None]) -> None:
        super().__init__(config)
        self.service = service
        self.url: str | None = None
        self._announce = announce
        self._storage_closed = False
        self.master_pid: int | None = None  # as a master's worker: stop if it is gone

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers:
            sock = next(iter(self.servers[0].sockets))
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            self.url = f"http://{shown}:{port}"
            self._announce(self.url)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        with self.capture_signals():
            # A worker is forked with SIGTERM/SIGINT blocked (store/workers): a stop
            # signal sent while it started is delivered now, to uvicorn's handler.
            if self.master_pid is not None:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            await self._serve(sockets)

    async def on_tick(self, counter: int) -> bool:
        if self.master_pid is not None and os.getppid() != self.master_pid and not self.should_exit:
            log.error("the store master (pid %d) is gone: stopping this worker", self.master_pid)
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.service.watcher.close()
        try:
            await super().shutdown(sockets)
        finally:
            self.close_storage()

    def close_storage(self) -> None:
        if self._storage_closed:
            return
        self._storage_closed = True
        try:
            self.service.storage.close()
        except StorageError as exc:
            log.error("closing storage failed: %s", exc)


def _print_listening(url: str) -> None:
    print(LISTENING_PREFIX + url, flush=True)


LOG_FORMATS = ("text", "json")
_log_format = "text"


def set_log_format(fmt: str) -> None:
    """`text` (the default) or `json` (store/observe.JsonLogFormatter: one object per line,
    with the request id); set before `run`/`run_workers` (forked workers inherit it)."""
    global _log_format
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    _log_format = fmt


def configure_logging(log_level: str) -> None:
    """Log to stderr at `log_level`, unless the embedding program configured logging.
    Every record carries the request id of the request it was logged in, if any."""
    root = logging.getLogger()
    if not root.handlers and not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonLogFormatter() if _log_format == "json" else logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(log_level.upper())
    for each in root.handlers:
        if not any(isinstance(f, RequestIdFilter) for f in each.filters):
            each.addFilter(RequestIdFilter())


def _build(
    config: StoreConfig,
    storage: LabelStorage | None,
    host: str,
    port: int,
    *,
    access_log: bool,
    log_level: str,
    announce: Callable[[str], None],
    slot: WorkerSlot | None = None,
    policy_feed: PolicyFeed | None = None,
) -> _StoreServer:
    store = storage if storage is not None else open_storage(config.storage.url)
    app = create_app(config, store, slot=slot, policy_feed=policy_feed)
    uv_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        access_log=access_log,
        log_level=log_level,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
        server_header=False,
        # h11 with the edge's limits and timeouts (store/http_guard), never uvicorn's
        # "auto" choice: installing httptools must not swap in a protocol without them.
        http=protocol_class(config.http),
        h11_max_incomplete_event_size=config.http.max_header_bytes,
        timeout_keep_alive=config.http.keep_alive_seconds,
        # JSON logs: uvicorn's loggers (access log included) go to the root's JSON handler
        log_config=None if _log_format == "json" else LOGGING_CONFIG,
    )
    scrub_access_log()  # after uvicorn.Config, which (re)configures its loggers
    return _StoreServer(uv_config, app.state.service, announce)


def run(
    config: StoreConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    storage: LabelStorage | None = None,
    access_log: bool = True,
    log_level: str = "info",
    policy_feed: PolicyFeed | None = None,
) -> None:
    """Serve the Label Store until SIGINT/SIGTERM; opens (and finally closes) the storage.

    `storage` overrides the backend named by `config.storage.url` (it is closed too);
    `policy_feed` keeps the store on the SDK config (store/live_policy).
    """
    configure_logging(log_level)
    server = _build(config, storage, host, port, access_log=access_log, log_level=log_level,
                    announce=_print_listening, policy_feed=policy_feed)
    try:
        server.run()  # uvicorn exits the process (SystemExit) if it cannot bind or start
    finally:
        server.close_storage()


def serve_worker(config: StoreConfig, slot: WorkerSlot, sock: socket.socket, *,
                 access_log: bool, log_level: str, master_pid: int,
                 on_ready: Callable[[], None], policy_feed: PolicyFeed | None = None) -> None:
    """Serve as worker `slot.index` on its listening socket `sock`, until SIGTERM/SIGINT
    or the master is gone; opens (and finally closes) this worker's own storage."""
    host, port = sock.getsockname()[:2]
    server = _build(config, None, host, port, access_log=access_log, log_level=log_level,
                    announce=lambda _url: on_ready(), slot=slot, policy_feed=policy_feed)
    server.master_pid = master_pid
    try:
        server.run(sockets=[sock])
    finally:
        server.close_storage()


@dataclass
class ThreadedStoreServer:
    """A Label Store serving on a background thread of this process (tests, notebooks)."""

    url: str
    _server: _StoreServer
    _thread: threading.Thread

    @property
    def service(self) -> LabelStoreService:
        return self._server.service

    def stop(self, timeout: float = 15.0) -> None:
        """Shut down gracefully and wait for the thread; closes the storage."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)

    def __enter__(self) -> ThreadedStoreServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(
    config: StoreConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    storage: LabelStorage | None = None,
    startup_timeout: float = 15.0,
    policy_feed: PolicyFeed | None = None,
) -> ThreadedStoreServer:
    """Start a server on a thread and return once it listens (port 0: a free port)."""
    ready = threading.Event()
    server = _build(config, storage, host, port, access_log=False, log_level="warning",
                    announce=lambda _url: ready.set(), policy_feed=policy_feed)
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(server.serve())
        except BaseException as exc:  # SystemExit from a failed bind included
            failure.append(exc)
        finally:
            server.close_storage()
            ready.set()

    thread = threading.Thread(target=target, name="enforce-store-server", daemon=True)
    thread.start()
    if not ready.wait(startup_timeout) or server.url is None:
        server.should_exit = True
        thread.join(startup_timeout)
        detail = f": {failure[0]!r}" if failure else ""
        raise EnforceError(f"Label Store did not start on {host}:{port}{detail}")
    return ThreadedStoreServer(server.url, server, thread)

