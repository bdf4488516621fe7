"""The label model: Source, Enforcement, Label, and their wire form.

A label says who (source), what to do (enforcement), why (reason) and when
(created_at, optional expires_at) about one entity. Validation happens here,
once, when a label is built from untrusted data (`Label.from_dict`) or by
hand (`Label(...)`); everything downstream trusts a `Label`.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .._errors import EntityKeyError, LabelValidationError
from .keys import canonical_key

SCHEMA_VERSION = 1
MAX_METADATA_BYTES = 4096  # hard model limit; the store may configure a lower one
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-@]{1,64}")
_REASON_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_META_KEY_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1  # what every backend and msgpack carry
MetadataValue = str | int | float | bool | None
# RFC 3339 date-time (section 5.6): full-date "T" full-time, offset Z or +hh:mm;
# 't', 'z' and a space for "T" are allowed by its note, nothing else of ISO 8601 is.
_RFC3339_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})?",
    re.ASCII,
)


class Enforcement(enum.IntEnum):
    """What to do with an entity, ordered by severity: allow < limit < block < remove."""

    ALLOW = 0
    LIMIT = 1
    BLOCK = 2
    REMOVE = 3

    @property
    def wire(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: object, *, field: str = "enforcement") -> Enforcement:
        if isinstance(value, Enforcement):
            return value
        if isinstance(value, str):
            member = _ENFORCEMENT_BY_NAME.get(value.strip().lower())
            if member is not None:
                return member
        allowed = ", ".join(e.wire for e in cls)
        raise LabelValidationError(
            f"unknown enforcement {value!r} (allowed: {allowed})", field=field
        )

    def __str__(self) -> str:
        return self.wire


_ENFORCEMENT_BY_NAME = {e.name.lower(): e for e in Enforcement}


class SourceType(enum.StrEnum):
    """Whether a label was decided by a person or by a machine."""

    HUMAN = "human"
    AUTOMATED = "automated"

    @classmethod
    def parse(cls, value: object, *, field: str = "source.type") -> SourceType:
        if isinstance(value, SourceType):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        raise LabelValidationError(f"must be 'human' or 'automated', got {value!r}", field=field)


@dataclass(frozen=True, slots=True)
class Source:
    """Who produced a label: the producing system, its type, and a name within it."""

    system: str
    type: SourceType
    name: str

    def __post_init__(self) -> None:
        _check_name(self.system, "source.system")
        _check_name(self.name, "source.name")
        object.__setattr__(self, "type", SourceType.parse(self.type))

    @property
    def key(self) -> str:
        """The source's identity in storage: `system/type/name`."""
        return f"{self.system}/{self.type.value}/{self.name}"

    @classmethod
    def from_key(cls, key: str) -> Source:
        parts = key.split("/") if isinstance(key, str) else []
        if len(parts) != 3:
            raise LabelValidationError(
                f"{key!r} is not of the form system/type/name", field="source"
            )
        return cls(system=parts[0], type=SourceType.parse(parts[1]), name=parts[2])

    def to_dict(self) -> dict[str, str]:
        return {"system": self.system, "type": self.type.value, "name": self.name}

    @classmethod
    def from_dict(cls, data: object) -> Source:
        if not isinstance(data, Mapping):
            raise LabelValidationError(
                f"must be an object with system, type, name, got {type(data).__name__}",
                field="source",
            )
        _no_extra(data, {"system", "type", "name"}, "source")
        return cls(
            system=_required(data, "system", "source."),
            type=SourceType.parse(_required(data, "type", "source.")),
            name=_required(data, "name", "source."),
        )


