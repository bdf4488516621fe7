"""Label model: validation names the field; JSON and msgpack round trips (property-tested)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enforce_sdk import Enforcement, Label, LabelValidationError, Source, SourceType
from enforce_sdk.model.wire import decode, encode

BASE: dict[str, Any] = {
    "entity": "pin:1",
    "source": {"system": "review_tool", "type": "human", "name": "alice"},
    "enforcement": "block",
    "reason": "spam",
    "created_at": "2026-01-01T00:00:00Z",
}


def test_enforcement_is_ordered_by_severity() -> None:
    assert Enforcement.ALLOW < Enforcement.LIMIT < Enforcement.BLOCK < Enforcement.REMOVE
    assert Enforcement.parse(" Block ") is Enforcement.BLOCK


def test_from_dict_canonicalises_and_round_trips() -> None:
    label = Label.from_dict({**BASE, "entity": "domain:WWW.Example.com", "confidence": 1})
    assert label.entity == "domain:example.com"
    assert label.confidence == 1.0
    assert Label.from_dict(label.to_dict()) == label
    assert label.key == ("domain:example.com", "review_tool/human/alice")


@pytest.mark.parametrize(
    ("patch", "field", "fragment"),
    [
        ({"enforcement": "nuke"}, "enforcement", "unknown enforcement"),
        ({"enforcement": 3}, "enforcement", "unknown enforcement"),
        ({"confidence": 1.5}, "confidence", "0..1"),
        ({"confidence": "high"}, "confidence", "number"),
        ({"confidence": True}, "confidence", "number"),
        ({"reason": "Spam!"}, "reason", "must match"),
        ({"entity": "nokind"}, "entity", "kind:id"),
        ({"created_at": "yesterday"}, "created_at", "RFC 3339"),
        ({"created_at": "2026-01-01T00:00:00"}, "created_at", "time zone"),
        ({"expires_at": "2025-01-01T00:00:00Z"}, "expires_at", "after created_at"),
        ({"source": {"system": "x", "type": "robot", "name": "y"}}, "source.type", "human"),
        ({"source": "review_tool"}, "source", "object"),
        ({"metadata": {"k": [1, 2]}}, "metadata", "string, number"),
        ({"metadata": {"k": "v" * 5000}}, "metadata", "larger than"),
        ({"metadata": {"k": 2**63}}, "metadata", "64-bit"),
        ({"metadata": {"k": -(2**63) - 1}}, "metadata", "64-bit"),
        ({"metadata": {"k": "\udfff"}}, "metadata", "surrogate"),
        ({"metadata": []}, "metadata", "must be an object"),
        ({"metadata": 0}, "metadata", "must be an object"),
        ({"colour": "red"}, "label", "unknown field"),
        ({"created_at": "20260101T000000Z"}, "created_at", "not an RFC 3339 time"),
        ({"created_at": "2026-W01-1T00:00:00Z"}, "created_at", "not an RFC 3339 time"),
        ({"created_at": "2026-01-01T00:00:00+0100"}, "created_at", "not an RFC 3339 time"),
        ({"created_at": "9999-12-31T23:59:59-01:00"}, "created_at", "years 1..9999"),
        ({"created_at": "0001-01-01T00:00:00+01:00"}, "created_at", "years 1..9999"),
        ({"expires_at": "9999-12-31T23:59:59-01:00"}, "expires_at", "years 1..9999"),
        ({"confidence": 10**400}, "confidence", "(401 characters)"),
        ({"confidence": -(10**400)}, "confidence", "number in 0..1"),
    ],
)
def test_invalid_fields_are_named(patch: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(LabelValidationError) as info:
        Label.from_dict({**BASE, **patch})
    assert info.value.field == field
    assert fragment in str(info.value)


@pytest.mark.parametrize("missing", ["entity", "enforcement", "reason", "created_at"])
def test_missing_required_field_is_named(missing: str) -> None:
    data = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(LabelValidationError, match="is required") as info:
        Label.from_dict(data)
    assert info.value.field == missing


def test_label_is_immutable_including_metadata() -> None:
    label = Label.from_dict({**BASE, "metadata": {"ticket": "T-1"}})
    with pytest.raises(AttributeError):
        label.reason = "porn"  # type: ignore[misc]
    with pytest.raises(TypeError):
        label.metadata["ticket"] = "T-2"  # type: ignore[index]


_names = st.from_regex(r"[A-Za-z0-9_.\-@]{1,12}", fullmatch=True)
_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
_meta_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)


@st.composite
def labels(draw: st.DrawFn) -> Label:
    created = draw(_times)
    expires = draw(
        st.one_of(
            st.none(), st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3650))
        )
    )
    kind = draw(st.sampled_from(["pin", "user", "board", "image"]))
    ident = draw(st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True))
    return Label(
        entity=f"{kind}:{ident}",
        source=Source(draw(_names), draw(st.sampled_from(list(SourceType))), draw(_names)),
        enforcement=draw(st.sampled_from(list(Enforcement))),
        reason=draw(st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)),
        created_at=created,
        expires_at=None if expires is None else created + expires,
        confidence=draw(st.one_of(st.none(), st.floats(min_value=0, max_value=1))),
        metadata=draw(
            st.dictionaries(
                st.from_regex(r"[a-z_]{1,10}", fullmatch=True), _meta_values, max_size=4
            )
        ),
    )


@given(labels())
def test_json_round_trip(label: Label) -> None:
    text = json.dumps(label.to_dict())
    assert Label.from_dict(json.loads(text)) == label


@given(st.lists(labels(), max_size=5), st.sampled_from(["json", "msgpack"]))
def test_wire_round_trip_in_both_formats(batch: list[Label], fmt: str) -> None:
    wire = [lab.to_wire() if fmt == "msgpack" else lab.to_dict() for lab in batch]
    body = decode(encode({"labels": wire}, fmt), fmt)  # type: ignore[arg-type]
    assert body["schema"] == 1
    assert [Label.from_dict(d) for d in body["labels"]] == batch


def test_metadata_values_of_different_types_are_different_labels() -> None:
    # True == 1 == 1.0 in Python; for labels they are different values (no duplicate suppression)
    one = Label.from_dict({**BASE, "metadata": {"k": 1}})
    true = Label.from_dict({**BASE, "metadata": {"k": True}})
    real = Label.from_dict({**BASE, "metadata": {"k": 1.0}})
    assert one != true and one != real and true != real
    assert one == Label.from_dict({**BASE, "metadata": {"k": 1}})
    assert len({one, true, real}) == 3


@given(
    st.dictionaries(st.text(min_size=1, max_size=12), _meta_values, max_size=6),
    st.integers(min_value=0, max_value=400),
)
def test_metadata_within_agrees_with_the_encoded_size(meta: dict[str, Any], limit: int) -> None:
    from enforce_sdk.model.label import metadata_size, metadata_within

    assert metadata_within(meta, limit) == (metadata_size(meta) <= limit)
