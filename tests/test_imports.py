"""Imports run one way (issue 9): no cycle among csfpk modules, no csfpk import hidden inside a function.

The graph is read from the source with ``ast`` (nothing is imported), so a cycle cannot hide behind
a lazy import: every ``import`` counts, wherever it is written.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "csfpk"
# csfpk modules a function may import lazily: the numba kernels (their import compiles or loads caches)
LAZY_INTERNAL = ("csfpk._kernels",)


def module_name(path):
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules():
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports(path, known, name=None):
    """``[(target module, inside a function?, line)]`` of the csfpk modules ``path`` imports."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == "csfpk":
                        found.append((alias.name, inner, child.lineno))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                if mod.split(".")[0] == "csfpk":
                    for alias in child.names:
                        sub = f"{mod}.{alias.name}"
                        found.append((sub if sub in known else mod, inner, child.lineno))
            visit(child, inner)

    visit(tree, False)
    return found


def graph():
    known = modules()
    return {name: imports(path, known) for name, path in known.items()}, known


def find_cycle(edges):
    """A cycle in ``{module: {targets}}`` as a list of modules, or None (iterative DFS, white/grey/black)."""
    colour = {m: 0 for m in edges}
    for start in edges:
        if colour[start]:
            continue
        stack = [(start, iter(sorted(edges[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            for child in children:
                if child not in colour:
                    continue
                if colour[child] == 1:
                    return path[path.index(child):] + [child]
                if colour[child] == 0:
                    colour[child] = 1
                    path.append(child)
                    stack.append((child, iter(sorted(edges[child]))))
                    break
            else:
                colour[node] = 2
                path.pop()
                stack.pop()
    return None


def test_no_import_cycle_among_csfpk_modules():
    g, _ = graph()
    edges = {m: {t for t, _, _ in imps if t != m} for m, imps in g.items()}
    assert find_cycle(edges) is None, f"import cycle: {' -> '.join(find_cycle(edges))}"


def test_no_csfpk_import_inside_a_function_except_the_kernels():
    g, known = graph()
    hidden = [f"{known[m].name}:{line} imports {t}" for m, imps in g.items() for t, inner, line in imps
              if inner and not t.startswith(LAZY_INTERNAL)]
    assert hidden == []


@pytest.mark.parametrize("low, high", [
    ("csfpk.batch", ("csfpk.cli", "csfpk.sweep", "csfpk.figures", "csfpk.comparison")),
    ("csfpk.runfolder", ("csfpk.batch", "csfpk.runresult", "csfpk.plot", "csfpk.cli")),
    ("csfpk.runresult", ("csfpk.batch", "csfpk.plot", "csfpk.figures", "csfpk.cli")),
    ("csfpk.plot", ("csfpk.batch", "csfpk.figures", "csfpk.cli")),
    ("csfpk.scenario", ("csfpk.batch", "csfpk.runfolder", "csfpk.cli")),
    ("csfpk.population", ("csfpk.batch", "csfpk.scenario", "csfpk.cli")),
])
def test_layers_do_not_reach_up(low, high):
    g, _ = graph()
    seen, todo = set(), [low]
    while todo:
        m = todo.pop()
        for t, _, _ in g.get(m, ()):
            if t not in seen:
                seen.add(t)
                todo.append(t)
    assert not seen & set(high), f"{low} reaches {sorted(seen & set(high))}"


def test_the_checker_sees_cycles_and_hidden_imports(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    src = tmp_path / "fake.py"
    src.write_text("import os\nfrom . import plot\n\n\nclass A:\n    def f(self):\n        from .cli import main\n"
                   "        from ._kernels import batch\n")
    found = imports(src, modules(), name="csfpk.fake")
    assert found == [("csfpk.plot", False, 2), ("csfpk.cli", True, 7), ("csfpk._kernels.batch", True, 8)]
