"""ZooKeeperConfigStore: the operator's side of the config node (read, push, history, rollback).

A push validates the document in full, stamps it with the next version, and
commits two operations in one ZooKeeper transaction: set the config node
*only if* its node version is still the one read before (compare-and-set), and
create the history node of the new version. A concurrent push therefore fails
with ConfigConflictError instead of overwriting; nothing is written half-way.
Writes need the config-admin digest identity; the nodes' ACLs refuse others.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.security import ACL

from .._errors import ConfigConflictError, ConfigError, ConfigPermissionError, ConfigSourceError
from ..model.label import format_time
from .document import EnforcementConfig
from .zk_document import (
    DEFAULT_ROOT,
    MAX_DOCUMENT_BYTES,
    decode_document,
    decode_envelope,
    encode_document,
    encode_envelope,
)
from .zk_layout import (
    ConfigLayout,
    check_hosts,
    check_namespace_acls,
    config_acls,
    digest_auth,
    kazoo_errors,
    new_client,
    parse_credential,
    parse_history_name,
    raise_transaction_failure,
)

log = logging.getLogger(__name__)

Validator = Callable[[Mapping[str, Any]], EnforcementConfig]
DEFAULT_HISTORY_KEEP = 100


@dataclass(frozen=True, slots=True)
class CurrentConfig:
    """The config node as read: document, its version, and the node version (the CAS token).

    `config` is None (and `problem` says why) when the node holds an invalid
    document, e.g. one written around the CLI: a push or rollback may replace it.
    """

    document: dict[str, Any]
    config: EnforcementConfig | None
    problem: str | None
    version: int
    node_version: int
    modified_at: datetime


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One pushed version: the document and who pushed it, when, how and why."""

    version: int
    document: dict[str, Any]
    pushed_at: str
    pushed_by: str
    kind: str  # "push" | "rollback"
    comment: str
    rollback_of: int | None


def stamp_version(document: Mapping[str, Any], version: int) -> dict[str, Any]:
    """A copy of the document carrying `version`."""
    stamped = dict(document)
    stamped["version"] = version
    return stamped


def next_version(current: CurrentConfig | None, requested: object, history: Sequence[int] = ()) -> int:
    """One more than any version seen (current or history), or the document's own if higher."""
    floor = max(current.version if current is not None else 0, max(history, default=0)) + 1
    if isinstance(requested, int) and not isinstance(requested, bool) and requested > floor:
        return requested
    return floor


