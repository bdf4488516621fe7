"""The compact label body: a label as the store keeps it and, spliced whole, as it sends it.

One label is a msgpack array, its entity and source kept beside it (in the
row's key columns, or in the answer around it):

    [BODY_VERSION, enforcement (0..3), reason, created_us, expires_us | nil,
     confidence | nil, metadata map (keys sorted) | nil]

times as UTC microseconds since the epoch. The store encodes it once, when the
Label Checker has validated the label, and stores those bytes; a read in the
compact form (`POST /v1/labels/query` with `"form": "compact"`, msgpack only)
copies them into the answer without decoding them (`pack_compact_answer`), so
a label is validated once on its way in and never rebuilt on its way out. The
SDK decodes the answer by type straight into `Label` objects
(`label_from_compact`): every field must have the type this layout gives it,
or the answer is refused; the checker's value rules are not run again.

`decode_body` is the store's own trusted decode of its rows (corruption is
reported, values are not re-validated).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgpack

from .label import Enforcement, Label, Source

BODY_VERSION: Final = 1
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ENFORCEMENT_OF: Final = {int(e): e for e in Enforcement}
_METADATA_TYPES: Final = (str, int, float, bool)


class CompactBodyError(ValueError):
    """A compact label body that is not one: wrong shape, types or version."""


def micros(value: datetime) -> int:
    """UTC microseconds since the epoch of an aware datetime."""
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def time_of(us: int) -> datetime:
    """The aware UTC datetime of `micros`' value (seconds and microseconds given apart:
    timedelta normalises a large microsecond count at twice the cost)."""
    return EPOCH + timedelta(0, us // 1_000_000, us % 1_000_000)


@functools.lru_cache(maxsize=4096)
def source_of(source_key: str) -> Source:
    """The Source of a `system/type/name` key (validated once per distinct key)."""
    return Source.from_key(source_key)


def encode_body(label: Label) -> bytes:
    """The compact body of a validated label."""
    meta = label.metadata
    body: bytes = msgpack.packb(
        [
            BODY_VERSION,
            int(label.enforcement),
            label.reason,
            micros(label.created_at),
            None if label.expires_at is None else micros(label.expires_at),
            label.confidence,
            dict(sorted(meta.items())) if meta else None,
        ],
        use_bin_type=True,
    )
    return body


def decode_body(entity: str, source_key: str, body: bytes) -> Label:
    """The label a stored body holds, trusted (validated when written).

    Raises CompactBodyError for bytes that are not a body of this version.
    """
    try:
        fields = msgpack.unpackb(body, raw=False)
        version, enforcement, reason, created, expires, confidence, meta = fields
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError) as exc:
        raise CompactBodyError(f"not a label body: {exc}") from exc
    if version != BODY_VERSION:
        raise CompactBodyError(f"unknown label body format {version!r}")
    try:
        return Label.trusted(
            entity, source_of(source_key), Enforcement(enforcement), reason, time_of(created),
            None if expires is None else time_of(expires),
            None if confidence is None else float(confidence), meta or {},
        )
    except (ValueError, TypeError, OverflowError) as exc:
        raise CompactBodyError(f"not a label body: {exc}") from exc


def label_from_compact(entity: str, source_key: str, fields: object) -> Label:
    """One label of a compact answer, decoded by type; CompactBodyError if it is not one."""
    if type(fields) is not list or len(fields) != 7:
        raise CompactBodyError(f"label {entity} {source_key}: not a 7-field body: {fields!r:.80}")
    version, enforcement, reason, created, expires, confidence, meta = fields
    if version != BODY_VERSION:
        raise CompactBodyError(f"label {entity} {source_key}: unknown body format {version!r}")
    kind = _ENFORCEMENT_OF.get(enforcement) if type(enforcement) is int else None
    if kind is None:
        _wrong(entity, source_key, "enforcement", enforcement)
    if type(reason) is not str or not reason:
        _wrong(entity, source_key, "reason", reason)
    if type(created) is not int:
        _wrong(entity, source_key, "created_at", created)
    if expires is not None and type(expires) is not int:
        _wrong(entity, source_key, "expires_at", expires)
    if confidence is not None:
        if type(confidence) not in (float, int) or not (
                math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
            _wrong(entity, source_key, "confidence", confidence)
        confidence = float(confidence)
    if meta is not None and (type(meta) is not dict or not all(
            type(k) is str and (v is None or type(v) in _METADATA_TYPES)
            for k, v in meta.items())):
        _wrong(entity, source_key, "metadata", meta)
    try:
        source = source_of(source_key)
        created_at = time_of(created)
        expires_at = None if expires is None else time_of(expires)
    except (ValueError, TypeError, OverflowError) as exc:
        raise CompactBodyError(f"label {entity} {source_key}: {exc}") from exc
    return Label.trusted(entity, source, kind, reason,  # type: ignore[arg-type]
                         created_at, expires_at, confidence, meta or {})


def _wrong(entity: str, source_key: str, field: str, value: object) -> None:
    raise CompactBodyError(
        f"label {entity} {source_key}: field {field!r} has the wrong type: {value!r:.80}")


def labels_from_compact(labels: object) -> dict[str, list[Label]]:
    """The `labels` map of a compact answer: entity -> [[source_key, body], ...]."""
    if type(labels) is not dict:
        raise CompactBodyError(f"'labels' must be a map, got {type(labels).__name__}")
    out: dict[str, list[Label]] = {}
    for entity, items in labels.items():
        if type(entity) is not str or not entity or type(items) is not list:
            raise CompactBodyError(f"'labels' entry {entity!r:.80}: not entity -> list")
        decoded = []
        for item in items:
            if type(item) is not list or len(item) != 2 or type(item[0]) is not str:
                raise CompactBodyError(f"labels of {entity}: not a [source, body] pair: "
                                       f"{item!r:.80}")
            decoded.append(label_from_compact(entity, item[0], item[1]))
        out[entity] = decoded
    return out


def pack_compact_answer(head: int, labels: Mapping[str, Sequence[tuple[str, bytes]]],
                        extra: Mapping[str, Any], *, schema: int) -> bytes:
    """The msgpack answer of a compact query, stored bodies copied in as they are.

    `{"schema", "head", "form": "compact", "labels": {entity: [[source_key, body]...]},
    **extra}`; every body must be a compact body (the store's own bytes).
    """
    packer = msgpack.Packer(use_bin_type=True, datetime=True)
    pack = packer.pack
    parts = [packer.pack_map_header(4 + len(extra)), pack("schema"), pack(schema),
             pack("head"), pack(head), pack("form"), pack("compact"), pack("labels"),
             packer.pack_map_header(len(labels))]
    append = parts.append
    pair = packer.pack_array_header(2)
    for entity, items in labels.items():
        append(pack(entity))
        append(packer.pack_array_header(len(items)))
        for source_key, body in items:
            append(pair)
            append(pack(source_key))
            append(body)
    for key, value in extra.items():
        append(pack(key))
        append(pack(value))
    return b"".join(parts)
