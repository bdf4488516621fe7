"""`enforce-sdk serve`: run the Label Store on a config file (embedded SQLite by default)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ._common import EXIT_USAGE, CliError, translate_errors


@click.command()
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
    envvar="ENFORCE_STORE_CONFIG", default=None,
    help="Store config (TOML). Without one: defaults, SQLite in ./var/labels.db, no tokens. "
    "(env ENFORCE_STORE_CONFIG)",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to listen on (0 picks a free one; the listening line names it).")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQLite database file to serve, overriding the config's storage.url.")
@click.option("--storage", "storage_url", default=None, metavar="URL",
              envvar="ENFORCE_STORE_STORAGE",
              help="Storage backend URL, overriding the config's storage.url: sqlite:///PATH or "
              "redis-cluster://HOST:PORT,HOST:PORT[?namespace=NAME] (env ENFORCE_STORE_STORAGE).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              envvar="ENFORCE_STORE_WORKERS",
              help="Store processes serving the one port (a master forks and supervises them; "
              "each opens the storage). Use about one per core; see docs/storage.md "
              "(env ENFORCE_STORE_WORKERS).")
@click.option("--sdk-config", "sdk_config", default=None, metavar="FILE|zk://HOSTS/ROOT",
              envvar="ENFORCE_STORE_SDK_CONFIG",
              help="The SDK config document the SDKs read (a .toml/.json file, re-read when it "
              "changes, or ZooKeeper, watched): the store explains decisions with its surfaces "
              "(env ENFORCE_STORE_SDK_CONFIG).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, envvar="ENFORCE_STORE_LOG_FORMAT",
              help="json: one object per line with the request id (env ENFORCE_STORE_LOG_FORMAT).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="info", show_default=True)
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="Log every request.")
def serve(config_path: Path | None, host: str, port: int, db: Path | None,
          storage_url: str | None, workers: int, sdk_config: str | None, log_format: str,
          log_level: str, access_log: bool) -> None:
    """Run the Label Store until Ctrl-C / SIGTERM (graceful: in-flight requests finish).

    With --workers N, N processes share the port: a master restarts a worker that
    dies, stops them all on Ctrl-C / SIGTERM, and exits non-zero if they keep dying.
    """
    from ..store.config import StoreConfig
    from ..store.server import set_log_format
    from ..store.storage.backends import check_storage_url
    from ..store.workers import run_workers

    with translate_errors():
        config = StoreConfig.load(config_path)
        if db is not None and storage_url is not None:
            raise CliError("give --db or --storage, not both", EXIT_USAGE)
        if db is not None:
            storage_url = f"sqlite:///{db.resolve()}"
        if storage_url is not None:
            check_storage_url(storage_url)
            # only the URL: the section's other keys (expiry purge) stay as configured
            config = dataclasses.replace(config, storage=dataclasses.replace(
                config.storage, url=storage_url))
        if not config.tokens:
            click.echo("warning: no [[tokens]] configured: every /v1 request will be refused "
                       "(401); see docs/security.md", err=True)
        set_log_format(log_format)
        policy_feed = None
        if sdk_config is not None:
            from ._policy_feed import sdk_config_feed
            policy_feed = sdk_config_feed(sdk_config)
        try:
            run_workers(config, host=host, port=port, workers=workers, access_log=access_log,
                        log_level=log_level, policy_feed=policy_feed)
        except SystemExit as exc:  # uvicorn (or the master) exits when it cannot bind or start
            if exc.code not in (0, None):
                raise CliError(f"the store on {host}:{port} could not start, or its workers "
                               "kept dying (see the log above)", EXIT_USAGE) from exc
