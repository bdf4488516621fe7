"""Talking to Redis Cluster masters: pipelined per node, retried across failover.

`ClusterTransport.run` sends a list of commands, each routed by one key to the
master of that key's slot. Commands for one node go down one connection as a
pipeline, all nodes are written before any is read (so a multi-node batch costs
about one round trip), and an optional `WAIT n timeout` closes each node's
pipeline on the same connection, which is what makes WAIT cover those writes.

Every command this backend sends is idempotent (see redis_cluster/lua), so
the commands of a node that failed, moved (MOVED/ASK), or was mid-failover
(CLUSTERDOWN, TRYAGAIN, LOADING, READONLY, connection errors) are simply sent
again after the slot map is refreshed, until `retry_timeout` runs out. redis-py
errors become StorageError here and nowhere else.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)

from ...._errors import StorageError

Command = tuple[str, tuple[Any, ...]]  # (routing key, command args)
_RETRYABLE_PREFIXES = ("MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN", "LOADING", "READONLY",
                       "MASTERDOWN", "NOSCRIPT")
_RETRYABLE_ERRORS = (MovedError, AskError, ClusterDownError, TryAgainError, BusyLoadingError,
                     ReadOnlyError, MasterDownError, NoScriptError)


class NotReplicatedError(StorageError):
    """WAIT returned fewer replica acknowledgements than required."""


class ClusterTransport:
    """Pipelined, retried command execution on the masters of a Redis Cluster."""

    def __init__(
        self,
        startup: Sequence[tuple[str, int]],
        *,
        scripts: dict[str, str],
        socket_timeout: float = 5.0,
        retry_timeout: float = 20.0,
        timer: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._timer = timer
        self._sleep = sleep
        self._retry_timeout = retry_timeout
        self._refresh_lock = threading.Lock()
        self._last_refresh = float("-inf")
        self.sha = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in scripts.items()}
        self._scripts = dict(scripts)
        try:
            node_type: Any = ClusterNode  # redis-py's cluster classes are untyped
            self.cluster: Any = RedisCluster(
                startup_nodes=[node_type(host, port) for host, port in startup],
                decode_responses=False,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                require_full_coverage=False,
            )
        except (redis.RedisError, RedisClusterException) as exc:
            nodes = ",".join(f"{h}:{p}" for h, p in startup)
            raise StorageError(f"cannot reach Redis Cluster at {nodes}: {exc}") from exc
        primaries: Any = cast(Any, self.cluster).get_primaries()
        for node in primaries:
            self._load_scripts(node)

    def script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Command:
        """An EVALSHA of one of the registered scripts, routed by its first key."""
        return (keys[0], ("EVALSHA", self.sha[name], len(keys), *keys, *args))

    def run(self, commands: Sequence[Command], *, wait_replicas: int = 0,
            wait_ms: int = 0, what: str = "redis") -> list[Any]:
        """Run commands (on masters), return their replies in order.

        Error replies that are not about topology are returned as ResponseError
        values, not raised. With `wait_replicas`, raises NotReplicatedError if any
        node's writes were not acknowledged by that many replicas within `wait_ms`.
        """
        results: list[Any] = [None] * len(commands)
        todo = list(range(len(commands)))
        deadline = self._timer() + self._retry_timeout
        delay = 0.01
        while True:
            failed, reason, short = self._round(commands, todo, results, wait_replicas, wait_ms)
            if short:
                raise NotReplicatedError(
                    f"{what}: write not acknowledged by {wait_replicas} replica(s) of "
                    f"{', '.join(short)} within {wait_ms} ms"
                )
            if not failed:
                return results
            if self._timer() >= deadline:
                raise StorageError(f"{what} failed after retrying for {self._retry_timeout:g}s: "
                                   f"{reason}")
            self._sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)
            self.refresh()
            todo = failed

    def _round(self, commands: Sequence[Command], todo: list[int], results: list[Any],
               wait_replicas: int, wait_ms: int) -> tuple[list[int], str, list[str]]:
        by_node: dict[str, tuple[ClusterNode, list[int]]] = {}
        failed: list[int] = []
        reason = ""
        for i in todo:
            try:
                node = self.cluster.nodes_manager.get_node_from_slot(
                    key_slot(commands[i][0].encode()))
            except redis.RedisError as exc:
                failed.append(i)
                reason = str(exc)
                continue
            by_node.setdefault(node.name, (node, []))[1].append(i)
        sent: list[tuple[redis.ConnectionPool, Any, ClusterNode, list[int]]] = []
        for node, idxs in by_node.values():
            try:
                pool = self.cluster.get_redis_connection(node).connection_pool
                conn: Any = pool.get_connection()
            except redis.RedisError as exc:
                failed.extend(idxs)
                reason = f"{node.name}: {exc}"
                continue
            packed = [commands[i][1] for i in idxs]
            if wait_replicas:
                packed.append(("WAIT", wait_replicas, wait_ms))
            try:
                conn.send_packed_command(conn.pack_commands(packed), check_health=False)
            except redis.RedisError as exc:
                conn.disconnect()
                pool.release(conn)
                failed.extend(idxs)
                reason = f"{node.name}: {exc}"
                continue
            sent.append((pool, conn, node, idxs))
        short: list[str] = []
        unscripted: dict[str, ClusterNode] = {}
        for pool, conn, node, idxs in sent:
            try:
                for i in idxs:
                    try:
                        results[i] = conn.read_response()
                    except redis.ResponseError as exc:
                        results[i] = exc
                if wait_replicas:
                    acked = conn.read_response()
                    if int(acked) < wait_replicas:
                        short.append(node.name)
            except redis.RedisError as exc:
                conn.disconnect()
                failed.extend(idxs)
                reason = f"{node.name}: {exc}"
                continue
            finally:
                pool.release(conn)
            for i in idxs:
                reply = results[i]
                if isinstance(reply, _RETRYABLE_ERRORS) or (
                        isinstance(reply, redis.ResponseError)
                        and str(reply).startswith(_RETRYABLE_PREFIXES)):
                    failed.append(i)
                    reason = f"{node.name}: {reply}"
                    if isinstance(reply, NoScriptError):
                        unscripted[node.name] = node
        for node in unscripted.values():
            self._load_scripts(node)
        return sorted(failed), reason, short

    def _load_scripts(self, node: ClusterNode) -> None:
        try:
            client = self.cluster.get_redis_connection(node)
            for src in self._scripts.values():
                client.script_load(src)
        except redis.RedisError:
            pass  # the next round retries and reports

    def refresh(self) -> None:
        """Re-read the slot map (at most every 100 ms, whatever the number of threads)."""
        with self._refresh_lock:
            if self._timer() - self._last_refresh < 0.1:
                return
            self._last_refresh = self._timer()
            with contextlib.suppress(redis.RedisError):  # still failing over: callers retry
                self.cluster.nodes_manager.initialize()

    def primaries(self) -> list[redis.Redis]:
        """A client per current master (for SCAN over the whole key space)."""
        return [self.cluster.get_redis_connection(n) for n in self.cluster.get_primaries()]

    def close(self) -> None:
        self.cluster.close()
