"""A bloom filter that grows: its FP rate stays bounded however many keys arrive.

`ScalableBloom` is a scalable bloom filter (Almeida, Baquero, Preguica, Hutchison,
2007). It starts as one filter (a store snapshot) sized for `capacity` keys at
`fp_rate`. When the newest layer holds its capacity, adds go to a new, empty layer
sized for GROWTH times the capacity so far, at a tighter rate (fp_rate/4, /8,
/16, ...). A lookup asks every layer, so the FP rate is at most the sum of theirs:
below 1.5 x fp_rate, whatever the number of keys. A filter never forgets, so
nothing added is ever reported absent, across growths too.

Lookups go through `view`: the base filter itself while it is the only layer
(the hot path pays nothing until the filter grows), a `BloomLayers` over every
layer after. `BloomLayers` is a `BloomFilter` for lookups; it has no snapshot form.

Thread safety: adds (`ScalableBloom.add_many`) must be serialised by the caller;
lookups through a `view` are safe concurrently with them, as for `BloomFilter`.
A caller that publishes `view` to readers must do so before the keys that made
the filter grow are added: `add_many` calls `publish(view)` at that moment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import InvalidInputError
from . import binding as _native
from .bloom import BloomFilter

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .bloom import Signatures

GROWTH = 2  # a new layer is sized for this many times the capacity of the layers before it
TIGHTENING = 0.5  # each new layer's FP rate is this times the previous one's
FIRST_EXTRA = 0.25  # the first added layer's FP rate, as a fraction of fp_rate
DEFAULT_FP_RATE = 0.01  # assumed when a filter comes without its target (an older store)


def capacity_at(bloom: BloomFilter, fp_rate: float) -> int:
    """The most keys `bloom` holds with its modelled FP rate at or below `fp_rate`."""
    _native.check_fp_rate(fp_rate)
    lo, hi = 0, 1
    while bloom.model_fp(hi) <= fp_rate:  # grows to at most 2^64 (FP reaches 1.0 well before)
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if bloom.model_fp(mid) <= fp_rate:
            lo = mid
        else:
            hi = mid
    return lo


class BloomLayers(BloomFilter):
    """Several filters looked up as one: a key is present if any layer holds it.

    Adds go to the newest layer. `seq` is the first layer's (setting it sets every
    layer's). There is no snapshot form: `to_bytes`, `save`, `update` and `union`
    raise InvalidInputError.
    """

    __slots__ = ("_layers", "_natives")

    def __init__(self, layers: Sequence[BloomFilter]) -> None:
        layers = tuple(layers)
        if not layers or not all(type(b) is BloomFilter for b in layers):
            raise InvalidInputError("must be one or more plain BloomFilters", field="layers")
        if len({b.seed for b in layers}) != 1:
            raise InvalidInputError("layers must share one seed", field="layers")
        self._native = layers[0]._native
        self._layers = layers
        self._natives = tuple(b._native for b in layers)

    @property
    def layers(self) -> tuple[BloomFilter, ...]:
        return self._layers

    # -- lookups -----------------------------------------------------------------------------

    # A plain loop: any() over a generator costs about a C lookup more per call.
    def contains(self, key: str) -> bool:
        for native in self._natives:  # noqa: SIM110
            if native.contains_key(key):
                return True
        return False

    def __contains__(self, key: object) -> bool:
        for native in self._natives:  # noqa: SIM110
            if native.contains_key(key):
                return True
        return False

    def contains_many(self, keys: Sequence[str]) -> npt.NDArray[np.bool_]:
        """One hashing pass over the keys, then one C lookup per layer."""
        sigs = _native.sig64_many(keys, self._native.seed)
        natives = self._natives
        mask = natives[0].contains_sigs(sigs)
        for native in natives[1:]:
            mask |= native.contains_sigs(sigs)
        return mask

    def contains_signature(self, sig: int) -> bool:
        return any(native.contains_sig(sig) for native in self._natives)

    def contains_signatures(self, sigs: Signatures | Sequence[int]) -> npt.NDArray[np.bool_]:
        array = _native.as_sig_array(sigs)
        mask = self._natives[0].contains_sigs(array)
        for native in self._natives[1:]:
            mask |= native.contains_sigs(array)
        return mask

    # -- adds: to the newest layer -------------------------------------------------------------

    def add(self, key: str) -> bool:
        return self._layers[-1].add(key)

    def add_many(self, keys: Sequence[str]) -> int:
        return self._layers[-1].add_many(keys)

    def add_signature(self, sig: int) -> bool:
        return self._layers[-1].add_signature(sig)

    def add_signatures(self, sigs: Signatures | Sequence[int]) -> int:
        return self._layers[-1].add_signatures(sigs)

    # -- no snapshot form ----------------------------------------------------------------------

    def _no_snapshot(self) -> InvalidInputError:
        return InvalidInputError(
            "a layered filter has no snapshot form; take one layer's, or rebuild", field="bloom"
        )

    def to_bytes(self) -> bytes:
        raise self._no_snapshot()

    def save(self, path: Any) -> None:
        raise self._no_snapshot()

    @property
    def snapshot_size(self) -> int:
        raise self._no_snapshot()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (BloomLayers, (list(self._layers),))

    def update(self, other: BloomFilter) -> None:
        raise self._no_snapshot()

    def union(self, other: BloomFilter) -> BloomFilter:
        raise self._no_snapshot()

    def compatible(self, other: BloomFilter) -> bool:
        return False

    def copy(self) -> BloomLayers:
        return BloomLayers([b.copy() for b in self._layers])

    # -- figures -----------------------------------------------------------------------------

    @property
    def block_count(self) -> int:
        return sum(b.block_count for b in self._layers)

    @property
    def key_count(self) -> int:
        return sum(b.key_count for b in self._layers)

    @property
    def size_bytes(self) -> int:
        return sum(b.size_bytes for b in self._layers)

    @property
    def estimated_fp(self) -> float:
        return _any_of(b.estimated_fp for b in self._layers)

    def model_fp(self, keys: int | None = None) -> float:
        """The sizing model's FP rate at each layer's key count (`keys` must be None)."""
        if keys is not None:
            raise InvalidInputError("a layered filter is modelled at its own key counts",
                                    field="keys")
        return _any_of(b.model_fp() for b in self._layers)

    @property
    def seq(self) -> int:
        return self._native.seq

    @seq.setter
    def seq(self, value: int) -> None:
        for native in self._natives:
            native.seq = value

    def info(self) -> dict[str, Any]:
        return {
            "layers": [b.info() for b in self._layers],
            "block_count": self.block_count,
            "size_bytes": self.size_bytes,
            "key_count": self.key_count,
            "bytes_per_key": self.bytes_per_key,
            "estimated_fp": self.estimated_fp,
            "seq": self.seq,
        }

    def __repr__(self) -> str:
        inner = ", ".join(repr(b) for b in self._layers)
        return f"BloomLayers([{inner}])"


def _any_of(rates: Any) -> float:
    """The probability that at least one of independent events of these rates happens."""
    miss = 1.0
    for rate in rates:
        miss *= 1.0 - rate
    return 1.0 - miss


class ScalableBloom:
    """One filter and the layers it grew, with the capacity each was sized for.

    `capacity` and `fp_rate` describe the base filter (what the store sized it for). It
    is full at `capacity` keys or where the sizing model's FP rate passes fp_rate,
    whichever comes first (capacity None: the latter), so a wrong capacity cannot
    let it saturate.
    """

    __slots__ = ("_capacities", "_layers", "fp_rate", "view")

    def __init__(
        self, base: BloomFilter, capacity: int | None = None, fp_rate: float = DEFAULT_FP_RATE
    ) -> None:
        if type(base) is not BloomFilter:
            raise InvalidInputError("must be a plain BloomFilter", field="base")
        _native.check_fp_rate(fp_rate)
        self.fp_rate = fp_rate
        self._layers = [base]
        design = capacity_at(base, fp_rate)
        self._capacities = [design if capacity is None else max(0, min(capacity, design))]
        self.view: BloomFilter = base

    @property
    def base(self) -> BloomFilter:
        return self._layers[0]

    @property
    def layers(self) -> int:
        return len(self._layers)

    @property
    def capacity(self) -> int:
        """Keys the layers together were sized for."""
        return sum(self._capacities)

    @property
    def fill(self) -> float:
        """The newest layer's keys over its capacity: 1.0 is its design point."""
        return self._layers[-1].key_count / max(1, self._capacities[-1])

    def design_fp(self) -> float:
        """The FP rate the layers reach when each is full: the bound this filter keeps."""
        return _any_of(self._layer_fp(i) for i in range(len(self._layers)))

    def _layer_fp(self, index: int) -> float:
        if index == 0:
            return self.fp_rate
        return self.fp_rate * FIRST_EXTRA * TIGHTENING ** (index - 1)

    def add_many(
        self, keys: Sequence[str], publish: Callable[[BloomFilter], None] | None = None
    ) -> int:
        """Add keys, growing a layer whenever the newest one is full; returns layers added.

        `publish(view)` is called after a growth and before any key goes to the new
        layer, so readers of the published view never miss a key. Keys the filter
        already reports present are not added again once it has grown (the base
        filter skips them itself: they set no new bit).
        """
        grown = 0
        if len(self._layers) > 1 and keys:
            present = self.view.contains_many(keys)
            keys = [k for k, p in zip(keys, present.tolist(), strict=True) if not p]
        while keys:
            top = self._layers[-1]
            room = self._capacities[-1] - top.key_count
            if room <= 0 and self._grow():
                grown += 1
                if publish is not None:
                    publish(self.view)
                continue
            if room <= 0 or room >= len(keys):  # all fit (or no layer can be made): add all
                top.add_many(keys)
                break
            top.add_many(keys[:room])
            keys = keys[room:]
        return grown

    def _grow(self) -> bool:
        """Add an empty layer for GROWTH x the capacity so far; False if none can be made."""
        fp = self._layer_fp(len(self._layers))
        capacity = max(1, GROWTH * sum(self._capacities))
        try:
            layer = BloomFilter.for_capacity(capacity, fp, seed=self._layers[0].seed)
        except InvalidInputError:
            return False
        layer.seq = self._layers[0].seq
        self._layers.append(layer)
        self._capacities.append(capacity)
        self.view = BloomLayers(self._layers)
        return True
