"""numpy on first use: `import enforce_sdk` must not pay for numpy until a mask is made.

A module binds `np = LazyNumpy(globals())` instead of `import numpy as np`. The
first attribute read imports numpy and rebinds the module's global `np` to the
real module (and runs the module's `on_load`), so from then on every `np.x`
in that module is an ordinary global lookup: the hot path pays nothing. Type
checkers see the real import (under TYPE_CHECKING) in the module itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, MutableMapping
from types import ModuleType
from typing import Any


class LazyNumpy:
    """Stands in for numpy in one module's globals until numpy is first needed."""

    __slots__ = ("_name", "_namespace", "_on_load")

    def __init__(
        self,
        namespace: MutableMapping[str, Any],
        name: str = "np",
        on_load: Callable[[ModuleType], None] | None = None,
    ) -> None:
        self._namespace = namespace
        self._name = name
        self._on_load = on_load

    def load(self) -> ModuleType:
        """Import numpy and put it in place of this stand-in; returns numpy."""
        numpy = importlib.import_module("numpy")
        if self._on_load is not None:
            self._on_load(numpy)
        self._namespace[self._name] = numpy
        return numpy

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.load(), attr)

    def __repr__(self) -> str:
        return "<numpy, imported on first use>"
