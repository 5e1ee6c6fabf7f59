"""The package's import graph, function-level imports included: no cycle, and layers point
one way (data readers never import checkpoints, trainers or converters)."""

import ast
import os

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sesyn_jax")


def import_graph() -> dict[str, set[str]]:
    modules = {}
    for folder, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                rel = os.path.relpath(path, os.path.dirname(PKG))[:-3].replace(os.sep, ".")
                modules[rel.removesuffix(".__init__")] = path
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sesyn_jax"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("sesyn_jax"))
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", "") == "__import__"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                deps.add(str(node.args[0].value))
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def test_no_import_cycle():
    graph = import_graph()
    assert "sesyn_jax.checkpoint" in graph and len(graph) > 20
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for dep in sorted(graph[node]):
            assert state.get(dep) != 1, "import cycle: " + " -> ".join(path + [dep])
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_layers_point_one_way():
    graph = import_graph()
    upper = {
        "sesyn_jax.checkpoint",
        "sesyn_jax.convert",
        "sesyn_jax.train.loop",
        "sesyn_jax.report",
        "sesyn_jax.loading",
        "sesyn_jax.evaluation",
    }
    for name, deps in graph.items():
        if name.startswith("sesyn_jax.data"):
            assert not deps & upper, f"{name} imports {sorted(deps & upper)}"
    assert "sesyn_jax.convert" not in graph["sesyn_jax.checkpoint"]
    assert "sesyn_jax.train.loop" not in graph["sesyn_jax.report"]


def test_training_functions_read_at_once():
    """No function of the training package is longer than about 80 lines."""
    folder = os.path.join(PKG, "train")
    for f in sorted(os.listdir(folder)):
        if f.endswith(".py"):
            tree = ast.parse(open(os.path.join(folder, f)).read())
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    assert lines <= 80, f"train/{f}: {node.name} has {lines} lines"
