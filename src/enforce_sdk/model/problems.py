"""Checking a config document in one pass: every problem collected with its key path.

Both config documents (the SDK's and the store's) validate through a subclass of
`ProblemCollector`, so a bad file is reported whole, each problem naming where
it is, and nothing half-valid is ever applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._errors import ConfigError


def show(value: object) -> str:
    """A value as an error message shows it: scalars by repr, anything else by type name."""
    return repr(value) if isinstance(value, str | int | float | bool) else type(value).__name__


class ProblemCollector:
    """Collects (path, message) pairs; `raise_if_any` raises one ConfigError naming them all."""

    def __init__(self, document: str) -> None:
        self.document = document  # e.g. "the SDK config", for the message
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append((path, message))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        if len(self.items) == 1:
            raise ConfigError(self.items[0][1], field=self.items[0][0])
        lines = "\n".join(f"  {p}: {m}" for p, m in self.items)
        raise ConfigError(f"{len(self.items)} problems in {self.document}:\n{lines}")

    def table(self, data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        """The sub-table `key` ({} if absent); a problem if it is not a table."""
        value = data.get(key, {})
        if not isinstance(value, Mapping):
            self.add(path, f"must be a table, got {show(value)}")
            return {}
        return value

    def no_extra(self, data: Mapping[str, Any], allowed: tuple[str, ...] | set[str],
                 prefix: str) -> None:
        """A problem for every key of `data` not in `allowed`."""
        for key in sorted(str(k) for k in data if k not in allowed):
            self.add(prefix + key, f"unknown key (allowed: {', '.join(sorted(allowed))})")
