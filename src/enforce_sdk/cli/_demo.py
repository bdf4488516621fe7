"""`enforce-sdk demo`: the guided tour of the store (see enforce_sdk.demo.steps)."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import translate_errors


@click.command()
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the demo's database, config and input here (default: a temp dir, "
              "removed afterwards).")
@click.option("--labels", "count", type=click.IntRange(10, 1_000_000), default=3000,
              show_default=True, help="How many sample labels to import.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sample data seed.")
@click.option("--keep-running", is_flag=True,
              help="Leave the store and its reviewer console up after the tour, until Ctrl-C.")
def demo(workdir: Path | None, count: int, seed: int, keep_running: bool) -> None:
    """Start a store on SQLite, import sample labels, show what it serves, stop it."""
    from ..demo.steps import run_demo

    with translate_errors():
        raise SystemExit(run_demo(workdir=workdir, count=count, seed=seed,
                                  keep_running=keep_running))