class ZooKeeperConfigStore:
    """Admin access to one config namespace in ZooKeeper. Use as a context manager."""

    def __init__(
        self,
        hosts: str,
        path: str = DEFAULT_ROOT,
        *,
        auth: str | None = None,
        readers: Sequence[str] = (),
        timeout: float = 10.0,
        max_bytes: int = MAX_DOCUMENT_BYTES,
        history_keep: int = DEFAULT_HISTORY_KEEP,
        validator: Validator | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.layout = ConfigLayout(path)
        self.hosts = check_hosts(hosts)
        self._auth = auth
        self._auth_data = digest_auth(auth)
        self._readers = tuple(readers)
        for reader in self._readers:
            parse_credential(reader, field="reader")
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._history_keep = history_keep
        self._validate: Validator = validator or EnforcementConfig.from_dict
        self._wall = wall_clock
        self._zk: KazooClient | None = None

    # -- connection -------------------------------------------------------------------------

    def __enter__(self) -> ZooKeeperConfigStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        zk, self._zk = self._zk, None
        if zk is not None:
            with contextlib.suppress(Exception):
                zk.stop()
            with contextlib.suppress(Exception):
                zk.close()

    @property
    def zk(self) -> KazooClient:
        """The connected client, connecting on first use."""
        if self._zk is None:
            zk = new_client(
                self.hosts, self._auth_data, session_timeout=max(self._timeout, 1.0),
                connect_tries=3, retry_delay=0.1, max_retry_delay=1.0,
            )
            with kazoo_errors(f"connect to ZooKeeper {self.hosts}"):
                zk.start(timeout=self._timeout)
            self._zk = zk
        return self._zk

    # -- reading -----------------------------------------------------------------------------

    def validate(self, document: Mapping[str, Any]) -> EnforcementConfig:
        """Full validation, plus the size limit of the node."""
        encode_document(document, max_bytes=self._max_bytes)
        return self._validate(document)

    def current(self, *, strict: bool = True) -> CurrentConfig | None:
        """The config node now, or None before the first push.

        An invalid document raises ConfigError, unless `strict` is false: then it
        comes back with `config=None` and the reason in `problem`.
        """
        with kazoo_errors(f"read {self.layout.config}"):
            if self.zk.exists(self.layout.config) is None:
                return None
            data, stat = self.zk.get(self.layout.config)
        modified = datetime.fromtimestamp(stat.mtime / 1000, UTC)
        try:
            document = decode_document(data, max_bytes=self._max_bytes)
            config = self._validate(document)
        except ConfigError as exc:
            if strict:
                raise ConfigError(f"the config now in ZooKeeper is invalid: {exc}",
                                  field="document") from exc
            raw = _lenient_version(data)
            return CurrentConfig({}, None, str(exc), raw, stat.version, modified)
        return CurrentConfig(document, config, None, config.version, stat.version, modified)

    def history_versions(self) -> list[int]:
        """Versions with a history node, ascending."""
        with kazoo_errors(f"list {self.layout.history}"):
            if self.zk.exists(self.layout.history) is None:
                return []
            names = self.zk.get_children(self.layout.history)
        return sorted(v for v in map(parse_history_name, names) if v is not None)

    def entry(self, version: int) -> HistoryEntry:
        """One version's history entry; ConfigSourceError if it is not kept."""
        try:
            with kazoo_errors(f"read history of version {version}"):
                data, _ = self.zk.get(self.layout.history_node(version))
        except ConfigSourceError as exc:
            if isinstance(exc, ConfigPermissionError):
                raise
            kept = self.history_versions()
            span = f"{kept[0]}..{kept[-1]}" if kept else "none"
            raise ConfigSourceError(
                f"version {version} is not in the history (kept: {span})"
            ) from exc
        envelope = decode_envelope(data)
        return HistoryEntry(
            version=version,
            document=envelope["document"],
            pushed_at=str(envelope.get("pushed_at", "")),
            pushed_by=str(envelope.get("pushed_by", "")),
            kind=str(envelope.get("kind", "push")),
            comment=str(envelope.get("comment", "")),
            rollback_of=envelope.get("rollback_of"),
        )

    def newest_valid(self) -> tuple[int, EnforcementConfig] | None:
        """The newest history version whose document validates, with its config.

        When the config node holds an invalid document (written around the CLI),
        SDK hosts keep serving the last valid version they saw: the newest valid
        pushed version. None if the history holds none.
        """
        for version in reversed(self.history_versions()):
            try:
                return version, self._validate(self.entry(version).document)
            except ConfigError as exc:
                log.warning("config: history version %d is invalid: %s", version, exc)
        return None

    def history(self, limit: int | None = None) -> list[HistoryEntry]:
        """History entries, newest first."""
        versions = self.history_versions()[::-1]
        if limit is not None:
            versions = versions[:limit]
        return [self.entry(v) for v in versions]

    # -- writing -----------------------------------------------------------------------------

    def _require_admin(self) -> str:
        if self._auth is None:
            raise ConfigPermissionError(
                "writing the config needs the config-admin credential (--auth / ENFORCE_ZK_AUTH)"
            )
        return self._auth

    def namespace_acls(self) -> list[ACL]:
        """The ACL of every new node: the root's own, or (no root yet) the config ACL.

        Reusing the root's ACL keeps named readers on every later node whatever
        the flags of later commands. The root is checked first: it must be the
        admin's and closed to writes by others; `--reader` must match its readers.
        """
        admin = self._require_admin()
        with kazoo_errors(f"read the ACL of {self.layout.root}"):
            try:
                acls, _ = self.zk.get_acls(self.layout.root)
            except NoNodeError:
                return config_acls(admin, self._readers)
        check_namespace_acls(self.layout.root, acls, admin, self._readers)
        return list(acls)

    def ensure_layout(self, acls: Sequence[ACL] | None = None) -> None:
        """Create the root and history nodes with the config ACL.

        Missing ancestors of the root get ZooKeeper's default ACL, not the
        namespace's: an admin-only `/enforce_sdk` would stop another admin from
        creating a namespace next to this one.
        """
        acls = list(acls) if acls is not None else self.namespace_acls()
        root = self.layout.root
        parent = root.rsplit("/", 1)[0]
        with kazoo_errors(f"create {root}"):
            if parent:
                self.zk.ensure_path(parent)
            for path in (root, self.layout.history):
                with contextlib.suppress(NodeExistsError):
                    self.zk.create(path, b"", acl=acls)

    def push(
        self,
        document: Mapping[str, Any],
        *,
        expected: CurrentConfig | None,
        comment: str = "",
        kind: str = "push",
        rollback_of: int | None = None,
    ) -> EnforcementConfig:
        """Write `document` as the next version, if the node is still `expected`.

        `expected` is what the caller read (None: there was no config yet). The
        version is stamped here: one more than `expected`'s, or the document's
        own if higher. Raises ConfigConflictError if someone pushed in between.
        """
        admin = self._require_admin()
        version = next_version(expected, document.get("version"), self.history_versions())
        stamped = stamp_version(document, version)
        data = encode_document(stamped, max_bytes=self._max_bytes)
        config = self._validate(stamped)
        envelope = encode_envelope({
            "version": version,
            "document": stamped,
            "pushed_at": format_time(datetime.fromtimestamp(self._wall(), UTC)),
            "pushed_by": _operator(admin),
            "kind": kind,
            "comment": comment,
            "rollback_of": rollback_of,
        })
        acls = self.namespace_acls()
        if expected is None:
            self.ensure_layout(acls)
        action = f"push version {version} to {self.layout.config}"
        try:
            with kazoo_errors(action):
                tx = self.zk.transaction()
                if expected is None:
                    tx.create(self.layout.config, data, acl=acls)
                else:
                    tx.set_data(self.layout.config, data, version=expected.node_version)
                tx.create(self.layout.history_node(version), envelope, acl=acls)
                results = tx.commit()
            raise_transaction_failure(action, results)
        except ConfigConflictError as exc:
            raise ConfigConflictError(self._conflict_message(expected, version)) from exc
        log.info("config: pushed version %d to %s", version, self.layout.config)
        self._prune_history()
        return config

    def _conflict_message(self, expected: CurrentConfig | None, version: int) -> str:
        base = f"version {expected.version}" if expected else "no config"
        now = ""
        with contextlib.suppress(Exception):
            current = self.current(strict=False)
            if current is not None:
                now = f"; it now holds version {current.version}"
        return (
            f"push of version {version} refused: the config changed since it was read "
            f"(read {base}){now}. Someone else pushed concurrently; "
            "review `config diff` and push again"
        )

    def rollback(self, version: int, *, comment: str = "") -> EnforcementConfig:
        """Re-push an earlier version's document as a new, higher version."""
        entry = self.entry(version)
        expected = self.current(strict=False)
        return self.push(
            entry.document, expected=expected, kind="rollback", rollback_of=version,
            comment=comment or f"rollback to version {version}",
        )

    def _prune_history(self) -> None:
        """Keep the newest `history_keep` entries; failures only log (the push stands)."""
        versions = self.history_versions()
        for old in versions[: max(0, len(versions) - self._history_keep)]:
            try:
                with kazoo_errors(f"prune history version {old}"):
                    self.zk.delete(self.layout.history_node(old))
            except ConfigSourceError as exc:
                log.warning("config: %s", exc)
                return


def _operator(admin: str) -> str:
    user, _ = parse_credential(admin)
    try:
        who = f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:  # getuser() raises without a passwd entry or env var
        who = socket.gethostname()
    return f"{user} ({who})"


def _lenient_version(data: bytes | None) -> int:
    """Best-effort version of an invalid document (0 if none can be read)."""
    with contextlib.suppress(Exception):
        version = decode_document(data, max_bytes=len(data or b"") + 1).get("version")
        if isinstance(version, int) and not isinstance(version, bool):
            return version
    return 0
