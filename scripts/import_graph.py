"""Count logstream's parts and the import edges between them: python scripts/import_graph.py [--rev REV] [--edges] [--map] [--markdown]

A part is a package directly under logstream/ (commands, node, mediator, ...) or a top-level module
(client.py, errors.py, ...); the package's own __init__.py and __main__.py are not parts, and the
generated _proto/ package is. An edge is an ordered pair of different parts where some module of
the first imports (anywhere in the file: at the top, inside a function, under TYPE_CHECKING) a
module or a name of the second. `--rev` reads the tree of a git revision instead of the working
tree, so the figure of any commit can be reproduced; `--edges` lists the edges, `--map` the module
map (each part's modules with their line counts; the generated logstream_pb2* files left out),
`--markdown` the module map of docs/architecture.md (replace that section with it), and cycles
between parts are reported either way (exit 1 when there is one).
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "logstream"
NOT_PARTS = {"__init__", "__main__"}

# The module map's job column is the first sentence of each module's docstring; these are shorter
# words for docstrings whose first sentence runs long (or that have none).
JOBS = {
    "__main__.py": "`python -m logstream` runs the `logstream` command.",
    "_proto/__init__.py": "Generated from proto/logstream.proto by scripts/gen_proto.py (the pb2 modules are not counted here).",
    "commands/bench_client.py": "`logstream bench`'s client processes: what each sends (a Plan), what it measured (a Result), the pool.",
    "commands/export.py": "`logstream export FILE --format systemd&#124;supervisord&#124;k8s --out DIR`.",
    "commands/run.py": "`logstream run FILE`: check the file, ports and run directory, then hand over to `supervisor/manager.py`.",
    "commands/status.py": "`logstream status FILE` / `-mediator HOST:PORT` [--json]: supervisord's and the mediator's view.",
    "coord/__init__.py": "etcd mode (issue 12): ownership and membership kept in etcd; a pure protocol and an I/O adapter.",
    "coord/gate.py": "etcd mode's two ends of a forward: the streamer's write gate per key, the mediator's choice of streamer.",
    "coord/ownership.py": "etcd mode at run time: a streamer's lease and key claims (`StreamerSession`), the mediator's `ClusterView`.",
    "export/__init__.py": "`logstream export`'s renderers: planned nodes -> systemd, supervisord group, Kubernetes.",
    "export/k8s.py": "Planned nodes -> Kubernetes manifests (mediator Deployment, streamer StatefulSet, Services, probes).",
    "export/supervisord.py": "Planned nodes -> an include-able supervisord program group (no `[supervisord]` section).",
    "export/yaml.py": "A small YAML writer: every string double-quoted, so no value reads back as a number, bool or null.",
    "node/auth.py": "Who may steer a node: the metadata nodes attach to their calls (incarnation, token) and the pure checks.",
    "node/debug.py": "The node's HTTP servers: -pprof (metrics, probes, stacks, profiles) and -metrics (metrics and probes only).",
    "node/decoding.py": "Undecodable request bodies: INVALID_ARGUMENT and one rate-limited line, not a traceback per request.",
    "node/introspect.py": "What a running node is doing: sampled CPU/wall profiles and the stacks of every thread and task.",
    "node/ratelog.py": "Rate-limited warnings: the first of each cause at once, later ones counted and summed up per cause.",
    "node/token_file.py": "The cluster token on disk (-token-file; 0600, made by `logstream run`) and the Guard a node asks for.",
    "streamer/__init__.py": "The streamer role: validates, writes and rotates log files; serves LogStreamer, Pinger, StreamerControl.",
    "streamer/opening.py": "Opening below the root without following symlinks: the root held open, folders walked, files locked.",
    "supervisor/manager.py": "`logstream run`'s manager: render, run supervisord, follow output, announce readiness, stop on a signal.",
    "supervisor/process.py": "The run's processes: following node output files, the nodes' environment, free ports, pid checks.",
    "supervisor/status.py": "A running cluster as supervisord (states, pids) and its mediator (streamers, files, lines) see it.",
}


def sources_in_tree(root: Path) -> Iterator[tuple[str, str]]:
    """(path relative to the repository, text) of every .py file under logstream/ in the working tree."""
    for path in sorted((root / PACKAGE).rglob("*.py")):
        yield path.relative_to(root).as_posix(), path.read_text()


def sources_at(root: Path, rev: str) -> Iterator[tuple[str, str]]:
    """The same at a git revision."""
    names = subprocess.run(
        ["git", "-C", str(root), "ls-tree", "-r", "--name-only", rev, PACKAGE + "/"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    for name in sorted(n for n in names if n.endswith(".py")):
        text = subprocess.run(["git", "-C", str(root), "show", f"{rev}:{name}"], check=True, capture_output=True, text=True).stdout
        yield name, text


def module_name(path: str) -> str:
    """logstream/mediator/router.py -> logstream.mediator.router; a package's __init__.py names the package."""
    parts = path[: -len(".py")].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def part_of(module: str, is_package: set[str]) -> str | None:
    """The part a dotted module name belongs to, or None for logstream itself and its __main__."""
    pieces = module.split(".")
    if pieces[0] != PACKAGE or len(pieces) < 2:
        return None
    head = pieces[1]
    if head in NOT_PARTS and f"{PACKAGE}.{head}" not in is_package:
        return None
    return head


def imported_modules(module: str, is_package_module: bool, tree: ast.AST) -> Iterator[str]:
    """Every logstream module or name a module's source imports, as dotted names (relative imports resolved)."""
    base = module.split(".") if is_package_module else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == PACKAGE:
                # `from logstream import client` imports the module logstream.client.
                for alias in node.names:
                    yield f"{PACKAGE}.{alias.name}"
            else:
                yield target


