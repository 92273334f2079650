"""The import graph of the package has no circle: every import, also one inside a function, points
from a module to modules that do not import it back, directly or through others; nor has the graph
of its parts (packages and top-level modules, as scripts/import_graph.py counts them)."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import logstream

ROOT = Path(logstream.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (`from pkg import mod` counts as mod when it is one)."""
    paths = [p for p in ROOT.rglob("*.py") if "_proto" not in p.parts]
    modules = {_module_name(p): p for p in paths}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target != "logstream":
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle() -> None:
    graph = import_graph()
    assert "logstream.commands.status" in graph and graph["logstream.commands.send"]
    assert cycles(graph) == []


def _import_graph_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = ROOT.parent / "scripts" / "import_graph.py"


def test_no_circle_between_parts() -> None:
    # e.g. config/types.py using node/address.py while node/tls.py named config's RoleSettings, or
    # coord/gate.py using the mediator's placement while the mediator used coord/.
    script = _import_graph_script()
    parts, edges = script.graph(script.sources_in_tree(script.ROOT))
    assert {"config", "node", "coord", "mediator"} <= parts and ("config", "node") in edges
    assert script.cycles(parts, edges) == []
    assert script.cycles({"a", "b", "c"}, {("a", "b"), ("b", "a"), ("b", "c")}) == [["a", "b"]]
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "cycle" not in done.stdout, done.stdout


def test_imports_are_absolute() -> None:
    # The graph above reads absolute imports only; a relative one (`from ..streamer import x`, as the
    # mediator once reached into the streamer) would slip past every check here.
    relative = [f"{_module_name(path)}:{node.lineno}" for path in ROOT.rglob("*.py") if "_proto" not in path.parts
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if isinstance(node, ast.ImportFrom) and node.level > 0]
    assert relative == []


def test_neither_role_imports_the_other() -> None:
    # What both roles need (keys, chunks, names, addresses, timings) lives below them: keys/, node/, config/.
    graph = import_graph()
    crossing = sorted(f"{module} -> {target}" for module, targets in graph.items() for target in targets
                      for mine, other in (("mediator", "streamer"), ("streamer", "mediator"))
                      if module.startswith(f"logstream.{mine}.") and target.startswith(f"logstream.{other}"))
    assert crossing == []


def test_only_node_channel_builds_grpc_channels() -> None:
    builders = {"insecure_channel", "secure_channel"}
    found = []
    for path in ROOT.rglob("*.py"):
        if "_proto" in path.parts or path == ROOT / "node" / "channel.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in builders:
                found.append(f"{_module_name(path)}:{node.lineno}")
    assert found == []


def test_with_options_replaces_and_adds() -> None:
    from logstream.node.channel import with_options

    base = [("grpc.a", 1), ("grpc.b_c", 2)]
    assert with_options(base, b_c=3, d__e="x") == [("grpc.a", 1), ("grpc.b_c", 3), ("grpc.d.e", "x")]
    assert with_options(base) == base


def test_library_code_raises_its_own_errors_not_the_cli_s() -> None:
    # node/ (what both roles and the client use), the roles, supervisor/ and the client library name
    # their own error types (UserError subclasses); only commands/ and the flag parser raise
    # UsageError, and the CLI edge (commands/main.py) prints every UserError as one line.
    library = [*(ROOT / "node").glob("*.py"), *(ROOT / "supervisor").glob("*.py"), ROOT / "client.py",
               *(ROOT / "mediator").glob("*.py"), *(ROOT / "streamer").glob("*.py")]
    offenders = [_module_name(path) for path in library if "UsageError" in path.read_text(encoding="utf-8")]
    assert offenders == []
