"""Label Store service config: a TOML file validated in full at start.

Every problem in the document is collected and reported at once in a single
ConfigError, each line naming the key path (`limits.max_body_bytes: ...`), so
an operator fixes a bad file in one round. Missing sections take defaults;
unknown keys are errors (a typo must not silently fall back to a default).

Tokens are stored as SHA-256 digests (`token_sha256`); a plain `token` is
accepted for development and hashed on load, so the plain text is not kept.
A writer token lists the sources it may write and retract (`sources`, see
SourceGrant); an admin token may act on any source; a reader writes nothing.
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import ConfigError, EntityKeyError
from ..model.keys import canonical_key
from ..model.label import MAX_METADATA_BYTES
from ..model.problems import ProblemCollector, show
from .console.settings import ConsoleSection, parse_console

DEFAULT_STORAGE_URL = "sqlite:var/labels.db"
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_TOKEN_NAME_RE = re.compile(r"[A-Za-z0-9_.\-@]{1,64}")


class Role(enum.IntEnum):
    """What a token may do, ordered: an admin may do what a writer may, and so on.

    An appellant (a user-facing product filing users' appeals) may only open appeals
    and read their outcome (POST /v1/appeals, GET /v1/appeals/...): it reads no labels.
    """

    APPELLANT = 0
    READER = 1
    WRITER = 2
    ADMIN = 3

    @property
    def wire(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class StorageSection:
    url: str = DEFAULT_STORAGE_URL
    # Expired labels are not served; they are removed (audited, fed as `expire`) once
    # this long past their expires_at, by a purge every purge_interval_seconds.
    expired_grace_seconds: float = 24 * 3600.0
    purge_interval_seconds: float = 600.0


@dataclass(frozen=True, slots=True)
class LimitsSection:
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch_keys: int = 1000
    max_batch_labels: int = 1000
    max_metadata_bytes: int = 2048
    max_feed_page: int = 1000
    max_wait_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class HttpSection:
    """The HTTP/1.1 edge, enforced by store/http_guard before a request reaches the app."""

    max_header_bytes: int = 16 * 1024  # request line and header fields together (431)
    max_header_count: int = 100  # header fields in one request (431)
    header_timeout_seconds: float = 10.0  # from the first byte (or connect) to the end of the head (408)
    body_timeout_seconds: float = 30.0  # from the end of the head to the end of the body (408)
    # An idle connection between requests is closed after this: well beyond the SDK store
    # client's own idle limit (5 s), so it is the client that closes idle connections; a
    # server closing one just as a client reuses it loses that request.
    keep_alive_seconds: int = 30


@dataclass(frozen=True, slots=True)
class IdempotencySection:
    """Idempotency keys of writes: how long a write's outcome is kept for its retries."""

    retention_seconds: float = 24 * 3600


@dataclass(frozen=True, slots=True)
class FeedSection:
    retention_seconds: float = 7 * 24 * 3600
    prune_interval_seconds: float = 60.0  # how often change records past retention are dropped
    poll_interval_seconds: float = 0.05  # long-poll re-check of storage for other processes' writes


@dataclass(frozen=True, slots=True)
class BloomSection:
    """The bloom snapshot the store serves (GET /v1/bloom)."""

    fp_rate: float = 0.01  # target false-positive rate at the sized key count
    # How often the snapshot catches up with the change feed (rebuilt from scratch only
    # when due, see store/bloom_snapshot); an unchanged store keeps its snapshot and ETag.
    rebuild_interval_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class CheckerSection:
    trusted_entities: frozenset[str] = frozenset()  # canonical keys


@dataclass(frozen=True, slots=True)
class SourceGrant:
    """A source a writer may act as: `system/type`, either part `*` (any).

    `review_tool/human`, `spam_domain_model/automated`, `bot_detector/*`, and `*`
    (= `*/*`, any source: today's behaviour, warned about at start-up). Only a
    grant whose type is `human` or `*` lets a token write human labels.
    """

    system: str  # a source system, or "*"
    type: str  # "human", "automated" or "*"

    def allows(self, system: str, source_type: str) -> bool:
        return self.system in ("*", system) and self.type in ("*", source_type)

    def __str__(self) -> str:
        return "*" if (self.system, self.type) == ("*", "*") else f"{self.system}/{self.type}"


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One API token: `name` is the audit actor of the writes made with it."""

    name: str
    role: Role
    token_sha256: str = field(repr=False)
    sources: tuple[SourceGrant, ...] = ()  # what a writer may write as (admins: anything)

    def may_write_as(self, system: str, source_type: str) -> bool:
        if self.role >= Role.ADMIN:
            return True
        return self.role >= Role.WRITER and any(g.allows(system, source_type)
                                                for g in self.sources)

    @property
    def writes_as_anyone(self) -> bool:
        """A writer allowed every source (`sources = ["*"]`): no binding at all."""
        return self.role == Role.WRITER and any(
            (g.system, g.type) == ("*", "*") for g in self.sources)


@dataclass(frozen=True, slots=True)
class StoreConfig:
    storage: StorageSection = StorageSection()
    limits: LimitsSection = LimitsSection()
    feed: FeedSection = FeedSection()
    checker: CheckerSection = CheckerSection()
    tokens: tuple[TokenEntry, ...] = ()
    bloom: BloomSection = BloomSection()
    http: HttpSection = HttpSection()
    idempotency: IdempotencySection = IdempotencySection()
    console: ConsoleSection = field(default_factory=ConsoleSection)  # the reviewer console

    @classmethod
    def load(cls, path: str | Path | None) -> StoreConfig:
        """Read and validate a TOML file; `None` or no file at all gives the defaults."""
        if path is None:
            return cls()
        p = Path(path)
        try:
            raw = p.read_bytes()
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {str(p)!r} does not exist", field="config") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(p)!r}: {exc}", field="config") from exc
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{str(p)!r} is not valid TOML: {exc}", field="config") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoreConfig:
        """Validate a parsed document; raise one ConfigError listing every problem."""
        v = _Validator()
        if not isinstance(data, Mapping):
            raise ConfigError(f"must be a table, got {type(data).__name__}", field="config")
        v.no_extra(data, {"storage", "limits", "feed", "checker", "tokens", "bloom", "http",
                          "idempotency", "console"}, "")
        storage = _storage(v, v.table(data, "storage", "storage"))
        limits = _limits(v, v.table(data, "limits", "limits"))
        feed = _feed(v, v.table(data, "feed", "feed"))
        checker = _checker(v, v.table(data, "checker", "checker"))
        tokens = _tokens(v, data.get("tokens", []))
        bloom = _bloom(v, v.table(data, "bloom", "bloom"))
        http = _http(v, v.table(data, "http", "http"))
        idempotency = _idempotency(v, v.table(data, "idempotency", "idempotency"))
        console = parse_console(v, v.table(data, "console", "console"))
        v.raise_if_any()
        return cls(storage=storage, limits=limits, feed=feed, checker=checker, tokens=tokens,
                   bloom=bloom, http=http, idempotency=idempotency, console=console)


def hash_token(token: str) -> str:
    """The hex SHA-256 digest a config stores for a plain token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class _Validator(ProblemCollector):
    """The store config's checks on top of the shared collector."""

    def __init__(self) -> None:
        super().__init__("the store config")

    def integer(self, data: Mapping[str, Any], key: str, path: str, default: int, *, lo: int,
                hi: int | None = None) -> int:
        if key not in data:
            return default
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, f"must be an integer, got {_type(value)}")
            return default
        if value < lo or (hi is not None and value > hi):
            bound = f">= {lo}" if hi is None else f"in {lo}..{hi}"
            self.add(path, f"must be {bound}, got {value}")
            return default
        return value

    def number(self, data: Mapping[str, Any], key: str, path: str, default: float, *,
               positive: bool = True) -> float:
        if key not in data:
            return default
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.add(path, f"must be a finite number, got {_type(value)}")
            return default
        if value < 0 or (positive and value == 0):
            self.add(path, f"must be {'> 0' if positive else '>= 0'}, got {value}")
            return default
        return float(value)

    def string(self, data: Mapping[str, Any], key: str, path: str) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.add(path, f"must be a non-empty string, got {_type(value)}")
            return None
        return value


