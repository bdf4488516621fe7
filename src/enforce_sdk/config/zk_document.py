"""The config document as stored in a ZooKeeper node: compact JSON with a size cap.

Kept free of kazoo, so the disk copy and the command line's offline commands
(validate, diff, dry run) read and write documents without the `[zookeeper]` extra.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .._errors import ConfigError

DEFAULT_ROOT = "/enforce_sdk/default"


#: Hard cap on a config document: far below ZooKeeper's 1 MB jute.maxbuffer,
#: leaving room for the history envelope and protocol overhead.
MAX_DOCUMENT_BYTES = 256 * 1024


#: A history envelope adds who/when/why to the document; this bounds that part.
MAX_ENVELOPE_OVERHEAD = 8 * 1024


def encode_document(document: Mapping[str, Any], *, max_bytes: int = MAX_DOCUMENT_BYTES) -> bytes:
    """Compact, key-sorted JSON, refused if larger than `max_bytes`."""
    try:
        data = json.dumps(document, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"not representable as JSON: {exc}", field="document") from exc
    if len(data) > max_bytes:
        raise ConfigError(
            f"{len(data)} bytes as JSON, over the {max_bytes}-byte limit", field="document"
        )
    return data


def decode_document(data: bytes | None, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> dict[str, Any]:
    """Parse a node's bytes into a JSON object; ConfigError names what is wrong."""
    if data is None:
        raise ConfigError("the config node does not exist", field="document")
    if not data:
        raise ConfigError("the config node is empty", field="document")
    if len(data) > max_bytes:
        raise ConfigError(f"{len(data)} bytes, over the {max_bytes}-byte limit", field="document")
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 at byte {exc.start}", field="document") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", field="document"
        ) from exc
    if not isinstance(document, dict):
        raise ConfigError(f"must be a JSON object, got {type(document).__name__}", field="document")
    return document


def encode_envelope(envelope: Mapping[str, Any]) -> bytes:
    return encode_document(envelope, max_bytes=MAX_DOCUMENT_BYTES + MAX_ENVELOPE_OVERHEAD)


def decode_envelope(data: bytes | None) -> dict[str, Any]:
    envelope = decode_document(data, max_bytes=MAX_DOCUMENT_BYTES + MAX_ENVELOPE_OVERHEAD)
    if not isinstance(envelope.get("document"), dict):
        raise ConfigError("history entry has no document", field="history")
    return envelope
