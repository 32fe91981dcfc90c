"""The built-in files, found by name from any folder: model cfgs, run YAMLs, dataset YAMLs and names files.

Kinds and where each lives (folders of the repository's top level, the one copy in git):

- ``model``: darknet cfgs, ``cfg/*.cfg`` (``yolov3-tiny.cfg``),
- ``run``: ``yolo train`` run YAMLs, ``cfg/train/*.yaml`` (``shapes.yaml``),
- ``data``: dataset YAMLs, ``data/*.yaml`` (``shapes.yaml``, ``coco.yaml``),
- ``names``: class names files, ``data/*.names`` (``coco.names``).

An installed wheel carries them as ``yolo/_builtin/cfg`` and ``yolo/_builtin/data`` (copied there by the build
hook in ``setup.py``); a checkout (an editable install, or ``PYTHONPATH``) reads the top-level folders
themselves. Either way they are found through ``importlib.resources``.

Resolution (:func:`resolve`): an existing path always wins; else a name (``yolov3.cfg``, also without its
suffix, or with the built-in's own folder: ``cfg/yolov3.cfg``) is the built-in of that name and kind; else an
``InputError`` that lists the built-ins of the kind.

Floor: the standard library and ``yolo.errors`` only, so every floor (``utils`` and ``model/cfg_parser``
included) may import it.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from yolo.errors import InputError

# kind -> (folder under the built-in root, file pattern, what the kind is called in messages)
KINDS: dict[str, tuple[str, str, str]] = {
    "model": ("cfg", "*.cfg", "model cfg"),
    "run": ("cfg/train", "*.yaml", "run YAML"),
    "data": ("data", "*.yaml", "dataset YAML"),
    "names": ("data", "*.names", "names file"),
}


# The darknet zoo cfgs are copied unedited (their official .weights load as they are: cfg/README.md), so their
# descriptions live here.
_ZOO_SOURCE = "AlexeyAB's darknet zoo, unedited, 80 COCO classes"
ZOO = {
    "enet-coco.cfg": f"EfficientNet-B0 backbone with YOLOv3 heads ({_ZOO_SOURCE})",
    "yolov3-tiny-prn.cfg": f"YOLOv3-tiny with partial residual networks ({_ZOO_SOURCE})",
    "yolov4.cfg": f"YOLOv4: CSPDarknet53, SPP and PANet, mish ({_ZOO_SOURCE})",
    "yolov4-tiny.cfg": f"YOLOv4-tiny, 2 heads ({_ZOO_SOURCE})",
    "yolov4-tiny-3l.cfg": f"YOLOv4-tiny with a third head for small objects ({_ZOO_SOURCE})",
    "yolov4-csp.cfg": f"Scaled-YOLOv4 CSP, 512 px ({_ZOO_SOURCE})",
    "yolov4-csp-swish.cfg": f"Scaled-YOLOv4 CSP with swish activations, 640 px ({_ZOO_SOURCE})",
    "yolov4x-mish.cfg": f"Scaled-YOLOv4 CSP-X with mish, 640 px ({_ZOO_SOURCE})",
    "yolov4-p5.cfg": f"Scaled-YOLOv4 P5, 896 px ({_ZOO_SOURCE})",
    "yolov4-p6.cfg": f"Scaled-YOLOv4 P6, 1280 px ({_ZOO_SOURCE})",
    "yolov7-tiny.cfg": f"YOLOv7-tiny, leaky ReLU ({_ZOO_SOURCE})",
    "yolov7.cfg": f"YOLOv7, swish, 640 px ({_ZOO_SOURCE})",
    "yolov7x.cfg": f"YOLOv7-X, swish, 640 px ({_ZOO_SOURCE})",
}


@dataclass(frozen=True)
class Builtin:
    """One built-in file: its ``name`` (file name), ``kind`` (a key of ``KINDS``) and ``path``."""

    name: str
    kind: str
    path: Path

    def description(self) -> str:
        """The file's leading comment (``# ...`` lines up to the first other line, joined; names files: how many
        names; the unedited darknet zoo cfgs, which have none: a line of ``ZOO``), else ``""``."""
        if self.kind == "model" and self.name in ZOO:
            return ZOO[self.name]
        try:
            with open(self.path, encoding="utf-8") as f:
                if self.kind == "names":
                    return f"{sum(1 for line in f if line.strip())} class names"
                lines = []
                for line in f:
                    if not line.startswith("#"):
                        break
                    lines.append(line.lstrip("#").strip())
        except (OSError, UnicodeDecodeError):
            return ""
        return " ".join(line for line in lines if line)


def builtin_root() -> Path | None:
    """The folder holding the built-in ``cfg/`` and ``data/``: the installed package's ``_builtin/``, else the
    checkout's top level; None when neither is there."""
    installed = importlib.resources.files("yolo") / "_builtin"
    if isinstance(installed, Path) and installed.is_dir():
        return installed
    checkout = Path(__file__).resolve().parents[1]
    return checkout if (checkout / "cfg").is_dir() else None


