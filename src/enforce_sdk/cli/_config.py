"""`enforce-sdk config ...`: validate, push (compare-and-set, with a dry-run guardrail),
get, history, diff and rollback the SDK config document in ZooKeeper.

ZooKeeper is named by --hosts/--path/--auth or ENFORCE_ZK_HOSTS, ENFORCE_ZK_PATH,
ENFORCE_ZK_AUTH (the config-admin digest credential `user:password`; needed to
write). Exit codes: 0 ok; 1 the change was refused (invalid document, guardrail,
concurrent push); 2 usage, permission or connection error.
"""

from __future__ import annotations

import difflib
import json
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from .._errors import (
    ConfigConflictError,
    ConfigError,
    StoreError,
)
from ..config.document import EnforcementConfig
from ..config.dryrun import (
    DEFAULT_MAX_SHIFT,
    DEFAULT_SAMPLE_SIZE,
    DryRunReport,
    dry_run,
    fetch_store_sample,
    load_sample_file,
    merge_samples,
)
from ..config.zk_document import DEFAULT_ROOT, MAX_DOCUMENT_BYTES, decode_document, encode_document
from ..model.label import Label
from ..store_client.client import LabelStoreClient
from ._common import EXIT_REJECTED, EXIT_USAGE, TOKEN_ENV, URL_ENV, CliError, describe_store_error
from ._common import with_errors as common_with_errors

if TYPE_CHECKING:
    from ..config.zk_admin import CurrentConfig, ZooKeeperConfigStore

HOSTS_ENV = "ENFORCE_ZK_HOSTS"
PATH_ENV = "ENFORCE_ZK_PATH"
AUTH_ENV = "ENFORCE_ZK_AUTH"
READERS_ENV = "ENFORCE_ZK_READERS"
MAX_SHIFT_ENV = "ENFORCE_CONFIG_MAX_SHIFT"
DEFAULT_HOSTS = "127.0.0.1:2181"

P = ParamSpec("P")
R = TypeVar("R")


# -- shared options and error handling --------------------------------------------------------


def zk_options(func: Callable[P, R]) -> Callable[P, R]:
    """--hosts, --path, --auth, --zk-timeout, with their environment variables."""
    func = click.option("--zk-timeout", type=click.FloatRange(min=0.1), default=10.0,
                        show_default=True, help="Seconds to wait for ZooKeeper.")(func)
    func = click.option("--auth", envvar=AUTH_ENV, default=None, metavar="USER:PASSWORD",
                        help=f"Config-admin digest credential, needed to write (env {AUTH_ENV}).",
                        )(func)
    func = click.option("--path", "root", envvar=PATH_ENV, default=DEFAULT_ROOT,
                        show_default=True, metavar="ZNODE",
                        help=f"Root of the config namespace (env {PATH_ENV}).")(func)
    func = click.option("--hosts", envvar=HOSTS_ENV, default=DEFAULT_HOSTS, show_default=True,
                        metavar="HOST:PORT[,...][/CHROOT]",
                        help=f"ZooKeeper connect string (env {HOSTS_ENV}).")(func)
    return func


