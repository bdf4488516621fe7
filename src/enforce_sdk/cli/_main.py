"""The `enforce-sdk` click group: every command registered on `main`.

Each command group lives in its own module and is registered on `main` below.
Exit codes (see _common): 0 ok, 1 some input rejected, 2 usage/connection error.
"""

from __future__ import annotations

import click

from .. import __version__
from ._demo import demo
from ._labels import labels
from ._serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="enforce-sdk")
def main() -> None:
    """enforce-sdk: the Label Store and its tools.

    Talk to a store with --url/--token or ENFORCE_STORE_URL/ENFORCE_STORE_TOKEN.
    """


main.add_command(serve)
main.add_command(labels)
main.add_command(demo)

# --- Command groups of other modules: the lead registers them here. -----------------------
from ._bloom import bloom  # noqa: E402  `enforce-sdk bloom ...`
from ._check import check  # noqa: E402  `enforce-sdk check ...`
from ._config import config  # noqa: E402  `enforce-sdk config ...`
from ._console import console  # noqa: E402  `enforce-sdk console ...`
from ._image import image  # noqa: E402  `enforce-sdk image hash ...`
from ._labels_mass import export_labels  # noqa: E402, F401  `labels export`, `labels retract`
from ._ops import changes, tokens  # noqa: E402  `enforce-sdk tokens new`, `changes tail`

main.add_command(bloom)
main.add_command(check)
main.add_command(config)
main.add_command(console)
main.add_command(image)
main.add_command(tokens)
main.add_command(changes)
# -------------------------------------------------------------------------------------------

__all__ = ["main"]
