"""Idempotency keys of write requests: the `Idempotency-Key` header, service side.

A writer may send `Idempotency-Key: <1..255 visible ASCII characters>` with
`POST /v1/labels`, `POST /v1/labels/retract` and `DELETE /v1/labels/{entity}`.
The key is scoped to the writer (its token name) and bound to a fingerprint of
the request (method, path, query and body), and the storage records the
outcome with the batch itself (`LabelStorage.apply_once`): a retry of the same
request answers the first outcome without applying anything, the same key
with another request is refused (422), and a second request with a key still
being processed by this process is refused (409). Records are kept for
`[idempotency] retention_seconds`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request

from .requests import Problem
from .storage.base import WriteKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")


def write_key(request: Request, actor: str, body: Mapping[str, Any] | None, *,
              now: datetime, retention_seconds: float) -> WriteKey | None:
    """The WriteKey of a write request, None if it carries no Idempotency-Key."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    if not _KEY_RE.fullmatch(raw):
        raise Problem(400, "bad_parameter", "must be 1 to 255 visible ASCII characters "
                      "(a UUID is a good key)", field=HEADER)
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.url.path}\n".encode())
    digest.update(json.dumps(sorted(request.query_params.multi_items())).encode())
    if body is not None:  # the decoded body: JSON and msgpack spellings differ only in bytes
        canonical = {k: v for k, v in body.items() if k != "schema"}
        digest.update(json.dumps(canonical, sort_keys=True, separators=(",", ":"),
                                 ensure_ascii=False, default=str).encode())
    return WriteKey(f"{actor}\x00{raw}", digest.hexdigest(),
                    now + timedelta(seconds=retention_seconds))


class InFlightKeys:
    """Keys of the write requests this process is applying now (event-loop only)."""

    def __init__(self) -> None:
        self._keys: set[str] = set()

    @contextlib.contextmanager
    def hold(self, key: WriteKey | None) -> Iterator[None]:
        """Hold `key` while its request is applied; 409 if another request holds it."""
        if key is None:
            yield
            return
        if key.key in self._keys:
            raise Problem(409, "in_progress", "a request with this idempotency key is being "
                          "applied now; retry with the same key once it has been answered",
                          field=HEADER)
        self._keys.add(key.key)
        try:
            yield
        finally:
            self._keys.discard(key.key)
