"""`enforce-sdk tokens new` and `enforce-sdk changes tail`: an operator's small tools.

`tokens new` makes a store API token: the token is printed once (give it to the
service; it is not stored anywhere), with the `[[tokens]]` entry to paste into
the store's config, which holds only its SHA-256 digest.

`changes tail` prints the store's change feed, following it like `tail -f`
(long-polls; Ctrl-C to stop), from `--from SEQ` (default: the head, so only new
changes), one line or JSON object per change.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import tomllib

import click

from .._errors import ConfigError
from ._common import EXIT_USAGE, CliError, store_options, translate_errors

_ROLES = ("appellant", "reader", "writer", "admin")


@click.group()
def tokens() -> None:
    """Store API tokens."""


@tokens.command("new")
@click.option("--name", required=True, help="Who uses it: the audit actor of its writes.")
@click.option("--role", type=click.Choice(_ROLES), required=True)
@click.option("--sources", "sources", multiple=True, metavar="SYSTEM/TYPE",
              help="What a writer may write as (repeatable; either part may be *).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def new_token(name: str, role: str, sources: tuple[str, ...], as_json: bool) -> None:
    """Make a token; print it once, and the config entry holding its digest."""
    if role == "writer" and not sources:
        raise CliError("a writer needs --sources (what it may write as; * for anything)",
                       EXIT_USAGE)
    if role != "writer" and sources:
        raise CliError(f"--sources binds writers only; a {role} token takes none", EXIT_USAGE)
    token = secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    lines = ["[[tokens]]", f"name = {json.dumps(name)}", f"role = {json.dumps(role)}"]
    if sources:
        lines.append(f"sources = {json.dumps(list(sources))}")
    lines.append(f"token_sha256 = {json.dumps(digest)}")
    entry = "\n".join(lines)
    _check_entry(entry)
    if as_json:
        click.echo(json.dumps({"token": token, "name": name, "role": role,
                               "sources": list(sources), "token_sha256": digest,
                               "config_entry": entry}, indent=2))
        return
    click.echo(f"token (shown once; give it to {name}, keep it out of config files):")
    click.echo(f"  {token}")
    click.echo("\nadd to the store's config, then restart the store:\n")
    click.echo(entry)


def _check_entry(entry: str) -> None:
    """The entry as the store will read it: its own parser names anything wrong."""
    from ..store.config import StoreConfig

    try:
        StoreConfig.from_dict(tomllib.loads(entry))
    except ConfigError as exc:
        raise CliError(f"not a valid token entry: {exc}", EXIT_USAGE) from exc


@click.group()
def changes() -> None:
    """The store's change feed."""


@changes.command("tail")
@click.option("--from", "start", type=click.IntRange(min=0), default=None, metavar="SEQ",
              help="Print changes after SEQ (default: only new ones, from the head).")
@click.option("--follow/--no-follow", default=True, show_default=True,
              help="Keep following (long-poll) or stop at the head.")
@click.option("--wait", type=click.FloatRange(min=0.0, max=30.0), default=10.0,
              show_default=True, help="Seconds each long-poll waits for a change.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@store_options
def tail(start: int | None, follow: bool, wait: float, as_json: bool, url: str,
         token: str | None, timeout: float) -> None:
    """Print the change feed (entity, source, action, time), following it."""
    from ..store_client.client import LabelStoreClient

    with translate_errors(url), LabelStoreClient(url, token=token,
                                                 timeout=max(timeout, wait + 5.0)) as client:
        position = client.changes(0, limit=1).head if start is None else start
        try:
            while True:
                page = client.changes(position, wait=wait if follow else 0.0)
                for change in page.changes:
                    record = {"seq": change.seq, "entity": change.entity,
                              "source": change.source_key, "action": change.action.value,
                              "at": change.at.isoformat(), "labeled": change.labeled}
                    click.echo(json.dumps(record) if as_json else
                               f"{change.seq:>10}  {record['at']}  {change.action.value:<8} "
                               f"{change.entity}  {change.source_key}"
                               f"{'' if change.labeled else '  (no labels left)'}")
                position = page.next
                if not follow and position >= page.head:
                    return
        except KeyboardInterrupt:
            return
