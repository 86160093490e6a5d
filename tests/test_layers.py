"""The package layout is the architecture: every import in ``rag/`` points down or sideways."""

from __future__ import annotations

import ast
from pathlib import Path

RAG = Path(__file__).resolve().parents[1] / "rag"

# Lowest first. A module may import modules of its own layer or of a lower one.
LAYERS: dict[str, int] = {
    "types": 0,
    "errors": 0,
    "cache": 0,
    "text": 1,
    "ingest": 2,
    "embedding": 3,
    "store": 4,
    "retrieve": 5,
    "answer": 6,
    "config": 7,
    "service": 7,
    "rebuild": 7,
    "ray_ingest": 7,
    "evaluation": 8,
    "tuning": 8,
    "testing": 8,
    "cli": 9,
}


def _layer(dotted: str) -> int:
    part = dotted.split(".")[1] if dotted.count(".") else ""
    assert part in LAYERS, f"rag.{part} has no layer: add it to LAYERS in {__file__}"
    return LAYERS[part]


def _imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(RAG.rglob("*.py")):
        rel = path.relative_to(RAG.parent).with_suffix("")
        if rel.name == "__init__" and rel.parent == Path("rag"):
            continue  # the public API re-exports from every layer
        out.append((".".join(rel.parts), path))
    return out


def test_rag_never_imports_api() -> None:
    offenders = [
        name for name, path in _modules() for mod in _imports(path) if mod.split(".")[0] == "api"
    ]
    assert offenders == []


def test_every_import_points_to_the_same_or_a_lower_layer() -> None:
    upward = []
    for name, path in _modules():
        own = _layer(name)
        for mod in _imports(path):
            if mod.startswith("rag.") and _layer(mod) > own:
                upward.append(f"{name} (layer {own}) imports {mod} (layer {_layer(mod)})")
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from rag.service import RagService\n", encoding="utf-8")
    assert _layer(_imports(probe)[0]) > _layer("rag.store.index")
