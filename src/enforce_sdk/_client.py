"""EnforcementClient: check, check_many and filter, answered in-process.

Read path per item: canonical key -> label cache -> (misses) one batched store
fetch -> the surface's selector and resolver -> Decision. The serving contract:
misuse by the caller (unknown surface, malformed key) raises at once; anything
else that goes wrong (store down, timeout, garbage, a bug) is answered by the
surface's fail mode, flagged `degraded`, logged and counted: never raised.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from ._cache import Entry, LabelCache, Labels
from ._config import EnforcementConfig, SurfaceConfig
from ._config_source import ConfigMeta, ConfigSource, coerce_config_source
from ._decision import Decision
from ._errors import EnforceError, EntityKeyError, InvalidInputError, UnknownSurfaceError
from ._fetch import LabelReader, SingleFlightFetcher
from ._follower import FeedFollower
from ._keys import canonical_key, domain_key_from_url
from ._model import Label
from ._resolver import Resolver
from ._stats import Stats
from ._store_client import LabelStoreClient

log = logging.getLogger("enforce_sdk")

T = TypeVar("T")
MEMO_SECONDS = 1.0  # how long a labeled entity's decision is reused (see _resolve_cached)
Related = Mapping[str, str]


class _Applied:
    """One applied config and what is derived from it; swapped as a single reference."""

    __slots__ = ("config", "meta", "surfaces")

    def __init__(self, config: EnforcementConfig, meta: ConfigMeta) -> None:
        self.config = config
        self.meta = meta
        # one dict lookup on the hot path yields the surface and its compiled resolver
        self.surfaces: dict[str, _Surface] = {
            name: _Surface(surf, config.resolvers[name]) for name, surf in config.surfaces.items()
        }


class _Surface:
    __slots__ = ("fail_mode", "hide_from", "name", "related", "resolver")

    def __init__(self, surf: SurfaceConfig, resolver: Resolver) -> None:
        self.name = surf.name
        self.related = surf.related
        self.fail_mode = surf.fail_mode
        self.hide_from = surf.hide_from
        self.resolver = resolver


class EnforcementClient:
    """Decides, per surface, whether to show entities, from labels in the Label Store.

    Thread-safe. Use as a context manager, or call close().
    """

    def __init__(
        self,
        store_url: str,
        config: str | os.PathLike[str] | Mapping[str, Any] | EnforcementConfig | ConfigSource,
        *,
        token: str | None = None,
        store: LabelReader | None = None,
        timer: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        follow_changes: bool | None = None,
        feed_wait: float = 10.0,
    ) -> None:
        self.stats = Stats()
        self._timer = timer
        self._wall = wall_clock
        self._config_lock = threading.Lock()
        self._source = coerce_config_source(config)
        initial, meta = self._source.start(self._on_config)
        self._applied = _Applied(initial, meta)
        settings = initial.store
        self._store: LabelReader = store or LabelStoreClient(
            store_url, token=token, timeout=settings.timeout, max_batch_keys=settings.max_batch_keys
        )
        self._owns_store = store is None
        cache = initial.cache
        self.cache = LabelCache(
            max_entries=cache.max_entries,
            ttl=cache.ttl,
            negative_ttl=cache.negative_ttl,
            serve_stale_for=cache.serve_stale_for,
            timer=timer,
        )
        self._fetcher = SingleFlightFetcher(
            self._store.get_many,
            self.cache,
            self.stats,
            max_batch_keys=settings.max_batch_keys,
            wait_timeout=settings.timeout * (settings.retries + 1) + 1.0,
            retries=settings.retries,
            retry_backoff=settings.retry_backoff,
        )
        # Follow the change feed (on by default with a store URL): evicts changed keys at once,
        # so a label write is visible in decisions within the feed's latency, not the TTL.
        if follow_changes is None:
            follow_changes = store is None
        self.follower: FeedFollower | None = None
        if follow_changes:
            self.follower = FeedFollower(
                lambda: LabelStoreClient(store_url, token=token, timeout=settings.timeout + 5.0),
                self.cache,
                self.stats,
                wait=feed_wait,
                timer=timer,
            )
            self.follower.start()
            self.stats.add_gauge("feed_lag_seconds", self.follower.lag)
            self.stats.add_gauge(
                "feed_position", lambda: self.follower.position if self.follower else None
            )  # type: ignore[arg-type,return-value]
        self.stats.add_gauge("cache_entries", lambda: len(self.cache))
        self.stats.add_gauge("config_version", lambda: self._applied.meta.version)
        self.stats.add_gauge(
            "config_age_seconds", lambda: self._wall() - self._applied.meta.applied_at
        )
        self._closed = False

    # -- config -------------------------------------------------------------

    @property
    def config(self) -> EnforcementConfig:
        return self._applied.config

    @property
    def config_meta(self) -> ConfigMeta:
        return self._applied.meta

    def _on_config(self, config: EnforcementConfig, meta: ConfigMeta) -> None:
        """Swap in a validated config; ignore one not newer than the applied one."""
        with self._config_lock:
            current = self._applied
            if config.version <= current.config.version:
                self.stats.config_rejected += 1
                log.warning(
                    "ignoring config version %s from %s: not newer than applied version %s",
                    config.version,
                    meta.origin,
                    current.config.version,
                )
                return
            self._applied = _Applied(config, meta)
            cache = config.cache
            self.cache.configure(
                max_entries=cache.max_entries,
                ttl=cache.ttl,
                negative_ttl=cache.negative_ttl,
                serve_stale_for=cache.serve_stale_for,
            )
            self._fetcher.max_batch_keys = config.store.max_batch_keys
            self.stats.config_updates += 1
            log.info("applied config version %s from %s", config.version, meta.origin)

    # -- public API ----------------------------------------------------------

    def check(self, entity: str, surface: str, related: Related | None = None) -> Decision:
        """The decision for one entity on one surface."""
        stats = self.stats
        t0 = stats.clock_ns()
        surf = self._applied.surfaces.get(surface)
        if surf is None:
            raise self._unknown_surface(surface)
        stats.checks += 1
        if related is None or not surf.related:
            entry = self.cache._entries.get(entity) if type(entity) is str else None
            if entry is not None and entry[1] > self._timer():
                # a raw key found in the cache is canonical: only canonical keys are stored
                stats.cache_hits += 1
                if not entry[0]:
                    stats.negative_hits += 1
                    decision = surf.resolver.allow(entity)
                else:
                    decision = self._resolve_cached(surf, entity, entry)
                stats.check_latency.record(stats.clock_ns() - t0)
                return decision
        decision = self._decide_many(surf, [entity], [related])[0]
        stats.check_latency.record(stats.clock_ns() - t0)
        return decision

    def check_many(
        self,
        entities: Sequence[str],
        surface: str,
        related: Sequence[Related | None] | None = None,
    ) -> list[Decision]:
        """Decisions for a page of entities, in order, with at most one store round trip."""
        stats = self.stats
        t0 = stats.clock_ns()
        surf = self._applied.surfaces.get(surface)
        if surf is None:
            raise self._unknown_surface(surface)
        if related is not None and len(related) != len(entities):
            raise InvalidInputError(
                f"related has {len(related)} entries for {len(entities)} entities", field="related"
            )
        stats.checks += len(entities)
        decisions = self._decide_many(surf, entities, related)
        stats.check_latency.record(stats.clock_ns() - t0)
        return decisions

    def filter(
        self,
        items: Iterable[T],
        surface: str,
        *,
        key: Callable[[T], str] = str,
        related: Callable[[T], Related | None] | None = None,
    ) -> list[T]:
        """The items visible on the surface, in order (one store round trip at most)."""
        page = list(items)
        keys = [key(item) for item in page]
        rel = None if related is None else [related(item) for item in page]
        decisions = self.check_many(keys, surface, rel)
        return [item for item, decision in zip(page, decisions, strict=True) if decision.visible]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.follower is not None:
            self.follower.stop()
        self._source.close()
        if self._owns_store:
            self._store.close()

    def __enter__(self) -> EnforcementClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def after_fork(self) -> None:
        """Re-create locks and background resources in a forked child process."""
        self._config_lock = threading.Lock()
        self._fetcher.after_fork()
        self._source.after_fork()
        if self.follower is not None:
            self.follower.after_fork()

    # -- internals -----------------------------------------------------------

    def _unknown_surface(self, surface: object) -> UnknownSurfaceError:
        known = ", ".join(sorted(self._applied.surfaces))
        return UnknownSurfaceError(
            f"unknown surface {surface!r} (configured: {known})", field="surface"
        )

    def _related_keys(self, surf: _Surface, related: Related | None) -> dict[str, str]:
        """Canonical keys of the related entities the surface takes into account."""
        if not related:
            return {}
        if not isinstance(related, Mapping):
            raise InvalidInputError(
                f"must be a mapping of kind to id, got {type(related).__name__}", field="related"
            )
        out: dict[str, str] = {}
        for kind, value in related.items():
            if kind not in surf.related or value is None:
                continue
            out[kind] = _related_key(kind, value)
        return out

    def _decide_many(
        self, surf: _Surface, entities: Sequence[str], related: Sequence[Related | None] | None
    ) -> list[Decision]:
        stats = self.stats
        out: list[Decision | None] = [None] * len(entities)
        # Fast path: an item with no links whose raw key has a fresh cache entry. Such
        # a key is canonical (only canonical keys are cached), so it skips canonical_key.
        entries = self.cache._entries
        now = self._timer()
        slow: list[int] = []
        links = bool(surf.related) and related is not None
        allow = surf.resolver.allow
        hits = negatives = 0
        for i, raw in enumerate(entities):
            entry = entries.get(raw) if type(raw) is str else None
            if entry is None or entry[1] <= now or (links and related[i]):  # type: ignore[index]
                slow.append(i)
            elif entry[0]:
                hits += 1
                out[i] = self._resolve_cached(surf, raw, entry)
            else:
                hits += 1
                negatives += 1
                out[i] = allow(raw)
        stats.cache_hits += hits
        stats.negative_hits += negatives
        if slow:
            # Misuse (bad keys, bad related) raises here, before any I/O.
            items: list[tuple[str, dict[str, str]]] = []
            for i in slow:
                try:
                    key = canonical_key(entities[i])
                    rel = self._related_keys(surf, None if related is None else related[i])
                except EntityKeyError as exc:
                    raise EntityKeyError(f"item {i}: {exc.problem}", field=exc.field) from exc
                items.append((key, rel))
            try:
                decided = self._decide_items(surf, items)
            except Exception as exc:  # the serving contract: never raise into the request path
                stats.internal_errors += 1
                log.exception("enforcement check failed; answering by fail mode %s", surf.fail_mode)
                decided = [self._fail(surf, key, f"error: {exc!r}") for key, _ in items]
            for i, decision in zip(slow, decided, strict=True):
                out[i] = decision
        return out  # type: ignore[return-value]

    def _decide_items(
        self, surf: _Surface, items: list[tuple[str, dict[str, str]]]
    ) -> list[Decision]:
        stats = self.stats
        now = self._timer()
        found: dict[str, Labels] = {}
        missing: list[str] = []
        seen: set[str] = set()
        for key, rel in items:
            for k in (key, *rel.values()):
                if k in seen:
                    continue
                seen.add(k)
                entry = self.cache._entries.get(k)
                if entry is not None and entry[1] > now:
                    stats.cache_hits += 1
                    if not entry[0]:
                        stats.negative_hits += 1
                    found[k] = entry[0]
                else:
                    stats.cache_misses += 1
                    missing.append(k)
        error: EnforceError | None = None
        if missing:
            outcome = self._fetcher.fetch(missing)
            found.update(outcome.labels)
            error = outcome.error
            if error is not None:
                log.warning("label fetch failed for %d keys: %s", len(missing), error)
        wall = self._wall()
        decisions: list[Decision] = []
        for key, rel in items:
            keys = (key, *rel.values())
            absent = [k for k in keys if k not in found]
            if not absent:
                labels = {k: found[k] for k in keys if found[k]}
                decisions.append(self._resolve_safely(surf, key, labels, rel, wall))
                continue
            # Some labels could not be fetched: serve stale entries if all are within bound.
            stale = {k: self.cache.get_stale(k, now) for k in absent}
            if all(v is not None for v in stale.values()):
                stats.stale_served += 1
                stats.degraded += 1
                labels = {
                    k: v
                    for k, v in {**{k: found[k] for k in keys if k in found}, **stale}.items()
                    if v
                }
                decisions.append(
                    self._resolve_safely(surf, key, labels, rel, wall).degrade(
                        f"stale: store unreachable ({error})"
                    )
                )
            else:
                decisions.append(self._fail(surf, key, f"store unreachable: {error}"))
        return decisions

    def _resolve_cached(self, surf: _Surface, key: str, entry: Entry) -> Decision:
        """Resolve an entity with no links from its cache entry, reusing a recent decision.

        Every label on a surface decays by the same factor, so the ranking cannot
        change while the set of labels is fixed; the set changes only when a label
        expires (or crosses an `age` bound of the selector). A decision is reused
        for at most MEMO_SECONDS and never past the next expiry; its causes' scores
        are at most that old.
        """
        memo = entry[3]
        wall = self._wall()
        if memo is not None:
            hit = memo.get(surf)
            if hit is not None and hit[1] > wall:
                return hit[0]  # type: ignore[no-any-return]
        decision = self._resolve_safely(surf, key, {key: entry[0]}, _EMPTY, wall)
        if memo is not None and not decision.degraded:
            until = wall + MEMO_SECONDS
            for label in entry[0]:
                if label.expires_at is not None:
                    until = min(until, label.expires_at.timestamp())
            memo[surf] = (decision, until)
        return decision

    def _resolve_safely(
        self,
        surf: _Surface,
        key: str,
        labels: Mapping[str, Sequence[Label]],
        related: Mapping[str, str],
        wall: float | None = None,
    ) -> Decision:
        try:
            return surf.resolver.resolve(
                key, labels, related, self._wall() if wall is None else wall
            )
        except Exception as exc:
            self.stats.internal_errors += 1
            log.exception("resolver failed for %s on %s", key, surf.name)
            return self._fail(surf, key, f"error: {exc!r}")

    def _fail(self, surf: _Surface, key: str, reason: str) -> Decision:
        self.stats.degraded += 1
        if surf.fail_mode == "closed":
            self.stats.fail_closed += 1
        else:
            self.stats.fail_open += 1
        return surf.resolver.fail(key, reason)


_EMPTY: Mapping[str, Any] = {}


# Link kinds whose entities are keyed under another kind.
_LINK_ENTITY_KIND = {"creator": "user", "link": "domain"}


def _related_key(kind: str, value: str) -> str:
    """The canonical key of a linked entity given as an id, a `kind:id` key or (domain) a URL."""
    if not isinstance(value, str):
        raise EntityKeyError(
            f"related {kind!r} must be a string, got {type(value).__name__}", field="related"
        )
    entity_kind = _LINK_ENTITY_KIND.get(kind, kind)
    if entity_kind == "domain" and ("/" in value or "://" in value):
        return domain_key_from_url(value)
    if ":" in value:
        return canonical_key(value)
    return canonical_key(f"{entity_kind}:{value}")
