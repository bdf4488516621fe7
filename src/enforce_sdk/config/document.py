"""The SDK's config document: surfaces, their selectors and resolvers, cache/store/bloom settings.

One versioned document, validated in full when it is read (`from_dict`,
`load`, `loads`): every problem is collected and reported in one ConfigError,
each line naming the path of the bad value (`surfaces.home_feed.half_life:
must be a positive duration, got '-3d'`). Unknown keys are errors, so a typo
never silently falls back to a default. Selectors are compiled and resolvers
built here, once, so an `EnforcementConfig` is one immutable reference the
client swaps atomically. docs/config.md describes every field.

The dataclass constructors trust their arguments; untrusted documents go
through `from_dict` / `load`.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from .._errors import ConfigError, SelectorSyntaxError, UnknownSurfaceError
from ..model.label import Enforcement
from ..model.problems import ProblemCollector, show
from ..policy.escalation import Escalation, EscalationRule
from ..policy.links import RELATION_ALIASES, RELATION_KINDS, relation_kind_names
from ..policy.reasons import NO_ROUTING, ConfidenceRouting, ReasonRegistry
from ..policy.resolver import Resolver
from ..policy.selector import Selector, format_duration, parse_duration
from ..policy.surface import SurfaceConfig
from .policy_document import parse_escalate, parse_min_confidence, parse_registry, parse_sources

_SURFACE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_SYSTEM_RE = re.compile(r"[A-Za-z0-9_.\-@]{1,64}")
_DAY: Final = 86400.0
_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})




@dataclass(frozen=True, slots=True)
class CacheSettings:
    """The SDK label cache (see LabelCache): durations in seconds."""

    ttl: float = 60.0
    negative_ttl: float = 30.0
    max_entries: int = 100_000
    serve_stale_for: float = 600.0


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """How the SDK talks to the Label Store: durations in seconds."""

    timeout: float = 0.25
    max_batch_keys: int = 500
    retries: int = 1
    retry_backoff: float = 0.02


@dataclass(frozen=True, slots=True)
class BloomSettings:
    """The bloom precheck and its change feed (used by the bloom issue): durations in seconds."""

    enabled: bool = False
    max_staleness: float = 300.0
    refresh_interval: float = 300.0  # snapshot reload; the change feed keeps it fresh between


@dataclass(frozen=True, slots=True, eq=False)
class EnforcementConfig:
    """One validated, immutable version of the SDK config, with compiled resolvers."""

    version: int
    surfaces: Mapping[str, SurfaceConfig]
    cache: CacheSettings = CacheSettings()
    store: StoreSettings = StoreSettings()
    bloom: BloomSettings = BloomSettings()
    reasons: ReasonRegistry | None = None  # the reason registry; None: any reason is accepted
    confidence: ConfidenceRouting = NO_ROUTING  # per source system hold_below / drop_below
    escalate: tuple[EscalationRule, ...] = ()  # the global default escalation rules
    resolvers: Mapping[str, Resolver] = field(init=False, repr=False)
    """surface name -> Resolver; a plain read-only dict lookup for the hot path."""

    def __post_init__(self) -> None:
        surfaces = MappingProxyType(dict(self.surfaces))
        object.__setattr__(self, "surfaces", surfaces)
        object.__setattr__(
            self, "resolvers", MappingProxyType({n: Resolver(s) for n, s in surfaces.items()})
        )

    # ------------------------------------------------------------------ access

    def surface(self, name: str) -> SurfaceConfig:
        """The surface's config; UnknownSurfaceError if this version does not define it."""
        try:
            return self.surfaces[name]
        except KeyError:
            raise self._unknown(name) from None

    def resolver(self, name: str) -> Resolver:
        """The surface's resolver; UnknownSurfaceError if this version does not define it."""
        try:
            return self.resolvers[name]
        except KeyError:
            raise self._unknown(name) from None

    def _unknown(self, name: object) -> UnknownSurfaceError:
        known = ", ".join(sorted(self.surfaces))
        return UnknownSurfaceError(
            f"unknown surface {name!r} in config version {self.version} (defined: {known})",
            field="surface",
        )

    # ------------------------------------------------------------------ reading

    @classmethod
    def from_dict(cls, data: object) -> EnforcementConfig:
        """Validate a parsed document; raise one ConfigError listing every problem."""
        return _parse_document(data)

    @classmethod
    def loads(cls, text: str | bytes, fmt: Literal["toml", "json"] = "json") -> EnforcementConfig:
        """Parse and validate a document held in memory (e.g. a ZooKeeper znode's data)."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigError(f"is not UTF-8: {exc}", field="config") from exc
        if fmt == "toml":
            try:
                data: object = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"is not valid TOML: {exc}", field="config") from exc
        elif fmt == "json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"is not valid JSON: {exc}", field="config") from exc
        else:
            raise ConfigError(f"format must be 'toml' or 'json', got {fmt!r}", field="config")
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | PathLike[str]) -> EnforcementConfig:
        """Read and validate a `.toml` or `.json` file (chosen by suffix)."""
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix not in (".toml", ".json"):
            raise ConfigError(f"{str(p)!r}: config files end in .toml or .json", field="config")
        try:
            raw = p.read_bytes()
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {str(p)!r} does not exist", field="config") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(p)!r}: {exc}", field="config") from exc
        try:
            return cls.loads(raw, "toml" if suffix == ".toml" else "json")
        except ConfigError as exc:
            raise ConfigError(f"{str(p)!r}: {exc}") from exc

    # ------------------------------------------------------------------ writing

    def to_dict(self) -> dict[str, Any]:
        """The canonical document, every default filled in; `from_dict` reads it back equal."""
        c, s, b = self.cache, self.store, self.bloom
        out: dict[str, Any] = {
            "version": self.version,
            "cache": {
                "ttl": format_duration(c.ttl),
                "negative_ttl": format_duration(c.negative_ttl),
                "max_entries": c.max_entries,
                "serve_stale_for": format_duration(c.serve_stale_for),
            },
            "store": {
                "timeout": format_duration(s.timeout),
                "max_batch_keys": s.max_batch_keys,
                "retries": s.retries,
                "retry_backoff": format_duration(s.retry_backoff),
            },
            "bloom": {
                "enabled": b.enabled,
                "max_staleness": format_duration(b.max_staleness),
                "refresh_interval": format_duration(b.refresh_interval),
            },
            "surfaces": {name: sc.to_dict() for name, sc in self.surfaces.items()},
        }
        # The policy sections appear only when set, so documents without them read as before.
        if self.reasons is not None:
            out["tiers"] = list(self.reasons.tiers)
            out["reasons"] = self.reasons.to_dict()
        if self.confidence.sources:
            out["sources"] = self.confidence.to_dict()
        if self.escalate:
            out["escalate"] = [r.to_dict() for r in self.escalate]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EnforcementConfig):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_json())


# ---------------------------------------------------------------------- validation


class _Problems(ProblemCollector):
    """The SDK config's checks on top of the shared collector."""

    def __init__(self) -> None:
        super().__init__("the SDK config")

    def duration(self, data: Mapping[str, Any], key: str, path: str, default: float,
                 *, zero_ok: bool) -> float:
        if key not in data:
            return default
        raw = data[key]
        what = "a non-negative duration" if zero_ok else "a positive duration"
        seconds: float | None = None
        if isinstance(raw, str):
            try:
                seconds = parse_duration(raw)
            except ValueError:
                seconds = None
        elif isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
            seconds = float(raw)
        if seconds is None or seconds < 0 or (seconds == 0 and not zero_ok):
            self.add(path, f"must be {what} (e.g. \"500ms\", \"30s\", \"7d\" or seconds), "
                           f"got {_show(raw)}")
            return default
        return seconds

    def integer(self, data: Mapping[str, Any], key: str, path: str, default: int,
                *, lo: int, hi: int) -> int:
        if key not in data:
            return default
        raw = data[key]
        if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
            self.add(path, f"must be an integer in {lo}..{hi}, got {_show(raw)}")
            return default
        return raw

    def boolean(self, data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        if key not in data:
            return default
        raw = data[key]
        if not isinstance(raw, bool):
            self.add(path, f"must be true or false, got {_show(raw)}")
            return default
        return raw

    def weight(self, raw: object, path: str, default: float) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) \
                or raw < 0:
            self.add(path, f"must be a finite number >= 0, got {_show(raw)}")
            return default
        return float(raw)

    def choice(self, data: Mapping[str, Any], key: str, path: str, default: str,
               allowed: tuple[str, ...]) -> str:
        if key not in data:
            return default
        raw = data[key]
        if not isinstance(raw, str) or raw.strip().lower() not in allowed:
            self.add(path, f"must be one of {', '.join(allowed)}, got {_show(raw)}")
            return default
        return raw.strip().lower()

    def enforcement(self, raw: object, path: str, default: Enforcement) -> Enforcement:
        allowed = ("limit", "block", "remove")
        if not isinstance(raw, str) or raw.strip().lower() not in allowed:
            known = " (allow never hides nor propagates)" if raw == "allow" else ""
            self.add(path, f"must be an enforcement among {', '.join(allowed)}{known}, "
                           f"got {_show(raw)}")
            return default
        return Enforcement[raw.strip().upper()]


