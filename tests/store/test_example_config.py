"""docs/examples/store.toml, the commented store config, names every key and loads."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from enforce_sdk.store.config import StoreConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "store.toml"
EXAMPLE_VALUES = {("storage", "url"), ("checker", "trusted_entities"),  # not the defaults
                  ("console", "users")}
# Keys whose default has no TOML form (random, or unset): shown commented out in the example.
COMMENTED = {("console", "session_secret"), ("console", "trusted_header")}


def test_the_example_loads() -> None:
    config = StoreConfig.load(EXAMPLE)
    assert {t.name for t in config.tokens} == {"home-feed", "spam-model-batch", "review-tool",
                                                "oncall-admin"}


def test_the_example_names_every_key_with_its_default() -> None:
    document = tomllib.loads(EXAMPLE.read_text())
    defaults = StoreConfig()
    for section in dataclasses.fields(StoreConfig):
        if section.name == "tokens":
            continue
        default = getattr(defaults, section.name)
        written = document.get(section.name)
        assert written is not None, f"[{section.name}] is missing from {EXAMPLE.name}"
        names = {f.name for f in dataclasses.fields(default)
                 if (section.name, f.name) not in COMMENTED}
        assert set(written) == names, section.name
        for key, value in written.items():
            if (section.name, key) not in EXAMPLE_VALUES:
                shown = tuple(value) if isinstance(value, list) else value
                assert shown == getattr(default, key), f"{section.name}.{key}"
    text = EXAMPLE.read_text()
    for section, key in COMMENTED:
        assert f"# {key} = " in text, f"{section}.{key} is not shown (commented out)"
