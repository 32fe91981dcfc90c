"""Hold the code to DESIGN.md's house: floors that import only downwards, no circles, package faces.

Every file falls under a rule by its folder (``ROOMS``); a file in a folder the table does not know, or a
top-level module that is not listed, fails the test: a new room is added here on purpose, never by accident.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "yolo"
THIRD_PARTY = {"torch", "torchvision", "numpy", "cv2", "yaml", "tqdm"}
OPTIONAL = {"matplotlib", "onnx", "onnxruntime", "onnxscript", "openvino", "tensorboard"}  # inside functions only
# Third-party roots a room may import only inside functions: utils/nms.py falls back to the torchvision package
# when its compiled library cannot be loaded alone (importing the package costs 1.5-2 s of start-up).
LAZY = {"utils": {"torchvision"}}

# Each room: the yolo packages its files may import (besides their own room), and the third-party roots.
_LOW = {"yolo.errors", "yolo.resources", "yolo.utils"}
ROOMS: dict[str, tuple[set[str], set[str]]] = {
    "errors.py": (set(), set()),
    "resources.py": ({"yolo.errors"}, set()),  # the built-in cfgs and data, found by name: stdlib only
    "utils": ({"yolo.errors", "yolo.resources"}, {"torch", "numpy", "cv2"}),
    "model": (_LOW, THIRD_PARTY),
    "data": (_LOW, THIRD_PARTY),
    "runtime": (_LOW | {"yolo.model", "yolo.data"}, THIRD_PARTY),
    "detect": (_LOW | {"yolo.model", "yolo.data", "yolo.runtime"}, THIRD_PARTY),
    "val": (_LOW | {"yolo.model", "yolo.data", "yolo.runtime"}, THIRD_PARTY),
    "export": (_LOW | {"yolo.model", "yolo.data", "yolo.runtime"}, THIRD_PARTY),
    "train": (_LOW | {"yolo.model", "yolo.data", "yolo.runtime", "yolo.val"}, THIRD_PARTY),
    "commands": (_LOW | {"yolo.model", "yolo.data", "yolo.runtime", "yolo.detect", "yolo.val", "yolo.export",
                         "yolo.train"}, THIRD_PARTY),
    "cli.py": ({"yolo.errors", "yolo.commands"}, set()),
    "__main__.py": ({"yolo.cli"}, set()),
    "__init__.py": (set(), set()),  # the root face: names resolved lazily, by string
}
# Thin modules kept at their old paths because README named them: each imports only its new home.
ALIASES = {"val_dataset.py": "yolo.val.run", "config.py": "yolo.train.config", "loss.py": "yolo.train.loss",
           "engine.py": "yolo.train.engine", "postprocess.py": "yolo.runtime.postprocess"}
FACES = ("runtime", "detect", "val", "export", "train")


def _imports(path: Path) -> list[tuple[str, list[str], int, bool]]:
    """(module, imported names, line, at top level) for every import in the file (TYPE_CHECKING ones too)."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert not any(a.name == "*" for a in node.names), f"{path}:{node.lineno}: import *"
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            out.append((node.module or "", [a.name for a in node.names], node.lineno, id(node) in top))
    return out


def _room(rel: str) -> str:
    return rel.split("/")[0]


def _files() -> list[tuple[str, Path]]:
    return [(p.relative_to(PKG).as_posix(), p) for p in sorted(PKG.rglob("*.py"))]


def _under(module: str, allowed: set[str]) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allowed)


def _problems_of(rel: str, imports) -> list[str]:
    room = _room(rel)
    if rel in ALIASES:
        allowed, third = {ALIASES[rel]}, set()
    elif room in ROOMS:
        allowed, third = ROOMS[room]
        if "/" in rel:
            allowed = allowed | {f"yolo.{room}"}
    else:
        return [f"yolo/{rel}: not in any room of tests/test_imports.py (add its folder on purpose)"]
    out = []
    for module, names, line, top in imports:
        root = module.split(".")[0]
        if root == "yolo":
            if module == "yolo" and names == ["__version__"]:
                continue
            if not _under(module, allowed):
                out.append(f"yolo/{rel}:{line} imports {module}: the {room} room may import only "
                           f"{', '.join(sorted(allowed)) or 'nothing of yolo'}")
        elif root in OPTIONAL or root in LAZY.get(room, ()):
            if top:
                out.append(f"yolo/{rel}:{line} imports optional {module} at top level (import it inside a function)")
        elif root not in sys.stdlib_module_names and root != "__future__" and root not in third:
            out.append(f"yolo/{rel}:{line} imports third-party {module}: the {room} room may use "
                       f"{', '.join(sorted(third)) or 'the standard library only'}")
    return out


