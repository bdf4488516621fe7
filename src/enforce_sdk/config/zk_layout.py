"""Where and how the config lives in ZooKeeper, shared by the SDK source and the push CLI.

Layout under a root path (default `/enforce_sdk/<namespace>`):

    <root>/config              the current config document (compact JSON)
    <root>/history/v<12 digits> one node per pushed version: an envelope with the
                               document and who pushed it, when and why

A push writes `config` (compare-and-set on its node version) and the new
history node in one multi-op transaction, so history never disagrees with what
was served. Every node of the namespace carries the root's ACL: the
config-admin digest identity may do everything, readers (world, or named digest
identities) may only read. Ancestors above the root keep ZooKeeper's default
ACL, so other namespaces (with other admins) can be created next to it.

The document codec (kazoo-free) is in zk_document and re-exported here.
kazoo's exceptions are translated into this package's errors in one place,
`kazoo_errors()`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from kazoo.client import KazooClient
from kazoo.exceptions import (
    AuthFailedError,
    BadVersionError,
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    OperationTimeoutError,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.hosts import collect_hosts
from kazoo.retry import KazooRetry
from kazoo.security import ACL, Id, Permissions, make_digest_acl

from .._errors import (
    ConfigConflictError,
    ConfigPermissionError,
    ConfigSourceError,
    InvalidInputError,
)
from .zk_document import (
    DEFAULT_ROOT,
)

_HISTORY_NAME = re.compile(r"v(\d{12})")
_PATH_RE = re.compile(r"(/[A-Za-z0-9_.\-]+)+")
_CREDENTIAL_RE = re.compile(r"([^:\s]{1,64}):(\S{1,256})")


@dataclass(frozen=True, slots=True)
class ConfigLayout:
    """The znode paths of one config namespace."""

    root: str = DEFAULT_ROOT

    def __post_init__(self) -> None:
        if not isinstance(self.root, str) or not _PATH_RE.fullmatch(self.root):
            raise InvalidInputError(
                f"must be an absolute ZooKeeper path like /enforce_sdk/prod, got {self.root!r}",
                field="path",
            )

    @property
    def config(self) -> str:
        return f"{self.root}/config"

    @property
    def history(self) -> str:
        return f"{self.root}/history"

    def history_node(self, version: int) -> str:
        return f"{self.history}/{history_name(version)}"


def history_name(version: int) -> str:
    """Zero-padded so that names sort in version order."""
    if version < 0 or version >= 10**12:
        raise InvalidInputError(f"version {version} out of range", field="version")
    return f"v{version:012d}"


def parse_history_name(name: str) -> int | None:
    """The version of a history child name, or None for a foreign node."""
    m = _HISTORY_NAME.fullmatch(name)
    return int(m.group(1)) if m else None












def check_hosts(hosts: str) -> str:
    """A kazoo connect string `host:port[,host:port...][/chroot]`, checked before use."""
    try:
        parsed, _ = collect_hosts(hosts) if isinstance(hosts, str) else ([], None)
    except ValueError as exc:
        raise InvalidInputError(f"{exc} in {hosts!r}", field="hosts") from exc
    if not parsed:
        raise InvalidInputError(f"no host in {hosts!r} (expected host:port[,...][/chroot])",
                                field="hosts")
    return hosts


# -- identities and ACLs ----------------------------------------------------------------------


def parse_credential(value: str, *, field: str = "auth") -> tuple[str, str]:
    """Split a digest credential `user:password`."""
    m = _CREDENTIAL_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise InvalidInputError("must be a digest credential of the form user:password", field=field)
    return m.group(1), m.group(2)


def digest_auth(credential: str | None) -> list[tuple[str, str]]:
    """kazoo `auth_data` for an optional `user:password` credential."""
    if credential is None:
        return []
    user, password = parse_credential(credential)
    return [("digest", f"{user}:{password}")]


def config_acls(admin: str, readers: Sequence[str] = ()) -> list[ACL]:
    """ACL of a new namespace root: admin may do all; readers (world if none named) may read.

    Later nodes copy the root's ACL (see ZooKeeperConfigStore.namespace_acls).
    """
    user, password = parse_credential(admin, field="auth")
    acls = [make_digest_acl(user, password, all=True)]
    if not readers:
        acls.append(ACL(Permissions.READ, Id("world", "anyone")))
    for reader in readers:
        r_user, r_password = parse_credential(reader, field="reader")
        if r_user == user:
            raise InvalidInputError("a reader may not share the admin's user name", field="reader")
        acls.append(make_digest_acl(r_user, r_password, read=True))
    return acls


def _who(acl: ACL) -> str:
    """An ACL entry's identity for messages: `world:anyone`, `digest:user` (no hash)."""
    ident = str(acl.id.id)
    if acl.id.scheme == "digest":
        ident = ident.split(":", 1)[0]
    return f"{acl.id.scheme}:{ident}"


