"""Several Label Store processes behind one port: a pre-fork master that supervises them.

`run_workers(..., workers=N)` reserves the port (bound with SO_REUSEPORT, not
listening; port 0 resolves to a free one here), makes a run directory, and
forks N workers. Each opens its own listening socket on that port with
SO_REUSEPORT and its own storage handle, and serves the whole app
(store/server.serve_worker). The kernel spreads new connections over the
listening sockets by a hash of their addresses, so long-lived keep-alive
connections (SDK hosts) end up balanced; one socket shared by all workers
would let whichever worker wakes first accept a whole burst of them (after a
store restart, every client reconnects at once). The cost: connections still
queued on a worker's socket when it dies are reset. Forking before any
storage is opened keeps every SQLite connection and Redis pool private.
What the workers share goes through the run directory (store/worker_slot):
head notices that wake change-feed long-polls across workers, and one bloom
snapshot built by worker 0 (store/shared_bloom).

The master only supervises:
- it prints the listening line once every worker has started (a worker that
  dies before that fails the start: exit 1, as a single process that cannot
  open its storage);
- a worker that dies later is restarted in its slot, unless RESTART_LIMIT
  workers died within RESTART_WINDOW_SECONDS: then it stops them all and
  exits 1 rather than crash-loop;
- SIGTERM or SIGINT stops the workers gracefully (SIGTERM to each: they stop
  accepting, finish in-flight requests, release long-polls); a second signal
  forces them (SIGINT); after STOP_GRACE_SECONDS the rest are killed;
- a worker whose master is gone stops by itself (its parent pid changes).

`workers=1` is store/server.run: one process, exactly as without a master.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import NoReturn

from .config import StoreConfig
from .live_policy import PolicyFeed
from .server import LISTENING_PREFIX, configure_logging, run, serve_worker
from .worker_slot import WorkerSlot

log = logging.getLogger(__name__)
MAX_WORKERS = 64
RESTART_LIMIT = 5  # worker deaths the master absorbs by restarting ...
RESTART_WINDOW_SECONDS = 60.0  # ... within this window; one more and it gives up
STOP_GRACE_SECONDS = 20.0  # a worker's graceful shutdown is 10 s; then SIGKILL
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_TICK_SECONDS = 0.5  # the master's longest sleep without a signal or a ready worker


class RestartBudget:
    """Whether one more worker death may be answered by a restart: at most `limit`
    deaths within any `window` seconds. The clock is injected for tests."""

    def __init__(self, limit: int = RESTART_LIMIT, window: float = RESTART_WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._deaths: deque[float] = deque()

    def allow(self) -> bool:
        """Count a death now; True if the worker should be restarted."""
        now = self._clock()
        self._deaths.append(now)
        while self._deaths and self._deaths[0] <= now - self.window:
            self._deaths.popleft()
        return len(self._deaths) <= self.limit


def _bound(host: str, port: int) -> socket.socket:
    # proto IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY)
    # only on connections whose socket says TCP, and a response written in two
    # sends would otherwise wait out the client's delayed ACK (~40 ms a request).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def reserve(host: str, port: int) -> socket.socket:
    """Hold the port for the workers (bound, not listening: it takes no connections)."""
    return _bound(host, port)


def listen(host: str, port: int) -> socket.socket:
    """A worker's own listening socket on the reserved port."""
    sock = _bound(host, port)
    try:
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


