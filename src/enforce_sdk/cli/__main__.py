"""`python -m enforce_sdk.cli ...`: the same as the `enforce-sdk` console script."""

from . import main

main(prog_name="enforce-sdk")
