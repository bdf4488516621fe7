"""`serve --sdk-config`: feed the store the SDK config from a file or ZooKeeper.

The store cannot import the SDK's config wing (docs/architecture.md); this
module, above both, adapts a config source to the store's `PolicyFeed`
(store/live_policy). A file is re-read when its modification time or size
changes (checked every FILE_POLL_SECONDS); ZooKeeper is watched by the same
source the SDKs use, so a `config push` reaches the store as it reaches them.
An invalid new version is logged and the applied one kept, as in the SDK.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from .._errors import ConfigError
from ..config.document import EnforcementConfig
from ..config.source import ConfigMeta, ConfigSource, FileConfigSource
from ..config.zk_document import DEFAULT_ROOT
from ..store.live_policy import LivePolicy, PolicyFeed, PolicyView

log = logging.getLogger(__name__)

FILE_POLL_SECONDS = 1.0
ZK_SCHEME = "zk://"
ZK_AUTH_ENV = "ENFORCE_SDK_CONFIG_ZK_AUTH"  # a digest credential user:password for read ACLs


def policy_view(config: EnforcementConfig, meta: ConfigMeta) -> PolicyView:
    """The store's view of one applied SDK config version."""
    return PolicyView(version=config.version, origin=meta.origin, surfaces=config.surfaces,
                      resolvers=config.resolvers, document=config.to_dict())


def sdk_config_feed(spec: str) -> PolicyFeed:
    """A feed for `spec`: a `.toml`/`.json` file path, or `zk://HOST:PORT[,...]/ROOT`.

    Raises ConfigError at once for a spec that cannot name a source (the store's
    startup then reads the document itself and fails clearly if it is invalid).
    """
    if spec.startswith(ZK_SCHEME):
        hosts, root = _split_zk(spec)
        return lambda live: _start(_zk_source(hosts, root), live)
    path = Path(spec)
    if path.suffix not in (".toml", ".json"):
        raise ConfigError(f"--sdk-config {spec!r}: give a .toml or .json file, "
                          f"or {ZK_SCHEME}HOST:PORT[,...]/ROOT")
    return lambda live: _start_file(path, live)


def _split_zk(spec: str) -> tuple[str, str]:
    rest = spec[len(ZK_SCHEME):]
    hosts, sep, root = rest.partition("/")
    if not hosts:
        raise ConfigError(f"--sdk-config {spec!r}: no ZooKeeper hosts after {ZK_SCHEME}")
    return hosts, ("/" + root.rstrip("/")) if sep and root.strip("/") else DEFAULT_ROOT


def _zk_source(hosts: str, root: str) -> ConfigSource:
    try:
        from ..config.zk_source import ZooKeeperConfigSource
    except ModuleNotFoundError as exc:
        if exc.name != "kazoo":
            raise
        raise ConfigError("--sdk-config zk://... needs kazoo: pip install "
                          "'enforce-sdk[zookeeper]'") from exc
    return ZooKeeperConfigSource(hosts, root, cache_path=None,
                                 auth=os.environ.get(ZK_AUTH_ENV) or None)


def _start(source: ConfigSource, live: LivePolicy) -> Callable[[], None]:
    def update(config: EnforcementConfig, meta: ConfigMeta) -> None:
        live.set(policy_view(config, meta))
        log.info("SDK config version %d from %s", config.version, meta.origin)

    config, meta = source.start(update)
    live.set(policy_view(config, meta))
    log.info("SDK config version %d from %s", config.version, meta.origin)
    return source.close


def _start_file(path: Path, live: LivePolicy) -> Callable[[], None]:
    source = FileConfigSource(path)
    stamp = _stamp(path)
    stop_source = _start(source, live)
    stopped = threading.Event()

    def poll() -> None:
        nonlocal stamp
        while not stopped.wait(FILE_POLL_SECONDS):
            now = _stamp(path)
            if now == stamp:
                continue
            stamp = now
            try:
                source.reload()  # applies it only if valid and newer; logs a rejection
            except ConfigError:
                pass
            except OSError as exc:
                log.warning("cannot re-read the SDK config %s: %s", path, exc)

    thread = threading.Thread(target=poll, name="enforce-store-sdk-config", daemon=True)
    thread.start()

    def stop() -> None:
        stopped.set()
        thread.join(timeout=5.0)
        stop_source()

    return stop


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
