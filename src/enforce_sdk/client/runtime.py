"""The runtime of one client: wires config, cache, stats, change-feed follower and bloom gate.

Everything with a thread, a connection or a ZooKeeper session lives here (or
below: the config source, the follower, the snapshot source); the decisions
are made by the I/O-free read path it extends (client/read_path).
Fork safety: every client registers itself (weakly) to have its `after_fork()`
called in a forked child, see client/fork.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..config.document import EnforcementConfig, StoreSettings
from ..config.source import ConfigMeta, ConfigSource, coerce_config_source
from ..store_client.client import LabelStoreClient
from .batch import Applied
from .bloom_gate import BloomGate, SnapshotSource
from .cache import LabelCache
from .follower import FeedFollower
from .hooks import Hooks
from .native_gate import new_gate, push_bloom, push_fresh_until, push_surfaces
from .read_path import ReadPath
from .stats import Stats

log = logging.getLogger(__name__)

ConfigInput = str | os.PathLike[str] | Mapping[str, Any] | EnforcementConfig | ConfigSource
SNAPSHOT_TIMEOUT = 10.0  # seconds a bloom snapshot download may take (at least)


class ClientRuntime(ReadPath):
    """Config, cache, stats, change-feed follower and bloom gate of one client, and its read path.

    Thread-safe: the cache reads lock-free, config swaps are atomic reference swaps.
    """

    bloom_gate: BloomGate | None

    def __init__(
        self,
        store_url: str,
        config: ConfigInput,
        *,
        token: str | None,
        timer: Callable[[], float],
        wall_clock: Callable[[], float],
        follow_changes: bool,
        feed_wait: float,
    ) -> None:
        self.stats = Stats()
        self.hooks = Hooks(self.stats)  # the face tells it how to start showing decisions
        self._timer = timer
        self._wall = wall_clock
        self._config_lock = threading.Lock()
        self._store_listeners: list[Callable[[StoreSettings], None]] = []
        self._source = coerce_config_source(config)
        source_stats = getattr(self._source, "stats", None)  # e.g. ZooKeeper's rejections
        if callable(source_stats):
            self.stats.add_config_source(source_stats)
        # A source may call back before construction is complete (its watch thread
        # runs as soon as start() does): such updates wait here and are applied last.
        self._early_updates: list[tuple[EnforcementConfig, ConfigMeta]] | None = []
        initial, meta = self._source.start(self._on_config)
        self._applied = Applied(initial, meta)
        cache = initial.cache
        self.cache = LabelCache(
            max_entries=cache.max_entries,
            ttl=cache.ttl,
            negative_ttl=cache.negative_ttl,
            serve_stale_for=cache.serve_stale_for,
            timer=timer,
        )
        # The native gate answers what needs no I/O in one C call (client/native_gate).
        self.native_gate = gate_ = new_gate(self.cache, timer, wall_clock)
        if gate_ is not None:
            self.stats.native = gate_
            push_surfaces(gate_, self._applied.surfaces)
        # Follow the change feed: evicts changed keys at once, so a label write is
        # visible in decisions within the feed's latency, not the TTL.
        self.follower: FeedFollower | None = None
        # The bloom precheck needs the feed to stay honest: no follower, no gate.
        self.bloom_gate: BloomGate | None = None
        if follow_changes:
            timeout = initial.store.timeout
            self.follower = FeedFollower(
                # the applied config's timeout when the follower (re)connects
                lambda: LabelStoreClient(
                    store_url, token=token, timeout=self._applied.config.store.timeout + 5.0
                ),
                self.cache,
                self.stats,
                wait=feed_wait,
                timer=timer,
            )
            follower = self.follower
            self._snapshots = SnapshotSource(store_url, token)
            gate = self.bloom_gate = BloomGate(
                self._snapshots.load,
                self.stats,
                initial.bloom,
                load_timeout=max(timeout, SNAPSHOT_TIMEOUT),
                timer=timer,
            )
            if gate_ is not None:
                gate.watch(self._push_bloom_state)
            follower.listeners.append(gate)
            follower.poll_hooks.append(gate)
            follower.start(gate.load_initial())
            self.stats.add_gauge("feed_lag_seconds", follower.lag)
            self.stats.add_gauge("feed_position", lambda: follower.position)  # type: ignore[arg-type,return-value]
            self.stats.add_gauge("bloom_stale", lambda: float(gate.enabled and gate.stale()))
            self.stats.add_gauge("bloom_seq", lambda: gate.seq)  # type: ignore[arg-type,return-value]
            self.stats.add_gauge(
                "bloom_key_count", lambda: 0 if gate.bloom is None else gate.bloom.key_count
            )
        elif initial.bloom.enabled:
            log.warning("bloom.enabled is ignored: the bloom precheck needs the change feed "
                        "(follow_changes) to stay honest")
        self.stats.add_gauge("cache_entries", lambda: len(self.cache))
        self.stats.add_gauge("config_version", lambda: self._applied.meta.version)
        self.stats.add_gauge(
            "config_age_seconds", lambda: self._wall() - self._applied.meta.applied_at
        )
        self.closed = False
        with self._config_lock:
            early, self._early_updates = self._early_updates, None
        for update in early or ():
            self._on_config(*update)

    def on_store_settings(self, listener: Callable[[StoreSettings], None]) -> None:
        """Call `listener` with the store settings of every config applied from now on."""
        self._store_listeners.append(listener)

    def _on_config(self, config: EnforcementConfig, meta: ConfigMeta) -> None:
        """Swap in a validated config; ignore one not newer than the applied one."""
        with self._config_lock:
            if self._early_updates is not None:  # still constructing: apply when done
                self._early_updates.append((config, meta))
                return
            current = self._applied
            if config.version <= current.config.version:
                self.stats.config_rejected += 1
                log.warning(
                    "ignoring config version %s from %s: not newer than applied version %s",
                    config.version,
                    meta.origin,
                    current.config.version,
                )
                return
            self._applied = applied = Applied(config, meta)
            if self.native_gate is not None:
                push_surfaces(self.native_gate, applied.surfaces)
            cache = config.cache
            self.cache.configure(
                max_entries=cache.max_entries,
                ttl=cache.ttl,
                negative_ttl=cache.negative_ttl,
                serve_stale_for=cache.serve_stale_for,
            )
            for listener in self._store_listeners:
                listener(config.store)
            if self.bloom_gate is not None:
                self.bloom_gate.configure(config.bloom)
            self.stats.config_updates += 1
            log.info("applied config version %s from %s", config.version, meta.origin)
        self.hooks.config_changed(config, meta)  # outside the lock: a hook may read the client

    def wall_time(self) -> float:
        return self._wall()

    def monotonic(self) -> float:
        return self._timer()

    def _push_bloom_state(self, name: str, value: Any) -> None:
        """The bloom gate swapped its filter or moved its freshness deadline."""
        gate = self.native_gate
        if gate is None:
            return
        if name == "bloom":
            push_bloom(gate, value)
        else:
            push_fresh_until(gate, value)

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> bool:
        """Stop the follower and the config source; False if already closed."""
        if self.closed:
            return False
        self.closed = True
        if self.follower is not None:
            self.follower.stop()
            self._snapshots.close()
        self._source.close()
        return True

    def after_fork(self) -> None:
        """In a forked child: new locks, and the follower and config source restarted."""
        self._config_lock = threading.Lock()
        self.cache.after_fork()
        if self.bloom_gate is not None:
            self.bloom_gate.after_fork()
            self._snapshots.after_fork()
        if self.closed:
            return
        self._source.after_fork()
        if self.follower is not None:
            self.follower.after_fork()
