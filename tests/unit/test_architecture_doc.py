"""docs/architecture.md names only modules that exist, and the names it traces the flows through
(`module.function`, `module.Class.method`) are defined in those modules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import logstream

PACKAGE = Path(logstream.__file__).parent
DOC = PACKAGE.parent / "docs" / "architecture.md"


def _defined(module: Path) -> set[str]:
    """Top-level names of a module and `Class.member` for its classes' members."""
    names: set[str] = set()
    for node in ast.parse(module.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                for member in node.body:
                    if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        names.add(f"{node.name}.{member.name}")
                    elif isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name):
                        names.add(f"{node.name}.{member.target.id}")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_every_module_the_map_lists_exists() -> None:
    listed = set(re.findall(r"^\| `([\w/]+\.py)` \|", DOC.read_text(encoding="utf-8"), re.MULTILINE))
    assert len(listed) > 100
    assert sorted(name for name in listed if not (PACKAGE / name).is_file()) == []


def test_traced_names_are_defined_where_the_doc_says() -> None:
    # `package/module.name` (a path) or `module.name` with the module's package given by context are
    # both used; check the path form, which names its module unambiguously.
    text = DOC.read_text(encoding="utf-8")
    missing = []
    checked = 0
    for module, name in re.findall(r"`(\w+/\w+)\.(\w+(?:\.\w+)?)", text):
        path = PACKAGE / f"{module}.py"
        if name == "py" or name.startswith("py.") or not path.is_file():
            continue  # a folder-level mention (`supervisor/manager.py`), not a traced name
        checked += 1
        if name not in _defined(path):
            missing.append(f"{module}.{name}")
    assert checked > 40
    assert missing == []
