"""The store's labels, decoded by type into `Label` objects without validating them again.

A label is validated once, by the store's Label Checker, when it is written;
the store serves it from its rows without rebuilding it through the validating
constructor, and the SDK decodes what the store sends by type: every field must
have the type and shape the wire format gives it (strings, a known enforcement
and source type, msgpack timestamps or RFC 3339 strings, a finite number, a
flat object), or the answer is refused as a protocol error. What it does not
repeat are the checker's value rules (key canonical form, reason pattern,
metadata key pattern), which the store applied; a `Label(...)` built from the
same fields compares equal (tests/store_client/test_typed_labels.py).

Measured on a 100-key read: about 4x less time than `Label.from_dict` per label.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..model.label import Enforcement, Label, Source, parse_time

_ENFORCEMENTS = {e.wire: e for e in Enforcement}
_FIELDS = frozenset({"entity", "source", "enforcement", "reason", "created_at", "expires_at",
                     "confidence", "metadata"})


class AnswerTypeError(TypeError):
    """A label in the store's answer that does not have the wire format's types."""


@functools.lru_cache(maxsize=4096)
def _source(system: str, type_: str, name: str) -> Source:
    return Source(system, type_, name)  # type: ignore[arg-type]  # validated once per source


def _when(value: object, field: str) -> datetime:
    if type(value) is datetime and value.tzinfo is UTC:  # a msgpack timestamp
        return value
    return parse_time(value, field)  # an RFC 3339 string (JSON), or another aware datetime


def _require(ok: bool, field: str, value: object) -> None:
    if not ok:
        raise AnswerTypeError(f"label field {field!r} has the wrong type or shape: {value!r:.80}")


def label_from_answer(data: object) -> Label:
    """One label of a store answer (its msgpack or JSON form), decoded by type."""
    _require(type(data) is dict, "label", data)
    d: dict[str, Any] = data  # type: ignore[assignment]
    _require(d.keys() <= _FIELDS, "label", sorted(d.keys() - _FIELDS))
    entity, source, reason = d["entity"], d["source"], d["reason"]
    _require(type(entity) is str and bool(entity), "entity", entity)
    _require(type(reason) is str and bool(reason), "reason", reason)
    _require(type(source) is dict and len(source) == 3, "source", source)
    system, kind, name = source["system"], source["type"], source["name"]
    _require(type(system) is str and type(kind) is str and type(name) is str, "source", source)
    enforcement = _ENFORCEMENTS.get(d["enforcement"])
    _require(enforcement is not None, "enforcement", d["enforcement"])
    created = _when(d["created_at"], "created_at")
    expires = d.get("expires_at")
    if expires is not None:
        expires = _when(expires, "expires_at")
    confidence = d.get("confidence")
    if confidence is not None:
        _require(type(confidence) in (float, int) and math.isfinite(confidence)
                 and 0.0 <= confidence <= 1.0, "confidence", confidence)
        confidence = float(confidence)
    metadata = d.get("metadata")
    if metadata is not None:
        _require(type(metadata) is dict and all(
            type(k) is str and (v is None or type(v) in (str, int, float, bool))
            for k, v in metadata.items()), "metadata", metadata)
    return Label.trusted(entity, _source(system, kind, name), enforcement,  # type: ignore[arg-type]
                         reason, created, expires, confidence, metadata)


def labels_by_entity(labels: Mapping[str, Any]) -> dict[str, list[Label]]:
    """The `labels` object of a query answer: entity -> its labels, decoded by type."""
    _require(type(labels) is dict, "labels", labels)
    out: dict[str, list[Label]] = {}
    for entity, items in labels.items():
        _require(type(entity) is str and type(items) is list, "labels", entity)
        out[entity] = [label_from_answer(item) for item in items]
    return out
