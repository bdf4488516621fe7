"""Body encoding shared by the store service and its clients: JSON or msgpack.

Services talk msgpack (datetimes as msgpack timestamps); people and curl talk
JSON (datetimes as RFC 3339 strings). Every body is an object carrying
`"schema": SCHEMA_VERSION`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

import msgpack

from .._errors import InvalidInputError
from .label import SCHEMA_VERSION, format_time

JSON_TYPE = "application/json"
MSGPACK_TYPE = "application/msgpack"
_MSGPACK_ALIASES = frozenset({MSGPACK_TYPE, "application/x-msgpack", "application/vnd.msgpack"})
Format = Literal["json", "msgpack"]


def format_of(content_type: str | None) -> Format:
    """The body format a Content-Type or Accept header names (JSON unless msgpack is named)."""
    if content_type:
        for part in content_type.split(","):
            if part.split(";", 1)[0].strip().lower() in _MSGPACK_ALIASES:
                return "msgpack"
    return "json"


def media_type(fmt: Format) -> str:
    return MSGPACK_TYPE if fmt == "msgpack" else JSON_TYPE


def _json_default(value: object) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def encode(payload: dict[str, Any], fmt: Format) -> bytes:
    """Encode an object body, stamping the schema version."""
    body = {"schema": SCHEMA_VERSION, **payload}
    if fmt == "msgpack":
        return msgpack.packb(body, use_bin_type=True, datetime=True)  # type: ignore[no-any-return]
    return json.dumps(body, default=_json_default, separators=(",", ":")).encode()


def decode(data: bytes, fmt: Format) -> dict[str, Any]:
    """Decode an object body; raise InvalidInputError naming what is wrong."""
    if not data:
        raise InvalidInputError("empty body", field="body")
    try:
        if fmt == "msgpack":
            body = msgpack.unpackb(data, raw=False, timestamp=3, strict_map_key=True)
        else:
            body = json.loads(data)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise InvalidInputError(f"malformed {fmt} body: {exc}", field="body") from exc
    except Exception as exc:  # msgpack raises assorted types on hostile input
        raise InvalidInputError(f"malformed {fmt} body: {exc}", field="body") from exc
    if not isinstance(body, dict):
        raise InvalidInputError(f"must be an object, got {type(body).__name__}", field="body")
    schema = body.get("schema", SCHEMA_VERSION)
    if type(schema) is not int or schema != SCHEMA_VERSION:  # true and 1.0 are not 1
        raise InvalidInputError(
            f"unsupported schema version {schema!r} (this build speaks {SCHEMA_VERSION})",
            field="schema",
        )
    return body