def builtins(kind: str | None = None) -> list[Builtin]:
    """Every built-in file (of ``kind``), sorted by kind (as in ``KINDS``) then name."""
    root = builtin_root()
    if root is None:
        return []
    out = []
    for k, (folder, pattern, _) in KINDS.items():
        if kind in (None, k):
            out += [Builtin(p.name, k, p) for p in sorted((root / folder).glob(pattern)) if p.is_file()]
    return out


def builtin(name: str | Path, kind: str) -> Path | None:
    """The built-in file of ``kind`` that ``name`` names (``yolov3.cfg``, ``yolov3``, ``cfg/yolov3.cfg``), or
    None."""
    if not could_be_builtin(name, kind):
        return None
    name = PurePosixPath(str(name).replace("\\", "/"))
    suffix = KINDS[kind][1].removeprefix("*")
    for b in builtins(kind):
        if b.name == name.name or (not name.suffix and b.name == name.name + suffix):
            return b.path
    return None


def could_be_builtin(name: str | Path, kind: str) -> bool:
    """Whether ``name`` has the form of a built-in's name: a bare file name, or one under the built-in's own
    folder (``cfg/yolov3.cfg``); an absolute path or another folder never is."""
    name = PurePosixPath(str(name).replace("\\", "/"))
    return not name.is_absolute() and name.parent.parts in ((), PurePosixPath(KINDS[kind][0]).parts)


def is_builtin(path: str | Path) -> bool:
    """Whether ``path`` is one of the built-in files (however it was named)."""
    path = Path(path).resolve()
    return any(b.path.resolve() == path for b in builtins())


def listing(kind: str) -> str:
    """``"built-in model cfgs: yolov3-spp.cfg, yolov3-tiny.cfg, yolov3.cfg"`` (for one-line errors)."""
    names = [b.name for b in builtins(kind)]
    return f"built-in {KINDS[kind][2]}s: {', '.join(names) if names else '(none in this install)'}"


def resolve(value: str | Path, kind: str, bases: tuple[Path, ...] | None = None) -> Path:
    """The file ``value`` names: an existing path (a relative one is tried from each of ``bases`` in turn;
    default: the working folder only), else the built-in of that name (:func:`builtin`). A missing name of a
    built-in's form is an ``InputError`` naming ``value`` and listing the built-ins of ``kind``; any other
    missing path is returned as given, for its reader to report as not found."""
    path = Path(value)
    if path.is_absolute() and path.exists():
        return path
    if not path.is_absolute():
        for base in (Path(),) if bases is None else bases:
            if (Path(base) / path).exists():
                return Path(base) / path
    if not could_be_builtin(value, kind):
        return path
    found = builtin(value, kind)
    if found is not None:
        return found
    raise InputError(f"{KINDS[kind][2]} not found, and not a built-in name ({listing(kind)}; "
                     "`yolo cfgs` lists them)", str(value))
