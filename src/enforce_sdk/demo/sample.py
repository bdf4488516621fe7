"""Seeded, realistic sample data shared by tests, the demo and the benchmarks.

`sample_labels(n, seed=...)` yields labels as the three kinds of producers the
store serves would write them: a human review tool, a nightly batch model and
a streaming detector. `universe_keys(n, ...)` yields a check workload: keys as
product surfaces would ask about them, mostly unlabeled, with Zipf popularity.

Both are pure functions of their arguments (the default `now` is a fixed
instant), so a seed names a data set. Labeled and unlabeled keys come from
disjoint id spaces: an "unlabeled" key is never produced by `sample_labels`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from ..model.label import Enforcement, Label, MetadataValue, Source, SourceType

#: The default `now`: a fixed instant, so output does not depend on the clock.
SAMPLE_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

REVIEW_TOOL = "review_tool"
SPAM_DOMAIN_MODEL = "spam_domain_model"
BOT_DETECTOR = "bot_detector"
REASONS = ("spam", "porn", "misinformation", "self_harm", "hate")

_KINDS = ("pin", "user", "domain", "image")
_REVIEWERS = 40
_ENTITY_FLATTEN = 20.0  # head of the entity popularity curve (see _zipf)
# Share of labels per producer, and of entity kinds per producer.
_PRODUCERS = ((REVIEW_TOOL, 0.40), (SPAM_DOMAIN_MODEL, 0.35), (BOT_DETECTOR, 0.25))
_HUMAN_KINDS = (("pin", 0.60), ("user", 0.18), ("image", 0.15), ("domain", 0.07))
_MODEL_KINDS = (("domain", 0.80), ("pin", 0.20))
_HUMAN_REASONS = (("spam", 0.35), ("porn", 0.25), ("misinformation", 0.15),
                  ("self_harm", 0.10), ("hate", 0.15))
_HUMAN_ENFORCEMENT = ((Enforcement.BLOCK, 0.45), (Enforcement.REMOVE, 0.25),
                      (Enforcement.LIMIT, 0.22), (Enforcement.ALLOW, 0.08))
_WORDS = ("cheap", "best", "free", "win", "deal", "hot", "pills", "crypto", "loan", "gift",
          "prize", "viral", "news", "daily", "click", "bonus", "lucky", "fast", "shop", "star")
_TLDS = ("com", "net", "info", "xyz", "co.uk", "com.br", "top", "online")
_RULES = ("burst_follow", "comment_flood", "repin_ring", "signup_velocity")
_ID_MASK = (1 << 39) - 1
_T = TypeVar("_T")
_ID_MULT = 0x9E3779B1  # odd, so rank -> id is a bijection modulo 2**39


def sample_labels(n: int, *, seed: int = 0, now: datetime | None = None) -> Iterator[Label]:
    """Yield `n` valid labels with distinct (entity, source) keys, deterministic for `seed`.

    Entities are drawn with Zipf-like popularity, so popular entities carry
    labels from several sources. Times lie before `now` (default SAMPLE_EPOCH);
    some labels carry `expires_at`, automated ones carry a confidence.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    ref = SAMPLE_EPOCH if now is None else now.astimezone(UTC)
    rng = random.Random(f"labels:{seed}")
    pool = 4 * n + 64  # entity ranks per kind; large enough for uniqueness
    seen: set[tuple[str, str]] = set()
    producers = [p for p, _ in _PRODUCERS]
    producer_weights = [w for _, w in _PRODUCERS]
    for _ in range(n):
        producer = rng.choices(producers, producer_weights)[0]
        if producer == REVIEW_TOOL:
            source = Source(REVIEW_TOOL, SourceType.HUMAN, f"rev-{_zipf(rng, _REVIEWERS):04d}")
            kind = _weighted(rng, _HUMAN_KINDS)
        elif producer == SPAM_DOMAIN_MODEL:
            source = Source(SPAM_DOMAIN_MODEL, SourceType.AUTOMATED, "nightly")
            kind = _weighted(rng, _MODEL_KINDS)
        else:
            source = Source(BOT_DETECTOR, SourceType.AUTOMATED, "stream")
            kind = "user"
        entity = _unique_entity(rng, kind, pool, seed, source.key, seen)
        yield _make_label(rng, entity, source, ref)


