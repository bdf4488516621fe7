"""cffi builder (API mode) for `enforce_sdk.native._enforce_native`.

The declarations handed to cffi are the CDEF block of enforce_native.h, so the
header is the single source of truth; every `#define` there becomes `... ` and
cffi reads its value from the compiled C. Used by setup.py through
`cffi_modules=["native/build_native.py:ffibuilder"]`; run directly for a quick
local build (`python native/build_native.py`).
"""

from __future__ import annotations

import os
import re
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "enforce_native.h")
SOURCE = os.path.join(HERE, "enforce_native.c")
PDQ_SOURCE = os.path.join(HERE, "pdq.c")  # PDQ image hashing (docs/images.md)
PDQ_INDEX_SOURCE = os.path.join(HERE, "pdq_index.c")  # PDQ hash set with range queries


def cdef_text() -> str:
    """The CDEF block of the header, with constant values left for cffi to read from C."""
    with open(HEADER, encoding="utf-8") as f:
        text = f.read()
    block = text.split("/* CDEF BEGIN */", 1)[1].split("/* CDEF END */", 1)[0]
    return re.sub(r"^#define\s+(\w+)\s+\S+\s*$", r"#define \1 ...", block, flags=re.M)


if sys.platform == "win32":
    _CFLAGS = ["/O2"]
else:
    # No -march=native: the wheel must run on any x86_64 / aarch64. SSE4.2 CRC32C is
    # chosen at run time (see crc32c in enforce_native.c).
    _CFLAGS = ["-O3", "-std=c11", "-Wall", "-Wextra", "-fvisibility=hidden"]


def make_builder(*, absolute: bool = False) -> FFI:
    """The cffi builder; setuptools wants source paths relative to setup.py's directory."""

    def path(p: str) -> str:
        return p if absolute else os.path.relpath(p)

    builder = FFI()
    builder.cdef(cdef_text())
    builder.set_source(
        "enforce_sdk.native._enforce_native",
        '#include "enforce_native.h"',
        sources=[path(SOURCE), path(PDQ_SOURCE), path(PDQ_INDEX_SOURCE)],
        include_dirs=[path(HERE)],
        depends=[path(HEADER)],
        extra_compile_args=_CFLAGS,
        libraries=[] if sys.platform == "win32" else ["m"],
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    # cffi compiles inside tmpdir, so this direct build needs absolute paths.
    make_builder(absolute=True).compile(
        tmpdir=os.path.join(HERE, os.pardir, "build", "cffi"), verbose=True
    )
