"""The `enforce-sdk` console script: the command line, or what to install to get it."""

from __future__ import annotations

import sys


def run() -> None:
    try:
        from ._main import main
    except ModuleNotFoundError as exc:
        if exc.name not in {"click", "tqdm"}:
            raise
        sys.exit(f"enforce-sdk: the command line needs the [cli] extra ({exc.name} is not "
                 "installed): pip install 'enforce-sdk[cli]'")
    main(prog_name="enforce-sdk")