def guardrail_options(func: Callable[P, R]) -> Callable[P, R]:
    """Options of the dry-run guardrail shared by push and rollback."""
    opts = [
        click.option("--force", is_flag=True, help="Push even if the guardrail refuses."),
        click.option("--max-shift", type=click.FloatRange(0.0, 1.0), envvar=MAX_SHIFT_ENV,
                     default=DEFAULT_MAX_SHIFT, show_default=True,
                     help="Largest allowed change of the hidden share on any surface "
                          f"(0.02 = 2 points; env {MAX_SHIFT_ENV})."),
        click.option("--sample", "samples", multiple=True,
                     type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="JSONL label export to dry-run against (repeatable)."),
        click.option("--store-url", envvar=URL_ENV, default=None, metavar="URL",
                     help=f"Also sample recent labels from this Label Store (env {URL_ENV})."),
        click.option("--token", envvar=TOKEN_ENV, default=None, metavar="TOKEN",
                     help=f"Bearer token for --store-url (env {TOKEN_ENV})."),
        click.option("--sample-size", type=click.IntRange(min=1), default=DEFAULT_SAMPLE_SIZE,
                     show_default=True, help="Entities in the dry-run sample."),
        click.option("--comment", "-m", default="", help="Why: kept in the history."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def with_errors(func: Callable[P, R]) -> Callable[P, R]:
    """The shared translator (cli/_common); a config that fails validation is "rejected"."""
    wrapped: Callable[P, R] = common_with_errors(rejected=(ConfigError, ConfigConflictError))(func)
    return wrapped


def _store(hosts: str, root: str, auth: str | None, zk_timeout: float,
           readers: tuple[str, ...] = ()) -> ZooKeeperConfigStore:
    """The ZooKeeper admin; kazoo (the [zookeeper] extra) loads only for commands that talk
    to ZooKeeper, so the offline ones (validate, diff, dry run) work without it."""
    try:
        from ..config.zk_admin import ZooKeeperConfigStore
    except ModuleNotFoundError as exc:
        if exc.name != "kazoo":
            raise
        raise CliError("this command talks to ZooKeeper: pip install 'enforce-sdk[zookeeper]'",
                       EXIT_USAGE) from exc
    return ZooKeeperConfigStore(hosts, root, auth=auth, readers=readers, timeout=zk_timeout)


def read_document_file(path: Path) -> dict[str, Any]:
    """A config document from a JSON or (by its `.toml` suffix) TOML file, refused with a
    reason if malformed or too large. ZooKeeper stores the JSON form either way."""
    data = path.read_bytes()
    try:
        if path.suffix.lower() == ".toml":
            return _toml_document(data)
        return decode_document(data, max_bytes=MAX_DOCUMENT_BYTES)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.problem}", field=exc.field) from exc


def _toml_document(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ConfigError(f"{len(data)} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit",
                          field="document")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 at byte {exc.start}", field="document") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed TOML: {exc}", field="document") from exc


def _validate_file(path: Path) -> tuple[dict[str, Any], EnforcementConfig]:
    document = read_document_file(path)
    encode_document(document)  # the size limit applies to the compact form stored
    try:
        return document, EnforcementConfig.from_dict(document)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _pretty(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -- commands -------------------------------------------------------------------------------


@click.group("config")
def config() -> None:
    """The SDK config document in ZooKeeper: validate, push, inspect, roll back."""


@config.command("validate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--sample", "samples", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL label export to check against the reason registry (repeatable).")
@click.option("--store-url", envvar=URL_ENV, default=None, metavar="URL",
              help=f"Also check recent labels of this Label Store (env {URL_ENV}).")
@click.option("--token", envvar=TOKEN_ENV, default=None, metavar="TOKEN",
              help=f"Bearer token for --store-url (env {TOKEN_ENV}).")
@click.option("--sample-size", type=click.IntRange(min=1), default=DEFAULT_SAMPLE_SIZE,
              show_default=True, help="Entities sampled from the store.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@with_errors
def validate_cmd(file: Path, samples: tuple[Path, ...], store_url: str | None,
                 token: str | None, sample_size: int, as_json: bool) -> None:
    """Validate FILE in full, as every SDK host would, without touching ZooKeeper.

    With a label sample (--sample, --store-url) and a reason registry in FILE,
    also warn about sampled labels whose reason is not registered: stores keep
    serving them, and the Label Checker refuses new ones.
    """
    _, cfg = _validate_file(file)
    size = len(encode_document(read_document_file(file)))
    answer: dict[str, Any] = {"file": str(file), "valid": True, "version": cfg.version,
                              "surfaces": sorted(cfg.surfaces), "bytes": size}
    if not as_json:
        click.echo(f"OK: {file} is a valid config (version {cfg.version}, "
                   f"surfaces: {', '.join(sorted(cfg.surfaces)) or 'none'}, {size} bytes)")
    if (samples or store_url) and cfg.reasons is not None:
        sample = _sample(samples, store_url, token, sample_size)
        unknown = Counter(label.reason for labels in sample.values() for label in labels
                          if label.reason not in cfg.reasons)
        answer["unregistered_reasons"] = dict(sorted(unknown.items()))
        if unknown and not as_json:
            listed = ", ".join(f"{r} ({n})" for r, n in sorted(unknown.items()))
            click.echo(f"warning: {sum(unknown.values())} of the sampled labels carry reasons "
                       f"not in the registry: {listed}; they keep serving, new ones are refused",
                       err=True)
        elif not as_json:
            click.echo(f"every reason of the {len(sample)} sampled entities is registered")
    if as_json:
        click.echo(json.dumps(answer))


@config.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of the config document (for editors; docs/config.schema.json)."""
    from ..config.schema import config_schema

    click.echo(json.dumps(config_schema(), indent=2))


@config.command("push")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@guardrail_options
@click.option("--reader", "readers", multiple=True, envvar=READERS_ENV, metavar="USER:PASSWORD",
              help="Digest identities allowed to read, fixed when the namespace is first "
                   "created (default: world-readable); later pushes reuse the namespace's "
                   "readers and refuse a --reader that does not match them (env "
                   + READERS_ENV + ").")
@click.option("--dry-run", "dry_run_only", is_flag=True,
              help="Validate and dry-run against the current version, then stop: push nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@zk_options
@with_errors
def push_cmd(file: Path, force: bool, max_shift: float, samples: tuple[Path, ...],
             store_url: str | None, token: str | None, sample_size: int, comment: str,
             readers: tuple[str, ...], dry_run_only: bool, as_json: bool, hosts: str, root: str,
             auth: str | None, zk_timeout: float) -> None:
    """Validate FILE, dry-run it, and write it as the next version (compare-and-set).

    The version pushed is one more than the current one (or FILE's own version if
    higher). If someone pushes between our read and our write, the push fails
    instead of overwriting their change.
    """
    document, _ = _validate_file(file)
    with _store(hosts, root, auth, zk_timeout, readers) as store:
        current = store.current(strict=False)
        _guardrail(_baseline(store, current), document, samples, store_url, token,
                   sample_size, max_shift, force)
        previous = None if current is None else current.version
        if dry_run_only:
            _say(as_json, "dry run: nothing pushed",
                 {"pushed": None, "previous": previous, "dry_run": True})
            return
        pushed = store.push(document, expected=current, comment=comment)
        was = f"was {current.version}" if current is not None else "first version"
        _say(as_json, f"pushed version {pushed.version} to {store.layout.config} ({was})",
             {"pushed": pushed.version, "previous": previous, "node": store.layout.config})


def _say(as_json: bool, text: str, answer: Mapping[str, Any]) -> None:
    click.echo(json.dumps(answer) if as_json else text)


@config.command("rollback")
@click.argument("version", type=click.IntRange(min=0))
@guardrail_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@zk_options
@with_errors
def rollback_cmd(version: int, force: bool, max_shift: float, samples: tuple[Path, ...],
                 store_url: str | None, token: str | None, sample_size: int, comment: str,
                 as_json: bool, hosts: str, root: str, auth: str | None,
                 zk_timeout: float) -> None:
    """Re-push VERSION's document from the history as a new, higher version.

    The guardrail runs when a sample is given (--sample / --store-url); without one
    the rollback proceeds, since it returns to a config that has served before.
    """
    with _store(hosts, root, auth, zk_timeout) as store:
        entry = store.entry(version)
        current = store.current(strict=False)
        if samples or store_url:
            _guardrail(_baseline(store, current), entry.document, samples, store_url, token,
                       sample_size, max_shift, force)
        pushed = store.push(entry.document, expected=current, kind="rollback",
                            rollback_of=version,
                            comment=comment or f"rollback to version {version}")
        was = current.version if current is not None else "none"
        _say(as_json, f"rolled back to version {version}'s document as version "
             f"{pushed.version} (was {was})",
             {"pushed": pushed.version, "rollback_of": version,
              "previous": None if current is None else current.version})


@config.command("get")
@click.option("--version", "version", type=click.IntRange(min=0), default=None,
              help="A version from the history instead of the current config.")
@zk_options
@with_errors
def get_cmd(version: int | None, hosts: str, root: str, auth: str | None,
            zk_timeout: float) -> None:
    """Print the current config document (or one from the history) as JSON."""
    with _store(hosts, root, auth, zk_timeout) as store:
        if version is not None:
            click.echo(_pretty(store.entry(version).document), nl=False)
            return
        current = store.current(strict=False)
        if current is None:
            raise CliError(f"no config at {store.layout.config} yet", EXIT_REJECTED)
        if current.config is None:
            raise CliError(f"the config at {store.layout.config} is invalid: {current.problem}",
                           EXIT_REJECTED)
        click.echo(_pretty(current.document), nl=False)


@config.command("history")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@zk_options
@with_errors
def history_cmd(limit: int, as_json: bool, hosts: str, root: str, auth: str | None,
                zk_timeout: float) -> None:
    """List pushed versions, newest first (`*` marks the one now in force)."""
    with _store(hosts, root, auth, zk_timeout) as store:
        current = store.current(strict=False)
        entries = store.history(limit)
        if not entries:
            click.echo(f"no history at {store.layout.history}")
            return
        for e in entries:
            if as_json:
                click.echo(json.dumps({
                    "version": e.version, "pushed_at": e.pushed_at, "pushed_by": e.pushed_by,
                    "kind": e.kind, "comment": e.comment, "rollback_of": e.rollback_of,
                    "current": current is not None and current.version == e.version,
                }, sort_keys=True))
                continue
            mark = "*" if current is not None and current.version == e.version else " "
            what = e.kind if e.rollback_of is None else f"{e.kind} of v{e.rollback_of}"
            click.echo(f"{mark} v{e.version:<6} {e.pushed_at:<27} {e.pushed_by:<32} "
                       f"{what:<18} {e.comment}")


@config.command("diff")
@click.argument("targets", nargs=-1, required=True, metavar="FILE | V1 V2")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@zk_options
@with_errors
def diff_cmd(targets: tuple[str, ...], as_json: bool, hosts: str, root: str, auth: str | None,
             zk_timeout: float) -> None:
    """Unified diff of FILE against the current config, or of two history versions."""
    with _store(hosts, root, auth, zk_timeout) as store:
        if len(targets) == 1:
            new_doc = read_document_file(Path(targets[0]))
            current = store.current(strict=False)
            old_doc = current.document if current is not None else {}
            old_name = f"{store.layout.config} (v{current.version})" if current else "(none)"
            new_name = targets[0]
        elif len(targets) == 2 and all(t.isdigit() for t in targets):
            v1, v2 = (int(t) for t in targets)
            old_doc, new_doc = store.entry(v1).document, store.entry(v2).document
            old_name, new_name = f"v{v1}", f"v{v2}"
        else:
            raise click.UsageError("give one FILE, or two version numbers")
    lines = list(difflib.unified_diff(
        _pretty(old_doc).splitlines(keepends=True), _pretty(new_doc).splitlines(keepends=True),
        fromfile=old_name, tofile=new_name,
    ))
    if as_json:
        click.echo(json.dumps({"from": old_name, "to": new_name, "changed": bool(lines),
                               "diff": "".join(lines)}))
        return
    click.echo("".join(lines) if lines else "no differences", nl=not lines)


# -- the guardrail --------------------------------------------------------------------------


class _Baseline:
    """What the dry run compares with: the config SDK hosts serve now, and how it was found."""

    def __init__(self, config: EnforcementConfig | None, what: str, broken: bool = False
                 ) -> None:
        self.config = config
        self.what = what
        self.broken = broken  # the node holds a document that no SDK host serves


def _baseline(store: ZooKeeperConfigStore, current: CurrentConfig | None) -> _Baseline:
    """The current config, or (node invalid) the newest valid version in the history.

    A document written straight into ZooKeeper that does not validate is served
    by no SDK host: they keep the last valid version, which is the newest valid
    pushed one. Comparing with it keeps the guardrail on after a bad write.
    """
    if current is None:
        return _Baseline(None, "no config yet")
    if current.config is not None:
        return _Baseline(current.config, f"version {current.version}")
    found = store.newest_valid()
    if found is None:
        return _Baseline(None, f"the config node is invalid ({current.problem}) and the "
                               "history holds no valid version", broken=True)
    version, config = found
    click.echo(f"guardrail: the config node is invalid ({current.problem}); comparing with "
               f"history version {version}, the newest valid one (what SDK hosts serve)",
               err=True)
    return _Baseline(config, f"history version {version}")


def _guardrail(baseline: _Baseline, document: Mapping[str, Any],
               samples: tuple[Path, ...], store_url: str | None, token: str | None,
               sample_size: int, max_shift: float, force: bool) -> None:
    """Dry-run the change over a label sample; refuse a big move in hidden share unless forced."""
    old = baseline.config
    if old is None:
        if baseline.broken and not force:
            raise CliError(f"guardrail: nothing to compare with: {baseline.what}; "
                           "pass --force to push without the guardrail", EXIT_REJECTED)
        click.echo(f"guardrail: {baseline.what}, nothing to compare with; skipped", err=True)
        return
    if not samples and not store_url:
        if force:
            click.echo("guardrail: no sample given; skipped (--force)", err=True)
            return
        raise CliError(
            "push needs a label sample for its dry run (--sample FILE and/or --store-url); "
            "pass --force to push without the guardrail", EXIT_USAGE)
    new_config = EnforcementConfig.from_dict({**document, "version": old.version + 1})
    sample = _sample(samples, store_url, token, sample_size)
    if not sample:
        if force:
            click.echo("guardrail: the sample is empty; skipped (--force)", err=True)
            return
        raise CliError("guardrail: the label sample is empty; pass --force to push anyway",
                       EXIT_USAGE)
    report = dry_run(old, new_config, sample, time.time())
    _print_report(report, max_shift)
    bad = report.violations(max_shift)
    if bad and not force:
        raise CliError(
            f"guardrail refused the push: {len(bad)} surface(s) move by more than "
            f"{max_shift:.2%} of {report.entities} sampled entities: "
            + "; ".join(s.describe() for s in bad) + ". Pass --force if this is intended",
            EXIT_REJECTED)
    if bad:
        click.echo("guardrail: over the threshold, pushing anyway (--force)", err=True)


def _sample(samples: tuple[Path, ...], store_url: str | None, token: str | None,
            sample_size: int) -> dict[str, list[Label]]:
    """Labels by entity from the JSONL exports and/or the store's recent changes."""
    parts: list[Mapping[str, list[Label]]] = [load_sample_file(p) for p in samples]
    if store_url:
        try:
            with LabelStoreClient(store_url, token=token) as client:
                parts.append(fetch_store_sample(client, sample_size))
        except StoreError as exc:
            raise CliError(describe_store_error(exc, store_url), EXIT_USAGE) from exc
    return merge_samples(parts, sample_size)


def _print_report(report: DryRunReport, max_shift: float) -> None:
    bad = {s.surface for s in report.violations(max_shift)}
    click.echo(f"dry run over {report.entities} sampled entities "
               f"(threshold {max_shift:.2%}):", err=True)
    for s in report.surfaces:
        flag = "  !! " if s.surface in bad else "     "
        click.echo(flag + s.describe(), err=True)
    if report.rules:
        click.echo("escalation rules:", err=True)
        for r in report.rules:
            click.echo("     " + r.describe(), err=True)
