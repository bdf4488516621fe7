"""StoreConfig: defaults, full validation with key paths, token hashing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enforce_sdk import ConfigError
from enforce_sdk.store.config import DEFAULT_STORAGE_URL, Role, StoreConfig, hash_token

DIGEST = "a" * 64


def test_defaults_without_a_file() -> None:
    config = StoreConfig.load(None)
    assert config == StoreConfig()
    assert config.storage.url == DEFAULT_STORAGE_URL
    assert config.limits.max_body_bytes == 8 * 1024 * 1024
    assert config.limits.max_batch_keys == 1000
    assert config.limits.max_batch_labels == 1000
    assert config.limits.max_metadata_bytes == 2048
    assert config.limits.max_feed_page == 1000
    assert config.limits.max_wait_seconds == 30
    assert config.feed.retention_seconds == 604800
    assert config.storage.expired_grace_seconds == 86400
    assert config.tokens == ()
    assert (config.http.max_header_bytes, config.http.max_header_count) == (16384, 100)
    assert (config.http.header_timeout_seconds, config.http.body_timeout_seconds) == (10, 30)
    assert config.http.keep_alive_seconds == 30
    assert config.idempotency.retention_seconds == 86400


def test_full_document_loads(tmp_path: Path) -> None:
    path = tmp_path / "store.toml"
    path.write_text(
        f"""
