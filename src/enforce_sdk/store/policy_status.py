"""What the store knows and reports of the SDK config's policy: the reason registry.

- `GET /v1/reasons` answers the registry of the applied SDK config (tiers and
  every reason with its tier, description, owner and default enforcement), so
  `labels get`, the console and producers can show what a reason means;
- `reasons_of(labels)` describes the reasons of one entity's labels for its
  answer (`GET /v1/labels/{entity}`);
- `describe(view)` is the `policy` part of `/readyz`: the registry's size,
  the checker's counts (refused unregistered reasons, dropped and held
  low-confidence labels, in this process) and how many *served* labels carry
  a reason the registry does not list.

That last figure comes from a scan of the storage (entities with an active
label, in chunks) run in a background thread each time a new SDK config
version is applied: labels written before a reason was registered (or after it
was removed from the registry) keep serving, and this is how an operator finds
them. While a scan runs, the previous result is reported with its version.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..model.label import Label
from ..policy.reasons import ReasonRegistry
from .checker import LabelChecker
from .config import Role, TokenEntry
from .live_policy import LivePolicy, PolicyView
from .requests import authenticate, respond
from .storage.base import LabelStorage

log = logging.getLogger(__name__)
SCAN_CHUNK = 500  # entities read per storage call of the unregistered-reason scan


@dataclass(frozen=True, slots=True)
class UnregisteredScan:
    """Served labels whose reason the registry of `version` does not list."""

    version: int
    labels: int
    reasons: Mapping[str, int]  # reason -> labels
    entities_scanned: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "labels": self.labels, "reasons": dict(self.reasons),
                "entities_scanned": self.entities_scanned, "seconds": round(self.seconds, 3)}


def count_unregistered(storage: LabelStorage, registry: ReasonRegistry,
                       chunk: int = SCAN_CHUNK) -> tuple[Counter[str], int]:
    """(labels by unregistered reason, entities scanned) over every entity with a served label."""
    counts: Counter[str] = Counter()
    scanned = 0
    batch: list[str] = []

    def read(keys: list[str]) -> None:
        for stored in storage.get_many(keys).values():
            for s in stored:
                if s.label.reason not in registry:
                    counts[s.label.reason] += 1

    for key in storage.iter_labeled_entities():
        batch.append(key)
        if len(batch) >= chunk:
            read(batch)
            scanned += len(batch)
            batch = []
    if batch:
        read(batch)
        scanned += len(batch)
    return counts, scanned


class PolicyStatus:
    """The registry endpoint, entity annotations and the readiness figures of the policy."""

    def __init__(self, live: LivePolicy, checker: LabelChecker, storage: LabelStorage,
                 tokens: Mapping[str, TokenEntry], *, scan: bool = True) -> None:
        self.live = live
        self.checker = checker
        self.storage = storage
        self._tokens = tokens
        self._lock = threading.Lock()
        self.scan_result: UnregisteredScan | None = None
        if scan:
            live.subscribe(self._on_view)

    # -- the scan --------------------------------------------------------------------------

    def _on_view(self, view: PolicyView) -> None:
        if view.reasons is None:
            with self._lock:
                self.scan_result = None
            return
        threading.Thread(target=self.scan, args=(view,), name="enforce-store-reason-scan",
                         daemon=True).start()

    def scan(self, view: PolicyView) -> UnregisteredScan | None:
        """Count the served labels with reasons `view`'s registry lacks; keep the newest result."""
        registry = view.reasons
        if registry is None:
            return None
        started = time.monotonic()
        try:
            counts, scanned = count_unregistered(self.storage, registry)
        except Exception:
            log.exception("scanning stored labels for unregistered reasons failed")
            return None
        result = UnregisteredScan(view.version, sum(counts.values()), dict(counts), scanned,
                                  time.monotonic() - started)
        with self._lock:
            if self.scan_result is None or self.scan_result.version <= view.version:
                self.scan_result = result
        if result.labels:
            log.warning("%d served labels carry reasons not in the registry of SDK config "
                        "version %d: %s", result.labels, view.version,
                        ", ".join(f"{r} ({n})" for r, n in sorted(counts.items())))
        return result

    # -- answers ---------------------------------------------------------------------------

    def describe(self, view: PolicyView) -> dict[str, Any]:
        """The `policy` part of /readyz (beside `sdk_config`, the applied version)."""
        out: dict[str, Any] = {"reasons": None if view.reasons is None else len(view.reasons)}
        if view.reasons is not None:
            scan = self.scan_result
            out["unregistered_stored"] = None if scan is None else scan.to_dict()
        out["checker"] = {k: self.checker.counts[k] for k in
                          ("refused_unregistered", "dropped_low_confidence",
                           "held_low_confidence")}
        return out

    def gauges(self) -> dict[str, float]:
        """Policy figures for /metrics (store/observe): the checker's counts of this process,
        and, with a registry, the served labels with unregistered reasons (last scan)."""
        view = self.live.current()
        if view is None:
            return {}
        out = {f"policy_{k}": float(self.checker.counts[k]) for k in
               ("refused_unregistered", "dropped_low_confidence", "held_low_confidence")}
        scan = self.scan_result
        if view.reasons is not None and scan is not None:
            out["policy_unregistered_stored_labels"] = float(scan.labels)
        return out

    def reasons_of(self, labels: Iterable[Label]) -> dict[str, Any]:
        """`{"reasons": {name: {tier, description, owner[, enforcement]} or None}}` for the
        reasons of `labels` (None: not registered); `{}` when the store knows no registry."""
        view = self.live.current()
        registry = None if view is None else view.reasons
        if registry is None:
            return {}
        names = sorted({label.reason for label in labels})
        return {"reasons": {n: (r.to_dict() if (r := registry.get(n)) is not None else None)
                            for n in names}}

    async def reasons_endpoint(self, request: Request) -> Response:
        """GET /v1/reasons: the registry of the applied SDK config (`registry` null if none)."""
        authenticate(self._tokens, request, Role.READER)
        view = self.live.current()
        registry = None if view is None else view.reasons
        body: dict[str, Any] = {"sdk_config": None if view is None else view.version,
                                "registry": None}
        if registry is not None:
            body["registry"] = {"tiers": list(registry.tiers), "reasons": registry.to_dict()}
        return respond(request, body)
