"""`enforce-sdk console ...`: tools for the reviewer console's config (see docs/console.md)."""

from __future__ import annotations

import sys

import click

from ._common import EXIT_USAGE, CliError


@click.group()
def console() -> None:
    """The reviewer console served by the Label Store under /console/."""


@console.command("hash-password")
@click.option("--stdin", "from_stdin", is_flag=True,
              help="Read the password from the first line of stdin (for scripts) instead "
              "of prompting.")
def hash_password_cmd(from_stdin: bool) -> None:
    """Print an argon2id hash for a [[console.users]] password_hash entry.

    The password is prompted for twice (not echoed); the hash is printed on stdout.
    """
    from ..store.console.auth import hash_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True,
                                err=True)
    if len(password) < 8:
        raise CliError("the password must have at least 8 characters", EXIT_USAGE)
    click.echo(hash_password(password))