_type = show


def _storage(v: _Validator, t: Mapping[str, Any]) -> StorageSection:
    d = StorageSection()
    v.no_extra(t, {f for f in StorageSection.__dataclass_fields__}, "storage.")
    url = v.string(t, "url", "storage.url")
    if url is not None and "://" not in url and not url.startswith("sqlite:"):
        v.add("storage.url", f"must be a URL such as sqlite:///abs/path.db, got {url!r}")
        url = None
    return StorageSection(
        url=url or DEFAULT_STORAGE_URL,
        expired_grace_seconds=v.number(t, "expired_grace_seconds",
                                       "storage.expired_grace_seconds", d.expired_grace_seconds,
                                       positive=False),
        purge_interval_seconds=v.number(t, "purge_interval_seconds",
                                        "storage.purge_interval_seconds",
                                        d.purge_interval_seconds),
    )


def _limits(v: _Validator, t: Mapping[str, Any]) -> LimitsSection:
    d = LimitsSection()
    v.no_extra(t, {f for f in LimitsSection.__dataclass_fields__}, "limits.")
    p = "limits."
    return LimitsSection(
        max_body_bytes=v.integer(t, "max_body_bytes", p + "max_body_bytes", d.max_body_bytes, lo=1024),
        max_batch_keys=v.integer(t, "max_batch_keys", p + "max_batch_keys", d.max_batch_keys, lo=1),
        max_batch_labels=v.integer(
            t, "max_batch_labels", p + "max_batch_labels", d.max_batch_labels, lo=1
        ),
        max_metadata_bytes=v.integer(
            t, "max_metadata_bytes", p + "max_metadata_bytes", d.max_metadata_bytes,
            lo=0, hi=MAX_METADATA_BYTES,
        ),
        max_feed_page=v.integer(t, "max_feed_page", p + "max_feed_page", d.max_feed_page, lo=1),
        max_wait_seconds=v.number(
            t, "max_wait_seconds", p + "max_wait_seconds", d.max_wait_seconds, positive=False
        ),
    )