[storage]
url = "sqlite:///tmp/x/labels.db"
expired_grace_seconds = 0
purge_interval_seconds = 30
[limits]
max_body_bytes = 65536
max_batch_keys = 10
max_wait_seconds = 2.5
[feed]
retention_seconds = 3600
prune_interval_seconds = 0.5
[checker]
trusted_entities = ["user:42", "domain:WWW.Partner.com"]
[[tokens]]
name = "review-tool"
role = "writer"
sources = ["review_tool/human", "*/automated"]
token_sha256 = "{DIGEST.upper()}"
[[tokens]]
name = "dev"
role = "Admin"
token = "plain-dev-token"
"""
    )
    config = StoreConfig.load(path)
    assert config.storage.url == "sqlite:///tmp/x/labels.db"
    assert (config.storage.expired_grace_seconds, config.storage.purge_interval_seconds) == (0, 30)
    assert config.limits.max_body_bytes == 65536
    assert config.limits.max_batch_keys == 10
    assert config.limits.max_batch_labels == 1000  # untouched keys keep defaults
    assert config.limits.max_wait_seconds == 2.5
    assert config.feed.retention_seconds == 3600
    assert config.feed.prune_interval_seconds == 0.5
    assert config.checker.trusted_entities == {"user:42", "domain:partner.com"}
    writer, admin = config.tokens
    assert (writer.name, writer.role, writer.token_sha256) == ("review-tool", Role.WRITER, DIGEST)
    assert [str(g) for g in writer.sources] == ["review_tool/human", "*/automated"]
    assert writer.may_write_as("review_tool", "human") and writer.may_write_as("x", "automated")
    assert not writer.may_write_as("other_tool", "human")
    assert admin.sources == () and admin.may_write_as("anything", "human")
    assert (admin.name, admin.role, admin.token_sha256) == ("dev", Role.ADMIN,
                                                            hash_token("plain-dev-token"))
    assert "plain-dev-token" not in repr(config)


@pytest.mark.parametrize(
    ("doc", "path", "fragment"),
    [
        ({"limits": {"max_body_bytes": "big"}}, "limits.max_body_bytes", "integer"),
        ({"limits": {"max_batch_keys": 0}}, "limits.max_batch_keys", ">= 1"),
        ({"limits": {"max_metadata_bytes": 10_000}}, "limits.max_metadata_bytes", "0..4096"),
        ({"limits": {"max_batch_labels": True}}, "limits.max_batch_labels", "integer"),
        ({"limits": {"bogus": 1}}, "limits.bogus", "unknown key"),
        ({"feed": {"retention_seconds": 0}}, "feed.retention_seconds", "> 0"),
        ({"feed": {"retention_seconds": float("nan")}}, "feed.retention_seconds", "finite"),
        ({"feed": []}, "feed", "table"),
        ({"http": {"max_header_bytes": 100}}, "http.max_header_bytes", "1024..1048576"),
        ({"http": {"max_header_count": 0}}, "http.max_header_count", "8..10000"),
        ({"http": {"header_timeout_seconds": 0}}, "http.header_timeout_seconds", "> 0"),
        ({"http": {"body_timeout_seconds": "30"}}, "http.body_timeout_seconds", "finite"),
        ({"http": {"keep_alive_seconds": 0.5}}, "http.keep_alive_seconds", "integer"),
        ({"http": {"bogus": 1}}, "http.bogus", "unknown key"),
        ({"idempotency": {"retention_seconds": -1}}, "idempotency.retention_seconds", "> 0"),
        ({"storage": {"url": 5}}, "storage.url", "string"),
        ({"storage": {"url": "labels.db"}}, "storage.url", "URL"),
        ({"storage": {"expired_grace_seconds": -1}}, "storage.expired_grace_seconds", ">= 0"),
        ({"storage": {"purge_interval_seconds": 0}}, "storage.purge_interval_seconds", "> 0"),
        ({"storage": {"expired_grace": "1d"}}, "storage.expired_grace", "unknown"),
        ({"checker": {"trusted_entities": "user:1"}}, "checker.trusted_entities", "list"),
        ({"checker": {"trusted_entities": ["user:1", "nokind"]}}, "checker.trusted_entities[1]",
         "kind:id"),
        ({"tokens": [{"name": "a", "role": "reader"}]}, "tokens[0].token_sha256", "exactly one"),
        ({"tokens": [{"name": "a", "role": "writer", "token_sha256": DIGEST}]},
         "tokens[0].sources", 'sources = ["*"] keeps the old behaviour'),
        ({"tokens": [{"name": "a", "role": "reader", "token_sha256": DIGEST, "sources": ["*"]}]},
         "tokens[0].sources", "reader token writes nothing"),
        ({"tokens": [{"name": "a", "role": "writer", "token_sha256": DIGEST, "sources": []}]},
         "tokens[0].sources", "non-empty array"),
        ({"tokens": [{"name": "a", "role": "writer", "token_sha256": DIGEST,
                      "sources": ["review_tool/robot"]}]}, "tokens[0].sources[0]", "system/type"),
        ({"tokens": [{"name": "a", "role": "god", "token_sha256": DIGEST}]}, "tokens[0].role",
         "reader, writer, admin"),
        ({"tokens": [{"role": "reader", "token_sha256": DIGEST}]}, "tokens[0].name", "required"),
        ({"tokens": [{"name": "a", "role": "reader", "token_sha256": "xyz"}]},
         "tokens[0].token_sha256", "64 hex"),
        ({"tokens": [{"name": "a", "role": "reader", "token": "short"}]}, "tokens[0].token",
         "8 characters"),
        ({"tokens": [{"name": "a", "role": "reader", "token_sha256": DIGEST, "x": 1}]},
         "tokens[0].x", "unknown key"),
        ({"tokens": {"name": "a"}}, "tokens", "array of tables"),
        ({"other": 1}, "other", "unknown key"),
    ],
)
def test_invalid_values_name_the_key_path(doc: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        StoreConfig.from_dict(doc)
    assert info.value.field == path
    assert fragment in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    doc = {"limits": {"max_batch_keys": -1, "max_feed_page": "x"}, "feed": {"bogus": 1}}
    with pytest.raises(ConfigError) as info:
        StoreConfig.from_dict(doc)
    message = str(info.value)
    assert "3 problems" in message
    for path in ("limits.max_batch_keys", "limits.max_feed_page", "feed.bogus"):
        assert path in message


def test_duplicate_token_names_and_secrets_are_rejected() -> None:
    doc = {"tokens": [
        {"name": "a", "role": "reader", "token": "secret-one"},
        {"name": "a", "role": "reader", "token": "secret-two"},
        {"name": "b", "role": "writer", "token_sha256": hash_token("secret-one")},
    ]}
    with pytest.raises(ConfigError) as info:
        StoreConfig.from_dict(doc)
    assert "tokens[1].name: duplicate token name 'a'" in str(info.value)
    assert "tokens[2].token: the same token is configured twice" in str(info.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        StoreConfig.load(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits\nmax_body_bytes = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        StoreConfig.load(bad)


def test_roles_are_ordered() -> None:
    assert Role.READER < Role.WRITER < Role.ADMIN


@given(st.integers(min_value=1, max_value=10**9), st.integers(min_value=0, max_value=4096))
def test_valid_limits_round_trip(batch: int, meta: int) -> None:
    config = StoreConfig.from_dict({"limits": {"max_batch_keys": batch, "max_metadata_bytes": meta}})
    assert config.limits.max_batch_keys == batch
    assert config.limits.max_metadata_bytes == meta


@given(st.integers(max_value=0))
def test_non_positive_batch_limits_are_rejected(value: int) -> None:
    with pytest.raises(ConfigError) as info:
        StoreConfig.from_dict({"limits": {"max_batch_labels": value}})
    assert info.value.field == "limits.max_batch_labels"
