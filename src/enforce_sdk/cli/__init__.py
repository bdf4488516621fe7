"""The `enforce-sdk` command line (the `[cli]` extra): run the store, read and write labels,
push config, run the demo.

The click group is `main` (cli/_main); it loads on first use, so the console
script (cli/_entry) can say which extra to install when click is missing.
Exit codes (see _common): 0 ok, 1 some input rejected, 2 usage/connection error.
"""

from __future__ import annotations

from typing import Any

__all__ = ["main"]


def __getattr__(name: str) -> Any:
    if name == "main":
        from ._main import main

        return main
    raise AttributeError(f"module 'enforce_sdk.cli' has no attribute {name!r}")
