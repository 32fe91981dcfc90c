"""The in-memory description of one dataset split, shared by the readers, the dataset and the evaluator."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yolo.utils.text import count


@dataclass
class DatasetIndex:
    """One split of a dataset after reading and checking its labels.

    ``labels[i]`` is ``[N, 5]`` float32 for ``images[i]``: class, cx, cy, w, h normalized to [0, 1].
    ``crowd[i]`` holds COCO crowd boxes in the same layout (kept apart: evaluation ignores matches to
    them, training never sees them); empty ``[0, 5]`` arrays for other formats. ``shapes`` is ``[n, 2]``
    (h, w) in pixels when known. ``category_ids[k]`` is the COCO json category id of contiguous class ``k``
    (empty for other formats). ``coco_gt[i]`` / ``coco_crowd[i]`` ``[M, 6]`` / ``[Q, 6]`` float64: a COCO
    json's annotations of the image as written (class, x, y, w, h in pixels, unclipped, also those whose box
    the training labels drop; and ``area``, the segmentation's, by which COCO evaluation sorts objects into
    small, medium and large): what evaluation scores, as pycocotools on that json does (empty lists for other
    formats: evaluation scores ``labels``, areas box w*h). ``report`` is the reader's account of what it found
    and dropped.
    """

    images: list[Path]
    labels: list[np.ndarray]
    names: list[str]
    crowd: list[np.ndarray] = field(default_factory=list)
    shapes: np.ndarray | None = None
    image_ids: list[int] = field(default_factory=list)  # COCO image ids when read from COCO json
    category_ids: list[int] = field(default_factory=list)  # COCO: json category id of class k (results go back)
    coco_gt: list[np.ndarray] = field(default_factory=list)  # COCO: [M, 6] class, x, y, w, h, area as written
    coco_crowd: list[np.ndarray] = field(default_factory=list)  # COCO: [Q, 6] the same for crowd annotations
    report: object | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.images)

    def describe(self) -> str:
        """``12 images, 8 boxes, 4 backgrounds (2 without a label file)``: what the split trains or scores on (a
        background is an image without boxes: an empty label file, no label file, or every row dropped)."""
        backgrounds = sum(len(lab) == 0 for lab in self.labels)
        missing = getattr(self.report, "labels_missing", 0)
        return (f"{count(len(self.images), 'image')}, {count(sum(len(lab) for lab in self.labels), 'box')}, "
                f"{count(backgrounds, 'background')}" + (f" ({missing} without a label file)" if missing else ""))
