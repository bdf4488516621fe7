"""The distributed Label Store backend: Redis Cluster, one hash per entity.

Layout (docs/redis-cluster.md has the full story). Per entity, under the hash
tag `{entity}` so they share a slot: `<ns>:e:{E}` a hash with a field
`s:<source key>` per label plus its version `_v` and, while a batch holds it,
a lock `_lk`; `<ns>:h:{E}` the audit events (sorted by seq); `<ns>:l:{E}` a
marker that exists while E has an active label. Per namespace, under the hash
tag `{<ns>}` (the *feed slot*): the sequence counter, the change feed, the
label counts, the pending-review index and the batch journal.

A batch commits in four steps, each atomic on its slot (Lua):
  1. prepare  - lock every entity the batch touches, if its version is still
                the one the batch was planned against;
  2. commit   - on the feed slot: allocate the batch's sequence numbers, append
                its change records and journal its per-entity effects.
                Sequence order is commit order;
  3. publish  - once a replica acknowledged the commit, raise the durable head
                over it (below). This is the commit point for readers;
  4. materialise - per entity, apply the journaled effects and drop the lock.
A reader that meets a lock of a published batch rolls it forward from the
journal; a lock of a batch that never committed is ignored by readers and
aborted by a writer once older than `lock_timeout`. So a batch is all or
nothing for readers and across crashes. Acknowledged writes were replicated
(WAIT) at each step before `apply` returns.

Durable head. A commit not yet replicated (its WAIT failed) can vanish in a
failover, so nothing is served from or materialised for it until a WAIT covered
it: `<ns>:f:{<ns>}:dur`, the highest sequence number known replicated, is what
`head_seq`, the feed, `get_many` and roll-forwards use (docs/redis-cluster.md).
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import redis

from ...._errors import ConfigError, InvalidInputError, StorageError
from ....model.records import AuditEvent, ChangePage, LabelStatus, Outcome, StoredLabel
from ..base import AppliedBatch, LabelStorage, PutOp, WriteKey, WriteOp, check_int
from . import lua
from .conn import ClusterTransport, Command, NotReplicatedError
from .expiry import expired_entities
from .plan import (
    BatchPlan,
    EntityPlan,
    committed_base,
    decode_audit,
    decode_change,
    decode_stored,
    glob_escape,
    micros,
    pairs,
    pending_member,
    plan_batch,
    split_seq,
)
from .url import parse_nodes, parse_url
from .write_keys import WriteKeyRecords

_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_STATUS_TTL = 300  # seconds a finished batch's status is kept, for readers that met its lock
_SNAPSHOT_TRIES = 8  # get_many re-reads when a concurrent commit overtook its snapshot


class RedisClusterStorage(LabelStorage):
    """A LabelStorage on Redis Cluster; safe to share between threads and processes.

    `nodes`: `"host:port,host:port"`, a `redis-cluster://` URL or a list of
    `"host:port"`; any reachable nodes of the cluster will do. `namespace`
    prefixes every key, so several stores (or tests) share one cluster.
    `min_replicas` is the number of replicas that must acknowledge (WAIT) each
    step of a write before `apply` returns; 0 turns WAIT off.
    """

    def __init__(
        self,
        nodes: str | Sequence[str],
        *,
        namespace: str = "enforce",
        min_replicas: int = 1,
        wait_timeout: float = 2.0,
        lock_timeout: float = 10.0,
        retry_timeout: float = 20.0,
        socket_timeout: float = 5.0,
        timer: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        startup = parse_nodes(nodes)
        if not isinstance(namespace, str) or not _NAMESPACE_RE.fullmatch(namespace):
            raise InvalidInputError(f"must match [A-Za-z0-9_.-]{{1,64}}, got {namespace!r}",
                                    field="namespace")
        check_int(min_replicas, "min_replicas", minimum=0)
        self.namespace = namespace
        self._min_replicas = min_replicas
        self._wait_ms = max(1, int(wait_timeout * 1000))
        self._lock_timeout_ms = int(lock_timeout * 1000)
        self._clock = clock
        self._timer = timer
        self._sleep = sleep
        self._retry_timeout = retry_timeout
        self._closed = False
        self._close_lock = threading.Lock()
        self._io = ClusterTransport(startup, scripts=lua.ALL, socket_timeout=socket_timeout,
                                    retry_timeout=retry_timeout, timer=timer, sleep=sleep)
        feed = f"{namespace}:f:{{{namespace}}}"
        self._k_seq = f"{feed}:seq"
        self._k_dur = f"{feed}:dur"
        self._k_chg = f"{feed}:chg"
        self._k_cnt = f"{feed}:cnt"
        self._k_pend = f"{feed}:pend"
        self._k_pendv = f"{feed}:pendv"
        self._k_open = f"{feed}:txopen"
        self._feed = feed
        self._write_keys = WriteKeyRecords(feed, self._run, self.head_seq, self._sync_durable)
        self.recover()

    @classmethod
    def from_url(cls, url: str) -> RedisClusterStorage:
        """`redis-cluster://h:p,h:p[?namespace=NS&min_replicas=N&wait_timeout=S]`."""
        nodes, options = parse_url(url)
        try:
            return cls(nodes, **options)
        except InvalidInputError as exc:
            raise ConfigError(str(exc), field="storage.url") from exc

    # -- keys --------------------------------------------------------------------------

    def _k_entity(self, entity: str) -> str:
        return f"{self.namespace}:e:{{{entity}}}"

    def _k_audit(self, entity: str) -> str:
        return f"{self.namespace}:h:{{{entity}}}"

    def _k_labeled(self, entity: str) -> str:
        return f"{self.namespace}:l:{{{entity}}}"

    def _k_tx(self, txid: str) -> str:
        return f"{self._feed}:tx:{txid}"

    def _k_txp(self, txid: str) -> str:
        return f"{self._feed}:txp:{txid}"

    def _run(self, commands: Sequence[Command], what: str, *, durable: bool = False) -> list[Any]:
        if self._closed:
            raise StorageError("the Redis Cluster label store is closed")
        wait = self._min_replicas if durable else 0
        replies = self._io.run(commands, wait_replicas=wait, wait_ms=self._wait_ms, what=what)
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise StorageError(f"{what}: redis answered {reply}")
        return replies

    # -- writes ------------------------------------------------------------------------

    def _apply(self, ops: list[WriteOp], *, actor: str, now: datetime) -> list[Outcome]:
        return self._write(ops, actor=actor, now=now, key=None).outcomes

    def _apply_once(self, ops: list[WriteOp], *, actor: str, now: datetime,
                    key: WriteKey) -> AppliedBatch:
        return self._write(ops, actor=actor, now=now, key=key)

    def _write(self, ops: list[WriteOp], *, actor: str, now: datetime,
               key: WriteKey | None) -> AppliedBatch:
        """Plan and commit a batch; with `key`, its record goes in the commit script."""
        entities = list(dict.fromkeys(op.label.entity if isinstance(op, PutOp) else op.entity
                                      for op in ops))
        deadline = self._timer() + self._retry_timeout
        delay = 0.002
        while True:
            first = None if key is None else self._write_keys.first_outcome(key, now)
            if first is not None:
                return first
            rows, versions, locks = self._read_entities(entities)
            if locks:
                self._resolve_locks(locks)
            else:
                plan = plan_batch(ops, rows, versions, actor=actor, now=now)
                if not plan.effective:
                    head = 0 if key is None else self.head_seq()
                    if key is None or self._write_keys.remember(key, plan.outcomes, head, now):
                        return AppliedBatch(plan.outcomes, head)
                    continue  # another attempt recorded the key first: replay it
                record = None if key is None else self._write_keys.commit_part(
                    key, plan.outcomes, now)
                base = self._commit(plan, record)
                if base is not None:
                    return AppliedBatch(plan.outcomes, base + plan.effective - 1)
            if self._timer() >= deadline:
                raise StorageError(
                    f"apply: could not commit within {self._retry_timeout:g}s: entities locked "
                    f"by concurrent batches ({', '.join(sorted(locks)[:5]) or 'none now'}), or "
                    "this host's clock is over lock_timeout/2 behind the Redis servers'")
            self._sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.2)

    def _commit(self, plan: BatchPlan, record: tuple[str, list[Any]] | None) -> int | None:
        """Run prepare/commit/materialise for one plan (with its idempotency `record`): its
        base seq, or None to re-plan (also when the record turned out written by another)."""
        txid = uuid.uuid4().hex
        lock_ms = int(self._clock() * 1000)
        lock_value = f"{txid}|{lock_ms}"
        names = sorted(plan.entities)
        try:
            replies = self._run(
                [self._io.script("prepare", [self._k_entity(e)],
                                 [lock_value, str(plan.entities[e].version)]) for e in names],
                "apply (prepare)", durable=True,
            )
        except StorageError:
            self._release(txid, names)  # nothing committed: the batch did not happen
            raise
        if not all(int(r[0]) == 2 for r in replies):
            self._release(txid, [e for e, r in zip(names, replies, strict=True) if int(r[0]) == 2])
            return None
        try:
            base = self._commit_feed(txid, lock_ms, plan, record=record)
        except NotReplicatedError as exc:
            # Committed on the feed master but not confirmed on a replica. Do not
            # materialise it: a failover could lose the commit (and reissue its numbers)
            # while the entity rows kept it. The locks stay: once a later WAIT covers
            # the commit, readers roll it forward; if a failover loses it, its locks
            # are aborted after lock_timeout like those of any batch that never committed.
            raise StorageError(f"{exc}; the batch is applied only if the commit turns out "
                               "replicated, retrying it is safe") from exc
        if base < 0:  # aborted, locks stale, or the key recorded meanwhile: re-plan
            self._release(txid, names)
            return None
        try:
            # Replicated: publish it (to the feed, head_seq and roll-forward) before any
            # entity shows it, so a materialised version is never above the durable head;
            # replicate that too, so the batch stays visible after a feed failover.
            self._raise_durable(base + plan.effective - 1, durable=True)
            self._materialise(txid, base, plan.entities, durable=True)
        except StorageError as exc:
            raise StorageError(
                f"batch committed as seq {base}..{base + plan.effective - 1} (readers see it) "
                f"but not confirmed durable: {exc}; retrying it is safe") from exc
        with contextlib.suppress(StorageError):
            self._finish(txid)  # durable already; a journal left behind is retired by recover()
        return base

    def _commit_feed(self, txid: str, lock_ms: int, plan: BatchPlan, *,
                     record: tuple[str, list[Any]] | None = None) -> int:
        args = plan.commit_args(txid, lock_ms, self._lock_timeout_ms // 2)
        keys = [self._k_seq, self._k_chg, self._k_cnt, self._k_pend, self._k_pendv,
                self._k_tx(txid), self._k_txp(txid), self._k_open]
        if record is not None:
            keys.append(record[0])
            args += record[1]
        (base,) = self._run([self._io.script("commit", keys, args)], "apply (commit)",
                            durable=True)
        return int(base)

    def _raise_durable(self, seq: int, *, durable: bool = False) -> int:
        """Raise the durable head to `seq`, which a WAIT confirmed replicated."""
        (dur,) = self._run([self._io.script("raise_durable", [self._k_seq, self._k_dur],
                                            [seq])], "raise durable head", durable=durable)
        return int(dur)

    def _materialise(self, txid: str, base: int, parts: dict[str, EntityPlan], *,
                     durable: bool) -> None:
        commands: list[Command] = []
        for entity, part in parts.items():
            keys = [self._k_entity(entity), self._k_audit(entity), self._k_labeled(entity)]
            commands.append(self._io.script("materialise", keys,
                                            part.materialise_args(txid, base)))
        self._run(commands, "apply (materialise)", durable=durable)

    def _finish(self, txid: str) -> None:
        keys = [self._k_tx(txid), self._k_txp(txid), self._k_open]
        self._run([self._io.script("finish", keys, [txid, _STATUS_TTL])], "apply (finish)")

    def _release(self, txid: str, entities: Iterable[str]) -> None:
        commands = [self._io.script("release", [self._k_entity(e)], [f"{txid}|"])
                    for e in entities]
        if commands:
            self._run(commands, "apply (release)")

    def _tx_status(self, txids: Iterable[str]) -> tuple[dict[str, int | None], int]:
        """Per batch: its base seq if it committed *and* is at or below the durable head,
        else None (not committed, aborted, or not known replicated yet); and that head."""
        ids = list(dict.fromkeys(txids))
        if not ids:
            return {}, -1
        values, dur = self._run([(self._k_seq, ("MGET", *[self._k_tx(t) for t in ids])),
                                 (self._k_seq, ("GET", self._k_dur))], "read batch status")
        head = 0 if dur is None else int(dur)
        out: dict[str, int | None] = {}
        for t, v in zip(ids, values, strict=True):
            base = committed_base(v)
            out[t] = base if base is not None and base <= head else None
        return out, head

    def _raw_status(self, txids: Iterable[str]) -> dict[str, str | None]:
        ids = list(dict.fromkeys(txids))
        if not ids:
            return {}
        (values,) = self._run([(self._k_seq, ("MGET", *[self._k_tx(t) for t in ids]))],
                              "read batch status")
        return {t: None if v is None else v.decode() for t, v in zip(ids, values, strict=True)}

    def _sync_durable(self) -> int:
        """Raise the durable head to every commit made so far, once a WAIT confirms them.

        Needed when commits are replicated but no later writer raised the head for
        them (a writer died after its commit, a commit's WAIT timed out but the
        replica caught up, a failover lost the raise). Raises NotReplicatedError
        if the feed master's replicas do not acknowledge. Returns the durable head.
        """
        (seq,) = self._run([self._io.script("touch_seq", [self._k_seq], [])],
                           "sync durable head", durable=True)
        return self._raise_durable(int(seq), durable=True)

    def _roll_forward(self, txid: str, base: int, locked: Iterable[str] = ()) -> None:
        """Materialise a committed batch from its journal (idempotent), then retire it.

        `locked`: entities seen locked by it. If the journal is already gone the
        batch was finished, so a lock left behind (an unlock lost in a failover)
        is simply dropped.
        """
        (raw,) = self._run([(self._k_seq, ("GET", self._k_txp(txid)))], "roll forward")
        if raw is None:
            self._release(txid, locked)
            return
        parts = {e: EntityPlan.from_json(p) for e, p in json.loads(raw).items()}
        try:
            self._materialise(txid, base, parts, durable=True)
        except NotReplicatedError:
            return  # applied on the masters; keep the journal until a durable pass
        self._finish(txid)

    def _resolve_locks(self, locks: dict[str, str]) -> None:
        """A writer met locks: roll committed batches forward, abort stale uncommitted ones."""
        by_tx: dict[str, list[tuple[str, int]]] = {}
        for entity, value in locks.items():
            txid, _, ms = value.partition("|")
            by_tx.setdefault(txid, []).append((entity, int(ms or 0)))
        status = self._raw_status(by_tx)
        now_ms = int(self._clock() * 1000)
        dur: int | None = None
        for txid, held in by_tx.items():
            st = status[txid]
            stale = all(now_ms - ms > self._lock_timeout_ms for _, ms in held)
            if st is None and stale:
                ttl = max(_STATUS_TTL, 10 * self._lock_timeout_ms // 1000)
                (won,) = self._run([self._io.script("abort", [self._k_tx(txid)], [ttl])],
                                   "abort stale batch")
                st = won.decode()
            if st is None:
                continue  # in flight: the caller backs off and re-reads
            base = committed_base(st.encode())
            if base is None:
                self._release(txid, [e for e, _ in held])
                continue
            if dur is None:
                dur = self.head_seq()
            if base > dur and stale:
                # Committed long ago but not known replicated (its writer died, or its
                # WAIT failed): confirm it now, or back off while the master has no replica.
                with contextlib.suppress(NotReplicatedError):
                    dur = self._sync_durable()
            if base <= dur:
                self._roll_forward(txid, base, [e for e, _ in held])

    def recover(self) -> int:
        """Roll forward every committed batch whose writer died before materialising it."""
        open_ids, seq, dur = self._run([(self._k_open, ("ZRANGE", self._k_open, 0, -1)),
                                        (self._k_open, ("GET", self._k_seq)),
                                        (self._k_open, ("GET", self._k_dur))], "recover")
        if int(seq or 0) > int(dur or 0):
            # Commits not yet known replicated (or a store from before the durable head).
            with contextlib.suppress(NotReplicatedError):
                self._sync_durable()
        ids = [t.decode() for t in open_ids]
        for txid, base in self._tx_status(ids)[0].items():
            if base is not None:
                self._roll_forward(txid, base)
        return len(ids)

    def _prune_write_keys(self, now: datetime) -> int:
        return 0  # records carry their own expiry (PX): Redis drops them

    def _prune_changes(self, older_than: datetime) -> int:
        cutoff = micros(older_than)
        dropped = 0
        while True:
            ((count, more),) = self._run(
                [self._io.script("prune", [self._k_chg], [cutoff, 5000])], "prune_changes")
            dropped += int(count)
            if not int(more):
                return dropped

    # -- reads -------------------------------------------------------------------------

    def _read_entities(
        self, entities: Sequence[str]
    ) -> tuple[dict[str, dict[str, StoredLabel]], dict[str, int], dict[str, str]]:
        """Rows, version and lock (if any) of each entity, as stored on its master."""
        replies = self._run([(self._k_entity(e), ("HGETALL", self._k_entity(e)))
                             for e in entities], "read labels")
        rows: dict[str, dict[str, StoredLabel]] = {}
        versions: dict[str, int] = {}
        locks: dict[str, str] = {}
        for entity, reply in zip(entities, replies, strict=True):
            fields = {k.decode(): v.decode() for k, v in pairs(reply)}
            versions[entity] = int(fields.pop("_v", "0"))
            lock = fields.pop("_lk", None)
            if lock is not None:
                locks[entity] = lock
            rows[entity] = {k[2:]: decode_stored(entity, k[2:], v) for k, v in fields.items()
                            if k.startswith("s:")}
        return rows, versions, locks

    def _get_many(self, keys: list[str], *, include_pending: bool) -> dict[str, list[StoredLabel]]:
        if not keys:
            return {}
        rows = self._snapshot_rows(keys)
        out: dict[str, list[StoredLabel]] = {}
        for entity in sorted(rows):
            labels = [rows[entity][s] for s in sorted(rows[entity])
                      if include_pending or rows[entity][s].status is LabelStatus.ACTIVE]
            if labels:
                out[entity] = labels
        return out

    def _snapshot_rows(self, keys: list[str]) -> dict[str, dict[str, StoredLabel]]:
        """Rows of `keys` as of one head H: no batch half-seen across entities.

        Read H, then the entities. A lock of a batch committed at or before H is
        rolled forward; locks of later or uncommitted batches leave the pre-batch
        rows visible. An entity already newer than H means a batch committed in
        between: read again with a fresh H (a few times, then settle for it).
        """
        rows: dict[str, dict[str, StoredLabel]] = {}
        for _ in range(_SNAPSHOT_TRIES):
            head = self.head_seq()
            rows, versions, locks = self._read_entities(keys)
            lockers: dict[str, list[str]] = {}
            for entity, value in locks.items():
                lockers.setdefault(value.partition("|")[0], []).append(entity)
            status, _ = self._tx_status(lockers)
            behind = [t for t, b in status.items() if b is not None and b <= head]
            for txid in behind:
                self._roll_forward(txid, status[txid] or 0, lockers[txid])
            if not behind and all(v <= head for v in versions.values()):
                return rows
        return rows

    def _history(self, entity: str, *, limit: int, before_seq: int | None) -> list[AuditEvent]:
        top = "+inf" if before_seq is None else f"({before_seq}"
        for _ in range(_SNAPSHOT_TRIES):
            lock, events = self._run([
                (self._k_entity(entity), ("HGET", self._k_entity(entity), "_lk")),
                (self._k_entity(entity), ("ZREVRANGEBYSCORE", self._k_audit(entity), top, "-inf",
                                          "LIMIT", 0, limit)),
            ], "history")
            if lock is not None:
                txid = lock.decode().partition("|")[0]
                base = self._tx_status([txid])[0][txid]
                if base is not None:
                    self._roll_forward(txid, base, [entity])
                    continue
            return [decode_audit(entity, raw.decode()) for raw in events]
        raise StorageError(f"history of {entity}: the entity kept changing, try again")

    def _changes(self, after_seq: int, *, limit: int) -> ChangePage:
        keys = [self._k_seq, self._k_dur, self._k_chg]
        ((head, seq, first, records),) = self._run(
            [self._io.script("feed_page", keys, [after_seq, limit])], "changes")
        if int(head) < after_seq <= int(seq):
            # A position past the durable head but not past the counter: commits are
            # there whose replication no writer confirmed yet (e.g. the raise was lost in
            # a failover). Confirm them rather than have the reader reload a snapshot.
            with contextlib.suppress(NotReplicatedError):
                self._sync_durable()
                ((head, seq, first, records),) = self._run(
                    [self._io.script("feed_page", keys, [after_seq, limit])], "changes")
        head_seq = int(head)
        oldest = split_seq(first.decode())[0] if first else head_seq + 1
        return ChangePage([decode_change(r.decode()) for r in records], head=head_seq,
                          oldest=oldest)

    def head_seq(self) -> int:
        """The durable head: the newest commit known replicated (see the module doc)."""
        (value,) = self._run([(self._k_seq, ("GET", self._k_dur))], "head_seq")
        return 0 if value is None else int(value)

    def _pending(self, *, limit: int, after: tuple[str, str] | None) -> list[StoredLabel]:
        start = "-" if after is None else "(" + pending_member(*after)
        (flat,) = self._run([self._io.script("pending_page", [self._k_pend, self._k_pendv],
                                             [start, limit])], "pending")
        out: list[StoredLabel] = []
        for i in range(0, len(flat), 2):
            entity, _, source_key = flat[i].decode().partition("\x00")
            if flat[i + 1]:
                out.append(decode_stored(entity, source_key, flat[i + 1].decode()))
        return out

    def iter_labeled_entities(self) -> Iterator[str]:
        """Every labeled entity, by SCAN of each master (after rolling committed batches forward).

        Over-inclusion is harmless for the bloom filter; a key labeled by a batch
        committed before this call is never missed (unless slots migrate meanwhile).
        """
        self.recover()
        prefix = f"{self.namespace}:l:{{"
        for client in self._io.primaries():
            try:
                for key in client.scan_iter(match=f"{glob_escape(prefix)}*", count=1000):
                    yield key.decode()[len(prefix):-1]
            except redis.RedisError as exc:
                raise StorageError(f"iter_labeled_entities: scan failed: {exc}") from exc

    def _expired_entities(self, before: datetime) -> Iterator[str]:
        """By SCAN of each master's entity hashes (expiry.py), after rolling batches forward."""
        self.recover()
        return expired_entities(self._io.primaries(), f"{self.namespace}:e:{{",
                                self._read_entities, before)

    def count_labels(self) -> dict[LabelStatus, int]:
        (reply,) = self._run([(self._k_cnt, ("HGETALL", self._k_cnt))], "count_labels")
        counts = {k.decode(): int(v) for k, v in pairs(reply)}
        return {LabelStatus.ACTIVE: counts.get("active", 0),
                LabelStatus.PENDING: counts.get("pending", 0)}

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._io.close()

    def __repr__(self) -> str:
        return f"RedisClusterStorage(namespace={self.namespace!r})"


def open_redis_cluster(url: str) -> LabelStorage:
    """Storage opener for the `redis-cluster` URL scheme (see store/storage/backends.py)."""
    return RedisClusterStorage.from_url(url)