def _feed(v: _Validator, t: Mapping[str, Any]) -> FeedSection:
    d = FeedSection()
    v.no_extra(t, {f for f in FeedSection.__dataclass_fields__}, "feed.")
    return FeedSection(
        retention_seconds=v.number(t, "retention_seconds", "feed.retention_seconds",
                                   d.retention_seconds),
        prune_interval_seconds=v.number(t, "prune_interval_seconds", "feed.prune_interval_seconds",
                                        d.prune_interval_seconds),
        poll_interval_seconds=v.number(t, "poll_interval_seconds", "feed.poll_interval_seconds",
                                       d.poll_interval_seconds),
    )


def _bloom(v: _Validator, t: Mapping[str, Any]) -> BloomSection:
    d = BloomSection()
    v.no_extra(t, {f for f in BloomSection.__dataclass_fields__}, "bloom.")
    fp_rate = v.number(t, "fp_rate", "bloom.fp_rate", d.fp_rate)
    if not fp_rate < 1.0:
        v.add("bloom.fp_rate", f"must be in (0, 1), got {fp_rate}")
        fp_rate = d.fp_rate
    return BloomSection(
        fp_rate=fp_rate,
        rebuild_interval_seconds=v.number(t, "rebuild_interval_seconds",
                                          "bloom.rebuild_interval_seconds",
                                          d.rebuild_interval_seconds),
    )


def _http(v: _Validator, t: Mapping[str, Any]) -> HttpSection:
    d = HttpSection()
    v.no_extra(t, {f for f in HttpSection.__dataclass_fields__}, "http.")
    return HttpSection(
        max_header_bytes=v.integer(t, "max_header_bytes", "http.max_header_bytes",
                                   d.max_header_bytes, lo=1024, hi=1024 * 1024),
        max_header_count=v.integer(t, "max_header_count", "http.max_header_count",
                                   d.max_header_count, lo=8, hi=10_000),
        header_timeout_seconds=v.number(t, "header_timeout_seconds",
                                        "http.header_timeout_seconds", d.header_timeout_seconds),
        body_timeout_seconds=v.number(t, "body_timeout_seconds", "http.body_timeout_seconds",
                                      d.body_timeout_seconds),
        keep_alive_seconds=v.integer(t, "keep_alive_seconds", "http.keep_alive_seconds",
                                     d.keep_alive_seconds, lo=1, hi=3600),
    )


def _idempotency(v: _Validator, t: Mapping[str, Any]) -> IdempotencySection:
    d = IdempotencySection()
    v.no_extra(t, {f for f in IdempotencySection.__dataclass_fields__}, "idempotency.")
    return IdempotencySection(
        retention_seconds=v.number(t, "retention_seconds", "idempotency.retention_seconds",
                                   d.retention_seconds),
    )


def _checker(v: _Validator, t: Mapping[str, Any]) -> CheckerSection:
    v.no_extra(t, {"trusted_entities"}, "checker.")
    raw = t.get("trusted_entities", [])
    if not isinstance(raw, list):
        v.add("checker.trusted_entities", f"must be a list of entity keys, got {_type(raw)}")
        return CheckerSection()
    keys: set[str] = set()
    for i, item in enumerate(raw):
        path = f"checker.trusted_entities[{i}]"
        if not isinstance(item, str):
            v.add(path, f"must be an entity key string, got {_type(item)}")
            continue
        try:
            keys.add(canonical_key(item))
        except EntityKeyError as exc:
            v.add(path, exc.problem)
    return CheckerSection(trusted_entities=frozenset(keys))


