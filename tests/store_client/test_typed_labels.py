"""The typed decode of the store's labels against the validating constructor.

Labels are validated once, when written; reads rebuild them with `Label.trusted`
(the store's rows) and `label_from_answer` (the SDK's decode of an answer). On
every valid label both must give exactly what `Label(...)` / `Label.from_dict`
gives, in both wire formats; an answer whose fields have the wrong types is
refused as a protocol error.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import given

from enforce_sdk import Enforcement, Label, Source, SourceType, StoreResponseError
from enforce_sdk.model.wire import decode, encode
from enforce_sdk.store.storage.sqlite_schema import decode_label, encode_label
from enforce_sdk.store_client.client import LabelStoreClient
from enforce_sdk.store_client.typed_labels import AnswerTypeError, label_from_answer
from tests.model.test_label import labels


def same(a: Label, b: Label) -> bool:
    """Equal, and with the same field types (a float confidence, UTC datetimes)."""
    return a == b and all(type(getattr(a, f)) is type(getattr(b, f))
                          for f in ("confidence", "created_at", "expires_at", "enforcement", "metadata")
                          ) and hash(a) == hash(b)


@given(labels())
def test_a_msgpack_answer_decodes_to_the_validated_label(label: Label) -> None:
    wire = decode(encode({"label": label.to_wire()}, "msgpack"), "msgpack")["label"]
    assert same(label_from_answer(wire), Label.from_dict(wire))
    assert same(label_from_answer(wire), label)


@given(labels())
def test_a_json_answer_decodes_to_the_validated_label(label: Label) -> None:
    wire = json.loads(json.dumps(label.to_dict()))
    assert same(label_from_answer(wire), Label.from_dict(wire))


@given(labels())
def test_a_stored_row_is_rebuilt_as_the_label_written(label: Label) -> None:
    rebuilt = decode_label(label.entity, label.source.key, encode_label(label))
    assert same(rebuilt, label)


GOOD: dict[str, Any] = {
    "entity": "pin:1", "source": {"system": "m", "type": "automated", "name": "v1"},
    "enforcement": "block", "reason": "spam", "created_at": datetime(2026, 1, 1, tzinfo=UTC),
}


@pytest.mark.parametrize("change", [
    {"enforcement": "nope"}, {"enforcement": 2}, {"created_at": 5}, {"created_at": "yesterday"},
    {"entity": 7}, {"entity": ""}, {"reason": None}, {"source": "m/automated/v1"},
    {"source": {"system": "m", "type": "robot", "name": "v1"}}, {"confidence": 2.0},
    {"confidence": float("nan")}, {"confidence": "0.5"}, {"metadata": {"a": {"b": 1}}},
    {"metadata": [1]}, {"extra": 1},
])
def test_a_label_of_the_wrong_shape_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises((AnswerTypeError, ValueError)):
        label_from_answer({**GOOD, **change})


def test_an_answer_with_a_bad_label_is_a_protocol_error() -> None:
    bad = {**GOOD, "enforcement": "nope", "created_at": "2026-01-01T00:00:00Z"}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"schema": 1, "head": 3, "labels": {"pin:1": [bad]}})

    with LabelStoreClient("http://store", wire="json",
                          transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(StoreResponseError, match="enforcement"):
            client.get_many(["pin:1"])
        assert label_from_answer({**GOOD}).source == Source("m", SourceType.AUTOMATED, "v1")
        assert label_from_answer({**GOOD}).enforcement is Enforcement.BLOCK
