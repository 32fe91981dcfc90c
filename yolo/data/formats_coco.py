"""COCO ``instances_*.json`` -> normalized YOLO rows; crowd boxes apart; original category ids kept."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yolo.data.formats_yolo import check_box
from yolo.data.imageinfo import CorruptImage, image_size
from yolo.data.report import DatasetReport
from yolo.errors import InputError


@dataclass
class CocoSplit:
    """What ``read_coco`` returns: per image ``labels``/``crowd`` ``[N, 5]`` (class, cx, cy, w, h normalized,
    clipped to the image: what training sees), ``gt``/``crowd_gt`` ``[M, 6]`` float64 (class, x, y, w, h in
    pixels, area: the json's annotations as written, unclipped, also those whose box training drops: what
    pycocotools scores), ``shapes`` ``[n, 2]`` (h, w) from the json, and ``category_ids[k]`` = the json id of
    class ``k``."""

    images: list[Path] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    crowd: list[np.ndarray] = field(default_factory=list)
    gt: list[np.ndarray] = field(default_factory=list)  # [M, 6] class, x, y, w, h, area as written (pixels)
    crowd_gt: list[np.ndarray] = field(default_factory=list)  # [Q, 6] the same for the crowd annotations
    shapes: list[tuple[int, int]] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)
    category_ids: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    named: list[Path] = field(default_factory=list)  # every image file the json names, kept or dropped


def load_coco_json(path: Path) -> dict:
    """The parsed json with ``images``, ``annotations`` (may be absent) and ``categories`` checked present."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise InputError("COCO annotations file not found", str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"not a readable COCO json ({e})", str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("categories"), list):
        raise InputError("not a COCO instances file: 'images' and 'categories' lists expected", str(path))
    return data


def coco_names(data: dict, path: Path) -> tuple[list[int], list[str]]:
    """Category ids sorted ascending and their names (class ``k`` is ``ids[k]``)."""
    try:
        cats = sorted((int(c["id"]), str(c["name"])) for c in data["categories"])
    except (KeyError, TypeError, ValueError):
        raise InputError("every category needs an integer 'id' and a 'name'", str(path)) from None
    if not cats:
        raise InputError("no categories", str(path))
    return [c[0] for c in cats], [c[1] for c in cats]


def read_coco(images_dir: Path, ann_path: Path, report: DatasetReport) -> CocoSplit:
    """Read one COCO split. Images without annotations are kept (negatives); images missing on disk or
    corrupt are dropped; bad annotations are dropped and reported as ``json: annotation id N: ...``."""
    data = load_coco_json(ann_path)
    out = CocoSplit()
    out.category_ids, out.names = coco_names(data, ann_path)
    cls_of = {cid: k for k, cid in enumerate(out.category_ids)}
    entries = _image_entries(data, ann_path)
    boxes: dict[int, list] = {i: [] for i in entries}  # (class, cx, cy, w, h) rows
    crowds: dict[int, list] = {i: [] for i in entries}
    gt: dict[int, list] = {i: [] for i in entries}  # (class, x, y, w, h, area) rows as written
    crowd_gt: dict[int, list] = {i: [] for i in entries}
    for a in data.get("annotations") or []:
        _add_annotation(a, entries, cls_of, (boxes, crowds), (gt, crowd_gt), ann_path, report)
    for image_id in sorted(entries):
        name, h, w = entries[image_id]
        path = images_dir / name
        out.named.append(path)
        try:
            real = image_size(path) if path.exists() else None
        except CorruptImage as e:
            report.corrupt += 1
            report.problem(f"corrupt image dropped: {e}", path)
            continue
        if real is None:
            report.corrupt += 1
            report.problem("image file not found (dropped)", path)
            continue
        if real != (h, w):
            report.problem(f"json says {w}x{h} but the image is {real[1]}x{real[0]}; boxes use the json size",
                           path)
        out.images.append(path)
        out.image_ids.append(image_id)
        out.shapes.append((h, w))
        out.labels.append(np.array(boxes[image_id], np.float32).reshape(-1, 5))
        out.crowd.append(np.array(crowds[image_id], np.float32).reshape(-1, 5))
        out.gt.append(np.array(gt[image_id], np.float64).reshape(-1, 6))
        out.crowd_gt.append(np.array(crowd_gt[image_id], np.float64).reshape(-1, 6))
    return out


def _image_entries(data: dict, path: Path) -> dict[int, tuple[str, int, int]]:
    """``{image id: (file_name, height, width)}``; an id given to two different entries is an error (the last
    one silently won: the first image was gone and its annotations landed on the other)."""
    entries, first = {}, {}
    for k, im in enumerate(data["images"]):
        try:
            image_id, entry = int(im["id"]), (str(im["file_name"]), int(im["height"]), int(im["width"]))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"images[{k}] needs 'id', 'file_name', 'width' and 'height'", str(path)) from None
        if entry[1] <= 0 or entry[2] <= 0:  # boxes are normalized by them
            raise InputError(f"images[{k}] (id {image_id}) has width {entry[2]} and height {entry[1]}: both must "
                             "be positive", str(path))
        if image_id in entries and entries[image_id] != entry:
            raise InputError(f"image id {image_id} is given to images[{first[image_id]}] "
                             f"({entries[image_id][0]!r}) and images[{k}] ({entry[0]!r}): image ids must be unique, "
                             "or annotations cannot say which image they belong to", str(path))
        entries[image_id] = entry
        first.setdefault(image_id, k)
    return entries


def _add_annotation(a: dict, entries: dict, cls_of: dict, labels: tuple[dict, dict], written: tuple[dict, dict],
                    path: Path, report: DatasetReport) -> None:
    """One annotation -> a training row of its image in ``labels`` (boxes, crowd boxes), checked and clipped,
    and its box as written in ``written`` (for evaluation, as pycocotools reads it; a box that is not finite
    with w, h >= 0 is left out there too)."""
    where = f"annotation id {a.get('id', '?')}" if isinstance(a, dict) else "annotation"
    try:
        image_id, cat = int(a["image_id"]), int(a["category_id"])
        x, y, bw, bh = (float(v) for v in a["bbox"])
    except (KeyError, TypeError, ValueError):
        report.bad_row("non-numeric", "needs image_id, category_id and bbox [x, y, w, h]", path, where)
        return
    if not all(map(math.isfinite, (x, y, bw, bh))):  # per annotation: no numpy array for four numbers
        report.bad_row("non-numeric", f"non-finite value in bbox {a['bbox']}", path, where)
        return
    if image_id not in entries:
        report.bad_row("image", f"unknown image_id {image_id}", path, where)
        return
    if cat not in cls_of:
        report.bad_row("class", f"unknown category_id {cat}", path, where)
        return
    _, h, w = entries[image_id]
    crowd = bool(a.get("iscrowd", 0))
    if bw >= 0 and bh >= 0:
        # area: the json's (COCO's segmentation area, which evaluation buckets by), else w*h
        area = a.get("area")
        area = float(area) if isinstance(area, (int, float)) and not isinstance(area, bool) else bw * bh
        written[crowd][image_id].append((cls_of[cat], x, y, bw, bh, area))
    box = check_box((x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h, path, where, report)
    if box is not None:
        labels[crowd][image_id].append((cls_of[cat], *box))
        report.crowd += crowd
