"""Class names: read a names file, or fall back to COCO's 80 (the built-in ``coco.names``) or ``class{i}``."""

from __future__ import annotations

from pathlib import Path

from yolo.errors import InputError, read_text
from yolo.resources import builtin, resolve


def load_names(path: str | Path) -> list[str]:
    """One class name per line; blank lines at the end are ignored, blank lines inside are an error. ``path``
    may name a built-in names file (``coco.names``, see ``yolo.resources``)."""
    path = resolve(path, "names")
    if not path.is_file():
        raise InputError("class names file not found", str(path))
    lines = read_text(path, "one class name per line").rstrip("\n").split("\n")
    names = [line.strip() for line in lines]
    for i, name in enumerate(names, start=1):
        if not name:
            raise InputError("empty class name (one name per line expected)", str(path), i)
    return names


def default_names(num_classes: int) -> list[str]:
    """COCO's names for 80 classes, else ``class0``, ``class1``, ..."""
    coco = builtin("coco.names", "names") if num_classes == 80 else None
    if coco is not None:
        return load_names(coco)
    return [f"class{i}" for i in range(num_classes)]
