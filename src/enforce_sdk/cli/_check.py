"""`enforce-sdk check KEY --surface S`: one decision through the SDK, with its explanation."""

from __future__ import annotations

import json
import os

import click

from ._common import EXIT_USAGE, fail, store_options, with_errors

CONFIG_ENV = "ENFORCE_CONFIG"


def _related(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        kind, sep, value = item.partition("=")
        if not sep or not kind or not value:
            fail(f"--related takes KIND=ID (e.g. domain=example.com), got {item!r}", EXIT_USAGE)
        out[kind.strip()] = value.strip()
    return out


@click.command()
@click.argument("key")
@click.option("--surface", "-s", required=True, help="Surface to decide for (as in the config).")
@click.option(
    "--related",
    "-r",
    multiple=True,
    metavar="KIND=ID",
    help="A linked entity, e.g. -r domain=example.com -r creator=42 (repeatable).",
)
@click.option(
    "--config",
    "config_path",
    envvar=CONFIG_ENV,
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help=f"SDK config file, TOML or JSON (env {CONFIG_ENV}).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@store_options
@with_errors
def check(
    key: str,
    surface: str,
    related: tuple[str, ...],
    config_path: str,
    as_json: bool,
    url: str,
    token: str | None,
    timeout: float,
) -> None:
    """Decide KEY on a surface and explain why.

    Exit status 0 when visible on the surface, 3 when hidden, 2 on error.
    """
    from .._client import EnforcementClient

    with EnforcementClient(url, os.fspath(config_path), token=token) as client:
        decision = client.check(key, surface, _related(related) or None)
    if as_json:
        click.echo(json.dumps(decision.to_dict(), indent=2))
    else:
        click.echo(decision.explain())
    if not decision.visible:
        raise SystemExit(3)
