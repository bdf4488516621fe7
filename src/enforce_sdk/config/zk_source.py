"""ZooKeeperConfigSource: the SDK's config, watched in ZooKeeper, with a last-good copy on disk.

Life of a version: the config node changes -> kazoo's DataWatch calls back on its
event thread -> the bytes are decoded and validated in full -> a version not
newer than the applied one is ignored -> `on_update` swaps it in -> the
document is written to `cache_path` (config/disk_copy: temp file, fsync, rename). Anything
invalid is logged with its reason, counted, and dropped: the previous config
keeps serving.

Start: load the disk copy (if any) as the applied version, then connect and
wait up to `timeout` for the first read, which is applied only if newer than
the disk copy: a ZooKeeper restored from an older backup never takes a
restarting host backwards. If ZooKeeper is unreachable (or holds nothing
usable) serve the disk copy and keep connecting in the background; the watch
catches up once ZooKeeper answers. kazoo reconnects after connection loss and
opens a new session after expiry; DataWatch re-reads the node after every
reconnect. A read refused by ZooKeeper (NoAuth: wrong credential, or the ACL
changed) is recorded in stats and retried with backoff.

Threads: callbacks arrive on kazoo threads; `on_update` is called with the
source's lock held, one version at a time, in version order. After `fork()`
the child calls `after_fork()`, which abandons the parent's session without
closing it (that would end the parent's session too) and opens its own; in
the process that owns the session it does nothing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.protocol.states import KazooState, ZnodeStat
from kazoo.recipe.watchers import DataWatch

from .._errors import ConfigError, ConfigSourceError, EnforceError
from .disk_copy import LastGoodCopy, Validator
from .document import EnforcementConfig
from .source import ConfigMeta, ConfigSource
from .zk_document import DEFAULT_ROOT, MAX_DOCUMENT_BYTES, decode_document
from .zk_layout import ConfigLayout, check_hosts, digest_auth, new_client

log = logging.getLogger(__name__)

ORIGIN_ZOOKEEPER = "zookeeper"
ORIGIN_DISK = "disk"

UpdateCallback = Callable[[EnforcementConfig, ConfigMeta], None]


class ZooKeeperConfigSource(ConfigSource):
    """Config from a ZooKeeper node, validated before use, with a last-good copy on disk.

    `hosts` is a kazoo connect string (`h1:2181,h2:2181[/chroot]`); `path` the
    layout root (the document is at `<path>/config`); `auth` an optional digest
    credential `user:password` for read ACLs; `timeout` how long `start()`
    waits for ZooKeeper before falling back to `cache_path`.
    """

    def __init__(
        self,
        hosts: str,
        path: str = DEFAULT_ROOT,
        *,
        cache_path: str | os.PathLike[str] | None,
        auth: str | None = None,
        timeout: float = 5.0,
        session_timeout: float = 10.0,
        reconnect_max_delay: float = 2.0,
        max_bytes: int = MAX_DOCUMENT_BYTES,
        validator: Validator | None = None,
        timer: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._layout = ConfigLayout(path)
        self._hosts = check_hosts(hosts)
        self._auth_data = digest_auth(auth)  # validates the credential now
        self._timeout = timeout
        self._session_timeout = session_timeout
        self._reconnect_max_delay = reconnect_max_delay
        self._max_bytes = max_bytes
        self._validate: Validator = validator or EnforcementConfig.from_dict
        self._disk = None if cache_path is None else LastGoodCopy(
            Path(cache_path), self._layout.config, max_bytes=max_bytes,
            validate=self._validate, wall_clock=wall_clock)
        self._timer = timer
        self._wall = wall_clock
        self._on_update: UpdateCallback | None = None
        self._client: KazooClient | None = None
        self._generation = 0
        self._started = False
        self._closed = False
        self._applied: tuple[EnforcementConfig, ConfigMeta] | None = None
        self._applied_mono = 0.0
        self._modified_at: float | None = None  # when the applied version was written
        self._origin = ""
        self._pid = os.getpid()  # the process that owns self._client
        self._denied_streak = 0
        self._retry_pending = False
        self._state = KazooState.LOST
        self._counts = dict.fromkeys(
            ("updates", "rejected", "stale_ignored", "disconnects", "session_losses",
             "reconnects", "read_denied"), 0)
        self._last_rejection: str | None = None
        self._reset_sync()

    def _reset_sync(self) -> None:
        self._retry_pending = False  # a parent's retry timer does not survive fork()
        self._lock = threading.RLock()
        self._first_read = threading.Event()
        if self._disk is not None:
            self._disk.after_fork()

    @property
    def layout(self) -> ConfigLayout:
        return self._layout

    # -- ConfigSource --------------------------------------------------------------------------

    def start(self, on_update: UpdateCallback) -> tuple[EnforcementConfig, ConfigMeta]:
        """Return the initial config and start watching.

        The disk copy is loaded first; ZooKeeper's version replaces it only if
        newer (an older one, e.g. after a restore from backup, is logged as
        ignored). Raises ConfigError if neither gives a valid config within `timeout`.
        """
        with self._lock:
            if self._started or self._closed:
                raise ConfigSourceError("ZooKeeperConfigSource.start() may be called once")
            self._on_update = on_update
            cached = None if self._disk is None else self._disk.load(self._reject)
            if cached is not None:
                self._set_applied(cached[0], ORIGIN_DISK, cached[1])
            self._connect()
        self._first_read.wait(self._timeout)
        with self._lock:
            if self._applied is not None and self._origin == ORIGIN_DISK:
                log.warning(
                    "config: ZooKeeper %s gave no newer usable config within %.1fs (%s); "
                    "serving version %d from %s until it does",
                    self._hosts, self._timeout, self._last_rejection or "unreachable",
                    self._applied[0].version, None if self._disk is None else self._disk.path,
                )
            applied = self._applied
            if applied is not None:
                self._started = True
                return applied
            reason = self._last_rejection or f"unreachable within {self._timeout}s"
        self.close()
        raise ConfigError(
            f"no config: ZooKeeper {self._hosts} {self._layout.config}: {reason}; "
            f"and no usable copy at {None if self._disk is None else self._disk.path}",
            field="config",
        )

    def close(self) -> None:
        """Stop watching and end the session. Idempotent."""
        with self._lock:
            self._closed = True
            self._generation += 1
            client, self._client = self._client, None
        # Outside the lock: stopping joins kazoo's threads, which may be waiting for it.
        _stop(client)
        self.flush_cache(timeout=2.0)

    def flush_cache(self, timeout: float = 5.0) -> bool:
        """Wait until queued disk copies are written; False on timeout."""
        return True if self._disk is None else self._disk.flush(timeout)

    def after_fork(self) -> None:
        """In a forked child: keep the inherited config, open a session of our own.

        A no-op in the process that owns the session (the parent, or a child
        that already called it): abandoning a live client of our own would
        close its sockets and leave its threads running.
        """
        if os.getpid() == self._pid:
            return
        self._pid = os.getpid()
        self._reset_sync()
        self._first_read.set()
        old, self._client = self._client, None
        self._generation += 1
        _abandon(old)
        if self._started and not self._closed:
            with self._lock:
                self._connect()

    def stats(self) -> dict[str, Any]:
        """Applied version, where it came from and how old it is, connection state, counters."""
        with self._lock:
            applied = self._applied
            out: dict[str, Any] = {
                "source": "zookeeper",
                "hosts": self._hosts,
                "path": self._layout.config,
                "applied_version": applied[0].version if applied else None,
                "origin": self._origin or None,
                "applied_at": applied[1].applied_at if applied else None,
                "since_applied_seconds": self._timer() - self._applied_mono if applied else None,
                # age of the config itself: since it was written to ZooKeeper (znode
                # mtime; for a disk copy the mtime it recorded, else when it was saved)
                "modified_at": self._modified_at if applied else None,
                "age_seconds": (self._wall() - self._modified_at
                                if applied and self._modified_at is not None else None),
                "connected": self._state == KazooState.CONNECTED,
                "read_refused": self._denied_streak > 0,
                "state": str(self._state),
                "last_rejection": self._last_rejection,
            }
            out.update(self._counts)
            disk = self._disk
            out["cache_writes"] = 0 if disk is None else disk.writes
            out["cache_write_errors"] = 0 if disk is None else disk.write_errors
            return out

    @property
    def applied_version(self) -> int | None:
        applied = self._applied
        return applied[0].version if applied else None

    # -- ZooKeeper plumbing ----------------------------------------------------------------------

    def _connect(self) -> None:
        """A fresh client and DataWatch for the current generation (lock held)."""
        self._generation += 1
        gen = self._generation
        client = new_client(
            self._hosts, self._auth_data, session_timeout=self._session_timeout,
            connect_tries=-1, retry_delay=0.05, max_retry_delay=self._reconnect_max_delay,
        )
        client.add_listener(functools.partial(self._on_state, gen))
        self._client = client
        client.start_async()
        # DataWatch reads synchronously when built, which blocks until connected.
        threading.Thread(
            target=self._install_watch, args=(client, gen), name="enforce-zk-config-watch",
            daemon=True,
        ).start()

    def _install_watch(self, client: KazooClient, gen: int) -> None:
        try:
            _GuardedDataWatch(client, self._layout.config, functools.partial(self._on_data, gen),
                              functools.partial(self._on_denied, gen))
        except Exception:  # never let a watcher thread die silently
            log.exception("config: cannot watch %s", self._layout.config)

    def _on_denied(self, gen: int, watch: _GuardedDataWatch, exc: Exception) -> None:
        """ZooKeeper refused the read (NoAuth): record it, unblock start(), retry later.

        Without the retry the watch would be gone: kazoo re-arms a watch only on
        a successful read, and a refused read is not retried by DataWatch.
        """
        if gen != self._generation or self._closed:
            return
        with self._lock:
            self._counts["read_denied"] += 1
            self._denied_streak += 1
            streak = self._denied_streak
            reason = (f"ZooKeeper refused to let this identity read {self._layout.config} "
                      f"({type(exc).__name__}); check auth= against the namespace's readers")
            self._last_rejection = reason
        (log.error if streak == 1 else log.debug)(
            "config: %s; the previous config keeps serving, retrying", reason)
        self._first_read.set()
        with self._lock:
            if self._retry_pending:  # one retry chain at a time
                return
            self._retry_pending = True
        delay = min(0.05 * 2 ** min(streak - 1, 16), self._reconnect_max_delay)
        timer = threading.Timer(delay, self._retry_read, args=(gen, watch))
        timer.name = "enforce-zk-config-retry"
        timer.daemon = True
        timer.start()

    def _retry_read(self, gen: int, watch: _GuardedDataWatch) -> None:
        with self._lock:
            self._retry_pending = False
        if gen == self._generation and not self._closed:
            try:
                watch.read()
            except Exception:  # never let a retry thread die silently
                log.exception("config: cannot read %s", self._layout.config)

    def _on_state(self, gen: int, state: KazooState) -> None:
        """Connection listener (must not block): track state and count interruptions."""
        if gen != self._generation:
            return
        previous, self._state = self._state, state
        if state == KazooState.SUSPENDED:
            self._counts["disconnects"] += 1
            log.warning("config: lost connection to ZooKeeper %s; serving the applied config",
                        self._hosts)
        elif state == KazooState.LOST and self._started:
            self._counts["session_losses"] += 1
            log.warning("config: ZooKeeper session lost; a new one will re-read %s",
                        self._layout.config)
        elif state == KazooState.CONNECTED and previous != KazooState.LOST:
            self._counts["reconnects"] += 1
            log.info("config: reconnected to ZooKeeper %s", self._hosts)

    def _on_data(
        self, gen: int, data: bytes | None, stat: ZnodeStat | None, event: object = None
    ) -> bool | None:
        """DataWatch callback: validate, then offer. Returns False to stop a stale watch."""
        if gen != self._generation or self._closed:
            return False
        if self._denied_streak:
            self._denied_streak = 0
            log.info("config: ZooKeeper lets this identity read %s again", self._layout.config)
        try:
            self._offer(data, stat)
        except Exception:  # a bug here must not kill the watch
            log.exception("config: unexpected error handling %s", self._layout.config)
        finally:
            self._first_read.set()
        return None

    def _offer(self, data: bytes | None, stat: ZnodeStat | None) -> None:
        node_version = stat.version if stat is not None else None
        mtime = getattr(stat, "mtime", None)
        modified_at = mtime / 1000 if isinstance(mtime, int | float) else self._wall()
        try:
            document = decode_document(data, max_bytes=self._max_bytes)
            config = self._validate(document)
        except EnforceError as exc:
            self._reject(f"{self._layout.config} (znode version {node_version}): {exc}")
            return
        with self._lock:
            applied = self._applied
            if applied is not None and config.version <= applied[0].version:
                if config.version == applied[0].version:
                    self._counts["stale_ignored"] += 1
                    if self._origin != ORIGIN_ZOOKEEPER:  # ZooKeeper confirms what we serve
                        self._origin = ORIGIN_ZOOKEEPER
                        self._modified_at = modified_at
                    return
                self._reject(
                    f"{self._layout.config}: version {config.version} is older than the "
                    f"applied version {applied[0].version}; ignored"
                )
                return
            if self._apply(config, ORIGIN_ZOOKEEPER, modified_at) and self._disk is not None:
                self._disk.save(document, modified_at)

    def _apply(self, config: EnforcementConfig, origin: str, modified_at: float) -> bool:
        """Hand a validated, newer config to on_update (after start) and record it."""
        meta = self._meta(config, origin)
        if self._started and self._on_update is not None:
            try:
                self._on_update(config, meta)
            except Exception as exc:
                log.exception("config: on_update refused version %d", config.version)
                self._reject(f"version {config.version}: on_update raised {exc!r}")
                return False
        self._applied = (config, meta)
        self._applied_mono = self._timer()
        self._modified_at = modified_at
        self._origin = origin
        self._counts["updates"] += 1
        log.debug("config: applied version %d from %s", config.version, origin)
        return True

    def _set_applied(self, config: EnforcementConfig, origin: str,
                     modified_at: float | None) -> None:
        self._applied = (config, self._meta(config, origin))
        self._applied_mono = self._timer()
        self._modified_at = modified_at
        self._origin = origin

    def _meta(self, config: EnforcementConfig, origin: str) -> ConfigMeta:
        where = (f"zookeeper:{self._hosts}{self._layout.config}" if origin == ORIGIN_ZOOKEEPER
                 else f"disk:{None if self._disk is None else self._disk.path}")
        return ConfigMeta(version=config.version, origin=where, applied_at=self._wall())

    def _reject(self, reason: str) -> None:
        log.error("config: rejected %s; the previous config keeps serving", reason)
        self._last_rejection = reason
        self._counts["rejected"] += 1


def _stop(client: KazooClient | None) -> None:
    """End a client's session and free its sockets, ignoring errors (we are leaving)."""
    if client is not None:
        with contextlib.suppress(Exception):
            client.stop()
        with contextlib.suppress(Exception):
            client.close()


def _abandon(client: KazooClient | None) -> None:
    """Drop a client inherited across fork: close our copies of its sockets, send nothing."""
    if client is None:
        return
    conn = getattr(client, "_connection", None)
    for name in ("_socket", "_read_sock", "_write_sock"):
        sock = getattr(conn, name, None)
        if sock is not None:
            with contextlib.suppress(Exception):
                sock.close()


class _GuardedDataWatch(DataWatch):  # type: ignore[misc]  # kazoo is untyped
    """A DataWatch that hands a refused read (NoAuth) to `on_denied` instead of dying.

    kazoo's DataWatch lets NoAuthError escape from its read: on construction
    that kills the install, after a change notification it kills the watch.
    """

    def __init__(self, client: KazooClient, path: str, func: Callable[..., Any],
                 on_denied: Callable[[_GuardedDataWatch, Exception], None]) -> None:
        self._on_denied = on_denied
        super().__init__(client, path, func)

    def _get_data(self, event: object = None) -> None:
        try:
            super()._get_data(event)
        except NoAuthError as exc:
            self._on_denied(self, exc)

    def read(self) -> None:
        """Read the node again (and re-arm the watch)."""
        self._get_data()
