"""The import rules of the package layout (docs/architecture.md), checked on the source.

Each rule names the offending imports when it fails. Rules on layering read the
graph with TYPE_CHECKING imports too (a type-only arrow still couples two
wings); rules on what runs (I/O in the read path) read only imports that run.
"""

from __future__ import annotations

import pytest

from tests.layout.import_graph import Module, build, closure, cycles

P = "enforce_sdk"
MAX_LINES = 550  # "no module over ~500 lines"; the one-file selector language may stay whole
LONG_ALLOWED = {f"{P}.policy.selector"}
# stdlib and third-party modules that do I/O, start threads or talk to a network
IO_MODULES = {"socket", "ssl", "select", "selectors", "asyncio", "threading", "subprocess",
              "http.client", "http.server", "urllib.request", "httpx", "kazoo", "redis",
              "starlette", "uvicorn", "sqlite3", "multiprocessing", "concurrent"}


def _io(names: set[str], banned: set[str] = IO_MODULES) -> list[str]:
    """The dotted module names among `names` that are (or are inside) a banned module."""
    return sorted(n for n in names for b in banned if n == b or n.startswith(b + "."))


@pytest.fixture(scope="module")
def graph() -> dict[str, Module]:
    return build(typing=True)


@pytest.fixture(scope="module")
def runtime_graph() -> dict[str, Module]:
    return build()


def _in(name: str, *wings: str) -> bool:
    return any(name == f"{P}.{w}" or name.startswith(f"{P}.{w}.") for w in wings)


def _violations(graph: dict[str, Module], source: tuple[str, ...], banned: tuple[str, ...]
                ) -> list[str]:
    return sorted(f"{name} imports {dep}" for name, mod in graph.items() if _in(name, *source)
                  for dep in mod.internal if _in(dep, *banned))


def test_the_layout_was_read(graph: dict[str, Module]) -> None:
    """The rules below mean nothing if the graph is empty or misses a wing."""
    wings = {name.split(".")[1] for name in graph if name.count(".") >= 1}
    assert {"model", "native", "policy", "config", "store_client", "client", "store", "cli",
            "demo"} <= wings
    assert f"{P}.model.records" in graph[f"{P}.store_client.client"].internal


def test_1_the_store_imports_no_sdk_wing(graph: dict[str, Module]) -> None:
    assert _violations(graph, ("store",), ("client", "store_client", "config", "cli",
                                           "demo")) == []


def test_2_the_sdk_imports_nothing_from_the_store(graph: dict[str, Module]) -> None:
    """The SDK installs and runs without the [server] extra (see tests/packaging)."""
    assert _violations(graph, ("client", "store_client", "config", "policy"), ("store",)) == []


def test_3_policy_is_pure(graph: dict[str, Module]) -> None:
    bad = _violations(graph, ("policy",), ("native", "config", "store_client", "client",
                                           "store", "cli", "demo"))
    file_io = IO_MODULES | {"os", "io", "pathlib", "tempfile", "mmap", "shutil"}
    bad += sorted(f"{name} imports {ext}" for name, mod in graph.items() if _in(name, "policy")
                  for ext in _io(mod.external_full, file_io))
    assert bad == []


def test_4_the_read_path_does_no_io(runtime_graph: dict[str, Module]) -> None:
    name = f"{P}.client.read_path"
    reached = closure(runtime_graph, name) | {name}
    bad = [f"read_path imports {ext}" for ext in _io(runtime_graph[name].external_full)]
    # nothing it reaches may talk to a network, start a process or an event loop
    network = IO_MODULES - {"threading", "sqlite3"}
    bad += sorted(f"read_path reaches {mod} which imports {ext}" for mod in reached
                  for ext in _io(runtime_graph[mod].external_full, network))
    bad += sorted(f"read_path reaches {mod}" for mod in reached
                  if _in(mod, "store_client", "store", "config")
                  or mod.split(".")[-1] in {"runtime", "fetch", "async_fetch", "follower",
                                            "bloom_gate", "client", "async_client", "base"})
    assert bad == []


def test_5_model_and_native_import_nothing_above_them(graph: dict[str, Module]) -> None:
    above = ("policy", "config", "store_client", "client", "store", "cli", "demo")
    assert _violations(graph, ("model",), ("native", *above)) == []
    assert _violations(graph, ("native",), above) == []


def test_6_the_library_never_imports_cli_demo_or_the_test_kit(graph: dict[str, Module]) -> None:
    library = tuple(w for w in ("model", "native", "policy", "config", "store_client", "client",
                                "store"))
    bad = _violations(graph, library, ("cli", "demo", "testing"))
    bad += sorted(f"{P} imports {dep}" for dep in graph[P].internal
                  if _in(dep, "cli", "demo", "testing"))
    assert bad == []


def test_7_the_async_face_never_imports_the_sync_face(graph: dict[str, Module]) -> None:
    reached = closure(graph, f"{P}.client.async_client")
    assert f"{P}.client.client" not in reached
    # both faces stand on the one shared base
    for face in ("client", "async_client"):
        assert f"{P}.client.base" in graph[f"{P}.client.{face}"].internal


def test_8_no_circles_and_no_long_modules(graph: dict[str, Module]) -> None:
    assert cycles(graph) == []
    long = sorted(f"{m.path.name}: {m.lines} lines" for name, m in graph.items()
                  if m.lines > MAX_LINES and name not in LONG_ALLOWED)
    assert long == []


def test_the_facade_loads_optional_extras_lazily(runtime_graph: dict[str, Module]) -> None:
    """`import enforce_sdk` loads no kazoo, click, tqdm, Prometheus or server stack."""
    reached = closure(runtime_graph, P, eager=True) | {P}
    optional = {"kazoo", "click", "tqdm", "starlette", "uvicorn", "redis", "prometheus_client"}
    bad = sorted(f"{mod} imports {ext}" for mod in reached
                 for ext in runtime_graph[mod].external_eager if ext in optional)
    assert bad == []


def test_importing_the_sdk_loads_no_optional_extra() -> None:
    """The same promise, by running it: a fresh interpreter imports the facade."""
    import subprocess
    import sys

    probe = ("import sys, enforce_sdk; print(' '.join(sorted(m for m in ('kazoo', 'starlette', "
             "'uvicorn', 'redis', 'tqdm', 'prometheus_client', 'enforce_sdk.store', "
             "'enforce_sdk.cli', 'enforce_sdk.demo') if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.split() == []
