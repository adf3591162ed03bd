"""The package's layout: no import cycles, every import points to its own layer or below, and no module
reaches for another module's private names. Imports are read from the source (module level and inside
functions alike; only ``if TYPE_CHECKING:`` blocks are skipped), so a cycle hidden in a function is found."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "gendl_jax"

# The layers of DESIGN.md, lowest first: a module may import from its own layer or a lower one.
LAYERS = {
    "data": 0,
    "models": 0,
    "divergences": 0,
    "transport": 0,
    "metrics": 0,
    "plots": 0,
    "objectives": 1,
    "attacks": 1,
    "train": 2,
    "sampling": 2,
    "learned_metrics": 3,
    "finetune": 3,
    "evaluation": 4,
    "cli": 5,
}
# Compiled extensions: private by name, imported by the one module that wraps each.
EXTENSIONS = {"gendl_jax.transport._netsimplex", "gendl_jax.metrics._persistence"}


def _modules(root: pathlib.Path = ROOT) -> dict[str, pathlib.Path]:
    out = {}
    for path in (root / PACKAGE).rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: pathlib.Path, modules: dict) -> list[tuple[str, str, int]]:
    """(imported module, imported name or '', line) of every import of a package module in ``path``."""
    tree = ast.parse(path.read_text())
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for n in ast.walk(node)}
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub, "", node.lineno) if sub in modules else (base, alias.name, node.lineno))
    return found


def _graph(modules: dict) -> dict[str, set[str]]:
    """Module -> modules it imports; package __init__ files are faces, not nodes (``from pkg import name``
    of a non-module name counts as an import of the package's module that defines it when it is a
    sub-package face, and is otherwise dropped), as in the shared import-cycle tool."""
    graph = {m: set() for m in modules}
    for name, path in modules.items():
        for target, _, _ in _imports(name, path, modules):
            if target in modules and target != name and target != PACKAGE:
                graph[name].add(target)
    faces = {m for m, p in modules.items() if p.name == "__init__.py"}
    return {m: {t for t in targets if t not in faces} for m, targets in graph.items() if m not in faces}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _area(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_import_cycles_between_modules():
    assert _cycles(_graph(_modules())) == []


def test_no_import_cycles_between_areas():
    modules = _modules()
    areas: dict[str, set[str]] = {}
    for name, path in modules.items():
        for target, _, _ in _imports(name, path, modules):
            a, b = _area(name), _area(target)
            if a and b and a != b:
                areas.setdefault(a, set()).add(b)
    assert _cycles(areas) == []


def test_every_area_has_a_layer():
    areas = {_area(m) for m in _modules()} - {None}
    assert areas <= set(LAYERS), f"add {sorted(areas - set(LAYERS))} to LAYERS (and to DESIGN.md's layers)"


def test_imports_point_down_the_layers():
    modules = _modules()
    upward = []
    for name, path in modules.items():
        for target, _, line in _imports(name, path, modules):
            a, b = _area(name), _area(target)
            if a and b and LAYERS.get(b, 0) > LAYERS.get(a, 0):
                upward.append(
                    f"{path.relative_to(ROOT)}:{line} ({a}, layer {LAYERS[a]}) imports {target} (layer {LAYERS[b]})"
                )
    assert upward == []


def test_no_private_names_across_modules():
    modules = _modules()
    private = []
    for name, path in modules.items():
        for target, imported, line in _imports(name, path, modules):
            last = target.split(".")[-1]
            if target in EXTENSIONS or f"{target}.{imported}" in EXTENSIONS:
                continue
            if imported.startswith("_") or (last.startswith("_") and target != name):
                private.append(f"{path.relative_to(ROOT)}:{line} imports {target} {imported}".rstrip())
    assert private == []


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    pkg = tmp_path / PACKAGE / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / PACKAGE / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from gendl_jax.sub import b\n")
    (pkg / "b.py").write_text("def f():\n    from gendl_jax.sub.a import g\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gendl_jax.sub import a\n")
    modules = _modules(tmp_path)
    assert _cycles(_graph(modules)) == [["gendl_jax.sub.a", "gendl_jax.sub.b"]]


@pytest.mark.parametrize("old", ["gendl_jax.adversarial", "gendl_jax.metrics.evaluate", "gendl_jax.train.plots"])
def test_moved_modules_are_gone(old):
    assert old not in _modules(), f"{old} moved (see CHANGELOG.md)"
