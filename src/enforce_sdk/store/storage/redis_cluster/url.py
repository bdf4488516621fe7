"""The `redis-cluster://` storage URL and node lists of the Redis Cluster backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote

from ...._errors import ConfigError

_OPTIONS = {"namespace": str, "min_replicas": int, "wait_timeout": float, "lock_timeout": float}


def parse_nodes(spec: str | Sequence[str]) -> list[tuple[str, int]]:
    """`host:port,host:port` (optionally as a redis-cluster:// URL) -> [(host, port)]."""
    if isinstance(spec, str) and spec.lower().startswith("redis-cluster:"):
        spec = spec.split("://", 1)[-1].split("?", 1)[0].split("/", 1)[0]
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    nodes: list[tuple[str, int]] = []
    for item in items:
        host, sep, port = str(item).strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{item!r} is not host:port", field="storage.url")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ConfigError("names no Redis Cluster node", field="storage.url")
    return nodes



def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """`redis-cluster://h:p,h:p[?namespace=NS&min_replicas=N&wait_timeout=S&lock_timeout=S]`
    -> (the node list, RedisClusterStorage keyword arguments); ConfigError names what is wrong."""
    if not url.lower().startswith("redis-cluster://"):
        raise ConfigError(f"{url!r} is not a redis-cluster:// URL", field="storage.url")
    rest = url.split("://", 1)[1]
    hosts, _, query = rest.partition("?")
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(params) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)} in {url!r}",
                          field="storage.url")
    options: dict[str, Any] = {}
    for name, value in params.items():
        try:
            options[name] = _OPTIONS[name](value)
        except ValueError as exc:
            raise ConfigError(f"bad parameter in {url!r}: {exc}", field="storage.url") from exc
    return unquote(hosts.rstrip("/")), options