def universe_keys(
    n: int,
    labeled_fraction: float = 0.05,
    seed: int = 0,
    *,
    labeled: Sequence[str] | None = None,
) -> list[str]:
    """A check workload of `n` keys (with repeats), Zipf popularity, mostly unlabeled.

    Each key is labeled with probability `labeled_fraction`: it is then drawn
    from `labeled` (default: the entities of `sample_labels(max(100, n // 20), seed=seed)`);
    otherwise it comes from an id space that `sample_labels` never uses.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= labeled_fraction <= 1.0:
        raise ValueError(f"labeled_fraction must be in 0..1, got {labeled_fraction}")
    if labeled is None:
        labeled = sorted({lb.entity for lb in sample_labels(max(100, n // 20), seed=seed)})
    if labeled_fraction > 0 and not labeled:
        raise ValueError("labeled must not be empty when labeled_fraction > 0")
    rng = random.Random(f"universe:{seed}")
    # Popularity ranks are shuffled so the most popular keys are not the first generated.
    order = list(labeled)
    rng.shuffle(order)
    universe = max(n, 1)
    kinds = [k for k, _ in _HUMAN_KINDS]
    kind_weights = [w for _, w in _HUMAN_KINDS]
    out: list[str] = []
    for _ in range(n):
        if rng.random() < labeled_fraction:
            out.append(order[_zipf(rng, len(order))])
        else:
            kind = rng.choices(kinds, kind_weights)[0]
            out.append(entity_for(kind, _zipf(rng, universe), seed, labeled=False))
    return out


def entity_for(kind: str, rank: int, seed: int, *, labeled: bool) -> str:
    """The canonical key of entity `rank` of `kind` in the labeled or unlabeled id space."""
    if kind in ("pin", "user"):
        base = 10**12 if kind == "pin" else 10**9
        ident = (rank * _ID_MULT + seed * 0x2545F491) & _ID_MASK
        return f"{kind}:{base + 2 * ident + (0 if labeled else 1)}"
    digest = hashlib.blake2b(
        f"{kind}:{seed}:{rank}:{'L' if labeled else 'U'}".encode(), digest_size=16
    )
    if kind == "image":
        return f"image:{digest.hexdigest()}"
    if kind == "domain":
        raw = digest.digest()
        first, second = _WORDS[raw[0] % len(_WORDS)], _WORDS[raw[1] % len(_WORDS)]
        tld = _TLDS[raw[2] % len(_TLDS)]
        # The marker keeps the two spaces disjoint; the rank keeps names unique.
        marker = "" if labeled else "-ok"
        return f"domain:{first}{second}{rank}{marker}.{tld}"
    raise ValueError(f"unknown sample kind {kind!r} (known: {', '.join(_KINDS)})")


@dataclass(frozen=True, slots=True)
class _Timing:
    created_at: datetime
    expires_at: datetime | None


def _make_label(rng: random.Random, entity: str, source: Source, now: datetime) -> Label:
    metadata: dict[str, MetadataValue]
    confidence: float | None = None
    if source.system == REVIEW_TOOL:
        reason = _weighted(rng, _HUMAN_REASONS)
        enforcement = _weighted(rng, _HUMAN_ENFORCEMENT)
        if enforcement is Enforcement.ALLOW:
            metadata = {"ticket": f"TS-{rng.randrange(10**6):06d}", "appeal": True}
        else:
            metadata = {"ticket": f"TS-{rng.randrange(10**6):06d}", "queue": reason}
        timing = _timing(rng, now, max_age=timedelta(days=90),
                         expiry=timedelta(days=30) if rng.random() < 0.10 else None)
    elif source.system == SPAM_DOMAIN_MODEL:
        reason = "spam"
        confidence = round(rng.uniform(0.5, 1.0), 4)
        enforcement = Enforcement.BLOCK if confidence >= 0.9 else Enforcement.LIMIT
        metadata = {"model_version": "2025.12.31", "features": rng.randrange(40, 400)}
        timing = _timing(rng, now, max_age=timedelta(hours=24),
                         expiry=timedelta(days=7) if rng.random() < 0.8 else None)
    else:
        reason = "spam"
        confidence = round(rng.uniform(0.6, 1.0), 4)
        enforcement = Enforcement.BLOCK if confidence >= 0.95 else Enforcement.LIMIT
        metadata = {"rule": rng.choice(_RULES), "window_s": rng.choice((60, 300, 3600))}
        timing = _timing(rng, now, max_age=timedelta(hours=6),
                         expiry=timedelta(days=3) if rng.random() < 0.5 else None)
    return Label(
        entity=entity,
        source=source,
        enforcement=enforcement,
        reason=reason,
        created_at=timing.created_at,
        expires_at=timing.expires_at,
        confidence=confidence,
        metadata=metadata,
    )


def _timing(
    rng: random.Random, now: datetime, *, max_age: timedelta, expiry: timedelta | None
) -> _Timing:
    # Whole milliseconds keep JSON and msgpack round trips exact and readable.
    age_ms = rng.randrange(1, int(max_age.total_seconds() * 1000))
    created = now - timedelta(milliseconds=age_ms)
    return _Timing(created, None if expiry is None else created + expiry)


def _unique_entity(
    rng: random.Random, kind: str, pool: int, seed: int, source_key: str,
    seen: set[tuple[str, str]],
) -> str:
    """Draw an entity this source has not labeled yet: Zipf first, then uniform."""
    for attempt in range(64):
        rank = _zipf(rng, pool, _ENTITY_FLATTEN) if attempt < 8 else rng.randrange(pool)
        entity = entity_for(kind, rank, seed, labeled=True)
        if (entity, source_key) not in seen:
            seen.add((entity, source_key))
            return entity
    raise RuntimeError("sample entity pool exhausted")  # pragma: no cover - pool >> n


def _zipf(rng: random.Random, size: int, flatten: float = 1.0) -> int:
    """A rank in [0, size) with P(rank) roughly proportional to 1 / (rank + flatten).

    Zipf-Mandelbrot by inverting its continuous CDF; a larger `flatten` makes
    the head less dominant (no single entity draws a tenth of all labels).
    """
    q = flatten
    return min(int(q * ((size + q) / q) ** rng.random() - q), size - 1)


def _weighted(rng: random.Random, table: Sequence[tuple[_T, float]]) -> _T:
    values = [v for v, _ in table]
    weights = [w for _, w in table]
    return rng.choices(values, weights)[0]
