"""Finding expired labels on Redis Cluster, for the store's purge (LabelStorage.purge_expired).

There is no expiry index: the entity hashes of every master are SCANned and
read in pipelined pages, and an entity is named if one of its labels expired
by the cutoff. The cost is a pass over the stored labels, so the purge runs
every few minutes, not per request (docs/redis-cluster.md). The purge itself
is an ordinary batch (ExpireOp), which re-checks each label under the batch
protocol, so a label rewritten after the scan read it is kept.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import redis

from ...._errors import StorageError
from ....model.records import StoredLabel
from .plan import glob_escape

_PAGE = 500  # entity hashes read per pipelined round trip

ReadEntities = Callable[
    [Sequence[str]], tuple[dict[str, dict[str, StoredLabel]], dict[str, int], dict[str, str]]
]


def expired_entities(
    primaries: Iterable[Any], prefix: str, read_entities: ReadEntities, before: datetime
) -> Iterator[str]:
    """Entities under `prefix` (`<ns>:e:{`) holding a label expired at or before `before`."""
    for client in primaries:
        try:
            keys = client.scan_iter(match=f"{glob_escape(prefix)}*", count=1000)
            while page := [k.decode()[len(prefix):-1] for k in itertools.islice(keys, _PAGE)]:
                rows, _, _ = read_entities(page)
                for entity in page:
                    if any(s.label.is_expired(before) for s in rows.get(entity, {}).values()):
                        yield entity
        except redis.RedisError as exc:
            raise StorageError(f"expired_entities: scan failed: {exc}") from exc
