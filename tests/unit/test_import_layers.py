"""Imports inside the package only point down (docs/ARCHITECTURE.md, "Map"): a module may
import its own package and any package of a lower layer, never one of its layer or above.
Lazy imports inside functions count too. A new top-level package or module must be given a
layer here."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "yolo_sfn"
LAYERS = [  # bottom first
    {"errors", "env", "contract"},
    {"model", "darknet", "outputs"},
    {"core", "convert"},
    {"workflow", "demo"},
    {"remote", "bench"},
    {"report"},
    {"local"},
    {"commands"},
    {"cli"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _imports(path: Path):
    """(line, yolo_sfn top-level name) of every absolute import of the package in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = ([f"yolo_sfn.{a.name}" for a in node.names] if node.module == "yolo_sfn"
                     else [node.module])
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "yolo_sfn" and len(parts) > 1:
                yield node.lineno, parts[1]


def _violations() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.name == "__init__.py" and len(rel.parts) == 1:
            continue
        me = rel.parts[0].removesuffix(".py")
        assert me in RANK, f"{rel}: top-level '{me}' has no layer in {__file__}"
        for line, target in _imports(path):
            if target != me and RANK.get(target, len(LAYERS)) >= RANK[me]:
                bad.append(f"{rel}:{line} ({me}) imports yolo_sfn.{target}")
    return bad


def test_imports_only_point_down():
    assert _violations() == []


def test_the_check_sees_lazy_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from yolo_sfn.commands import run\n    import yolo_sfn.cli\n")
    assert [t for _, t in _imports(src)] == ["commands", "cli"]
