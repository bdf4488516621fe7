"""`import enforce_sdk` leaves numpy, asyncio and kazoo unimported until they are used.

Each case runs in a fresh interpreter (this test process has imported them all
long ago), with the same source tree on its path as the tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import enforce_sdk

_SRC = str(Path(enforce_sdk.__file__).resolve().parent.parent)
HEAVY = ("numpy", "asyncio", "kazoo")


def _run(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": _SRC}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _loaded_after(code: str) -> set[str]:
    out = _run(f"import sys\n{code}\n"
               f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    return set(filter(None, out.split(",")))


def test_importing_the_package_imports_none_of_them() -> None:
    assert _loaded_after("import enforce_sdk") == set()


def test_each_loads_when_first_used() -> None:
    assert _loaded_after("import enforce_sdk; enforce_sdk.AsyncEnforcementClient") == {"asyncio"}
    assert _loaded_after(
        "import enforce_sdk; b = enforce_sdk.BloomFilter.for_capacity(100, 0.01); b.add('pin:1')"
    ) == set()  # single-key paths need no numpy
    assert "numpy" in _loaded_after(
        "import enforce_sdk; b = enforce_sdk.BloomFilter.for_capacity(100, 0.01); "
        "b.contains_many(['pin:1'])"
    )


def test_numpy_is_cached_in_the_module_after_first_use() -> None:
    out = _run(
        "import enforce_sdk, numpy\n"
        "from enforce_sdk.native import bloom\n"
        "b = enforce_sdk.BloomFilter.for_capacity(100, 0.01); b.add('pin:1')\n"
        "print(bloom.surely_unlabeled(b, ['pin:1', 'pin:2']), bloom.np is numpy)"
    )
    assert out == "[1] True"
