"""Hold the code to DESIGN.md's import directions, by walking the source with ``ast``."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "yolo"
THIRD_PARTY = {"torch", "torchvision", "numpy", "cv2", "yaml", "tqdm",
               "matplotlib", "onnx", "onnxruntime", "tensorboard"}  # the last four imported inside functions only
OPTIONAL = {"matplotlib", "onnx", "onnxruntime", "tensorboard"}


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module, line, at top level) for every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert not any(a.name == "*" for a in node.names), f"{path}:{node.lineno}: import *"
            out.append((node.module or "", node.lineno, id(node) in top))
    return out


def _allowed(rel: str) -> set[str]:
    """Which yolo subpackages/modules a file may import (stdlib and THIRD_PARTY are checked apart)."""
    if rel.startswith("utils/"):
        return {"yolo.utils", "yolo.errors"}
    if rel == "model/cfg_parser.py":
        return {"yolo.errors"}
    if rel.startswith("model/") or rel.startswith("data/"):
        return {"yolo.utils", "yolo.errors", "yolo.model" if rel.startswith("model/") else "yolo.data"}
    if rel in ("loss.py", "postprocess.py") or rel.startswith("metrics"):  # anchors and strides come in as tensors
        return {"yolo.utils", "yolo.errors"}
    if rel == "config.py":
        return {"yolo.errors"}
    return {"yolo"}


def test_import_directions():
    problems = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        allowed = _allowed(rel)
        for module, line, _ in _imports(path):
            root = module.split(".")[0]
            if root == "yolo":
                if not any(module == a or module.startswith(a + ".") for a in allowed):
                    problems.append(f"yolo/{rel}:{line} imports {module}")
            elif root not in sys.stdlib_module_names and root not in THIRD_PARTY and root != "__future__":
                problems.append(f"yolo/{rel}:{line} imports third-party {module}")
    assert not problems, "\n".join(problems)


def test_optional_packages_imported_only_inside_functions():
    """matplotlib, onnx, onnxruntime and tensorboard are never needed just to import a module."""
    bad = [f"yolo/{p.relative_to(PKG).as_posix()}:{line} imports {m} at top level"
           for p in sorted(PKG.rglob("*.py")) for m, line, top in _imports(p) if top and m.split(".")[0] in OPTIONAL]
    assert not bad, "\n".join(bad)


def test_cfg_parser_cli_and_commands_import_no_torch_at_top_level():
    commands = [p.relative_to(PKG).as_posix() for p in sorted((PKG / "commands").glob("*.py"))]
    assert len(commands) >= 9, commands
    for rel in ("model/cfg_parser.py", "cli.py", "__init__.py", "errors.py", *commands):
        heavy = [(m, line) for m, line, top in _imports(PKG / rel) if top and m.split(".")[0] in THIRD_PARTY - {"yaml"}]
        assert not heavy, f"yolo/{rel} imports {heavy} at import time"
