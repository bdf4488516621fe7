"""The package's import graph, read from the source (nothing is imported).

Imports inside `if TYPE_CHECKING:` are left out unless asked for (they never
run, but a circle through them is still a circle in the design). Relative
imports are resolved; `from pkg import name` counts as an import of
`pkg.name` when that is a module of the package, else of `pkg`.
Run as a script for the layout figures (modules per folder, largest modules,
import circles).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "enforce_sdk"
SRC = Path(__file__).resolve().parents[2] / "src"


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    internal: set[str] = field(default_factory=set)  # modules of the package it imports
    external: set[str] = field(default_factory=set)  # top-level names of other imports
    external_full: set[str] = field(default_factory=set)  # dotted names of other imports
    internal_eager: set[str] = field(default_factory=set)  # imported when the module loads
    external_eager: set[str] = field(default_factory=set)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(
    tree: ast.AST, typing: bool, lazy: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement, and whether it runs only when a function is called (lazy);
    those under `if TYPE_CHECKING:` only with `typing`."""
    for node in ast.iter_child_nodes(tree):
        if not typing and isinstance(node, ast.If) and _is_type_checking(node.test):
            for sub in node.orelse:
                yield from _imports(ast.Module(body=[sub], type_ignores=[]), typing, lazy)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, lazy
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _imports(node, typing, inner)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id.lstrip("_") == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def build(src: Path = SRC, *, typing: bool = False) -> dict[str, Module]:
    """The graph of imports that run; with `typing`, also those only a type checker reads."""
    root = src
    paths = sorted((src / PACKAGE).rglob("*.py"))
    modules = {
        _module_name(p, root): Module(_module_name(p, root), p, len(p.read_text().splitlines()))
        for p in paths
    }
    for mod in modules.values():
        is_pkg = mod.path.name == "__init__.py"
        package = mod.name if is_pkg else mod.name.rpartition(".")[0]
        tree = ast.parse(mod.path.read_text(), str(mod.path))
        for node, lazy in _imports(tree, typing):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    _add(mod, modules, alias.name, lazy)
                continue
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                _add(mod, modules, sub if sub in modules else target, lazy)
    return modules


def _add(mod: Module, modules: dict[str, Module], target: str, lazy: bool) -> None:
    if target == PACKAGE or target.startswith(PACKAGE + "."):
        if target not in modules and _is_compiled(mod.path, target):
            mod.external_full.add(target)  # the native extension: no Python source to follow
            return
        while target not in modules and "." in target:
            target = target.rpartition(".")[0]
        if target != mod.name:
            mod.internal.add(target)
            if not lazy:
                mod.internal_eager.add(target)
    else:
        mod.external.add(target.partition(".")[0])
        mod.external_full.add(target)
        if not lazy:
            mod.external_eager.add(target.partition(".")[0])


def _is_compiled(importer: Path, target: str) -> bool:
    """Whether `target` is a compiled extension module (no Python source to follow)."""
    parts = target.split(".")
    root = next(p.parent for p in importer.parents if p.name == PACKAGE)
    folder = root.joinpath(*parts[:-1])
    return any(folder.glob(parts[-1] + ".*.so")) or any(folder.glob(parts[-1] + ".*.pyd"))


def closure(modules: dict[str, Module], start: str, *, eager: bool = False) -> set[str]:
    """Every package module `start` imports, directly or not (itself excluded); with
    `eager`, only what loading it loads (no imports inside functions)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        mod = modules[todo.pop()]
        for dep in mod.internal_eager if eager else mod.internal:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    seen.discard(start)
    return seen


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(modules[v].internal):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(modules):
        if v not in index:
            visit(v)
    return found


def report(modules: dict[str, Module], src: Path = SRC) -> str:
    by_folder: dict[str, int] = {}
    for mod in modules.values():
        folder = str(mod.path.parent.relative_to(src / PACKAGE))
        by_folder[folder] = by_folder.get(folder, 0) + 1
    largest = sorted(modules.values(), key=lambda m: -m.lines)[:5]
    arrows = sum(len(m.internal) for m in modules.values())
    lines = [f"modules: {len(modules)}, import arrows: {arrows}, circles: {len(cycles(modules))}"]
    lines += [f"  {folder}/: {count}" for folder, count in sorted(by_folder.items())]
    lines += ["largest:"] + [f"  {m.lines:5d} {m.path.relative_to(src)}" for m in largest]
    lines += ["circles:"] + [f"  {' <-> '.join(c)}" for c in cycles(modules)]
    return "\n".join(lines)


if __name__ == "__main__":
    src = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else SRC
    print(report(build(src), src))
    print("with TYPE_CHECKING imports:", report(build(src, typing=True), src).splitlines()[0])
    print("\n".join(report(build(src, typing=True), src).split("circles:")[-1].splitlines()))
