"""Hooks: callbacks a host service registers to watch a client, never able to break a check.

Three kinds, as LaunchDarkly's and OpenFeature's SDKs offer them:

- `on_config_change(fn)`: `fn(config, meta)` after each config version is
  applied (on the config source's thread);
- `on_degraded(fn)`: `fn(decision)` for every degraded decision returned;
- `on_decision(fn, sample=0.01)`: `fn(decision)` for a random share `sample`
  of the decisions returned (1.0: all).

Decision hooks run on the caller's thread (or event loop) after the decision is
made, before it is returned, so keep them short; a slow one slows the checks it
sees. A hook that raises is logged (its first failure with the traceback, then
every 1,000th) and counted in `stats.hook_errors`; the check returns its
decision as if the hook had not run. Registering returns a function that
unregisters.

Cost: none while no decision hook is registered (the faces keep the native
gate's `check` bound directly); with one, every check pays a Python wrapper
and a sampled call, and `filter` computes its decisions in full to show them.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..config.document import EnforcementConfig
from ..config.source import ConfigMeta
from ..policy.decision import Decision
from .stats import Stats

log = logging.getLogger(__name__)

ConfigHook = Callable[[EnforcementConfig, ConfigMeta], Any]
DecisionHook = Callable[[Decision], Any]
LOG_EVERY = 1000  # a hook that keeps failing is logged once per this many failures


class Hooks:
    """The hooks of one client; `changed` is called when decision hooks come or go."""

    def __init__(self, stats: Stats, changed: Callable[[], None] = lambda: None) -> None:
        self._stats = stats
        self.changed = changed  # the face's: switch its check() to or from the observed one
        self._lock = threading.Lock()
        self._config: tuple[ConfigHook, ...] = ()
        self._degraded: tuple[DecisionHook, ...] = ()
        self._sampled: tuple[tuple[DecisionHook, float], ...] = ()
        self._failures: dict[int, int] = {}
        self.observing = False  # any decision hook registered: the faces show them decisions

    # -- registration ----------------------------------------------------------------

    def on_config_change(self, fn: ConfigHook) -> Callable[[], None]:
        """Call `fn(config, meta)` after every config version applied from now on."""
        _check_callable(fn)
        with self._lock:
            self._config += (fn,)
        return lambda: self._remove("_config", fn)

    def on_degraded(self, fn: DecisionHook) -> Callable[[], None]:
        """Call `fn(decision)` for every degraded decision returned from now on."""
        _check_callable(fn)
        with self._lock:
            self._degraded += (fn,)
        self._update()
        return lambda: self._remove("_degraded", fn)

    def on_decision(self, fn: DecisionHook, *, sample: float = 0.01) -> Callable[[], None]:
        """Call `fn(decision)` for a random share `sample` (0 < sample <= 1) of decisions."""
        _check_callable(fn)
        if isinstance(sample, bool) or not isinstance(sample, int | float) or not (
                0.0 < sample <= 1.0):
            raise ValueError(f"sample must be in (0, 1], got {sample!r}")
        entry = (fn, float(sample))
        with self._lock:
            self._sampled += (entry,)
        self._update()
        return lambda: self._remove("_sampled", entry)

    def _remove(self, name: str, item: object) -> None:
        with self._lock:
            kept = tuple(x for x in getattr(self, name) if x is not item)
            setattr(self, name, kept)
        self._update()

    def _update(self) -> None:
        observing = bool(self._degraded or self._sampled)
        if observing != self.observing:
            self.observing = observing
            self.changed()

    # -- delivery ----------------------------------------------------------------------

    def config_changed(self, config: EnforcementConfig, meta: ConfigMeta) -> None:
        for fn in self._config:
            self._call(fn, config, meta)

    def observe(self, decisions: Iterable[Decision]) -> None:
        """Show `decisions` (just made, about to be returned) to the decision hooks."""
        degraded, sampled = self._degraded, self._sampled
        draw = random.random
        for decision in decisions:
            if decision.degraded:
                for fn in degraded:
                    self._call(fn, decision)
            for fn, share in sampled:
                if share >= 1.0 or draw() < share:
                    self._call(fn, decision)

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            self._stats.hook_errors += 1
            count = self._failures.get(id(fn), 0) + 1
            self._failures[id(fn)] = count
            if count == 1 or count % LOG_EVERY == 0:
                log.exception("hook %r failed (failure %d); the check went on without it",
                              fn, count)


def _check_callable(fn: object) -> None:
    if not callable(fn):
        raise TypeError(f"a hook must be callable, got {type(fn).__name__}")
