"""The compact label body (model/compact): round trips, the spliced answer, typed decoding."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from enforce_sdk.model import wire
from enforce_sdk.model.compact import (
    CompactBodyError,
    decode_body,
    encode_body,
    label_from_compact,
    labels_from_compact,
    pack_compact_answer,
)
from enforce_sdk.model.label import SCHEMA_VERSION, Enforcement, Label, Source, SourceType
from tests.model.test_label import labels

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MODEL = Source("spam_model", SourceType.AUTOMATED, "v3")


def fields_of(label: Label) -> list[Any]:
    decoded: list[Any] = msgpack.unpackb(encode_body(label), raw=False)
    return decoded


@given(labels())
def test_a_body_round_trips_in_the_store_and_in_the_sdk(label: Label) -> None:
    body = encode_body(label)
    assert decode_body(label.entity, label.source.key, body) == label
    assert label_from_compact(label.entity, label.source.key, fields_of(label)) == label


@given(st.lists(labels(), max_size=6), st.integers(min_value=0, max_value=2**40))
def test_the_spliced_answer_is_msgpack_that_decodes_to_the_labels(batch: list[Label],
                                                                   head: int) -> None:
    by_entity: dict[str, dict[str, Label]] = {}
    for lab in batch:
        by_entity.setdefault(lab.entity, {})[lab.source.key] = lab
    bodies = {e: [(k, encode_body(lab)) for k, lab in sorted(found.items())]
              for e, found in by_entity.items()}
    answer = pack_compact_answer(head, bodies, {"aliases": {"PIN:1": "pin:1"}},
                                 schema=SCHEMA_VERSION)
    decoded = wire.decode(answer, "msgpack")
    assert decoded["schema"] == SCHEMA_VERSION and decoded["head"] == head
    assert decoded["form"] == "compact" and decoded["aliases"] == {"PIN:1": "pin:1"}
    assert labels_from_compact(decoded["labels"]) == {
        e: [lab for _, lab in sorted(found.items())] for e, found in by_entity.items()}


def sample() -> Label:
    return Label("pin:1", MODEL, Enforcement.BLOCK, "spam", T0, confidence=0.5,
                 metadata={"run": "r1"})


@pytest.mark.parametrize("index, value, field", [
    (1, 7, "enforcement"),
    (1, True, "enforcement"),
    (1, "block", "enforcement"),
    (2, "", "reason"),
    (2, 3, "reason"),
    (3, "2026-03-01T12:00:00Z", "created_at"),
    (4, 1.5, "expires_at"),
    (5, 1.5, "confidence"),
    (5, float("nan"), "confidence"),
    (5, "0.5", "confidence"),
    (6, {"k": [1, 2]}, "metadata"),
    (6, ["k"], "metadata"),
])
def test_a_field_of_the_wrong_type_is_refused_by_name(index: int, value: object,
                                                      field: str) -> None:
    fields = fields_of(sample())
    fields[index] = value
    with pytest.raises(CompactBodyError, match=f"field '{field}'"):
        label_from_compact("pin:1", MODEL.key, fields)


@pytest.mark.parametrize("fields, message", [
    ([2, 2, "spam", 0, None, None, None], "unknown body format 2"),
    ([1, 2, "spam"], "not a 7-field body"),
    ("abc", "not a 7-field body"),
])
def test_a_body_of_another_shape_is_refused(fields: object, message: str) -> None:
    with pytest.raises(CompactBodyError, match=message):
        label_from_compact("pin:1", MODEL.key, fields)


def test_a_bad_source_key_is_refused() -> None:
    with pytest.raises(CompactBodyError, match="pin:1 nope"):
        label_from_compact("pin:1", "nope", fields_of(sample()))


@pytest.mark.parametrize("labels_map, message", [
    ([], "'labels' must be a map"),
    ({"pin:1": {}}, "not entity -> list"),
    ({"pin:1": [["spam_model/automated/v3"]]}, "not a \\[source, body\\] pair"),
    ({"pin:1": [[5, []]]}, "not a \\[source, body\\] pair"),
])
def test_a_labels_map_of_another_shape_is_refused(labels_map: object, message: str) -> None:
    with pytest.raises(CompactBodyError, match=message):
        labels_from_compact(labels_map)


@pytest.mark.parametrize("body", [b"", b"\xc1", msgpack.packb([1, 2]), msgpack.packb(
    [9, 2, "spam", 0, None, None, None])])
def test_the_store_reports_a_corrupt_body(body: bytes) -> None:
    with pytest.raises(CompactBodyError):
        decode_body("pin:1", MODEL.key, body)