def check_namespace_acls(root: str, acls: Sequence[ACL], admin: str,
                         readers: Sequence[str] = ()) -> None:
    """Refuse to write into a namespace whose root ACL is not the config ACL of `admin`.

    The root must give `admin` all permissions and everyone else at most READ
    (an open root would let anyone change or squat the config). If `readers`
    are named, they must be exactly the readers of the root: readers are fixed
    when the namespace is created, and every later node reuses the root's ACL.
    """
    wanted = config_acls(admin, readers)
    admin_id = wanted[0].id
    others = [a for a in acls if a.id != admin_id]

    def refuse_open(entries: list[ACL]) -> None:
        if entries:
            raise ConfigPermissionError(
                f"{root} lets {', '.join(_who(a) for a in entries)} do more than read; "
                "refusing to push into a namespace others can change. Restrict its ACL to "
                "the config admin and readers (zkCli.sh setAcl) or use another --path"
            )

    refuse_open([a for a in others if a.id.scheme != "digest" and a.perms & ~Permissions.READ])
    if not any(a.id == admin_id and a.perms & Permissions.ALL == Permissions.ALL for a in acls):
        admins = [a for a in acls if a.perms & Permissions.ADMIN]
        raise ConfigPermissionError(
            f"writes to {root} would be refused: it is administered by "
            f"{', '.join(_who(a) for a in admins) or 'nobody'}, not by {_who(wanted[0])} "
            "(--auth / ENFORCE_ZK_AUTH)"
        )
    refuse_open([a for a in others if a.perms & ~Permissions.READ])
    if readers:
        have = {(a.id.scheme, a.id.id) for a in others}
        want = {(a.id.scheme, a.id.id) for a in wanted[1:]}
        if have != want:
            raise InvalidInputError(
                f"--reader {' '.join(_who(a) for a in wanted[1:])} does not match the readers "
                f"of {root} ({', '.join(_who(a) for a in others) or 'nobody'}). Readers are "
                "fixed when the namespace is created and every new node reuses them: omit "
                "--reader (and ENFORCE_ZK_READERS), or change the ACL of every node with "
                "zkCli.sh setAcl",
                field="reader",
            )


# -- kazoo errors, translated in one place ---------------------------------------------------


@contextlib.contextmanager
def kazoo_errors(action: str) -> Iterator[None]:
    """Re-raise kazoo failures inside as ConfigSourceError (or a subclass), `from` the original."""
    try:
        yield
    except (NoAuthError, AuthFailedError) as exc:
        raise ConfigPermissionError(
            f"{action}: ZooKeeper refused this identity ({type(exc).__name__}); "
            "writes need the config-admin digest credential"
        ) from exc
    except (BadVersionError, NodeExistsError) as exc:
        raise ConfigConflictError(
            f"{action}: the config changed while this operation ran "
            f"({type(exc).__name__}); read it again and retry"
        ) from exc
    except NoNodeError as exc:
        raise ConfigSourceError(f"{action}: node does not exist") from exc
    except NotEmptyError as exc:
        raise ConfigSourceError(f"{action}: node has children") from exc
    except (ConnectionLoss, ConnectionClosedError, SessionExpiredError,
            OperationTimeoutError, KazooTimeoutError) as exc:
        raise ConfigSourceError(
            f"{action}: ZooKeeper unreachable ({type(exc).__name__}: {exc})"
        ) from exc
    except KazooException as exc:
        raise ConfigSourceError(f"{action}: ZooKeeper error {type(exc).__name__}: {exc}") from exc


def raise_transaction_failure(action: str, results: Sequence[object]) -> None:
    """kazoo returns failed transaction ops as exception objects: raise the first real one."""
    failures = [r for r in results if isinstance(r, Exception)]
    if not failures:
        return
    cause = next(
        (f for f in failures if type(f).__name__ != "RolledBackError"), failures[0]
    )
    with kazoo_errors(action):
        raise cause


def new_client(
    hosts: str,
    auth_data: list[tuple[str, str]] | None,
    *,
    session_timeout: float,
    connect_tries: int,
    retry_delay: float,
    max_retry_delay: float,
) -> KazooClient:
    """The one place a KazooClient is made: the config source's and the admin's differ only
    in how long they keep trying (`connect_tries=-1`: for ever, with backoff)."""
    return KazooClient(
        hosts=hosts,
        timeout=session_timeout,
        auth_data=auth_data,
        connection_retry=KazooRetry(
            max_tries=connect_tries, delay=retry_delay, backoff=2, max_delay=max_retry_delay
        ),
        command_retry=KazooRetry(max_tries=3, delay=retry_delay, max_delay=1.0),
    )
