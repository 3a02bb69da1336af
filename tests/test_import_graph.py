"""The package's import graph, read from the source with ast (every import counts:
module level, inside functions, under TYPE_CHECKING): no circle, no private name used
across modules, and the layers in order (kinetics.bench imports nothing from
kinetics.analysis)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kinetics"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(), str(MODULES[name]))


def _resolve(module: str | None, importer: str, level: int) -> str:
    """The absolute name of ``from <level dots><module> import ...`` in ``importer``."""
    if not level:
        return module or ""
    base = importer.split(".")
    is_package = MODULES.get(importer, Path()).name == "__init__.py"
    base = base[: len(base) - level + (1 if is_package else 0)]
    return ".".join([*base, module] if module else base)


def imports_in(tree: ast.Module, name: str) -> list[tuple[str, str | None, str]]:
    """(module, imported attribute or None, local name) of every kinetics import in
    ``tree`` (module ``name``); ``from pkg import sub`` of a submodule is the submodule."""
    out: list[tuple[str, str | None, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, a.asname or a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node.module, name, node.level)
            for a in node.names:
                sub = f"{module}.{a.name}"
                local = a.asname or a.name
                out.append((sub, None, local) if sub in MODULES else (module, a.name, local))
    return [x for x in out if x[0] == "kinetics" or x[0].startswith("kinetics.")]


def private_in(tree: ast.Module, name: str) -> list[str]:
    """Private names module ``name`` takes from other kinetics modules: imported
    (``from m import _x``), reached as ``alias._x`` of an imported module, or a private
    module (``_kernels``) imported from outside its own package."""
    found, aliases = [], {}
    is_package = MODULES.get(name, Path()).name == "__init__.py"
    package = name if is_package else name.rsplit(".", 1)[0]
    for module, attr, local in imports_in(tree, name):
        if attr is None:
            aliases[local] = module
        if attr and attr.startswith("_") and not attr.startswith("__") and module != name:
            found.append(f"{module}.{attr}")
        private_module = any(p.startswith("_") for p in module.split(".")[1:])
        if private_module and module.rsplit(".", 1)[0] != package:
            found.append(module)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and node.attr.startswith("_")
                and not node.attr.startswith("__") and aliases[node.value.id] != name):
            found.append(f"{aliases[node.value.id]}.{node.attr}")
    return found


def graph() -> dict[str, set[str]]:
    return {name: {m for m, _, _ in imports_in(_tree(name), name) if m in MODULES and m != name}
            for name in MODULES}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``g`` (its modules in order, the first repeated), or None."""
    state: dict[str, int] = {}  # 1 on the path, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(g):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_the_package():
    g = graph()
    assert len(MODULES) > 40 and "kinetics.bench.spec" in g["kinetics.bench.layer"]
    assert "kinetics.bench.spec" in g["kinetics.bench.floors"]
    assert "kinetics.bench.grid" in g["kinetics.cli.bench_cmd"]  # imported inside a function


def test_no_import_circle():
    cycle = find_cycle(graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_name_across_modules(name):
    assert private_in(_tree(name), name) == []


def test_bench_imports_nothing_from_analysis():
    bad = {name: sorted(m for m in deps if m.startswith("kinetics.analysis"))
           for name, deps in graph().items() if name.startswith("kinetics.bench")}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_rules_catch_what_they_must():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    src = ("from kinetics.cli._output import _temp_prefix\n"
           "from kinetics.bench import timing\n"
           "def f():\n    from kinetics.model import _fused_kernels\n"
           "    return timing._private\n")
    assert private_in(ast.parse(src), "kinetics.bench.spec") == [
        "kinetics.cli._output._temp_prefix", "kinetics.cli._output",
        "kinetics.model._fused_kernels", "kinetics.bench.timing._private"]
    # a private module of its own package is fine (kinetics.model.fused uses its kernels)
    assert private_in(ast.parse("from kinetics.model import _fused_kernels"),
                      "kinetics.model.fused") == []
