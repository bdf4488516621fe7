"""BloomGate: the SDK's bloom precheck, kept honest by the store's snapshot and change feed.

Invariant: once the follower has applied the feed up to position P, the active
filter holds every key labeled at or before P, so `bloom.contains(k) is False`
means k had no label at P.

- Start: a snapshot at S is loaded (synchronously, with a timeout) and the
  follower starts from S. Until a load succeeds there is no active filter and
  negatives are not trusted (every check takes the cache/store path).
- Feed: every record whose entity has a label afterwards adds the entity
  (idempotent; the follower itself evicts the cache).
- Growth: the filter is a `ScalableBloom` over the snapshot, sized by the store
  for `capacity` keys at `fp_rate` (sent with the snapshot). When the feed has
  filled it to that design point, adds go to a new layer at a tighter rate and
  lookups ask every layer (the FP rate stays below 1.5 x fp_rate); the new view
  is published before any key goes into the new layer. A growth also asks for a
  fresh snapshot at the next poll, which folds the layers back into one filter.
- Scheduled reload (`refresh_interval`), on the follower thread before a poll:
  a snapshot at S2 >= P replaces the filter at once; one at S2 < P lacks keys
  labeled in (S2, P], so it is *staged*: the follower rewinds to S2, the
  replayed records go to both filters, and the staged one replaces the active
  one only when the follower is back at P. The active filter stays correct
  meanwhile.
- Feed past retention: the snapshot is reloaded at once and the follower
  follows from its S (the cache is cleared by the follower).
- Staleness: the filter is *current* when a poll showed the feed applied up
  to the store's head, and stays current while the next long-poll is out
  (the store answers it as soon as anything changes) for up to its wait plus
  POLL_GRACE. Installing a snapshot does not make it current: after a resync,
  only a poll that reaches the head does (so a store serving a snapshot older
  than the feed's retention shows as stale, not as a loop of fresh reloads);
  the initial snapshot is taken as current only until the follower's first
  poll answers. Not current for longer than `max_staleness` makes `stale()`
  true; the core then trusts negatives with `degraded` decisions or skips the
  precheck, per surface.

Thread model: the hot path reads `bloom` (one attribute, swapped atomically);
everything else runs on the follower thread, or under `_lock`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from .._errors import EnforceError
from ..config.document import BloomSettings
from ..model.records import ChangeRecord
from ..native.bloom import BloomFilter
from ..native.scalable_bloom import DEFAULT_FP_RATE, ScalableBloom
from ..store_client.client import BloomDownload, LabelStoreClient
from .stats import Stats

log = logging.getLogger(__name__)

SnapshotLoader = Callable[[str | None, float], BloomDownload | None]
"""(etag of the active snapshot or None, timeout) -> a new snapshot, or None if unchanged."""

_WATCHED = frozenset({"bloom", "fresh_until"})
POLL_GRACE = 1.0  # seconds a long-poll may run past its wait (network, a busy store) and vouch


class BloomGate:
    """A FeedListener and PollHook owning the active bloom filter of one client."""

    def __init__(
        self,
        load: SnapshotLoader,
        stats: Stats,
        settings: BloomSettings,
        *,
        load_timeout: float = 10.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._stats = stats
        self._timer = timer
        self.load_timeout = load_timeout
        self._lock = threading.Lock()
        self.loaded_at: float | None = None  # timer() when the active filter was installed
        self.bloom: BloomFilter | None = None  # the active filter; None: negatives not trusted
        self._filter: ScalableBloom | None = None  # the active filter's layers (bloom: its view)
        self._staged: tuple[ScalableBloom, int] | None = None  # (filter, position it must reach)
        self._etag: str | None = None
        self._next_load_at = 0.0
        self._fresh_at = float("-inf")  # timer() when the filter was last known current
        self._caught_up = False  # the last poll reached the head, with no gap since
        self._vouched_until = float("-inf")  # end of the long-poll out now, if it vouches
        self.fresh_until = float("-inf")  # stale() after this (timer seconds); hot-path read
        self.enabled = False
        self.max_staleness = settings.max_staleness
        self.refresh_interval = settings.refresh_interval
        self.configure(settings)
        stats.add_gauge("bloom_fill", self._fill)
        stats.add_gauge("bloom_layers", self._layers)
        stats.add_gauge("bloom_estimated_fp", self._estimated_fp)

    def __setattr__(self, name: str, value: object) -> None:
        # `bloom` and `fresh_until` are what the native gate reads: pushed as they change
        # (whoever assigns them: this class, or a test adopting a filter from outside).
        object.__setattr__(self, name, value)
        if name == "bloom" and value is not None:
            object.__setattr__(self, "loaded_at", self._timer())  # for client.status()
        if name in _WATCHED:
            watcher = self.__dict__.get("watcher")
            if watcher is not None:
                watcher(name, value)

    def watch(self, watcher: Callable[[str, object], None]) -> None:
        """Call `watcher(name, value)` whenever `bloom` or `fresh_until` changes (now too)."""
        self.watcher = watcher
        watcher("bloom", self.bloom)
        watcher("fresh_until", self.fresh_until)

    # -- settings and state -------------------------------------------------------------------

    def configure(self, settings: BloomSettings) -> None:
        """Apply bloom settings; turning the gate off drops the filter, on loads one soon."""
        with self._lock:
            self.max_staleness = settings.max_staleness
            self._update_fresh_until()
            self.refresh_interval = settings.refresh_interval
            if settings.enabled and not self.enabled:
                self._next_load_at = 0.0  # at the next poll (or by load_initial)
            elif not settings.enabled:
                self.bloom = None
                self._filter = None
                self._staged = None
                self._etag = None
            self.enabled = settings.enabled

    def stale(self) -> bool:
        """Whether the filter may be behind the store by more than max_staleness.

        It is current as of the last poll that reached the store's head, and while
        the long-poll that followed is out (up to its wait plus POLL_GRACE).
        """
        return self._timer() > self.fresh_until

    def _update_fresh_until(self) -> None:
        self.fresh_until = max(self._fresh_at + self.max_staleness, self._vouched_until)

    def _not_current(self) -> None:
        """The filter lost continuity with the feed: current again only at the next head."""
        self._fresh_at = float("-inf")
        self._caught_up = False
        self._vouched_until = float("-inf")
        self._update_fresh_until()

    @property
    def seq(self) -> int | None:
        bloom = self.bloom
        return None if bloom is None else bloom.seq

    def _fill(self) -> float:
        """The active filter's newest layer: keys over the capacity it was sized for."""
        active = self._filter
        return 0.0 if active is None else active.fill

    def _layers(self) -> float:
        active = self._filter
        return 0.0 if active is None else float(active.layers)

    def _estimated_fp(self) -> float:
        """The sizing model's FP rate of the active filter at the keys it counts."""
        bloom = self.bloom
        return 0.0 if bloom is None else bloom.model_fp()

    def after_fork(self) -> None:
        """In a forked child: the filter is plain memory and stays; the lock is new."""
        self._lock = threading.Lock()

    # -- loading --------------------------------------------------------------------------------

    def load_initial(self) -> int | None:
        """Load a snapshot before the follower starts; its seq to follow from, or None on failure.

        The follower's first poll (sent at once, without waiting) tells whether the
        feed is at the store's head after the snapshot; until it answers (at most
        `load_timeout`) the filter is taken as current, so a client is not stale
        from its first check. A first poll that fails, finds a backlog or finds the
        snapshot past the feed's retention ends that at once.
        """
        if not self.enabled:
            return None
        download = self._download(force=True)
        if download is None:
            return None
        with self._lock:
            if not self.enabled:  # turned off during the download
                return None
            self._install_now(download)
            self._vouched_until = self._timer() + self.load_timeout
            self._update_fresh_until()
        return download.bloom.seq

    def _download(self, *, force: bool) -> BloomDownload | None:
        """A new snapshot, or None (unchanged, or failed: logged, retried at the next interval)."""
        self._next_load_at = self._timer() + self.refresh_interval
        try:
            download = self._load(None if force else self._etag, self.load_timeout)
        except EnforceError as exc:
            self._stats.feed_errors += 1
            self._stats.note_failure("bloom snapshot", exc)
            log.warning("bloom snapshot load failed (negatives %s): %s",
                        "still trusted" if self.bloom is not None else "not trusted", exc)
            return None
        if download is not None:
            self._stats.snapshot_loads += 1
        return download

    def _install_now(self, download: BloomDownload) -> None:
        """Serve `download` now (its seq is at least the feed's position): freshness unchanged."""
        active = self._filter = _scalable(download)
        self.bloom = active.view
        self._etag = download.etag
        self._staged = None

    def _publish(self, view: BloomFilter) -> None:
        """The active filter grew: serve its new view, and fold it back at the next poll."""
        self.bloom = view
        self._next_load_at = min(self._next_load_at, self._timer())
        active = self._filter
        if active is not None:
            log.info("bloom filter full at its design point: grew to %d layers for %d keys "
                     "(FP rate within %.3g); a fresh snapshot is asked for at the next poll",
                     active.layers, active.capacity, active.design_fp())

    def _adopted(self) -> ScalableBloom | None:
        """The active filter's layers; a filter assigned to `bloom` from outside is adopted."""
        bloom, active = self.bloom, self._filter
        if active is not None and active.view is bloom:
            return active
        if type(bloom) is BloomFilter:  # design unknown: the default rate's capacity
            active = self._filter = ScalableBloom(bloom)
            return active
        return None

    # -- the follower's callbacks (follower thread) ---------------------------------------------

    def before_poll(self, position: int) -> int | None:
        """Swap in a caught-up staged filter, or load a snapshot when due; maybe rewind."""
        if not self.enabled:
            return None
        staged = self._staged
        if staged is not None:
            if position >= staged[1]:
                with self._lock:
                    self._filter, self._staged = staged[0], None  # as current as the active one
                    self.bloom = staged[0].view
                log.info("bloom snapshot at %d caught up to %d: active", staged[0].base.seq,
                         position)
            return None  # no new load while a staged one catches up
        if self._timer() < self._next_load_at:
            return None
        download = self._download(force=self.bloom is None)
        if download is None:
            return None
        seq = download.bloom.seq
        with self._lock:
            if not self.enabled:
                return None
            if seq >= position:
                self._install_now(download)
                return None
            # Older than what is applied: replay (seq, position] into it before it serves.
            self._staged = (_scalable(download), position)
            self._etag = download.etag
        return seq

    def poll_sent(self, wait: float) -> None:
        """A poll goes out: if the feed was at the head, it vouches for the filter while out."""
        with self._lock:
            if self._caught_up:
                self._vouched_until = self._timer() + wait + POLL_GRACE
                self._update_fresh_until()
            self._caught_up = False  # until this poll's answer says so again

    def after_poll(self, position: int, caught_up: bool) -> None:
        """A poll was applied: caught up with the store's head, the filter is current now.

        Both the active and a staged filter get every record, so this holds while
        a staged one catches up too.
        """
        with self._lock:
            self._vouched_until = float("-inf")
            if caught_up:
                self._caught_up = True
                self._fresh_at = self._timer()
            self._update_fresh_until()

    def poll_failed(self) -> None:
        """The poll failed: it vouches no longer; staleness counts from the last head reached."""
        with self._lock:
            self._caught_up = False
            self._vouched_until = float("-inf")
            self._update_fresh_until()

    def on_changes(self, changes: Sequence[ChangeRecord]) -> None:
        """Add every entity that has a label after its change (to the staged filter too)."""
        keys = [c.entity for c in changes if c.labeled]
        if not keys:
            return
        with self._lock:
            active = self._adopted()
            if active is not None:
                active.add_many(keys, self._publish)
            elif self.bloom is not None:
                self.bloom.add_many(keys)
            if self._staged is not None:
                self._staged[0].add_many(keys)

    def on_resync(self, head: int) -> int | None:
        """The feed lost continuity: reload a snapshot now and follow from its seq.

        The new filter is not current until a poll from its seq reaches the head.
        """
        with self._lock:
            self._not_current()
        if not self.enabled:
            return None
        download = self._download(force=True)
        with self._lock:
            if not self.enabled:  # turned off during the download: configure() dropped all
                return None
            if download is None:  # the old filter missed the gap: stop trusting it
                self.bloom, self._filter, self._staged, self._etag = None, None, None, None
                self._next_load_at = self._timer()  # retry at the next poll
                return None
            self._install_now(download)
        return download.bloom.seq


def _scalable(download: BloomDownload) -> ScalableBloom:
    """The downloaded filter, ready to grow past the capacity the store sized it for."""
    return ScalableBloom(download.bloom, download.capacity,
                         download.fp_rate if download.fp_rate is not None else DEFAULT_FP_RATE)


class SnapshotSource:
    """Downloads bloom snapshots for a BloomGate (its loader) over one lazily opened client."""

    def __init__(self, store_url: str, token: str | None) -> None:
        self._url = store_url
        self._token = token
        self._client: LabelStoreClient | None = None

    def load(self, etag: str | None, timeout: float) -> BloomDownload | None:
        client = self._client
        if client is None:
            client = self._client = LabelStoreClient(self._url, token=self._token, timeout=timeout)
        return client.bloom_snapshot(etag, timeout=timeout)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def after_fork(self) -> None:
        self._client = None  # the parent's connections are not ours: abandon them
