"""The I/O-free read path both client faces share: a page in, Decisions out.

A check runs in three steps, and only the middle one does I/O, which is all a
client face (`EnforcementClient` with threads, `AsyncEnforcementClient` with
asyncio) writes itself:

    batch = core.begin(surface, entities, related)   # validate, cache lookups
    outcome = fetch(batch.missing)                   # the face's I/O, if anything missed
    decisions = core.finish(batch, outcome)          # selector, resolver, fail modes, stale

`cached()` is the check() fast path: a raw key with a fresh cache entry, or one
the bloom precheck says is surely unlabeled, is answered without allocating a
batch (and, in the async face, without awaiting).

What is I/O-free here: everything in this module. It opens no connection,
starts no thread, touches no ZooKeeper and imports nothing that does (an
import-rule test holds it). It reads state the runtime (client/runtime) owns
and swaps: the applied config, the label cache, the bloom gate's filter. The
serving contract lives here: misuse (unknown surface, malformed key) raises
from begin() before any I/O; anything else that goes wrong is answered by the
surface's fail mode, flagged `degraded`, logged and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .._errors import (
    EnforceError,
    EntityKeyError,
    UnknownSurfaceError,
)
from ..model.keys import CANONICAL_RE, canonical_key, is_canonical
from ..model.label import Label
from ..native.bloom import surely_unlabeled
from ..policy.decision import Decision, DegradedKind
from ..policy.links import KIND_OF_ALIAS, check_related, related_key
from ..policy.surface import FailMode
from .batch import (
    Applied,
    Batch,
    FetchResult,
    FilterKeys,
    Gate,
    Related,
    SurfaceState,
    materialise,
    related_page,
    store_problem,
)
from .cache import Entry, LabelCache
from .stats import Stats

if TYPE_CHECKING:
    from ..config.document import EnforcementConfig
    from ..config.source import ConfigMeta

log = logging.getLogger(__name__)

T = TypeVar("T")
MEMO_SECONDS = 1.0  # how long a labeled entity's decision is reused (see _resolve_cached)


class ReadPath:
    """The I/O-free read path of one client over the state its runtime owns.

    Thread-safe: the cache reads lock-free, config swaps are atomic reference swaps.
    """

    stats: Stats
    cache: LabelCache
    bloom_gate: Gate | None
    native_gate: Any  # client/native_gate: answers what needs no I/O in C; None: off
    _applied: Applied
    _timer: Callable[[], float]
    _wall: Callable[[], float]

    @property
    def config(self) -> EnforcementConfig:
        return self._applied.config

    @property
    def config_meta(self) -> ConfigMeta:
        return self._applied.meta

    # -- the read path --------------------------------------------------------

    def cached(self, entity: str, surface: str, related: Related | None) -> Decision | None:
        """check()'s fast path: the decision if `entity` is a fresh cached raw key, else None.

        A raw key found in the cache is canonical (only canonical keys are stored),
        so this skips canonical_key. Raises UnknownSurfaceError.
        """
        stats = self.stats
        t0 = stats.clock_ns()
        try:
            surf = self._applied.surfaces.get(surface)
        except TypeError:  # unhashable: no cost on the hot path, unlike a type check
            raise self._unknown_surface(surface) from None
        if surf is None:
            raise self._unknown_surface(surface)
        # `related` on a surface without links is validated, then ignored
        if related is None or (not surf.related and check_related(related, 0)):
            gate = self.bloom_gate
            if gate is not None and type(entity) is str:
                bloom = gate.bloom
                if bloom is not None and not bloom.contains(entity):
                    decision = self._bloom_allow(gate, surf, entity)
                    if decision is not None:
                        stats.check_latency.record(stats.clock_ns() - t0)
                        return decision
            entry = self.cache._entries.get(entity) if type(entity) is str else None
            if entry is not None and entry[1] > self._timer():
                stats.checks += 1
                stats.cache_hits += 1
                if not entry[0]:
                    stats.negative_hits += 1
                    decision = surf.resolver.allow(entity)
                else:
                    decision = self._resolve_cached(surf, entity, entry)
                stats.check_latency.record(stats.clock_ns() - t0)
                return decision
        return None

    def _bloom_allow(self, gate: Gate, surf: SurfaceState, raw: str) -> Decision | None:
        """The decision for a raw key absent from the filter, or None to take the normal path.

        Absent as sent is conclusive only for a canonical key (the filter holds canonical
        keys); a malformed key is left to the normal path, which raises.
        """
        stale = gate.stale()
        if stale and not surf.bloom_trust:
            return None
        key = raw
        if not _canonical_raw(raw) and not is_canonical(raw):
            try:
                key = canonical_key(raw)
            except EntityKeyError:
                return None
            bloom = gate.bloom
            if bloom is None or bloom.contains(key):
                return None
        stats = self.stats
        stats.checks += 1
        stats.bloom_negatives += 1
        decision = surf.resolver.allow(key)
        if stale:
            stats.count_degraded(BLOOM_STALE)
            decision = decision.degrade(BLOOM_STALE, _BLOOM_STALE_DETAIL)
        return decision

    def native_page(
        self,
        surface: str,
        entities: Iterable[str],
        related: Iterable[Related | None] | None,
        done: list[Decision | None] | None,
    ) -> tuple[list[Decision] | None, list[Decision | None] | None]:
        """check_many's first step, the native gate: (decisions, None) when it answered
        the whole page; else (None, what it answered, None where it left an item, for
        `begin`). With `done` already given (filter's), the gate was asked: unchanged."""
        gate = self.native_gate
        if done is None and gate is not None:
            answer = gate.check_many(entities, surface, related)
            if answer is not None:
                decisions, undone = answer
                if not undone:
                    return decisions, None
                return None, decisions
        return None, done

    def begin(
        self,
        surface: str,
        entities: Iterable[str],
        related: Iterable[Related | None] | None,
        done: list[Decision | None] | None = None,
    ) -> Batch:
        """Validate a page and answer what the cache can; `batch.missing` is left to fetch.

        `entities` and `related` may be any iterables (read once). Misuse (unknown
        surface, bad keys, bad related) raises here, before any I/O. `done` holds
        the decisions the native gate already made (None where it left the item):
        only the others are decided here.
        """
        stats = self.stats
        t0 = stats.clock_ns()
        try:
            surf = self._applied.surfaces.get(surface)
        except TypeError:  # unhashable
            raise self._unknown_surface(surface) from None
        if surf is None:
            raise self._unknown_surface(surface)
        keys: Sequence[str] = (
            entities
            if type(entities) is tuple or isinstance(entities, list)
            else materialise(entities, "entities")
        )
        rels = None if related is None else related_page(related, len(keys))
        todo: Sequence[int]
        if done is None:
            out: list[Decision | None] = [None] * len(keys)
            todo = range(len(keys))
        else:
            out = done
            todo = [i for i, d in enumerate(done) if d is None]
        stats.checks += len(todo)
        batch = Batch(surf, t0, out)
        links = bool(surf.related) and rels is not None
        gate = self.bloom_gate
        if gate is not None and not links and gate.bloom is not None:
            # Fastest path: the page's raw keys through the filter in one C call.
            absent = self._precheck_page(gate, batch, keys, type(keys) is FilterKeys, todo)
            if absent:
                skip = set(absent)
                todo = [i for i in todo if i not in skip]
        # Fast path: an item with no links whose raw key has a fresh cache entry.
        entries = self.cache._entries
        now = self._timer()
        slow = batch.slow
        allow = surf.resolver.allow
        hits = negatives = 0
        for i in todo:
            raw = keys[i]
            entry = entries.get(raw) if type(raw) is str else None
            if entry is None or entry[1] <= now or (links and rels[i]):  # type: ignore[index]
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
            items = batch.items
            for i in slow:
                try:
                    key = canonical_key(keys[i])
                except EntityKeyError as exc:
                    raise EntityKeyError(f"item {i}: {exc.problem}", field=exc.field) from exc
                links_of = None if rels is None else rels[i]
                if not links_of:
                    items.append((key, _NO_LINKS))
                    continue
                rel, bad = self._related_keys(surf, links_of)
                if bad is not None:
                    self.stats.bad_links += 1
                    if surf.bad_link_closed:  # hide the item; the rest of the page goes on
                        out[i] = self._fail(surf, key, BAD_LINK, bad, "closed")
                        continue
                    batch.note_bad_link(i, bad)  # decide on its other labels, flagged
                items.append((key, rel))
            if len(items) != len(slow):  # items failed closed for a bad link left the batch
                batch.slow = slow = [i for i in slow if out[i] is None]
            try:
                self._lookup(batch)
            except Exception as exc:  # the serving contract: never raise into the request path
                self._crashed(batch, exc)
        return batch

    def _precheck_page(
        self, gate: Gate, batch: Batch, entities: Sequence[str], stub: bool,
        todo: Sequence[int],
    ) -> list[int]:
        """Decide the surely-unlabeled raw keys among `todo` in `batch.out`; their indexes.

        With `stub` (a filter() page) they get the surface's shared visible decision:
        filter() reads nothing but `visible`, so no Decision is built per item.
        """
        surf = batch.surf
        bloom = gate.bloom
        stale = gate.stale()
        if bloom is None or (stale and not surf.bloom_trust) or not todo:
            return []
        if len(todo) == len(entities):
            absent = surely_unlabeled(bloom, entities)
        else:  # the native gate decided the others
            found = surely_unlabeled(bloom, [entities[i] for i in todo])
            absent = None if found is None else [todo[j] for j in found]
        if not absent:
            return []
        stats = self.stats
        stats.bloom_negatives += len(absent)
        out = batch.out
        if stub:
            visible = surf.visible_stub
            for i in absent:
                out[i] = visible
        else:
            allow = surf.resolver.allow
            for i in absent:
                out[i] = allow(entities[i])
        if stale:
            stats.count_degraded(BLOOM_STALE, len(absent))
            if not stub:
                for i in absent:
                    out[i] = allow(entities[i]).degrade(BLOOM_STALE, _BLOOM_STALE_DETAIL)
        return absent

    def finish(self, batch: Batch, outcome: FetchResult | Exception | None) -> list[Decision]:
        """The decisions of a batch, given what the face fetched for `batch.missing`.

        `outcome` is the fetch result, None when nothing was fetched, or the
        exception the fetch raised (a bug below: answered by fail mode).
        """
        if batch.items:
            if isinstance(outcome, Exception):
                self._crashed(batch, outcome)
            else:
                try:
                    self._decide_items(batch, outcome)
                except Exception as exc:
                    self._crashed(batch, exc)
        stats = self.stats
        stats.check_latency.record(stats.clock_ns() - batch.t0)
        return batch.out  # type: ignore[return-value]

    # -- filter's page handling ------------------------------------------------

    @staticmethod
    def page(
        items: Iterable[T], key: Callable[[T], str], related: Callable[[T], Related | None] | None
    ) -> tuple[list[T], list[str], list[Related | None] | None]:
        """filter()'s input as check_many arguments: the items, their keys, their links."""
        page = list(items)
        keys = FilterKeys([key(item) for item in page])
        rel = None if related is None else [related(item) for item in page]
        return page, keys, rel

    @staticmethod
    def visible(page: list[T], decisions: Sequence[Decision]) -> list[T]:
        return [item for item, decision in zip(page, decisions, strict=True) if decision.visible]

    # -- internals -------------------------------------------------------------

    def _unknown_surface(self, surface: object) -> UnknownSurfaceError:
        known = ", ".join(sorted(self._applied.surfaces))
        if not isinstance(surface, str):
            return UnknownSurfaceError(
                f"must be a surface name (str), got {type(surface).__name__} {surface!r} "
                f"(configured: {known})",
                field="surface",
            )
        return UnknownSurfaceError(
            f"unknown surface {surface!r} (configured: {known})", field="surface"
        )

    @staticmethod
    def _related_keys(surf: SurfaceState, related: Related) -> tuple[dict[str, str], str | None]:
        """Canonical keys of the related entities the surface takes into account, and what
        was wrong with the first link that could not be parsed (None if none).

        `related` was validated by check_related (a mapping of known link kinds). A link
        value that is not a string is the caller's misuse and raises InvalidInputError;
        one that does not parse (hostile input) is left out and reported.
        """
        out: dict[str, str] = {}
        bad: str | None = None
        for kind, value in related.items():
            kind = KIND_OF_ALIAS.get(kind, kind)
            if kind not in surf.related or value is None:
                continue  # a known kind this surface does not count
            try:
                out[kind] = related_key(kind, value)
            except EntityKeyError as exc:
                if bad is None:
                    bad = f"{kind} link: {exc.problem}"[:_MAX_DETAIL]
        return out, bad

    def _lookup(self, batch: Batch) -> None:
        """Cache lookups for the canonical keys of the slow items; misses go to batch.missing.

        This is the one place every canonical key passes before I/O: the bloom
        precheck (one contains_many call for the batch) answers a surely-unlabeled
        key with `found[k] = ()` and no fetch; with a stale filter trusted by the
        surface, such keys are noted in `batch.bloomed` to flag their decisions.
        """
        stats = self.stats
        batch.now = now = self._timer()
        entries = self.cache._entries
        found, missing = batch.found, batch.missing
        seen: dict[str, None] = {}
        for key, rel in batch.items:
            seen[key] = None
            for k in rel.values():
                seen[k] = None
        keys: list[str] = list(seen)
        gate = self.bloom_gate
        bloom = None if gate is None else gate.bloom
        if gate is not None and bloom is not None:
            stale = gate.stale()
            if not stale or batch.surf.bloom_trust:
                mask = bloom.contains_many(keys).tolist()
                negatives = [k for k, present in zip(keys, mask, strict=True) if not present]
                if negatives:
                    stats.bloom_negatives += len(negatives)
                    for k in negatives:
                        found[k] = ()
                    if stale:
                        batch.bloomed = set(negatives)
                    keys = [k for k, present in zip(keys, mask, strict=True) if present]
        for k in keys:
            entry = entries.get(k)
            if entry is not None and entry[1] > now:
                stats.cache_hits += 1
                if not entry[0]:
                    stats.negative_hits += 1
                found[k] = entry[0]
            else:
                stats.cache_misses += 1
                missing.append(k)

    def _decide_items(self, batch: Batch, outcome: FetchResult | None) -> None:
        stats = self.stats
        surf, found, now = batch.surf, batch.found, batch.now
        error: EnforceError | None = None
        problem: tuple[DegradedKind, str, str] | None = None
        if outcome is not None:
            found.update(outcome.labels)
            error = outcome.error
            if error is not None:
                log.warning("label fetch failed for %d keys: %s", len(batch.missing), error)
        wall = self._wall()
        out = batch.out
        bad = batch.bad_links or _NO_BAD_LINKS
        for i, (key, rel) in zip(batch.slow, batch.items, strict=True):
            keys = (key, *rel.values())
            absent = [k for k in keys if k not in found]
            if not absent:
                labels = {k: found[k] for k in keys if found[k]}
                decision = self._resolve_safely(surf, key, labels, rel, wall)
                bloomed = batch.bloomed
                if bloomed is not None and not bloomed.isdisjoint(keys):
                    stats.count_degraded(BLOOM_STALE)
                    decision = decision.degrade(BLOOM_STALE, _BLOOM_STALE_DETAIL)
                elif i in bad and not decision.degraded:
                    stats.count_degraded(BAD_LINK)
                    decision = decision.degrade(BAD_LINK, bad[i])
                out[i] = decision
                continue
            # Some labels could not be fetched: serve stale entries if all are within bound.
            problem = problem or store_problem(error)
            stale = {k: self.cache.get_stale(k, now) for k in absent}
            if all(v is not None for v in stale.values()):
                stats.stale_served += 1
                labels = {
                    k: v
                    for k, v in {**{k: found[k] for k in keys if k in found}, **stale}.items()
                    if v
                }
                decision = self._resolve_safely(surf, key, labels, rel, wall)
                if not decision.degraded:
                    stats.count_degraded(STALE_CACHE)
                    decision = decision.degrade(STALE_CACHE,
                                                f"stale: {problem[1]} ({problem[2]})")
                out[i] = decision
            else:
                out[i] = self._fail(surf, key, problem[0], f"{problem[1]}: {problem[2]}")
        batch.items = []

    def _crashed(self, batch: Batch, exc: Exception) -> None:
        """An unexpected failure: every undecided item is answered by the fail mode."""
        surf = batch.surf
        self.stats.internal_errors += 1
        log.error(
            "enforcement check failed; answering by fail mode %s",
            surf.fail_mode,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        for i, (key, _) in zip(batch.slow, batch.items, strict=True):
            batch.out[i] = self._fail(surf, key, INTERNAL_ERROR, f"error: {exc!r}")
        batch.items = []

    def _resolve_cached(self, surf: SurfaceState, key: str, entry: Entry) -> Decision:
        """Resolve an entity with no links from its cache entry, reusing a recent decision.

        Every label on a surface decays by the same factor, so the ranking cannot
        change while the set of labels is fixed; the set changes only when a label
        expires (or crosses an `age` bound of the selector). A decision is reused
        for at most MEMO_SECONDS and never past the next expiry still to come (a
        label already expired is out of the decision and changes nothing); its
        causes' scores are at most that old.
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
                    expires = label.expires_at.timestamp()
                    if wall < expires < until:
                        until = expires
            memo[surf] = (decision, until)
        return decision

    def _resolve_safely(
        self,
        surf: SurfaceState,
        key: str,
        labels: Mapping[str, Sequence[Label]],
        related: Mapping[str, str],
        wall: float,
    ) -> Decision:
        try:
            return surf.resolver.resolve(key, labels, related, wall)
        except Exception as exc:
            self.stats.internal_errors += 1
            log.exception("resolver failed for %s on %s", key, surf.name)
            return self._fail(surf, key, INTERNAL_ERROR, f"error: {exc!r}")

    def _fail(self, surf: SurfaceState, key: str, kind: DegradedKind, detail: str,
              mode: FailMode | None = None) -> Decision:
        """A degraded decision by the surface's fail mode (or `mode`), counted."""
        stats = self.stats
        stats.count_degraded(kind)
        if (mode or surf.fail_mode) == "closed":
            stats.fail_closed += 1
        else:
            stats.fail_open += 1
        return surf.resolver.fail(key, kind, detail, mode)


_EMPTY: Mapping[str, Any] = {}
_NO_LINKS: Final[dict[str, str]] = {}  # shared, never mutated: an item without links
_NO_BAD_LINKS: Final[Mapping[int, str]] = {}
_MAX_DETAIL: Final = 200  # characters of a hostile link's problem kept in a Decision
_BLOOM_STALE_DETAIL: Final = "the bloom filter is stale; its negative trusted (on_bloom_stale)"
BLOOM_STALE: Final = DegradedKind.BLOOM_STALE
BAD_LINK: Final = DegradedKind.BAD_LINK
STALE_CACHE: Final = DegradedKind.STALE_CACHE
INTERNAL_ERROR: Final = DegradedKind.INTERNAL_ERROR
_canonical_raw = CANONICAL_RE.fullmatch  # the common case of is_canonical, without a call
