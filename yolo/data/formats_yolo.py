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

from yolo.data.report import DatasetReport
from yolo.errors import UTF16_BOMS, InputError, read_text
from yolo.utils.image import IMAGE_SUFFIXES
from yolo.utils.text import count

TOL = 1e-3  # slack for coordinates written with rounding (1.0004 is fine, 1.01 is not)


def list_images(sources: list[Path], root: Path, listed_at: dict[str, tuple[str, int]] | None = None) -> list[str]:
    """Absolute image paths (strings: pathlib is too slow for the cached path) from folders (recursive,
    sorted) and list files (one path per line), in source order. Absolute, so that the label cache and the
    index do not depend on how the data was named (``data/x.yaml`` or ``/home/me/data/x.yaml``) or on the
    working folder.

    A list file's relative lines are tried against the list file's folder, then ``root``, then the
    working directory; the first that exists wins (none: the first, and ``listed_at`` gets where the line is,
    ``{path: (list file, line)}``, for the report to name). An empty result is an ``InputError``.
    """
    images: list[str] = []
    for src in sources:
        if src.is_dir():
            found = sorted(os.path.join(d, f) for d, _, files in os.walk(os.path.abspath(src)) for f in files
                           if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES)
        elif src.is_file():
            found = _read_list_file(src, root, listed_at)
        else:
            raise InputError("image folder or list file not found", str(src))
        if not found:
            raise InputError("no images found (no file named as an image OpenCV reads: .jpg, .png, ...)", str(src))
        images += found
    return images


def _read_list_file(path: Path, root: Path, listed_at: dict[str, tuple[str, int]] | None = None) -> list[str]:
    try:
        lines = read_text(path, "a list of image paths").splitlines()  # a byte order mark is dropped
    except OSError as e:
        raise InputError(f"cannot read the image list ({e})", str(path)) from None
    out = []
    bases = [str(path.parent), str(root), os.getcwd()]
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not os.path.isabs(line):
            tries = [os.path.join(b, line) for b in bases]
            line = next((t for t in tries if os.path.exists(t)), tries[0])
        out.append(os.path.abspath(line))  # normalized too
        if listed_at is not None and not os.path.exists(line):
            listed_at[out[-1]] = (str(path), number)
    return out


def label_path(image: str) -> str:
    """``.../images/.../x.jpg`` -> ``.../labels/.../x.txt`` (last ``images`` folder); if that file does not
    exist, ``x.txt`` next to the image when that one does."""
    return resolve_label(image)[0]


def resolve_label(image: str) -> tuple[str, os.stat_result | None]:
    """``label_path(image)`` and its ``os.stat`` (``None`` when missing), with one ``stat`` call in the usual
    case (the cache key needs the stat anyway)."""
    stem = os.path.splitext(image)[0]
    beside = stem + ".txt"
    sep = os.sep
    head = stem if stem.startswith(sep) else sep + stem
    i = head.rfind(f"{sep}images{sep}")
    if i < 0:
        return beside, stat_or_none(beside)
    candidate = (head[:i] + f"{sep}labels{sep}" + head[i + 8:] + ".txt")[0 if stem.startswith(sep) else 1:]
    st = stat_or_none(candidate)
    if st is None:
        st_beside = stat_or_none(beside)
        if st_beside is not None:
            return beside, st_beside
    return candidate, st


def stat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def parse_label_file(path: str | Path, nc: int, report: DatasetReport) -> np.ndarray | None:
    """Checked rows ``[N, 5]`` float32 (class, cx, cy, w, h), or ``None`` when the file is missing or
    unreadable (the caller counts which). Dropped rows are counted in ``report``."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        report.bad_rows["unreadable"] = report.bad_rows.get("unreadable", 0) + 1
        why = type(e).__name__
        if isinstance(e, UnicodeDecodeError):
            why = ("UTF-16 text, as PowerShell's '>' writes it: save it as UTF-8" if e.object[:2] in UTF16_BOMS
                   else "not UTF-8 text")
        report.problem(f"label file unreadable ({why}); its image is dropped", path)
        return None
    rows, seen = [], set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        clipped = report.clipped
        parsed = _parse_row(line, nc, path, number, report)
        if parsed is None:
            continue
        values, row = parsed
        if values in seen:  # the same numbers as an earlier valid row
            report.clipped = clipped  # a dropped row's box is no box clipped
            report.duplicates += 1
            report.problem("duplicate row (dropped)", path, number)
            continue
        seen.add(values)
        rows.append(row)
    return np.array(rows, dtype=np.float32).reshape(-1, 5)


def _parse_row(line: str, nc: int, path: Path, number: int, report: DatasetReport) -> tuple[tuple, tuple] | None:
    """(the row's numbers, the checked and clipped row) or ``None`` (dropped and reported)."""
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
        why = "not an integer" if cls != int(cls) else f"out of range: {count(nc, 'class')}, ids 0 to {nc - 1}"
        report.bad_row("class", f"class {cols[0]} is {why}", path, number)
        return None
    box = check_box(cx, cy, w, h, path, number, report)
    return None if box is None else (tuple(values), (int(cls), *box))


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