def test_every_file_imports_only_downwards():
    problems = [p for rel, path in _files() for p in _problems_of(rel, _imports(path))]
    assert not problems, "\n".join(problems)


def _target(module: str, names: list[str]) -> list[str]:
    """The yolo modules (dotted, as files) an import statement loads."""
    def is_mod(dotted: str) -> bool:
        rel = Path(*dotted.split(".")[1:])
        return (PKG / rel).with_suffix(".py").is_file() or (PKG / rel / "__init__.py").is_file()
    out = [module] if is_mod(module) else []
    out += [f"{module}.{n}" for n in names if is_mod(f"{module}.{n}")]
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for rel, path in _files():
        me = "yolo." + rel[:-3].replace("/", ".").removesuffix(".__init__")
        me = "yolo" if me == "yolo.__init__" else me
        graph[me] = {t for module, names, _, _ in _imports(path) if module.split(".")[0] == "yolo"
                     for t in _target(module, names) if t != me}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Elementary cycles found by depth-first search (one per back edge)."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package face importing its own modules is how a package is built, not a circle.
            if state.get(nxt) == 1 and not (nxt.startswith(node + ".") or node.startswith(nxt + ".")):
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycles():
    graph = _graph()
    graph = {k: {t for t in v if not (k.startswith(t + ".") or t.startswith(k + "."))} for k, v in graph.items()}
    cycles = _cycles(graph)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_a_bad_import_and_a_cycle():
    """The rules are not vacuous: a lower floor importing a task, and a two-module circle, are caught."""
    bad = _problems_of("model/darknet.py", [("yolo.train.loss", ["YoloLoss"], 3, True)])
    assert bad and "the model room may import only" in bad[0]
    assert _problems_of("runtime/backends.py", [("yolo.detect.predictor", ["Detector"], 9, False)])
    assert _problems_of("detect/run.py", [("yolo.val.evaluator", ["Evaluator"], 9, False)])
    assert _problems_of("utils/boxes.py", [("torchvision.ops", ["box_iou"], 9, True)])
    assert not _problems_of("utils/nms.py", [("torchvision.ops", [], 9, False)])  # inside a function: allowed
    assert _problems_of("newroom/thing.py", [])
    assert _cycles({"yolo.a": {"yolo.b"}, "yolo.b": {"yolo.a"}}) == [["yolo.a", "yolo.b", "yolo.a"]]


def test_package_faces_hand_on_names_and_define_nothing():
    for room in FACES:
        path = PKG / room / "__init__.py"
        tree = ast.parse(path.read_text())
        body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        imported = {a.asname or a.name for n in body if isinstance(n, ast.ImportFrom) for a in n.names}
        alls = [n for n in body if isinstance(n, ast.Assign) and [t.id for t in n.targets] == ["__all__"]]
        others = [n for n in body if not isinstance(n, (ast.ImportFrom, ast.Assign))]
        assert alls and not others, f"yolo/{room}/__init__.py defines more than imports and __all__"
        names = set(ast.literal_eval(alls[0].value))
        assert names == imported, f"yolo/{room}/__init__.py: __all__ {sorted(names ^ imported)} differ from imports"


def test_optional_packages_imported_only_inside_functions():
    """matplotlib, onnx, onnxruntime, openvino and tensorboard are never needed just to import a module."""
    bad = [f"yolo/{rel}:{line} imports {m} at top level"
           for rel, p in _files() for m, _, line, top in _imports(p) if top and m.split(".")[0] in OPTIONAL]
    assert not bad, "\n".join(bad)


def test_cfg_parser_cli_and_commands_import_no_torch_at_top_level():
    commands = [p.relative_to(PKG).as_posix() for p in sorted((PKG / "commands").glob("*.py"))]
    assert len(commands) >= 9, commands
    cfg_modules = [f"model/cfg_{name}.py" for name in ("specs", "reader", "parser", "counts")]
    for rel in (*cfg_modules, "cli.py", "__init__.py", "errors.py", "resources.py", *commands):
        heavy = [(m, line) for m, _, line, top in _imports(PKG / rel)
                 if top and m.split(".")[0] in THIRD_PARTY - {"yaml"}]
        assert not heavy, f"yolo/{rel} imports {heavy} at import time"
    allowed = {"yolo.errors", "yolo.resources"} | {"yolo." + rel[:-3].replace("/", ".") for rel in cfg_modules}
    for rel in cfg_modules:  # the cfg's text, specs and counts stand on their own: no torch, numpy or layers
        bad = [m for m, _, _, _ in _imports(PKG / rel)
               if m.split(".")[0] in {"torch", "torchvision", "numpy"} or (m.startswith("yolo.") and m not in allowed)]
        assert not bad, f"yolo/{rel} imports {bad}"
