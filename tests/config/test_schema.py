"""The config document's JSON Schema agrees with the validator, and its published copy is current."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from enforce_sdk._errors import ConfigError
from enforce_sdk.cli import main
from enforce_sdk.config import document, policy_document
from enforce_sdk.config.document import EnforcementConfig
from enforce_sdk.config.schema import config_schema

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = config_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
FULL: dict[str, Any] = {
    "version": 3,
    "tiers": ["high", "medium", "low"],
    "reasons": {"spam": {"tier": "medium", "description": "unwanted bulk content",
                         "owner": "spam-team"},
                "porn": {"tier": "high", "description": "adult content", "owner": "safety",
                         "enforcement": "block"}},
    "sources": {"spam_model": {"hold_below": 0.7, "drop_below": 0.2}},
    "escalate": [{"name": "spam account", "when": "high >= 1 or medium >= 2",
                  "over": "reason = spam", "enforce": "block", "reason": "spam"}],
    "cache": {"ttl": "60s", "negative_ttl": 30, "max_entries": 1000, "serve_stale_for": "10m"},
    "store": {"timeout": "250ms", "max_batch_keys": 500, "retries": 1, "retry_backoff": 0.02},
    "bloom": {"enabled": True, "max_staleness": "5m", "refresh_interval": "5m"},
    "surfaces": {"home_feed": {"selector": "type = human", "weights": {"spam_model": 0.5},
                               "default_weight": 1, "half_life": "30d",
                               "human_over_automated": True, "hide_from": "limit",
                               "fail_mode": "open", "related": {"domain": "block"},
                               "on_bloom_stale": "trust", "on_bad_link": "ignore",
                               "min_confidence": 0.5, "escalate": []}},
}


def schema_ok(doc: object) -> bool:
    return VALIDATOR.is_valid(doc)


def validator_ok(doc: object) -> bool:
    try:
        EnforcementConfig.from_dict(doc)
    except ConfigError:
        return False
    return True


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_schema_names_exactly_the_validators_keys() -> None:
    props = SCHEMA["properties"]
    assert set(props) == set(document._TOP_KEYS)
    assert set(props["surfaces"]["additionalProperties"]["properties"]) == set(
        document._SURFACE_KEYS)
    assert set(props["reasons"]["additionalProperties"]["properties"]) == set(
        policy_document._REASON_KEYS)
    assert set(props["sources"]["additionalProperties"]["properties"]) == set(
        policy_document._SOURCE_KEYS)
    assert set(props["escalate"]["items"]["properties"]) == set(policy_document._RULE_KEYS)


@pytest.mark.parametrize("path", ["docs/examples/enforce.toml"])
def test_shipped_documents_pass_both(path: str) -> None:
    doc = tomllib.loads((ROOT / path).read_text())
    assert validator_ok(doc) and schema_ok(doc)


def test_a_document_with_every_key_passes_both() -> None:
    assert validator_ok(FULL), EnforcementConfig.from_dict(FULL)
    assert schema_ok(FULL), list(VALIDATOR.iter_errors(FULL))


def _set(doc: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    target = out
    for key in path[:-1]:
        target = target[key] if not isinstance(target, list) else target[int(key)]
    target[path[-1]] = value
    return out


@pytest.mark.parametrize("path, value", [
    (("surprise",), 1),
    (("version",), 0),
    (("version",), "3"),
    (("surfaces",), {}),
    (("surfaces", "home_feed", "colour"), "red"),
    (("surfaces", "home_feed", "hide_from"), "allow"),
    (("surfaces", "home_feed", "fail_mode"), "sideways"),
    (("surfaces", "home_feed", "half_life"), "soon"),
    (("surfaces", "home_feed", "half_life"), -5),
    (("surfaces", "home_feed", "min_confidence"), 1.5),
    (("surfaces", "home_feed", "weights"), {"spam_model": -1}),
    (("cache", "max_entries"), 0),
    (("store", "retries"), 11),
    (("bloom", "enabled"), "yes"),
    (("reasons", "spam", "owner"), ""),
    (("reasons", "spam", "extra"), 1),
    (("sources", "spam_model", "hold_below"), 2),
    (("escalate", "0", "enforce"), "allow"),
])
def test_a_broken_document_fails_both(path: tuple[str, ...], value: object) -> None:
    broken = _set(FULL, path, value)
    assert not validator_ok(broken)
    assert not schema_ok(broken)


def test_the_published_schema_is_current_and_printed_by_the_cli() -> None:
    published = json.loads((ROOT / "docs" / "config.schema.json").read_text())
    assert published == SCHEMA
    printed = CliRunner().invoke(main, ["config", "schema"])
    assert printed.exit_code == 0 and json.loads(printed.stdout) == SCHEMA