@dataclass(frozen=True, slots=True)
class Label:
    """One source's verdict on one entity."""

    entity: str
    source: Source
    enforcement: Enforcement
    reason: str
    created_at: datetime
    expires_at: datetime | None = None
    confidence: float | None = None
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            entity = canonical_key(self.entity)
        except EntityKeyError as exc:
            raise LabelValidationError(exc.problem, field="entity") from exc
        object.__setattr__(self, "entity", entity)
        if not isinstance(self.source, Source):
            raise LabelValidationError("must be a Source", field="source")
        object.__setattr__(self, "enforcement", Enforcement.parse(self.enforcement))
        if not isinstance(self.reason, str) or not _REASON_RE.fullmatch(self.reason):
            raise LabelValidationError(
                f"must match [a-z][a-z0-9_]{{0,63}}, got {self.reason!r}", field="reason"
            )
        object.__setattr__(self, "created_at", _utc(self.created_at, "created_at"))
        if self.expires_at is not None:
            expires = _utc(self.expires_at, "expires_at")
            if expires <= self.created_at:
                raise LabelValidationError("must be after created_at", field="expires_at")
            object.__setattr__(self, "expires_at", expires)
        if self.confidence is not None:
            c = self.confidence
            if isinstance(c, bool) or not isinstance(c, int | float) or not _finite(c):
                raise LabelValidationError(
                    f"must be a number in 0..1, got {_shown_number(c)}", field="confidence"
                )
            if not 0.0 <= c <= 1.0:
                raise LabelValidationError(f"must be in 0..1, got {c!r}", field="confidence")
            object.__setattr__(self, "confidence", float(c))
        object.__setattr__(self, "metadata", _check_metadata(self.metadata))

    @classmethod
    def trusted(
        cls,
        entity: str,
        source: Source,
        enforcement: Enforcement,
        reason: str,
        created_at: datetime,
        expires_at: datetime | None = None,
        confidence: float | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
    ) -> Label:
        """A label from fields validated before, without validating them again.

        For labels this package checked when they were written: the store's rows
        (a label is validated once, by the Label Checker, on its way in) and the
        store's answers after a typed decode (store_client). Every argument must
        already be in canonical form (canonical key, UTC datetimes, float
        confidence), as the validating constructor would leave it; anything else
        must go through `Label(...)`.
        """
        label: Label = _new_label(cls)
        s = _LABEL_SETTERS
        s[0](label, entity)
        s[1](label, source)
        s[2](label, enforcement)
        s[3](label, reason)
        s[4](label, created_at)
        s[5](label, expires_at)
        s[6](label, confidence)
        s[7](label, metadata if type(metadata) is _FrozenDict else _FrozenDict(metadata or ()))
        return label

    @property
    def key(self) -> tuple[str, str]:
        """The storage key: (entity, source key)."""
        return (self.entity, self.source.key)

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def to_dict(self) -> dict[str, Any]:
        """JSON form: datetimes as RFC 3339 UTC strings."""
        out: dict[str, Any] = {
            "entity": self.entity,
            "source": self.source.to_dict(),
            "enforcement": self.enforcement.wire,
            "reason": self.reason,
            "created_at": format_time(self.created_at),
        }
        if self.expires_at is not None:
            out["expires_at"] = format_time(self.expires_at)
        if self.confidence is not None:
            out["confidence"] = self.confidence
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out

    def to_wire(self) -> dict[str, Any]:
        """msgpack form: the same fields, datetimes as msgpack timestamps."""
        out = self.to_dict()
        out["created_at"] = self.created_at
        if self.expires_at is not None:
            out["expires_at"] = self.expires_at
        return out

    @classmethod
    def from_dict(cls, data: object) -> Label:
        """Build a label from its JSON or msgpack form, validating every field."""
        if not isinstance(data, Mapping):
            raise LabelValidationError(
                f"must be an object, got {type(data).__name__}", field="label"
            )
        _no_extra(data, _LABEL_FIELDS, "label")
        return cls(
            entity=_required(data, "entity", ""),
            source=Source.from_dict(data.get("source")),
            enforcement=Enforcement.parse(_required(data, "enforcement", "")),
            reason=_required(data, "reason", ""),
            created_at=parse_time(_required(data, "created_at", ""), "created_at"),
            expires_at=(
                None
                if data.get("expires_at") is None
                else parse_time(data["expires_at"], "expires_at")
            ),
            confidence=data.get("confidence"),
            metadata={} if data.get("metadata") is None else data["metadata"],
        )


_new_label = object.__new__
_LABEL_SETTERS = tuple(
    Label.__dict__[f].__set__
    for f in ("entity", "source", "enforcement", "reason", "created_at", "expires_at",
              "confidence", "metadata")
)

_LABEL_FIELDS = frozenset(
    {
        "entity",
        "source",
        "enforcement",
        "reason",
        "created_at",
        "expires_at",
        "confidence",
        "metadata",
    }
)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a `Z` suffix and microseconds only when present."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: object, field: str) -> datetime:
    """Accept an RFC 3339 string, an aware datetime, or a msgpack timestamp."""
    if isinstance(value, datetime):
        return _utc(value, field)
    if isinstance(value, str):
        text = value.strip()
        match = _RFC3339_RE.fullmatch(text)  # fromisoformat alone takes 20260101T000000Z too
        if match is not None and match["offset"] is None:
            raise LabelValidationError("must carry a time zone (use UTC)", field=field)
        if match is None:
            raise LabelValidationError(
                f"{_shown_number(value)} is not an RFC 3339 time "
                "(e.g. 2026-01-01T00:00:00Z or 2026-01-01T01:00:00.5+01:00)", field=field)
        try:
            parsed = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError as exc:
            raise LabelValidationError(f"{_shown_number(value)} is not an RFC 3339 time",
                                       field=field) from exc
        return _utc(parsed, field)
    raise LabelValidationError(
        f"must be an RFC 3339 string, got {type(value).__name__}", field=field
    )


