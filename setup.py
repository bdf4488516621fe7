"""Build hook for the native extensions; all other metadata lives in pyproject.toml.

cffi (API mode) generates and compiles `enforce_sdk.native._enforce_native` from native/;
`enforce_sdk.native._gate` (the read path's native gate) is a plain extension module
over the same C source (native/gate.c includes native/enforce_native.c).
A missing or failing C compiler stops the build with one clear message instead
of a compiler traceback.
"""

import shutil
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_NO_COMPILER = (
    "enforce-sdk needs a C compiler (C11, e.g. gcc or clang) to build its native extension "
    "enforce_sdk.native._enforce_native{detail}. Install one (Debian/Ubuntu: apt-get install "
    "build-essential python3-dev; macOS: xcode-select --install) and retry."
)


class BuildNative(build_ext):
    """build_ext that reports a missing compiler plainly."""

    def build_extension(self, ext):  # type: ignore[no-untyped-def]
        command = getattr(self.compiler, "compiler_so", None)
        if command and shutil.which(command[0]) is None:
            raise SystemExit(_NO_COMPILER.format(detail=f" ({command[0]!r} not found)"))
        try:
            super().build_extension(ext)
        except Exception as exc:
            if type(exc).__name__ in {"CompileError", "LinkError", "DistutilsExecError"}:
                raise SystemExit(
                    f"building enforce_sdk.native._enforce_native failed: {exc}\n"
                    + _NO_COMPILER.format(detail="")
                ) from exc
            raise


# Both modules use only the stable ABI (Py_LIMITED_API 3.11).
_GATE = Extension(
    "enforce_sdk.native._gate",
    sources=["native/gate.c"],
    include_dirs=["native"],
    depends=["native/enforce_native.c", "native/enforce_native.h"],
    define_macros=[("Py_LIMITED_API", "0x030B0000")],
    py_limited_api=True,
    extra_compile_args=[] if sys.platform == "win32" else [
        "-O3", "-std=c11", "-Wall", "-Wextra", "-fvisibility=hidden"],
    libraries=[] if sys.platform == "win32" else ["m"],
)

setup(
    ext_modules=[_GATE],
    cffi_modules=["native/build_native.py:ffibuilder"],
    cmdclass={"build_ext": BuildNative},
    # The extensions use only the stable ABI (cffi builds it with Py_LIMITED_API), so one
    # wheel serves CPython 3.11 and every later 3.x: tag it cp311-abi3.
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