def graph(sources: Iterable[tuple[str, str]]) -> tuple[set[str], set[tuple[str, str]]]:
    """The parts and the import edges between them."""
    files = list(sources)
    packages = {module_name(p) for p, _ in files if p.endswith("/__init__.py")}
    parts: set[str] = set()
    edges: set[tuple[str, str]] = set()
    for path, text in files:
        module = module_name(path)
        source = part_of(module, packages)
        if source is not None:
            parts.add(source)
        if source is None:
            continue
        tree = ast.parse(text, filename=path)
        for imported in imported_modules(module, path.endswith("/__init__.py"), tree):
            target = part_of(imported, packages)
            if target is not None and target != source:
                edges.add((source, target))
    # A name imported from logstream that is no module (LogClient from the lazy __init__) is not a part.
    edges = {(a, b) for a, b in edges if b in parts}
    return parts, edges


def cycles(parts: set[str], edges: set[tuple[str, str]]) -> list[list[str]]:
    """The groups of two or more parts that reach each other through imports, each sorted."""
    reach: dict[str, set[str]] = {}
    for start in parts:
        seen: set[str] = set()
        todo = [start]
        while todo:
            here = todo.pop()
            for a, b in edges:
                if a == here and b not in seen:
                    seen.add(b)
                    todo.append(b)
        reach[start] = seen
    groups = {frozenset({p} | {q for q in reach[p] if p in reach[q]}) for p in parts}
    return sorted(sorted(group) for group in groups if len(group) > 1)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="a git revision (default: the working tree)")
    parser.add_argument("--edges", action="store_true", help="list the edges")
    parser.add_argument("--map", action="store_true", help="list every part's modules and their line counts")
    parser.add_argument("--markdown", action="store_true", help="the module map of docs/architecture.md")
    parser.add_argument("--leave-out", metavar="PARTS", default="",
                        help="comma-separated parts counted neither as parts nor as ends of edges")
    args = parser.parse_args(argv)
    sources = list(sources_at(ROOT, args.rev) if args.rev else sources_in_tree(ROOT))
    parts, edges = graph(sources)
    left_out = set(filter(None, args.leave_out.split(",")))
    parts -= left_out
    edges = {(a, b) for a, b in edges if a not in left_out and b not in left_out}
    without = f", without {','.join(sorted(left_out))}" if left_out else ""
    print(f"{len(parts)} parts, {len(edges)} import edges ({args.rev or 'working tree'}{without})")
    print("parts: " + " ".join(sorted(parts)))
    if args.edges:
        for a, b in sorted(edges):
            print(f"  {a} -> {b}")
    circles = cycles(parts, edges)
    for component in circles:
        print("cycle: " + " <-> ".join(component))
    if args.map:
        print_map(sources)
    if args.markdown:
        print(markdown_map(sources))
    # A circle between parts is a layering bug (tests/unit/test_layering.py asserts none): exit 1.
    return 1 if circles else 0


def markdown_map(sources: list[tuple[str, str]]) -> str:
    """The module map as docs/architecture.md shows it: a table per part, line counts and jobs."""
    groups: dict[str, list[tuple[str, int, str]]] = {}
    for path, text in sources:
        if "/_proto/logstream_pb2" in path:
            continue
        rel = path.removeprefix(PACKAGE + "/")
        doc = ast.get_docstring(ast.parse(text)) or ""
        first = " ".join(doc.split("\n\n")[0].split())
        sentence = re.match(r"(.+?[.])(\s|$)", first)
        job = JOBS.get(rel) or (sentence.group(1) if sentence else first).replace("|", "&#124;")
        groups.setdefault(rel.split("/")[0] if "/" in rel else "", []).append((rel, len(text.splitlines()), job))
    total = sum(n for files in groups.values() for _, n, _ in files)
    count = sum(len(files) for files in groups.values())
    out = [f"## Module map\n{count} modules, {total} lines (the generated `_proto/logstream_pb2*` not counted). "
           "Made by `python scripts/import_graph.py --markdown`; jobs from each module's docstring."]
    for part in sorted(groups, key=lambda p: (p != "", p)):
        files = groups[part]
        title = f"`{part}/`" if part else "Top level"
        out.append(f"\n**{title}** ({len(files)} modules, {sum(n for _, n, _ in files)} lines)\n")
        out.append("| module | lines | job |\n|---|---:|---|")
        out.extend(f"| `{rel}` | {n} | {job} |" for rel, n, job in files)
    return "\n".join(out)


def print_map(sources: list[tuple[str, str]]) -> None:
    """Lines per module, grouped by part (a package's total first); generated stubs left out."""
    by_part: dict[str, list[tuple[str, int]]] = {}
    for path, text in sources:
        if "/_proto/logstream_pb2" in path:
            continue
        rest = path.removeprefix(PACKAGE + "/")
        by_part.setdefault(rest.split("/")[0].removesuffix(".py"), []).append((rest, len(text.splitlines())))
    total = sum(n for files in by_part.values() for _, n in files)
    print(f"{total} lines in {sum(len(f) for f in by_part.values())} modules")
    for part, files in sorted(by_part.items()):
        if len(files) == 1 and "/" not in files[0][0]:
            print(f"  {files[0][0]:<32} {files[0][1]:>5}")
            continue
        print(f"  {part + '/':<32} {sum(n for _, n in files):>5}  ({len(files)} modules, largest "
              f"{max(files, key=lambda f: f[1])[0].split('/')[-1]} {max(n for _, n in files)})")
        for name, lines in sorted(files):
            print(f"    {name.split('/', 1)[1]:<30} {lines:>5}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
