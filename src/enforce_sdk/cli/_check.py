"""`enforce-sdk check KEY --surface S`: one decision through the SDK, with its explanation."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator

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

    --timeout replaces the config's store.timeout. Exit status 0 when visible
    on the surface, 3 when hidden, 2 on a usage or config error, and 2 when
    the store could not be read: the decision is then still printed (the
    surface's fail mode, flagged DEGRADED) and stderr says why.
    """
    from ..client.client import EnforcementClient
    from ..config.document import EnforcementConfig

    document = EnforcementConfig.load(os.fspath(config_path)).to_dict()
    document["store"]["timeout"] = timeout
    # One check: no change feed, so no bloom precheck (it needs the feed to stay honest).
    document["bloom"]["enabled"] = False
    config = EnforcementConfig.from_dict(document)
    links = _related(related) or None
    with _quiet_sdk(), EnforcementClient(url, config, token=token, follow_changes=False) as client:
        decision = client.check(key, surface, links)
    if as_json:
        click.echo(json.dumps(decision.to_dict(), indent=2))
    else:
        click.echo(decision.explain())
    if decision.degraded:
        fail(f"no labels from the label store at {url}: {decision.degraded_detail} "
             f"(the decision above is the {surface} surface's fail mode)", EXIT_USAGE)
    if not decision.visible:
        raise SystemExit(3)


@contextlib.contextmanager
def _quiet_sdk() -> Iterator[None]:
    """The SDK's warnings, for the span of the command: the exit status and one line say it.

    Errors (internal failures, with tracebacks) still show; ENFORCE_DEBUG shows everything.
    """
    logger = logging.getLogger("enforce_sdk")
    level = logger.level
    if not os.environ.get("ENFORCE_DEBUG"):
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