def _tokens(v: _Validator, raw: object) -> tuple[TokenEntry, ...]:
    if not isinstance(raw, list):
        v.add("tokens", f"must be an array of tables ([[tokens]]), got {_type(raw)}")
        return ()
    out: list[TokenEntry] = []
    names: set[str] = set()
    digests: set[str] = set()
    roles = ", ".join(r.wire for r in Role)
    for i, item in enumerate(raw):
        p = f"tokens[{i}]."
        if not isinstance(item, Mapping):
            v.add(f"tokens[{i}]", f"must be a table, got {_type(item)}")
            continue
        v.no_extra(item, {"name", "role", "token", "token_sha256", "sources"}, p)
        name = v.string(item, "name", p + "name")
        if name is None and "name" not in item:
            v.add(p + "name", "is required")
        elif name is not None and not _TOKEN_NAME_RE.fullmatch(name):
            v.add(p + "name", f"must match [A-Za-z0-9_.-@]{{1,64}}, got {name!r}")
            name = None
        elif name is not None and name in names:
            v.add(p + "name", f"duplicate token name {name!r}")
            name = None
        role_raw = item.get("role")
        role = None
        if role_raw is None:
            v.add(p + "role", f"is required (one of {roles})")
        elif not isinstance(role_raw, str) or role_raw.strip().upper() not in Role.__members__:
            v.add(p + "role", f"must be one of {roles}, got {_type(role_raw)}")
        else:
            role = Role[role_raw.strip().upper()]
        digest = _token_digest(v, item, p)
        if digest is not None and digest in digests:
            v.add(p + "token", "the same token is configured twice")
            digest = None
        sources = _sources(v, item, p, role, name)
        if name is None or role is None or digest is None or sources is None:
            continue
        names.add(name)
        digests.add(digest)
        out.append(TokenEntry(name=name, role=role, token_sha256=digest, sources=sources))
    return tuple(out)


_GRANT_RE = re.compile(r"(\*|[A-Za-z0-9_.\-@]{1,64})/(human|automated|\*)")


def _sources(v: _Validator, item: Mapping[str, Any], p: str, role: Role | None,
             name: str | None) -> tuple[SourceGrant, ...] | None:
    """A token's source grants; None after a problem was recorded."""
    raw = item.get("sources")
    if raw is None:
        if role == Role.WRITER:
            v.add(p + "sources", f"writer token {name!r} must list the sources it may write, "
                  'e.g. sources = ["review_tool/human", "spam_model/automated"]; '
                  'sources = ["*"] keeps the old behaviour (any source, human included)')
            return None
        return ()
    if role is not None and role <= Role.READER:
        v.add(p + "sources", f"a {role.wire} token writes nothing: remove sources")
        return None
    if not isinstance(raw, list) or not raw:
        v.add(p + "sources", f"must be a non-empty array of strings, got {_type(raw)}")
        return None
    grants: list[SourceGrant] = []
    for j, entry in enumerate(raw):
        if entry == "*":
            grants.append(SourceGrant("*", "*"))
            continue
        match = _GRANT_RE.fullmatch(entry) if isinstance(entry, str) else None
        if match is None:
            v.add(f"{p}sources[{j}]", 'must be "system/type" (type human, automated or *), '
                  f'"system/*", "*/type" or "*", got {entry!r}')
            return None
        grants.append(SourceGrant(match[1], match[2]))
    return tuple(grants)


def _token_digest(v: _Validator, item: Mapping[str, Any], p: str) -> str | None:
    has_plain, has_hash = "token" in item, "token_sha256" in item
    if has_plain == has_hash:
        v.add(p + "token_sha256", "exactly one of token_sha256 or token (development only) is required")
        return None
    if has_hash:
        digest = item["token_sha256"]
        if not isinstance(digest, str) or not _HEX64_RE.fullmatch(digest.strip().lower()):
            v.add(p + "token_sha256", "must be 64 hex characters (sha256 of the token)")
            return None
        return digest.strip().lower()
    plain = item["token"]
    if not isinstance(plain, str) or len(plain) < 8 or plain != plain.strip():
        v.add(p + "token", "must be a string of at least 8 characters without surrounding spaces")
        return None
    return hash_token(plain)
