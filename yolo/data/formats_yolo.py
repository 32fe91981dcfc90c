"""YOLO txt datasets: image lists from folders or list files, label paths, and checked label rows.

Row rules (each dropped row is reported as ``file:line: message``): exactly 5 columns ``class cx cy w h``;
all numbers finite; the class an integer in ``[0, nc)``; the centre inside ``[0, 1]`` (``TOL`` slack);
``0 < w, h <= 1`` (``TOL`` slack); exact duplicate rows dropped. A box whose edges stick out of the
image is clipped to it (counted as clipped).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from yolo.data.imageinfo import IMAGE_SUFFIXES
from yolo.data.report import DatasetReport
from yolo.errors import InputError

TOL = 1e-3  # slack for coordinates written with rounding (1.0004 is fine, 1.01 is not)


def list_images(sources: list[Path], root: Path) -> list[Path]:
    """Image paths from folders (recursive, sorted) and list files (one path per line), in source order.

    A list file's relative lines are tried against the list file's folder, then ``root``, then the
    working directory; the first that exists wins. An empty result is an ``InputError``.
    """
    images: list[Path] = []
    for src in sources:
        if src.is_dir():
            found = sorted(Path(d) / f for d, _, files in os.walk(src) for f in files
                           if f.lower().endswith(IMAGE_SUFFIXES))
        elif src.is_file():
            found = _read_list_file(src, root)
        else:
            raise InputError("image folder or list file not found", str(src))
        if not found:
            raise InputError("no images found (extensions: " + " ".join(IMAGE_SUFFIXES) + ")", str(src))
        images += found
    return images


def _read_list_file(path: Path, root: Path) -> list[Path]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the image list ({e})", str(path)) from None
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line)
        if not p.is_absolute():
            tries = [path.parent / p, root / p, Path.cwd() / p]
            p = next((t for t in tries if t.exists()), tries[0])
        out.append(Path(os.path.normpath(p)))
    return out


def label_path(image: Path) -> Path:
    """``.../images/.../x.jpg`` -> ``.../labels/.../x.txt`` (last ``images`` folder); if that file does not
    exist, ``x.txt`` next to the image when that one does."""
    parts = list(image.parts)
    beside = image.with_suffix(".txt")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            candidate = Path(*parts).with_suffix(".txt")
            return beside if not candidate.exists() and beside.exists() else candidate
    return beside


def parse_label_file(path: Path, nc: int, report: DatasetReport) -> np.ndarray | None:
    """Checked rows ``[N, 5]`` float32 (class, cx, cy, w, h), or ``None`` when the file is missing or
    unreadable (the caller counts which). Dropped rows are counted in ``report``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        report.bad_row("unreadable", f"label file unreadable ({type(e).__name__})", path)
        return None
    rows, seen = [], set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row = _parse_row(line, nc, path, number, report)
        if row is None:
            continue
        if row in seen:
            report.duplicates += 1
            report.problem("duplicate row (dropped)", path, number)
            continue
        seen.add(row)
        rows.append(row)
    return np.array(rows, dtype=np.float32).reshape(-1, 5)


def _parse_row(line: str, nc: int, path: Path, number: int, report: DatasetReport) -> tuple | None:
    cols = line.split()
    if len(cols) != 5:
        report.bad_row("columns", f"expected 5 columns (class cx cy w h), got {len(cols)}", path, number)
        return None
    try:
        values = [float(c) for c in cols]
    except ValueError:
        report.bad_row("non-numeric", f"non-numeric value in {line.strip()!r}", path, number)
        return None
    if not all(math.isfinite(v) for v in values):
        report.bad_row("non-numeric", f"non-finite value in {line.strip()!r}", path, number)
        return None
    cls, cx, cy, w, h = values
    if cls != int(cls) or not 0 <= cls < nc:
        report.bad_row("class", f"class {cols[0]} is not an integer in [0, {nc})", path, number)
        return None
    box = check_box(cx, cy, w, h, path, number, report)
    return None if box is None else (int(cls), *box)


def check_box(cx: float, cy: float, w: float, h: float, path, line, report: DatasetReport) -> tuple | None:
    """Normalized ``cx, cy, w, h`` -> the box clipped to the image, or ``None`` (dropped and reported)."""
    if not (-TOL <= cx <= 1 + TOL and -TOL <= cy <= 1 + TOL):
        report.bad_row("outside", f"box centre ({cx:g}, {cy:g}) outside the image [0, 1]", path, line)
        return None
    if not (0 < w <= 1 + TOL and 0 < h <= 1 + TOL):
        report.bad_row("size", f"box size {w:g} x {h:g} not in (0, 1]", path, line)
        return None
    x1, y1, x2, y2 = max(cx - w / 2, 0.0), max(cy - h / 2, 0.0), min(cx + w / 2, 1.0), min(cy + h / 2, 1.0)
    if (x1, y1, x2, y2) != (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2):
        if x2 - x1 <= 1e-6 or y2 - y1 <= 1e-6:
            report.bad_row("size", "box has no area inside the image", path, line)
            return None
        report.clipped += 1
        cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    return float(np.float32(cx)), float(np.float32(cy)), float(np.float32(w)), float(np.float32(h))