_show = show


_TOP_KEYS: Final = ("version", "surfaces", "cache", "store", "bloom", "tiers", "reasons",
                    "sources", "escalate")
_SURFACE_KEYS: Final = ("selector", "weights", "default_weight", "half_life",
                        "human_over_automated", "hide_from", "fail_mode", "related",
                        "on_bloom_stale", "on_bad_link", "min_confidence", "escalate")


def _parse_document(data: object) -> EnforcementConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(f"must be a table/object, got {_show(data)}", field="config")
    v = _Problems()
    v.no_extra(data, _TOP_KEYS, "")
    version = data.get("version")
    if version is None:
        v.add("version", "is required (an integer >= 1, raised on every change)")
        version = 0
    elif isinstance(version, bool) or not isinstance(version, int) or version < 1:
        v.add("version", f"must be an integer >= 1, got {_show(version)}")
        version = 0
    cache = _cache(v, v.table(data, "cache", "cache"))
    store = _store(v, v.table(data, "store", "store"))
    bloom = _bloom(v, v.table(data, "bloom", "bloom"))
    registry = parse_registry(v, data)
    routing = parse_sources(v, data)
    default_rules = tuple(parse_escalate(v, data, "escalate", registry) or ())
    surfaces: dict[str, SurfaceConfig] = {}
    raw_surfaces = data.get("surfaces")
    if raw_surfaces is None:
        v.add("surfaces", "is required: at least one surface")
    elif not isinstance(raw_surfaces, Mapping):
        v.add("surfaces", f"must be a table of surfaces, got {_show(raw_surfaces)}")
    elif not raw_surfaces:
        v.add("surfaces", "must define at least one surface")
    else:
        for name, body in raw_surfaces.items():
            path = f"surfaces.{name}"
            if not isinstance(name, str) or not _SURFACE_RE.fullmatch(name):
                v.add(path, f"surface names match {_SURFACE_RE.pattern}, got {_show(name)}")
                continue
            if not isinstance(body, Mapping):
                v.add(path, f"must be a table, got {_show(body)}")
                continue
            surface = _surface(v, name, body, path + ".", registry, default_rules)
            if surface is not None:
                surfaces[name] = surface
    v.raise_if_any()
    return EnforcementConfig(version=version, surfaces=surfaces, cache=cache, store=store,
                             bloom=bloom, reasons=registry, confidence=routing,
                             escalate=tuple(default_rules))


