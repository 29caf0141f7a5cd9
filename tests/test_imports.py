"""The package's import graph: no cycles, and the leaf modules (data, augmentation, metrics, run folders,
recipes, devices) never import a model or the training loop. Function-level imports count too: a cycle
hidden in a function is still a cycle."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "normlab"
LEAVES = ("errors", "names", "layout", "heap", "metrics", "data", "augment", "runs", "recipes", "devices",
          "evaluation")


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                for alias in node.names:  # `from . import x` imports the module base.x
                    edges.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("normlab"):
                edges.add(node.module)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith("normlab"))
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def test_the_graph_is_read():
    graph = import_graph()
    assert "normlab.engine" in graph["normlab.api"] and "normlab.models" in graph["normlab.engine"]


def test_no_import_cycle():
    graph = import_graph()
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaf_modules_import_no_model_and_no_engine(leaf):
    graph = import_graph()
    seen, todo = set(), [f"normlab.{leaf}"]
    while todo:  # everything the leaf imports, directly or not
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    assert not {m for m in seen if m.startswith("normlab.models") or m == "normlab.engine"}


def test_cli_and_package_import_without_torch():
    code = ("import sys, normlab, normlab.cli, normlab.recipes; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:3]")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_no_module_shadows_an_api_function():
    """``normlab.sweep`` must stay the function: a submodule of the same name, once imported, would replace
    the package attribute."""
    import normlab

    clashes = [name for name in normlab.__all__ if (PACKAGE / f"{name}.py").exists() or (PACKAGE / name).is_dir()]
    assert not clashes