def _utc(value: object, field: str) -> datetime:
    if not isinstance(value, datetime):
        raise LabelValidationError(f"must be a datetime, got {type(value).__name__}", field=field)
    if value.tzinfo is None or value.utcoffset() is None:
        raise LabelValidationError("must carry a time zone (use UTC)", field=field)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):  # 9999-12-31T23:59:59-01:00 is past year 9999 in UTC
        raise LabelValidationError(
            f"{value.isoformat()} is out of range: in UTC it must fall in years 1..9999",
            field=field,
        ) from None


def _finite(number: int | float) -> bool:
    """math.isfinite, also for ints too large for a float (1 followed by 400 zeros: False)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def _shown_number(value: object) -> str:
    """A value for an error message, bounded (a 400-digit int is not echoed whole)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


def _check_name(value: object, field: str) -> None:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise LabelValidationError(
            f"must match [A-Za-z0-9_.-@]{{1,64}}, got {value!r}", field=field
        )


def _required(data: Mapping[str, Any], name: str, prefix: str) -> Any:
    if name not in data or data[name] is None:
        raise LabelValidationError("is required", field=prefix + name)
    return data[name]


def _no_extra(data: Mapping[str, Any], allowed: frozenset[str] | set[str], where: str) -> None:
    extra = sorted(str(k) for k in data if k not in allowed)
    if extra:
        raise LabelValidationError(f"unknown field(s) {', '.join(extra)}", field=where)


def _check_metadata(meta: object) -> Mapping[str, MetadataValue]:
    if not isinstance(meta, Mapping):
        raise LabelValidationError(
            f"must be an object, got {type(meta).__name__}", field="metadata"
        )
    clean: dict[str, MetadataValue] = {}
    for key, value in meta.items():
        if not isinstance(key, str) or not _META_KEY_RE.fullmatch(key):
            raise LabelValidationError(
                f"key {key!r} must match [A-Za-z0-9_.-]{{1,64}}", field="metadata"
            )
        if value is not None and not isinstance(value, str | int | float | bool):
            raise LabelValidationError(
                f"value of {key!r} must be a string, number, boolean or null", field="metadata"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise LabelValidationError(f"value of {key!r} must be finite", field="metadata")
        if type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
            raise LabelValidationError(
                f"value of {key!r} must fit in a signed 64-bit integer", field="metadata"
            )
        if isinstance(value, str) and not _encodes(value):
            raise LabelValidationError(
                f"value of {key!r} is not valid Unicode text (lone surrogate)", field="metadata"
            )
        clean[key] = value
    if clean and not metadata_within(clean, MAX_METADATA_BYTES):
        raise LabelValidationError(f"larger than {MAX_METADATA_BYTES} bytes", field="metadata")
    return _FrozenDict(clean)


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def metadata_size(meta: Mapping[str, MetadataValue]) -> int:
    """Size of the metadata as compact JSON, the unit of the metadata limits."""
    return len(json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode())


def metadata_within(meta: Mapping[str, MetadataValue], limit: int) -> bool:
    """Whether `metadata_size(meta) <= limit`, without encoding when surely so.

    A bound first: a JSON string takes at most 6 bytes per character (a \\uXXXX
    escape) plus its quotes, a number at most 24, true/false/null at most 5; only
    metadata whose bound passes the limit is encoded (the usual few short fields
    never are: validating a label costs one JSON encoding less per limit).
    """
    bound = 2
    for key, value in meta.items():
        bound += 6 * len(key) + 4
        bound += 6 * len(value) + 2 if isinstance(value, str) else 24
        if bound > limit:
            break
    return bound <= limit or metadata_size(meta) <= limit


class _FrozenDict(dict[str, MetadataValue]):
    """A dict that refuses mutation, so a Label stays immutable and hashable.

    Equality is by value *and* type: Python says True == 1 == 1.0, but a label whose
    metadata changes from 1 to true has changed, and must not be suppressed as a duplicate.
    """

    def _readonly(self, *args: object, **kwargs: object) -> None:
        raise TypeError("label metadata is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]

    def _typed(self) -> frozenset[tuple[str, type, MetadataValue]]:
        return frozenset((k, type(v), v) for k, v in self.items())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _FrozenDict):
            return self._typed() == other._typed()
        if isinstance(other, Mapping):
            return self._typed() == _FrozenDict(other)._typed()
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(self._typed())