def _surface(v: _Problems, name: str, t: Mapping[str, Any], p: str,
             registry: ReasonRegistry | None,
             default_rules: tuple[EscalationRule, ...]) -> SurfaceConfig | None:
    d = SurfaceConfig(name)
    before = len(v.items)
    v.no_extra(t, _SURFACE_KEYS, p)
    selector = d.selector
    if "selector" in t:
        raw = t["selector"]
        if not isinstance(raw, str):
            v.add(p + "selector", f"must be a string, got {_show(raw)}")
        else:
            try:
                selector = Selector.parse(raw)
            except SelectorSyntaxError as exc:
                v.add(p + "selector", exc.problem)
    weights: dict[str, float] = {}
    raw_weights = v.table(t, "weights", p + "weights")
    for system, w in raw_weights.items():
        wp = f"{p}weights.{system}"
        if not isinstance(system, str) or not _SYSTEM_RE.fullmatch(system):
            v.add(wp, f"source systems match {_SYSTEM_RE.pattern}")
            continue
        weights[system] = v.weight(w, wp, 0.0)
    default_weight = d.default_weight
    if "default_weight" in t:
        default_weight = v.weight(t["default_weight"], p + "default_weight", d.default_weight)
    half_life = v.duration(t, "half_life", p + "half_life", d.half_life, zero_ok=False)
    hoa = v.boolean(t, "human_over_automated", p + "human_over_automated",
                    d.human_over_automated)
    hide_from = d.hide_from
    if "hide_from" in t:
        hide_from = v.enforcement(t["hide_from"], p + "hide_from", d.hide_from)
    fail_mode = v.choice(t, "fail_mode", p + "fail_mode", d.fail_mode, ("open", "closed"))
    bloom_default = "trust" if fail_mode == "open" else "verify"
    on_bloom_stale = v.choice(t, "on_bloom_stale", p + "on_bloom_stale", bloom_default,
                              ("trust", "verify"))
    on_bad_link = v.choice(t, "on_bad_link", p + "on_bad_link", d.on_bad_link,
                           ("ignore", "fail_closed"))
    related: dict[str, Enforcement] = {}
    for kind, minimum in v.table(t, "related", p + "related").items():
        rp = f"{p}related.{kind}"
        link = RELATION_ALIASES.get(kind, kind)
        if link not in RELATION_KINDS:
            v.add(rp, f"unknown link kind {kind!r} (known: {', '.join(relation_kind_names())})")
            continue
        if link in related:
            v.add(rp, f"{kind!r} is another name for {link!r}, which is already set")
            continue
        related[link] = v.enforcement(minimum, rp, Enforcement.REMOVE)
    min_confidence = parse_min_confidence(v, t, p + "min_confidence")
    own_rules = parse_escalate(v, t, p + "escalate", registry)
    rules = default_rules if own_rules is None else tuple(own_rules)
    escalation = None
    if registry is not None and (own_rules is not None or rules):
        escalation = Escalation(rules, registry.tiers, dict(registry.tier_of))
    if len(v.items) > before:
        return None
    return SurfaceConfig(
        name=name,
        selector=selector,
        weights=MappingProxyType(weights),
        default_weight=default_weight,
        half_life=half_life,
        human_over_automated=hoa,
        hide_from=hide_from,
        fail_mode="open" if fail_mode == "open" else "closed",
        related=MappingProxyType(related),
        on_bloom_stale="trust" if on_bloom_stale == "trust" else "verify",
        on_bad_link="ignore" if on_bad_link == "ignore" else "fail_closed",
        min_confidence=min_confidence,
        escalation=escalation,
        inherits_escalation=own_rules is None and bool(default_rules),
    )


