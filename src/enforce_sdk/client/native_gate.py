"""The native gate's Python side: made for one read path, fed the state it reads.

The gate (native/gate.c, `native.binding.Gate`) answers check(), check_many() and
filter() in one C call for everything that needs no I/O: items whose keys (the
item's and its links') are surely unlabeled or fresh negative cache entries, and
memoised decisions of labeled items without links. It leaves the rest undone for
the Python read path (client/read_path), which stays the reference: a
differential test runs both on the same streams.

It reads no Python attribute on the hot path; the runtime pushes what it needs:

- the surfaces of the applied config (`push_surfaces`, at every config swap);
- the bloom filter's layers and the deadline past which they are stale
  (`BloomGate` calls `push_bloom` / `push_fresh_until` as it swaps them);
- the label cache's dict (fixed for the cache's life: `clear()` empties it).

`ENFORCE_SDK_NATIVE_GATE=0` in the environment turns it off (the Python path
answers everything), as does an install without the compiled module.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..model.keys import canonical_key
from ..native import binding
from ..native.bloom import BloomFilter
from ..policy.decision import Decision
from ..policy.links import RELATION_KINDS, related_key
from .batch import SurfaceState
from .cache import LabelCache

if TYPE_CHECKING:
    from ..native.binding import Gate

ENV = "ENFORCE_SDK_NATIVE_GATE"


def new_gate(
    cache: LabelCache, timer: Callable[[], float], wall: Callable[[], float]
) -> Gate | None:
    """A gate over `cache`, or None when turned off or not built.

    The gate reads the C clocks when `timer` is time.monotonic and `wall` is
    time.time (the same clocks); any other callable (a test's fake clock) is
    called from C.
    """
    if not binding.GATE_BUILT or os.environ.get(ENV, "1").strip() == "0":
        return None
    return binding.Gate(
        cache._entries,
        Decision.__dict__["entity"],
        canonical_key,
        related_key,
        None if timer is time.monotonic else timer,
        None if wall is time.time else wall,
    )


def push_surfaces(gate: Gate, surfaces: Mapping[str, SurfaceState]) -> None:
    """The applied config's surfaces, as the gate reads them (see SPEC_* in gate.c)."""
    specs: dict[str, tuple[Any, ...]] = {}
    for name, surf in surfaces.items():
        mask = 0
        for kind in surf.related:
            mask |= 1 << RELATION_KINDS.index(kind)
        # the last item: the surface's recent "no label applies" decisions, kept by the gate
        specs[name] = (surf, surf.resolver.clear_type, surf.bloom_trust, mask, surf.visible_stub,
                       {})
    gate.set_surfaces(specs)


def push_bloom(gate: Gate, bloom: BloomFilter | None) -> None:
    """The active filter (a BloomFilter or the layers of a grown one), or None."""
    if bloom is None:
        gate.set_bloom(None, ())
        return
    natives = getattr(bloom, "_natives", None) or (bloom._native,)
    gate.set_bloom(natives, tuple(binding.filter_address(n) for n in natives))


def push_fresh_until(gate: Gate, fresh_until: float) -> None:
    gate.set_fresh_until(fresh_until)
