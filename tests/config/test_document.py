"""SDK config document: the example loads, defaults, round trips, every bad case has a clear error."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from enforce_sdk import ConfigError, Enforcement, UnknownSurfaceError
from enforce_sdk.config.document import EnforcementConfig
from enforce_sdk.config.source import (
    ConfigMeta,
    ConfigSource,
    FileConfigSource,
    StaticConfigSource,
    coerce_config_source,
)
from enforce_sdk.policy.resolver import Resolver
from enforce_sdk.policy.selector import Selector
from enforce_sdk.policy.surface import SurfaceConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "enforce.toml"
MINIMAL: dict[str, Any] = {"version": 1, "surfaces": {"home_feed": {}}}


def with_surface(**fields: Any) -> dict[str, Any]:
    return {"version": 1, "surfaces": {"home_feed": fields}}


# ---------------------------------------------------------------------------- good documents


def test_the_example_file_loads_with_what_it_says() -> None:
    cfg = EnforcementConfig.load(EXAMPLE)
    assert cfg.version == 1
    assert list(cfg.surfaces) == ["home_feed", "search", "profile"]
    home = cfg.surface("home_feed")
    assert home.hide_from == Enforcement.LIMIT and home.half_life == 7 * 86400
    assert home.weights == {"review_tool": 1.0, "appeals": 0.3, "spam_domain_model": 0.8}
    assert home.related == {"domain": Enforcement.BLOCK, "creator": Enforcement.REMOVE,
                            "image": Enforcement.BLOCK}
    assert str(home.selector).startswith("type = human or (type = automated")
    search = cfg.surface("search")
    assert (search.fail_mode, search.on_bloom_stale, search.hide_from) == (
        "closed", "verify", Enforcement.BLOCK)
    assert cfg.surface("profile").hide_from == Enforcement.REMOVE
    assert cfg.cache.ttl == 60 and cfg.cache.negative_ttl == 30 and cfg.cache.max_entries == 100_000
    assert cfg.store.timeout == 0.25 and cfg.store.retry_backoff == 0.02
    assert cfg.bloom.enabled is False and cfg.bloom.max_staleness == 300
    assert isinstance(cfg.resolvers["search"], Resolver) and cfg.resolver("search").surface == "search"


def test_defaults_of_a_minimal_document() -> None:
    cfg = EnforcementConfig.from_dict(MINIMAL)
    s = cfg.surface("home_feed")
    assert s == SurfaceConfig("home_feed")
    assert s.selector.matches_all and s.default_weight == 1.0 and s.half_life == 30 * 86400
    assert s.human_over_automated and s.hide_from == Enforcement.BLOCK
    assert (s.fail_mode, s.on_bloom_stale, dict(s.related)) == ("open", "trust", {})
    closed = EnforcementConfig.from_dict(with_surface(fail_mode="closed")).surface("home_feed")
    assert closed.on_bloom_stale == "verify"  # the bloom default follows the fail mode


def test_durations_accept_strings_and_numbers_of_seconds() -> None:
    cfg = EnforcementConfig.from_dict({
        **with_surface(half_life=3600), "cache": {"ttl": "500ms", "negative_ttl": 0,
                                                  "serve_stale_for": 1.5},
    })
    assert cfg.surface("home_feed").half_life == 3600
    assert (cfg.cache.ttl, cfg.cache.negative_ttl, cfg.cache.serve_stale_for) == (0.5, 0, 1.5)


def test_to_dict_round_trips_through_json_and_toml_equivalents(tmp_path: Path) -> None:
    cfg = EnforcementConfig.load(EXAMPLE)
    doc = cfg.to_dict()
    again = EnforcementConfig.from_dict(json.loads(json.dumps(doc)))
    assert again == cfg and again.to_dict() == doc
    path = tmp_path / "c.json"
    path.write_text(cfg.to_json())
    assert EnforcementConfig.load(path) == cfg
    assert EnforcementConfig.loads(cfg.to_json()) == cfg
    assert EnforcementConfig.loads(EXAMPLE.read_bytes(), "toml") == cfg
    assert doc["surfaces"]["home_feed"]["half_life"] == "1w"


def test_user_is_another_name_for_the_creator_link() -> None:
    cfg = EnforcementConfig.from_dict(with_surface(related={"user": "remove", "domain": "block"}))
    home = cfg.surface("home_feed")
    assert home.name == "home_feed"
    assert dict(home.related) == {"creator": Enforcement.REMOVE, "domain": Enforcement.BLOCK}
    assert cfg.to_dict()["surfaces"]["home_feed"]["related"] == {"creator": "remove",
                                                                 "domain": "block"}


def test_an_unknown_link_kind_lists_the_accepted_names() -> None:
    with pytest.raises(ConfigError, match=r"known: image, domain, creator, board, user \(= creator\)"):
        EnforcementConfig.from_dict(with_surface(related={"domian": "block"}))


def test_unknown_surface_is_reported_with_the_known_ones() -> None:
    cfg = EnforcementConfig.from_dict(MINIMAL)
    with pytest.raises(UnknownSurfaceError, match=r"unknown surface 'serch'.*home_feed"):
        cfg.surface("serch")
    with pytest.raises(UnknownSurfaceError):
        cfg.resolver("serch")


def test_config_is_immutable() -> None:
    cfg = EnforcementConfig.from_dict(MINIMAL)
    with pytest.raises(TypeError):
        cfg.surfaces["x"] = cfg.surface("home_feed")  # type: ignore[index]
    with pytest.raises(TypeError):
        cfg.resolvers["x"] = cfg.resolver("home_feed")  # type: ignore[index]
    with pytest.raises(AttributeError):
        cfg.version = 2  # type: ignore[misc]


# ---------------------------------------------------------------------------- bad documents


@pytest.mark.parametrize(
    ("doc", "path", "fragment"),
    [
        ({"surfaces": {"home_feed": {}}}, "version", "is required"),
        ({"version": 0, "surfaces": {"a": {}}}, "version", "integer >= 1"),
        ({"version": "3", "surfaces": {"a": {}}}, "version", "integer >= 1"),
        ({"version": True, "surfaces": {"a": {}}}, "version", "integer >= 1"),
        ({"version": 1}, "surfaces", "at least one surface"),
        ({"version": 1, "surfaces": {}}, "surfaces", "at least one surface"),
        ({"version": 1, "surfaces": []}, "surfaces", "must be a table"),
        ({"version": 1, "surfaces": {"Home Feed": {}}}, "surfaces.Home Feed", "surface names"),
        ({"version": 1, "surfaces": {"a": 3}}, "surfaces.a", "must be a table"),
        ({**MINIMAL, "extra": 1}, "extra", "unknown key"),
        (with_surface(half_life="-3d"), "surfaces.home_feed.half_life",
         "must be a positive duration (e.g. \"500ms\", \"30s\", \"7d\" or seconds), got '-3d'"),
        (with_surface(half_life=0), "surfaces.home_feed.half_life", "positive duration"),
        (with_surface(half_life="7 days"), "surfaces.home_feed.half_life", "positive duration"),
        (with_surface(half_life=float("inf")), "surfaces.home_feed.half_life", "positive duration"),
        (with_surface(selector="type = robot"), "surfaces.home_feed.selector",
         "unknown source type 'robot' at position 7"),
        (with_surface(selector="typ = human"), "surfaces.home_feed.selector",
         "unknown field 'typ' at position 0: expected a field"),
        (with_surface(selector=5), "surfaces.home_feed.selector", "must be a string"),
        (with_surface(hide_from="blocked"), "surfaces.home_feed.hide_from",
         "must be an enforcement among limit, block, remove, got 'blocked'"),
        (with_surface(hide_from="allow"), "surfaces.home_feed.hide_from", "allow never hides"),
        (with_surface(fail_mode="maybe"), "surfaces.home_feed.fail_mode",
         "must be one of open, closed"),
        (with_surface(on_bloom_stale="ignore"), "surfaces.home_feed.on_bloom_stale",
         "must be one of trust, verify"),
        (with_surface(human_over_automated="yes"), "surfaces.home_feed.human_over_automated",
         "must be true or false"),
        (with_surface(weights={"spam_model": -1}), "surfaces.home_feed.weights.spam_model",
         "finite number >= 0"),
        (with_surface(weights={"spam_model": "high"}), "surfaces.home_feed.weights.spam_model",
         "finite number >= 0"),
        (with_surface(weights={"bad system": 1}), "surfaces.home_feed.weights.bad system",
         "source systems match"),
        (with_surface(weights=[1]), "surfaces.home_feed.weights", "must be a table"),
        (with_surface(default_weight=float("nan")), "surfaces.home_feed.default_weight",
         "finite number"),
        (with_surface(related={"domian": "block"}), "surfaces.home_feed.related.domian",
         "unknown link kind 'domian'"),
        (with_surface(related={"creator": "remove", "user": "block"}),
         "surfaces.home_feed.related.user", "'user' is another name for 'creator'"),
        (with_surface(related={"domain": "severe"}), "surfaces.home_feed.related.domain",
         "must be an enforcement"),
        (with_surface(related={"domain": "allow"}), "surfaces.home_feed.related.domain",
         "allow never hides nor propagates"),
        (with_surface(hide="limit"), "surfaces.home_feed.hide", "unknown key (allowed:"),
        ({**MINIMAL, "cache": {"ttl": 0}}, "cache.ttl", "positive duration"),
        ({**MINIMAL, "cache": {"negative_ttl": "-1s"}}, "cache.negative_ttl",
         "non-negative duration"),
        ({**MINIMAL, "cache": {"max_entries": 0}}, "cache.max_entries", "integer in 1.."),
        ({**MINIMAL, "cache": {"max_entries": 1.5}}, "cache.max_entries", "integer in 1.."),
        ({**MINIMAL, "cache": {"size": 1}}, "cache.size", "unknown key"),
        ({**MINIMAL, "cache": "big"}, "cache", "must be a table"),
        ({**MINIMAL, "store": {"timeout": "0s"}}, "store.timeout", "positive duration"),
        ({**MINIMAL, "store": {"retries": 11}}, "store.retries", "integer in 0..10"),
        ({**MINIMAL, "store": {"max_batch_keys": 0}}, "store.max_batch_keys", "integer in 1.."),
        ({**MINIMAL, "bloom": {"enabled": "no"}}, "bloom.enabled", "must be true or false"),
        ({**MINIMAL, "bloom": {"max_staleness": "soon"}}, "bloom.max_staleness",
         "positive duration"),
    ],
)
def test_each_bad_value_gets_a_clear_error_naming_its_path(doc: dict[str, Any], path: str,
                                                            fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        EnforcementConfig.from_dict(doc)
    assert info.value.field == path, str(info.value)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"{path}: ")


def test_every_problem_is_reported_at_once() -> None:
    doc = {
        "version": 0,
        "surfaces": {
            "home_feed": {"half_life": "-3d", "selector": "age < 7x"},
            "search": {"hide_from": "nope"},
        },
        "cache": {"ttl": "soon"},
    }
    with pytest.raises(ConfigError) as info:
        EnforcementConfig.from_dict(doc)
    text = str(info.value)
    assert text.startswith("5 problems in the SDK config:")
    for path in ("version", "surfaces.home_feed.half_life", "surfaces.home_feed.selector",
                 "surfaces.search.hide_from", "cache.ttl"):
        assert f"\n  {path}: " in text, path


def test_not_a_document() -> None:
    with pytest.raises(ConfigError, match="must be a table/object, got list"):
        EnforcementConfig.from_dict([])


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("c.toml", "version = ", "is not valid TOML"),
        ("c.json", "{", "is not valid JSON"),
        ("c.yaml", "version: 1", "end in .toml or .json"),
        ("c.toml", "version = 1\n", "surfaces: is required"),
    ],
)
def test_load_errors_name_the_file(tmp_path: Path, name: str, content: str, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigError, match="c\\.") as info:
        EnforcementConfig.load(path)
    assert fragment in str(info.value)
    with pytest.raises(ConfigError, match="does not exist"):
        EnforcementConfig.load(tmp_path / "missing.toml")


# ---------------------------------------------------------------------------- sources


def write(path: Path, version: int, hide_from: str = "limit") -> None:
    path.write_text(f'version = {version}\n[surfaces.home_feed]\nhide_from = "{hide_from}"\n')


def test_file_source_starts_and_reloads_only_newer_valid_versions(tmp_path: Path) -> None:
    path = tmp_path / "enforce.toml"
    write(path, 1)
    updates: list[tuple[EnforcementConfig, ConfigMeta]] = []
    source = FileConfigSource(path, clock=lambda: 123.0)
    cfg, meta = source.start(lambda c, m: updates.append((c, m)))
    assert cfg.version == 1 and meta == ConfigMeta(1, f"file:{path}", 123.0)
    assert source.reload() is False  # same version: ignored
    write(path, 2, "remove")
    assert source.reload() is True
    assert [(c.version, m.version) for c, m in updates] == [(2, 2)]
    assert updates[0][0].surface("home_feed").hide_from == Enforcement.REMOVE
    write(path, 1)
    assert source.reload() is False  # older: ignored
    path.write_text('version = 3\n[surfaces.home_feed]\nhide_from = "sometimes"\n')
    with pytest.raises(ConfigError, match="hide_from"):
        source.reload()  # bad: rejected, the applied version stays
    assert source.current is not None and source.current[0].version == 2
    assert len(updates) == 1
    source.close()
    source.after_fork()


def test_static_source_push() -> None:
    seen: list[int] = []
    source = StaticConfigSource(MINIMAL, origin="test")
    cfg, meta = source.start(lambda c, m: seen.append(c.version))
    assert (cfg.version, meta.origin) == (1, "test")
    assert source.push({**MINIMAL, "version": 2}) is True
    assert source.push({**MINIMAL, "version": 2}) is False
    with pytest.raises(ConfigError):
        source.push({"version": 3, "surfaces": {}})
    assert seen == [2]


def test_updates_reach_the_callback_in_version_order_from_many_threads() -> None:
    seen: list[int] = []
    source = StaticConfigSource(MINIMAL)
    source.start(lambda c, m: seen.append(c.version))
    configs = [EnforcementConfig.from_dict({**MINIMAL, "version": v}) for v in range(2, 40)]
    threads = [threading.Thread(target=source.push, args=(c,)) for c in reversed(configs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == sorted(seen) and len(set(seen)) == len(seen) and seen[-1] == 39


def test_coerce_config_source(tmp_path: Path) -> None:
    assert isinstance(coerce_config_source(EXAMPLE), FileConfigSource)
    assert isinstance(coerce_config_source(str(EXAMPLE)), FileConfigSource)
    assert isinstance(coerce_config_source(MINIMAL), StaticConfigSource)
    cfg = EnforcementConfig.from_dict(MINIMAL)
    static = coerce_config_source(cfg)
    assert static.start(lambda c, m: None)[0] is cfg
    assert coerce_config_source(static) is static
    with pytest.raises(ConfigError, match="got int"):
        coerce_config_source(3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        coerce_config_source({"version": 1})  # a dict is validated at once
    assert issubclass(FileConfigSource, ConfigSource)


def test_selector_objects_are_compiled_once_per_config() -> None:
    cfg = EnforcementConfig.from_dict(with_surface(selector="type = human"))
    assert cfg.surface("home_feed").selector == Selector.parse("type = human")
    assert cfg.resolver("home_feed").config is cfg.surface("home_feed")
