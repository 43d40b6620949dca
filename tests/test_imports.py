"""The package's imports run one way: no circles, nothing upward, no other module's private names.

Every module of ``einsum_magic`` is read with :mod:`ast` (nothing is imported) and every
``import`` statement counts, at module level or inside a function, a method or a branch: an
import inside a function runs too, only later. An edge goes from the importing module to the
module it names; ``from package import name`` goes to ``package.name`` where that is a module.
``importlib.import_module("einsum_magic.…")`` with a literal name counts as an import too.
Importing a submodule also runs its packages' ``__init__``: those implicit edges do not count
(the package face imports its parts, not the other way round).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "einsum_magic"

#: The layers of the data flow, lowest first. A module may import its own layer and the layers
#: below, never one above. A subpackage is named by its folder, a module by its file name.
#: expect (grading a proposed backward einsum) needs only core: it sits with compute and check.
#: sanitize (nbval's baselines) and cli sit beside the magic, above everything they use;
#: ``__init__`` is the package's face (it imports the check and the export writer, and the magic
#: lazily), ``__main__`` runs the cli.
LAYERS = (
    ("errors",),
    ("core",),
    ("compute", "check", "expect", "grade"),
    ("cell",),
    ("chain",),
    ("views",),
    ("options", "grading", "flow"),
    ("magic",),
    ("__init__",),
    ("cli", "sanitize", "__main__"),
)
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}

#: Known violations, each (kind, importer, what): none. An entry may join only with a comment
#: saying why, and leaves when its violation does (the last test checks that).
ALLOWED: set = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
PACKAGES = {module_name(p) for p in PACKAGE.rglob("__init__.py")}


def layer(module: str) -> int:
    """The rank of ``module`` in :data:`LAYERS` (its first part below the package)."""
    parts = module.split(".")
    if len(parts) == 1:
        return RANK["__init__"]
    return RANK[parts[1]]


def absolute(module: str, node: ast.ImportFrom) -> str:
    """The module a ``from … import`` names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if module in PACKAGES else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str):
    """``(target module, name or None, line)`` of every package-internal import in ``module``."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    for node in ast.walk(tree):       # function bodies included
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "einsum_magic":
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            source = absolute(module, node)
            if source.split(".")[0] != "einsum_magic":
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in MODULES:
                    yield sub, None, node.lineno
                else:
                    yield source, alias.name, node.lineno
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(
                node.func, "id", "")) in ("import_module", "__import__") and node.args \
                and isinstance(node.args[0], ast.Constant) \
                and str(node.args[0].value).startswith("einsum_magic"):
            yield node.args[0].value, None, node.lineno      # importlib by a literal name


def private_attributes(module: str):
    """``(target module, private name, line)`` where ``module`` reads ``alias._name`` of a module."""
    tree = ast.parse(MODULES[module].read_text())
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("einsum_magic.") and a.asname:
                    aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            source = absolute(module, node)
            for a in node.names:
                if f"{source}.{a.name}" in MODULES:
                    aliases[a.asname or a.name] = f"{source}.{a.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in aliases and private(node.attr):
            yield aliases[node.value.id], node.attr, node.lineno


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m in MODULES:
        for target, _, _ in imports(m):
            if target != m and target in MODULES:
                graph[m].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    assert len(MODULES) > 40
    missing = sorted(m for m in MODULES if len(m.split(".")) > 1 and m.split(".")[1] not in RANK)
    assert not missing, f"add these to LAYERS: {missing}"


def test_no_import_circle():
    found = circles(edges())
    assert not found, "import circles (function bodies included): " + "; ".join(
        " <-> ".join(c) for c in found)


def test_imports_run_downward_only():
    upward = []
    for m in MODULES:
        for target, name, line in imports(m):
            if target in MODULES and layer(target) > layer(m) \
                    and ("upward", m, target) not in ALLOWED:
                upward.append(f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_module_imports_another_modules_private_names():
    found = []
    for m in MODULES:
        named = [(t, n, line) for t, n, line in imports(m) if n is not None]
        for target, name, line in named + list(private_attributes(m)):
            if private(name) and target != m and ("private", m, f"{target}.{name}") not in ALLOWED:
                found.append(f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} uses "
                             f"{target}.{name}")
    assert not found, "private names of other modules:\n" + "\n".join(found)


def test_the_allow_list_holds_only_what_is_still_there():
    """An entry whose violation is gone must leave the list, so that it only ever shrinks."""
    seen = set()
    for m in MODULES:
        for target, name, _ in list(imports(m)) + list(private_attributes(m)):
            if name is not None and private(name):
                seen.add(("private", m, f"{target}.{name}"))
            if target in MODULES and layer(target) > layer(m):
                seen.add(("upward", m, target))
    assert ALLOWED <= seen, f"no longer needed: {sorted(ALLOWED - seen)}"
    rewritten = ("einsum_magic.chain.", "einsum_magic.magic", "einsum_magic.cell.capture",
                 "einsum_magic.cell.sites")
    assert all(entry[1].startswith(rewritten) for entry in ALLOWED)


@pytest.mark.parametrize("source,expected", [
    ("from ..core import names\nfrom ..cell.calls import _x\n", {("einsum_magic.core.names", None),
                                                              ("einsum_magic.cell.calls", "_x")}),
    ("def f():\n    from .policy import check\n", {("einsum_magic.check.policy", "check")}),
    ("import importlib\ndef f():\n    importlib.import_module('einsum_magic.compute.export')\n",
     {("einsum_magic.compute.export", None)}),
])
def test_the_walk_sees_relative_and_function_level_imports(tmp_path, monkeypatch, source, expected):
    """The walker itself can fail: it must see what these snippets import, from check/."""
    monkeypatch.setitem(MODULES, "einsum_magic.check.probe", tmp_path / "probe.py")
    (tmp_path / "probe.py").write_text(source)
    got = {(t, n) for t, n, _ in imports("einsum_magic.check.probe")}
    assert got == expected


def test_circles_are_found_through_any_number_of_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_layers_order_the_data_flow():
    assert layer("einsum_magic.core.names") < layer("einsum_magic.check.policy") \
        < layer("einsum_magic.cell.calls") < layer("einsum_magic.chain.backward") \
        < layer("einsum_magic.views.html") < layer("einsum_magic.magic") < layer("einsum_magic.cli")
    assert layer("einsum_magic.compute.plan") == layer("einsum_magic.check.report")
