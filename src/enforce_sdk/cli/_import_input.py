"""The input of a bulk import: JSONL or msgpack records, parsed into Labels, in chunks.

Each record keeps its position and raw bytes, so a rejection can say where it
was and a checkpoint can hash what was done (see cli/_import).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal, cast

import msgpack

from .._errors import InvalidInputError
from ..model.label import SCHEMA_VERSION, Label

InputFormat = Literal["jsonl", "msgpack"]


_READ_BLOCK = 1 << 16


@dataclass(frozen=True, slots=True)
class Record:
    """One input record: where it was (line or record number), its bytes, its value."""

    position: int
    raw: bytes
    value: object = None  # decoded msgpack object; JSON lines are decoded on use


def detect_format(head: bytes) -> InputFormat:
    """Tell JSONL from a msgpack stream by the first significant byte."""
    stripped = head.lstrip(b" \t\r\n\xef\xbb\xbf")
    if not stripped:
        return "jsonl"
    first = stripped[0]
    if first == ord("{"):
        return "jsonl"
    if 0x80 <= first <= 0x8F or first in (0xDE, 0xDF):
        return "msgpack"
    raise ImportAbortedError(
        f"cannot tell the input format from its first byte {first:#04x}: "
        "expected a JSON object per line or a stream of msgpack maps (use --format)",
        field="input",
    )


def read_records(stream: BinaryIO, fmt: InputFormat | None = None) -> Iterator[Record]:
    """Yield the records of a JSONL or msgpack stream (format detected if not given)."""
    if not hasattr(stream, "peek"):  # e.g. BytesIO: give it a buffer that can look ahead
        stream = io.BufferedReader(cast(io.RawIOBase, stream))
    head = _peek(stream)
    if fmt is None:
        fmt = detect_format(head)
    if fmt == "jsonl":
        return _jsonl_records(stream)
    return _msgpack_records(stream)


def _peek(stream: BinaryIO) -> bytes:
    peek = getattr(stream, "peek", None)
    if peek is not None:
        data: bytes = peek(64)
        return data[:64]
    raise ImportAbortedError("input stream must be buffered (io.BufferedReader)", field="input")


def _jsonl_records(stream: BinaryIO) -> Iterator[Record]:
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield Record(number, line)


def _msgpack_records(stream: BinaryIO) -> Iterator[Record]:
    unpacker = msgpack.Unpacker(raw=False, timestamp=3, strict_map_key=True,
                                max_buffer_size=64 << 20)
    buffer = bytearray()
    base = 0  # stream offset of buffer[0]
    number = 0
    while True:
        block = stream.read(_READ_BLOCK)
        if block:
            unpacker.feed(block)
            buffer += block
        while True:
            try:
                value = unpacker.unpack()
            except msgpack.OutOfData:
                break
            except Exception as exc:  # msgpack raises assorted types on malformed data
                raise ImportAbortedError(
                    f"record {number + 1}: malformed msgpack near byte {base}: {exc}",
                    field="input",
                ) from exc
            number += 1
            end = unpacker.tell()
            raw = bytes(buffer[: end - base])
            del buffer[: end - base]
            base = end
            yield Record(number, raw, value)
        if not block:
            if buffer:
                raise ImportAbortedError(
                    f"input ends inside a msgpack record ({len(buffer)} trailing bytes)",
                    field="input",
                )
            return


def parse_label(record: Record) -> Label:
    """The label a record holds; raises InvalidInputError naming what is wrong."""
    value = record.value
    if value is None:
        try:
            value = json.loads(record.raw)
        except ValueError as exc:
            raise InvalidInputError(f"not valid JSON: {exc}", field="label") from exc
    if isinstance(value, dict) and "schema" in value:
        if type(value["schema"]) is not int or value["schema"] != SCHEMA_VERSION:
            raise InvalidInputError(
                f"unsupported schema version {value['schema']!r} (this build speaks "
                f"{SCHEMA_VERSION})", field="schema",
            )
        value = {k: v for k, v in value.items() if k != "schema"}
    return Label.from_dict(value)


def chunked(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class ImportAbortedError(InvalidInputError):
    """The import cannot go on: unreadable input, a foreign checkpoint, a store that is gone."""
