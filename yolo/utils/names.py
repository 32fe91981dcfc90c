"""Class names: read a names file, or fall back to COCO's 80 (from ``data/coco.names``) or ``class{i}``."""

from __future__ import annotations

from pathlib import Path

from yolo.errors import InputError

COCO_NAMES_FILE = Path(__file__).resolve().parents[2] / "data" / "coco.names"


def load_names(path: str | Path) -> list[str]:
    """One class name per line; blank lines at the end are ignored, blank lines inside are an error."""
    path = Path(path)
    if not path.is_file():
        raise InputError("class names file not found", str(path))
    lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    names = [line.strip() for line in lines]
    for i, name in enumerate(names, start=1):
        if not name:
            raise InputError("empty class name (one name per line expected)", str(path), i)
    return names


def default_names(num_classes: int) -> list[str]:
    """COCO's names for 80 classes, else ``class0``, ``class1``, ..."""
    if num_classes == 80 and COCO_NAMES_FILE.is_file():
        return load_names(COCO_NAMES_FILE)
    return [f"class{i}" for i in range(num_classes)]