def run_workers(config: StoreConfig, *, host: str = "127.0.0.1", port: int = 8080,
                workers: int = 1, access_log: bool = True, log_level: str = "info",
                policy_feed: PolicyFeed | None = None) -> None:
    """Serve the Label Store with `workers` processes until SIGINT/SIGTERM.

    `policy_feed` (store/live_policy) is started in each worker, after the fork.

    Raises SystemExit (non-zero) when the port cannot be bound, a worker cannot
    start, or workers keep dying; `workers=1` is store/server.run.
    """
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be in 1..{MAX_WORKERS}, got {workers}")
    if workers == 1:
        run(config, host=host, port=port, access_log=access_log, log_level=log_level,
            policy_feed=policy_feed)
        return
    configure_logging(log_level)
    try:
        sock = reserve(host, port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        raise SystemExit(1) from exc
    run_dir = tempfile.mkdtemp(prefix="enforce-store-")
    try:
        code = _Master(config, sock, workers, Path(run_dir), access_log=access_log,
                       log_level=log_level, policy_feed=policy_feed).run()
    finally:
        sock.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    if code:
        raise SystemExit(code)


class _Master:
    """The supervising loop: fork, watch, restart, stop. Single-threaded by design (it forks)."""

    def __init__(self, config: StoreConfig, sock: socket.socket, count: int, run_dir: Path, *,
                 access_log: bool, log_level: str, policy_feed: PolicyFeed | None) -> None:
        self.config = config
        self.policy_feed = policy_feed
        self.sock = sock
        self.count = count
        self.run_dir = run_dir
        self.access_log = access_log
        self.log_level = log_level
        self.pid = os.getpid()
        self.pids: dict[int, int] = {}  # worker pid -> slot index
        self.started: set[int] = set()  # slots whose first worker has announced itself
        self.booted = False  # every slot started once: the port was announced
        self.budget = RestartBudget()
        self.stop_signals = 0
        self.exit_code = 0
        self.stopping = False
        self.kill_at = 0.0
        self._signals: list[int] = []
        self._ready_r, self._ready_w = os.pipe()
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._ready_r, self._wake_r, self._wake_w):
            os.set_blocking(fd, False)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (*_STOP_SIGNALS, signal.SIGCHLD)}
        old_wakeup = signal.set_wakeup_fd(self._wake_w)
        try:
            for index in range(self.count):
                self._spawn(index)
            while self.pids or not self.stopping:
                select.select([self._ready_r, self._wake_r], [], [], _TICK_SECONDS)
                self._drain(self._wake_r)
                self._take_signals()
                self._take_ready()
                self._reap()
                if self.stopping and self.pids and time.monotonic() >= self.kill_at:
                    log.error("workers %s did not stop in %.0f s: killing them",
                              sorted(self.pids.values()), STOP_GRACE_SECONDS)
                    self._send(signal.SIGKILL)
                    self.kill_at = float("inf")
            return self.exit_code
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for fd in (self._ready_r, self._ready_w, self._wake_r, self._wake_w):
                os.close(fd)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGCHLD:
            self._signals.append(signum)

    def _take_signals(self) -> None:
        while self._signals:
            sig = self._signals.pop(0)
            self.stop_signals += 1
            if self.stop_signals == 1:
                log.info("%s: stopping %d workers gracefully", signal.Signals(sig).name,
                         len(self.pids))
                self._stop(0)
            else:  # uvicorn takes a SIGINT after a stop signal as "force"
                log.warning("%s again: forcing the workers to stop", signal.Signals(sig).name)
                self._send(signal.SIGINT)

    def _take_ready(self) -> None:
        for index in self._drain(self._ready_r):
            if index not in self.started:
                self.started.add(index)
            else:
                log.info("worker %d is serving again", index)
        if not self.booted and len(self.started) == self.count and not self.stopping:
            self.booted = True
            host, port = self.sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            log.info("%d workers serving (master pid %d)", self.count, self.pid)
            print(f"{LISTENING_PREFIX}http://{shown}:{port}", flush=True)

    def _reap(self) -> None:
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            index = self.pids.pop(pid, None)
            if index is None:
                continue
            how = _exit_status(status)
            if self.stopping:
                log.info("worker %d (pid %d) stopped: %s", index, pid, how)
            elif not self.booted:
                log.error("worker %d (pid %d) could not start: %s; stopping", index, pid, how)
                self._stop(1)
            elif self.budget.allow():
                log.warning("worker %d (pid %d) died: %s; restarting it", index, pid, how)
                self._spawn(index)
            else:
                log.error("workers keep dying (%d deaths within %.0f s; the last, worker %d: "
                          "%s): stopping", self.budget.limit + 1, self.budget.window, index, how)
                self._stop(1)

    def _stop(self, code: int) -> None:
        self.exit_code = max(self.exit_code, code)
        if not self.stopping:
            self.stopping = True
            self.kill_at = time.monotonic() + STOP_GRACE_SECONDS
            self._send(signal.SIGTERM)

    def _send(self, sig: int) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    @staticmethod
    def _drain(fd: int) -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    # -- a worker ----------------------------------------------------------------------------

    def _spawn(self, index: int) -> None:
        # Stop signals stay blocked in the child until uvicorn's handlers are in place
        # (store/server._StoreServer.serve unblocks them): none is lost while it starts.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                self._become_worker(index)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self.pids[pid] = index
        log.info("worker %d started (pid %d)", index, pid)

    def _become_worker(self, index: int) -> NoReturn:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for sig in _STOP_SIGNALS:  # uvicorn re-raises its stop signal once stopped
                signal.signal(sig, _ignore)
            for fd in (self._ready_r, self._wake_r, self._wake_w):
                os.close(fd)
            ready_w = self._ready_w

            def ready() -> None:
                os.write(ready_w, bytes([index]))

            host, port = self.sock.getsockname()[:2]
            listener = listen(host, port)
            self.sock.close()
            serve_worker(self.config, WorkerSlot(index, self.count, self.run_dir), listener,
                         access_log=self.access_log, log_level=self.log_level,
                         master_pid=self.pid, on_ready=ready, policy_feed=self.policy_feed)
            code = 0
        except SystemExit as exc:  # uvicorn exits when the app's startup fails
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("store worker %d failed", index)
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A stop signal after the worker's server has stopped: nothing left to do."""


def _exit_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
