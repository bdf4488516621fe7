"""`python -m enforce_sdk.cli ...`: the same as the `enforce-sdk` console script."""

from ._entry import run

run()
