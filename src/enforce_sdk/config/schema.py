"""A JSON Schema (draft 2020-12) of the SDK config document, for editors and CI linters.

`config_schema()` builds it from the same key lists the validator uses
(config/document, config/policy_document), so a key added there is a key
here; docs/config.schema.json is its published copy
(`enforce-sdk config schema` prints it; a test keeps the file current).

The schema checks shape: known keys, types, enums, ranges, duration and name
patterns. The validator (`config validate`, every SDK host) stays the
authority and checks more: selector and rule syntax with positions, rule
reasons against the registry, tiers of reasons, link aliases. The schema asks
for the canonical spellings (lower-case enforcements and modes), which the
validator also accepts in other cases.
"""

from __future__ import annotations

from typing import Any

from .document import BloomSettings, CacheSettings, StoreSettings

SCHEMA_ID = "https://enforce-sdk.example/schemas/config.schema.json"
_DURATION: dict[str, Any] = {
    "description": "seconds, or a duration literal: 500ms, 30s, 5m, 1.5h, 7d, 1d2h",
    "oneOf": [{"type": "number", "minimum": 0},
              {"type": "string", "pattern": r"^\s*([0-9]+(\.[0-9]+)?[A-Za-z]+)+\s*$"}],
}
_HIDING = {"enum": ["limit", "block", "remove"]}
_ANY_ENFORCEMENT = {"enum": ["allow", "limit", "block", "remove"]}
_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
_SYSTEM = r"^[A-Za-z0-9_.\-@]{1,64}$"


def _table(properties: dict[str, Any], *, required: tuple[str, ...] = (),
           description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties,
                           "additionalProperties": False}
    if required:
        out["required"] = list(required)
    if description:
        out["description"] = description
    return out


def _settings(fields: dict[str, Any], cls: type) -> dict[str, Any]:
    return _table(fields, description=f"{cls.__name__} (docs/config.md)")


def _rules() -> dict[str, Any]:
    rule = {
        "name": {"type": "string", "minLength": 1},
        "when": {"type": "string", "minLength": 1,
                 "description": "e.g. high >= 1 or medium >= 2 or (low >= 2 and medium >= 1)"},
        "over": {"type": "string", "description": "a selector over the counted labels"},
        "enforce": _HIDING,
        "reason": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"},
    }
    return {"type": "array", "items": _table(rule, required=("name", "when", "enforce",
                                                               "reason"))}


def config_schema() -> dict[str, Any]:
    """The JSON Schema of the SDK config document."""
    surface = {
        "selector": {"type": "string", "description": "docs/selectors.md"},
        "weights": {"type": "object", "propertyNames": {"pattern": _SYSTEM},
                    "additionalProperties": {"type": "number", "minimum": 0}},
        "default_weight": {"type": "number", "minimum": 0},
        "half_life": _DURATION,
        "human_over_automated": {"type": "boolean"},
        "hide_from": _HIDING,
        "fail_mode": {"enum": ["open", "closed"]},
        "related": {"type": "object", "additionalProperties": _HIDING,
                    "description": "link kind (domain, creator/user, image, board) -> the "
                                   "least enforcement that propagates"},
        "on_bloom_stale": {"enum": ["trust", "verify"]},
        "on_bad_link": {"enum": ["ignore", "fail_closed"]},
        "min_confidence": _FRACTION,
        "escalate": _rules(),
    }
    reason = {"tier": {"type": "string"}, "description": {"type": "string", "minLength": 1},
              "owner": {"type": "string", "minLength": 1, "maxLength": 128},
              "enforcement": _ANY_ENFORCEMENT}
    source = {"hold_below": _FRACTION, "drop_below": _FRACTION}
    top = {
        "version": {"type": "integer", "minimum": 1},
        "surfaces": {"type": "object", "minProperties": 1,
                     "propertyNames": {"pattern": "^[a-z][a-z0-9_]{0,63}$"},
                     "additionalProperties": _table(surface)},
        "cache": _settings({"ttl": _DURATION, "negative_ttl": _DURATION,
                            "max_entries": {"type": "integer", "minimum": 1,
                                            "maximum": 1 << 31},
                            "serve_stale_for": _DURATION}, CacheSettings),
        "store": _settings({"timeout": _DURATION,
                            "max_batch_keys": {"type": "integer", "minimum": 1,
                                               "maximum": 100_000},
                            "retries": {"type": "integer", "minimum": 0, "maximum": 10},
                            "retry_backoff": _DURATION}, StoreSettings),
        "bloom": _settings({"enabled": {"type": "boolean"}, "max_staleness": _DURATION,
                            "refresh_interval": _DURATION}, BloomSettings),
        "tiers": {"type": "array", "minItems": 1, "uniqueItems": True,
                  "items": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$"}},
        "reasons": {"type": "object", "minProperties": 1,
                    "propertyNames": {"pattern": "^[a-z][a-z0-9_]{0,63}$"},
                    "additionalProperties": _table(reason, required=("tier", "description",
                                                                      "owner"))},
        "sources": {"type": "object", "propertyNames": {"pattern": _SYSTEM},
                    "additionalProperties": _table(source)},
        "escalate": _rules(),
    }
    schema = _table(top, required=("version", "surfaces"),
                    description="The enforce_sdk SDK config document (docs/config.md).")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "enforce_sdk config", **schema}
