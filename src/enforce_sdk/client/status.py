"""`client.status()` and `wait_until_ready()`: what a host can see of a client, and when to serve.

`status()` is a snapshot read without I/O: the applied config (version,
origin, age), the store as last seen (reachable or not, the last error and
where it happened), the change feed (position, lag) and the bloom precheck
(loaded, sequence, age, stale). `ready` is the short answer: the store
answered the last exchange and, when the client follows the feed, the feed has
started.

`wait_until_ready(timeout)` (both faces) makes a real store read of one key
with the client's own token, retried until `timeout`, then waits for the feed's
first page; it raises NotReadyError naming the component that is not usable:
`token` at once when the store refuses the token (401/403: retrying cannot
help), `store` when no read succeeded in time, `feed` when the feed did not
start. The config needs no wait: a client is not constructed without one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .._errors import AuthError, NotReadyError
from .runtime import ClientRuntime

PROBE_KEY = "pin:0"  # what wait_until_ready reads: any valid key; its labels do not matter
PROBE_INTERVAL = 0.2  # seconds between probe reads while the store does not answer


@dataclass(frozen=True, slots=True)
class ClientStatus:
    """A snapshot of one client's state (see the module doc)."""

    ready: bool
    config_version: int
    config_origin: str
    config_age_seconds: float
    store_url: str
    store_reachable: bool | None  # None: no exchange with the store yet
    last_error: str | None  # "<where>: <error>", the latest failure
    last_error_at: float | None  # its wall-clock time (epoch seconds)
    feed_following: bool
    feed_position: int | None
    feed_lag_seconds: float | None  # None before the first page
    bloom_enabled: bool
    bloom_loaded: bool
    bloom_seq: int | None
    bloom_age_seconds: float | None
    bloom_stale: bool | None
    degraded: int  # degraded decisions so far
    hook_errors: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def client_status(core: ClientRuntime, store_url: str) -> ClientStatus:
    stats = core.stats
    meta = core.config_meta
    follower, gate = core.follower, core.bloom_gate
    lag = None if follower is None else follower.lag()
    position = None if follower is None else follower.position
    error = stats.last_error
    bloom_loaded = gate is not None and gate.bloom is not None
    loaded_at = None if gate is None else gate.loaded_at
    return ClientStatus(
        ready=stats.store_reachable is True and (follower is None or position is not None),
        config_version=meta.version,
        config_origin=meta.origin,
        config_age_seconds=max(0.0, core.wall_time() - meta.applied_at),
        store_url=store_url,
        store_reachable=stats.store_reachable,
        last_error=None if error is None else f"{error[0]}: {error[1]}",
        last_error_at=None if error is None else error[2],
        feed_following=follower is not None,
        feed_position=position,
        feed_lag_seconds=None if lag is None or math.isinf(lag) else lag,
        bloom_enabled=gate is not None and gate.enabled,
        bloom_loaded=bloom_loaded,
        bloom_seq=None if gate is None else gate.seq,
        bloom_age_seconds=(None if not bloom_loaded or loaded_at is None
                           else core.monotonic() - loaded_at),
        bloom_stale=None if gate is None or not gate.enabled else gate.stale(),
        degraded=stats.degraded,
        hook_errors=stats.hook_errors,
    )


def probe_failed(exc: Exception, store_url: str) -> NotReadyError | None:
    """The NotReadyError a failed probe read means at once (a refused token), else None."""
    if isinstance(exc, AuthError):
        return NotReadyError(f"the store at {store_url} refused this client's token "
                             f"({exc.status}): {exc.detail}", component="token")
    return None


def store_not_ready(store_url: str, timeout: float, last: Exception | None) -> NotReadyError:
    detail = f": {type(last).__name__}: {last}" if last is not None else ""
    return NotReadyError(f"no read from the store at {store_url} succeeded within "
                         f"{timeout:g}s{detail}", component="store")


def feed_not_ready(core: ClientRuntime, timeout: float) -> NotReadyError:
    error = core.stats.last_error
    detail = f" (last error: {error[0]}: {error[1]})" if error is not None else ""
    return NotReadyError(f"the change feed did not start within {timeout:g}s{detail}",
                         component="feed")


def feed_started(core: ClientRuntime) -> bool:
    return core.follower is None or core.follower.position is not None


def check_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
            timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)

