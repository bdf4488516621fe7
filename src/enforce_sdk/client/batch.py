"""The read path's data: the applied config per surface, one page's Batch, and page checks.

Pure data and validation, no I/O: what `read_path.ReadPath` works on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import EnforceError, InvalidInputError, StoreUnavailableError
from ..native.bloom import BloomFilter
from ..policy.decision import Decision, DegradedKind
from ..policy.links import check_related
from ..policy.resolver import Resolver
from ..policy.surface import SurfaceConfig
from .cache import Labels
from .coalesce import FetchFailedError

if TYPE_CHECKING:
    from ..config.document import EnforcementConfig
    from ..config.source import ConfigMeta

Related = Mapping[str, str]


class FetchResult(Protocol):
    """What a face's fetch returns (FetchOutcome)."""

    @property
    def labels(self) -> Mapping[str, Labels]: ...

    @property
    def error(self) -> EnforceError | None: ...


class Applied:
    """One applied config and what is derived from it; swapped as a single reference."""

    __slots__ = ("config", "meta", "surfaces")

    def __init__(self, config: EnforcementConfig, meta: ConfigMeta) -> None:
        self.config = config
        self.meta = meta
        # one dict lookup on the hot path yields the surface and its compiled resolver
        self.surfaces: dict[str, SurfaceState] = {
            name: SurfaceState(surf, config.resolvers[name]) for name, surf in config.surfaces.items()
        }


class SurfaceState:
    __slots__ = ("bad_link_closed", "bloom_trust", "fail_mode", "hide_from", "name", "related",
                 "resolver", "visible_stub")

    def __init__(self, surf: SurfaceConfig, resolver: Resolver) -> None:
        self.name = surf.name
        self.bloom_trust = surf.on_bloom_stale == "trust"  # keep trusting a stale filter
        self.related = surf.related
        self.fail_mode = surf.fail_mode
        self.bad_link_closed = surf.on_bad_link == "fail_closed"
        self.hide_from = surf.hide_from
        self.resolver = resolver
        # what filter() reads of a surely-unlabeled item's decision: only `visible`
        self.visible_stub = resolver.allow("")


class Batch:
    """One check/check_many call between its cache lookups and its decisions.

    `missing` lists the canonical keys the face must fetch (empty: no I/O needed).
    """

    __slots__ = ("bad_links", "bloomed", "found", "items", "missing", "now", "out", "slow",
                 "surf", "t0")

    def __init__(self, surf: SurfaceState, t0: int, out: list[Decision | None]) -> None:
        self.surf = surf
        self.t0 = t0
        self.out = out
        self.slow: list[int] = []  # indexes of out still undecided
        self.items: list[tuple[str, dict[str, str]]] = []  # (canonical key, related keys) per slow
        self.found: dict[str, Labels] = {}
        self.missing: list[str] = []
        self.now = 0.0
        self.bloomed: set[str] | None = None  # keys answered by a stale (trusted) bloom filter
        self.bad_links: dict[int, str] | None = None  # out index -> an ignored bad link's problem

    def note_bad_link(self, index: int, problem: str) -> None:
        if self.bad_links is None:
            self.bad_links = {}
        self.bad_links[index] = problem


class Gate(Protocol):
    """What the read path reads of the bloom gate (client/bloom_gate.BloomGate)."""

    @property
    def bloom(self) -> BloomFilter | None: ...

    def stale(self) -> bool: ...


class FilterKeys(list[str]):
    """The keys of a filter() page (from `page`): begin() may answer them with a shared stub."""

    __slots__ = ()


def related_page(related: Iterable[Related | None], count: int) -> Sequence[Related | None]:
    """A page's `related` as a sequence of `count` validated entries (None or a mapping)."""
    if type(related) is not tuple and not isinstance(related, list):
        related = materialise(related, "related")
    if len(related) != count:
        raise InvalidInputError(
            f"has {len(related)} entries for {count} entities", field="related"
        )
    for i, rel in enumerate(related):
        if rel is not None:
            check_related(rel, i)
    return related


def materialise(values: object, field: str) -> list[Any]:
    """Any iterable as a list (read once); a lone str or a non-iterable is misuse."""
    if isinstance(values, str | bytes | Mapping):
        raise InvalidInputError(
            f"must be an iterable of entries, one per entity, got one {type(values).__name__}"
            + (" (use check() for a single key)" if field == "entities" else ""),
            field=field,
        )
    if not isinstance(values, Iterable):
        raise InvalidInputError(f"must be an iterable, got {type(values).__name__}", field=field)
    return list(values)


def store_problem(error: EnforceError | None) -> tuple[DegradedKind, str, str]:
    """Why labels could not be had: the kind, "store unreachable" or "store error", the error.

    Unreachable: a transport failure or a timeout. Store error: the store
    answered, but with an error status or data that does not parse (and
    whatever else the fetcher wrapped: a reader that raised something else).
    """
    if isinstance(error, StoreUnavailableError) and not isinstance(error, FetchFailedError):
        return DegradedKind.STORE_UNREACHABLE, "store unreachable", str(error)
    if error is None:
        return DegradedKind.STORE_ERROR, "store error", "no answer for the key"
    return DegradedKind.STORE_ERROR, "store error", str(error)
