"""`POST /v1/labels/query`: the active labels of many entities, in full or compact form.

The full form (`"form": "labels"`, the default; JSON or msgpack) sends each
label as an object. The compact form (`"form": "compact"`, msgpack only) sends
each label as its stored compact body, copied from the storage without being
decoded (model/compact): the SDK's read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..model.compact import pack_compact_answer
from ..model.label import SCHEMA_VERSION
from ..model.records import LabelStatus
from ..model.wire import MSGPACK_TYPE
from .requests import Problem, entity_param, respond
from .storage.base import LabelStorage


def wanted_keys(raw_keys: list[Any]) -> tuple[list[str], dict[str, str]]:
    """The canonical keys asked for (first occurrence order) and `{as sent: canonical}`
    for those sent in another form; a key that is not one is a 400 naming its index."""
    aliases: dict[str, str] = {}
    wanted: dict[str, None] = {}
    for i, raw in enumerate(raw_keys):
        if not isinstance(raw, str):
            raise Problem(400, "bad_key", f"must be a string, got {type(raw).__name__}",
                          field="keys", index=i)
        key = entity_param(raw, "keys", i)
        wanted[key] = None
        if key != raw:
            aliases[raw] = key
    return list(wanted), aliases


async def answer_query(request: Request, storage: LabelStorage, keys: list[str],
                       aliases: dict[str, str], now: datetime, *, compact: bool) -> Response:
    """Read `keys` as of `now` and answer; the head is read first, so every label sent is
    at least as new as the head the answer names."""
    extra: dict[str, Any] = {"aliases": aliases} if aliases else {}
    if compact:
        def read_bodies() -> bytes:
            head = storage.head_seq()
            return pack_compact_answer(head, storage.get_bodies(keys, now=now), extra,
                                       schema=SCHEMA_VERSION)

        return Response(await run_in_threadpool(read_bodies), media_type=MSGPACK_TYPE)

    def read() -> dict[str, Any]:
        head = storage.head_seq()
        found = storage.get_many(keys, include_pending=False, now=now)
        labels = {entity: [s.label.to_wire() for s in stored if s.status is LabelStatus.ACTIVE]
                  for entity, stored in found.items()}
        return {"labels": {k: v for k, v in labels.items() if v}, "head": head, **extra}

    return respond(request, await run_in_threadpool(read))
