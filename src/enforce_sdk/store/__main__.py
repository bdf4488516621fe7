"""`python -m enforce_sdk.store --config PATH [--db FILE | --storage URL] --host H --port P
[--workers N]`: run the Label Store."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from .._errors import ConfigError, InvalidInputError, StorageError
from .config import StoreConfig
from .server import set_log_format
from .storage.backends import check_storage_url
from .workers import MAX_WORKERS, run_workers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m enforce_sdk.store",
                                     description="Run the enforce_sdk Label Store service.")
    parser.add_argument("--config", help="TOML config file (defaults apply without one)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (0 picks a free one)")
    parser.add_argument("--db", help="SQLite database file, overriding [storage] url")
    parser.add_argument("--storage", metavar="URL",
                        help="storage URL (sqlite:///PATH or redis-cluster://...), overriding "
                        "[storage] url")
    parser.add_argument("--workers", type=int, default=1,
                        help=f"store processes behind the port, 1..{MAX_WORKERS} (default 1)")
    parser.add_argument("--no-access-log", action="store_true", help="do not log every request")
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="json: one object per line, with the request id")
    parser.add_argument("--log-level", default="info",
                        choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= MAX_WORKERS:
        parser.error(f"--workers must be in 1..{MAX_WORKERS}")
    if args.db is not None and args.storage is not None:
        parser.error("give --db or --storage, not both")
    set_log_format(args.log_format)
    try:
        config = StoreConfig.load(args.config)
        url = args.storage if args.db is None else f"sqlite:///{Path(args.db).resolve()}"
        if url is not None:
            check_storage_url(url)
            config = dataclasses.replace(config, storage=dataclasses.replace(config.storage,
                                                                              url=url))
        run_workers(config, host=args.host, port=args.port, workers=args.workers,
                    access_log=not args.no_access_log, log_level=args.log_level)
    except ConfigError as exc:
        print(f"enforce-sdk store: bad config: {exc}", file=sys.stderr)
        return 2
    except (InvalidInputError, StorageError) as exc:
        print(f"enforce-sdk store: cannot open storage: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