def _cache(v: _Problems, t: Mapping[str, Any]) -> CacheSettings:
    d = CacheSettings()
    v.no_extra(t, tuple(CacheSettings.__dataclass_fields__), "cache.")
    return CacheSettings(
        ttl=v.duration(t, "ttl", "cache.ttl", d.ttl, zero_ok=False),
        negative_ttl=v.duration(t, "negative_ttl", "cache.negative_ttl", d.negative_ttl,
                                zero_ok=True),
        max_entries=v.integer(t, "max_entries", "cache.max_entries", d.max_entries,
                              lo=1, hi=1 << 31),
        serve_stale_for=v.duration(t, "serve_stale_for", "cache.serve_stale_for",
                                   d.serve_stale_for, zero_ok=True),
    )


def _store(v: _Problems, t: Mapping[str, Any]) -> StoreSettings:
    d = StoreSettings()
    v.no_extra(t, tuple(StoreSettings.__dataclass_fields__), "store.")
    return StoreSettings(
        timeout=v.duration(t, "timeout", "store.timeout", d.timeout, zero_ok=False),
        max_batch_keys=v.integer(t, "max_batch_keys", "store.max_batch_keys", d.max_batch_keys,
                                 lo=1, hi=100_000),
        retries=v.integer(t, "retries", "store.retries", d.retries, lo=0, hi=10),
        retry_backoff=v.duration(t, "retry_backoff", "store.retry_backoff", d.retry_backoff,
                                 zero_ok=True),
    )


def _bloom(v: _Problems, t: Mapping[str, Any]) -> BloomSettings:
    d = BloomSettings()
    v.no_extra(t, tuple(BloomSettings.__dataclass_fields__), "bloom.")
    return BloomSettings(
        enabled=v.boolean(t, "enabled", "bloom.enabled", d.enabled),
        max_staleness=v.duration(t, "max_staleness", "bloom.max_staleness", d.max_staleness,
                                 zero_ok=False),
        refresh_interval=v.duration(t, "refresh_interval", "bloom.refresh_interval",
                                    d.refresh_interval, zero_ok=False),
    )
