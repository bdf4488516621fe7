"""The SDK's batch read, `POST /v1/labels/query`: its request and its answer, in both forms.

The SDK asks for the compact form when it speaks msgpack: the store copies each
label's stored compact body into the answer (model/compact) and this side
decodes it by type straight into `Label` objects. The full form (label objects,
JSON or msgpack) is decoded by type too (store_client/typed_labels). A store
older than the compact form refuses the `form` field with a 400 naming it; the
clients then ask in the full form from then on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import StoreResponseError
from ..model.compact import labels_from_compact
from ..model.label import Label
from .typed_labels import labels_by_entity


@dataclass(frozen=True, slots=True)
class LabelsQuery:
    """Active labels of the queried keys (canonical and as-sent keys), and the store head."""

    labels: dict[str, list[Label]]
    head: int


def query_request(keys: list[str], compact: bool) -> dict[str, Any]:
    """The body of a /v1/labels/query; `compact`: ask for stored bodies (msgpack only)."""
    return {"keys": keys, "form": "compact"} if compact else {"keys": keys}


def refuses_compact(exc: StoreResponseError) -> bool:
    """A store older than the compact form refuses the `form` field: ask in full form."""
    return (exc.status == 400 and isinstance(exc.detail, Mapping)
            and exc.detail.get("field") == "form")


def parse_query(body: Mapping[str, Any]) -> LabelsQuery:
    """Parse a /v1/labels/query answer; as-sent keys (aliases) map to the same lists.

    Labels are decoded by type, in either form: the compact one from the stored
    bodies (model/compact), the full one from label objects
    (store_client/typed_labels). The store validated them when they were written.
    """
    form = body.get("form", "labels")
    if form == "compact":
        labels = labels_from_compact(body["labels"])
    elif form == "labels":
        labels = labels_by_entity(body["labels"])
    else:
        raise ValueError(f"unknown answer form {form!r:.40}")
    for sent, canonical in (body.get("aliases") or {}).items():
        found = labels.get(canonical)
        if found is not None:
            labels[sent] = found
    return LabelsQuery(labels, int(body["head"]))
