"""Idempotency records of keyed writes (`apply_once`) on Redis Cluster.

A record lives on the namespace's feed slot, under `<feed>:wk:<sha256 of key>`,
as `"<seq>|<expires_us>|<fingerprint>|<outcomes JSON>"`. Redis drops it by
itself (PX) when the key expires; a record read past `expires_us` by the
caller's clock is expired too (and deleted), as on every backend. An effective batch's record is written by the commit script
with the commit itself (`commit_part` gives its key and arguments), so a batch
is never committed without it; the script refuses (-2) to commit a batch whose
key is already recorded. A no-op batch changes nothing, so its record is a
plain `SET NX` (`remember`): whichever attempt records first wins and the
others replay it. A recorded outcome is replayed only once its batch is known
replicated (at or below the durable head, see storage.py): a commit whose WAIT
failed may still be lost in a failover, record and all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from ...._errors import StorageError
from ....model.records import Outcome
from ..base import AppliedBatch, WriteKey, recorded_outcome
from .conn import NotReplicatedError
from .plan import dumps, micros, split_seq

Runner = Callable[..., list[Any]]  # RedisClusterStorage._run


class WriteKeyRecords:
    """Reads and writes the idempotency records of one namespace."""

    def __init__(self, feed: str, run: Runner, durable_head: Callable[[], int],
                 confirm_durable: Callable[[], int]) -> None:
        self._feed = feed
        self._run = run
        self._durable_head = durable_head
        self._confirm_durable = confirm_durable  # raises NotReplicatedError if it cannot

    def first_outcome(self, key: WriteKey, now: datetime) -> AppliedBatch | None:
        """The key's recorded outcome (replayed) once its batch is known replicated; None
        if the key has no record; StorageError while its batch is not known replicated."""
        first = self.read(key, now)
        if first is not None and first.seq > self._durable_head():
            with contextlib.suppress(NotReplicatedError):
                self._confirm_durable()  # its commit's WAIT failed: confirm it now
            if first.seq > self._durable_head():
                raise StorageError("the first attempt with this idempotency key committed but "
                                   "is not known replicated yet; retry later")
        return first

    def redis_key(self, key: WriteKey) -> str:
        return f"{self._feed}:wk:{hashlib.sha256(key.key.encode()).hexdigest()}"

    def read(self, key: WriteKey, now: datetime) -> AppliedBatch | None:
        """The key's recorded outcome (replayed), None if none or expired at `now`;
        WriteKeyReusedError if the record is of another request."""
        name = self.redis_key(key)
        (raw,) = self._run([(name, ("GET", name))], "read idempotency record")
        if raw is None:
            return None
        seq, rest = split_seq(raw.decode())
        expires, _, rest = rest.partition("|")
        fingerprint, _, outcomes = rest.partition("|")
        try:
            values = [str(v) for v in json.loads(outcomes)]
            expired = int(expires) <= micros(now)
        except ValueError as exc:
            raise StorageError(f"corrupt idempotency record {raw[:80]!r}: {exc}") from exc
        if expired:
            self._run([(name, ("DEL", name))], "drop expired idempotency record")
            return None
        return recorded_outcome(key, fingerprint, values, seq)

    def remember(self, key: WriteKey, outcomes: Sequence[Outcome], seq: int,
                 now: datetime) -> bool:
        """Record a no-op batch's outcome; False if the key was recorded first by another."""
        name = self.redis_key(key)
        (done,) = self._run([(name, ("SET", name, f"{seq}|{_record(key, outcomes)}", "NX", "PX",
                                     _ttl_ms(key, now)))], "apply (idempotency record)")
        return done is not None

    def commit_part(self, key: WriteKey, outcomes: Sequence[Outcome],
                    now: datetime) -> tuple[str, list[Any]]:
        """The extra KEYS entry and ARGV tail of the commit script for a keyed batch."""
        return self.redis_key(key), [_record(key, outcomes), _ttl_ms(key, now)]


def _record(key: WriteKey, outcomes: Sequence[Outcome]) -> str:
    """A record without its seq prefix."""
    return f"{micros(key.expires_at)}|{key.fingerprint}|{dumps([o.value for o in outcomes])}"


def _ttl_ms(key: WriteKey, now: datetime) -> int:
    return max(1, int((key.expires_at - now).total_seconds() * 1000))
