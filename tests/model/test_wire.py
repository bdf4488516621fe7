"""Body codec: format negotiation, schema version, malformed bodies."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enforce_sdk import InvalidInputError
from enforce_sdk.model.wire import decode, format_of


@pytest.mark.parametrize(
    ("header", "fmt"),
    [
        (None, "json"),
        ("application/json", "json"),
        ("application/msgpack", "msgpack"),
        ("application/x-msgpack; q=0.9", "msgpack"),
        ("text/html, application/vnd.msgpack", "msgpack"),
    ],
)
def test_format_negotiation(header: str | None, fmt: str) -> None:
    assert format_of(header) == fmt


@pytest.mark.parametrize(
    ("body", "fmt", "fragment"),
    [
        (b"", "json", "empty body"),
        (b"{not json", "json", "malformed json"),
        (b"[1, 2]", "json", "must be an object"),
        (b"\xc1", "msgpack", "malformed msgpack"),
        (b'{"schema": 99}', "json", "unsupported schema version"),
    ],
)
def test_bad_bodies_are_rejected_with_the_reason(body: bytes, fmt: str, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        decode(body, fmt)  # type: ignore[arg-type]


@given(st.binary(max_size=200), st.sampled_from(["json", "msgpack"]))
def test_arbitrary_bytes_decode_or_raise_invalid_input(data: bytes, fmt: str) -> None:
    try:
        body = decode(data, fmt)  # type: ignore[arg-type]
    except InvalidInputError:
        return
    assert isinstance(body, dict)


@pytest.mark.parametrize("schema", [True, 1.0, "1", None])
def test_the_schema_version_is_an_integer(schema: object) -> None:
    body = json.dumps({"schema": schema, "labels": []}).encode()
    with pytest.raises(InvalidInputError, match="unsupported schema version") as info:
        decode(body, "json")
    assert info.value.field == "schema"
