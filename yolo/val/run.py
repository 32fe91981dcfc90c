"""Run a model over a dataset split and evaluate it in the original images' pixels (``yolo val --weights``).

The model sees letterboxed images (or stretched ones, for a model whose cfg says ``letter_box=0`` or with
``letterbox=False``); detections are mapped back through each image's letterbox (or stretch) and compared
with the split's labels scaled to the original image, so the figures do not depend on ``--img-size``'s
padding. COCO datasets keep their crowd regions, image ids and category ids, so ``--save-json`` output is
a standard COCO results file for the original ``instances_*.json``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from yolo.data.dataset import DetectionDataset
from yolo.data.formats import load_data_config
from yolo.data.index import DatasetIndex
from yolo.data.loader import build_loader
from yolo.data.split import load_split
from yolo.errors import InputError, option, positive_int
from yolo.runtime.backends import input_size, load_backend, run_backend, wanted_diou_beta, wants_letterbox
from yolo.runtime.postprocess import check_thresholds, postprocess
from yolo.utils.boxes import cxcywh_to_xyxy
from yolo.utils.checkpoint import atomic_write
from yolo.utils.text import count
from yolo.val.evaluator import Evaluator


@dataclass
class ValResult:
    """What ``validate_dataset`` measured: ``metrics`` is ``Evaluator.compute()``; ``times_ms`` per image
    (``pre`` = reading + letterbox, ``inference``, ``nms``); ``evaluator`` holds every prediction."""

    metrics: dict
    evaluator: Evaluator
    index: DatasetIndex
    times_ms: dict = field(default_factory=dict)
    images: int = 0


def _pixels(labels: np.ndarray, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, 5]`` class, cx, cy, w, h normalized -> (``[N, 4]`` xyxy pixels of an image of ``shape`` (h, w),
    ``[N]`` classes)."""
    h, w = shape
    t = torch.as_tensor(labels, dtype=torch.float64).reshape(-1, 5)
    return cxcywh_to_xyxy(t[:, 1:5] * t.new_tensor([w, h, w, h])), t[:, 0].long()


def _written(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``[M, 6]`` class, x, y, w, h, area (a COCO json's annotations) -> (``[M, 4]`` xyxy pixels, ``[M]``
    classes, ``[M]`` areas)."""
    t = torch.as_tensor(rows, dtype=torch.float64).reshape(-1, 6)
    return torch.cat([t[:, 1:3], t[:, 1:3] + t[:, 3:5]], 1), t[:, 0].long(), rows[:, 5]


def _image_id(index: DatasetIndex, j: int) -> int:
    return int(index.image_ids[j]) if index.image_ids else j + 1


def validate_dataset(weights, data: str | Path, split: str = "val", img_size: int | None = None,
                     batch_size: int = 32, conf: float = 0.001, iou: float = 0.6, max_det: int = 300,
                     device: str = "cpu", half: bool = False, cfg: str | Path | None = None, rect: bool = False,
                     workers: int = 0, progress: bool = True, trust: bool = False,
                     letterbox: bool | None = None) -> ValResult:
    """Detect on every image of ``split`` (multi-label NMS, as COCO evaluation wants) and evaluate.

    ``weights``: anything ``yolo.detect.load_backend`` takes (``.pt``, ``.weights`` + ``cfg``, ``.onnx``,
    ``.torchscript``, a ``Darknet``; ``trust``: also a ``.torchscript`` without our export metadata, whose code
    then runs). The model's class count must equal the data's. ``letterbox``: True letterboxes, False
    stretches each image to the input size, None does what the model wants.
    """
    check_thresholds(conf, iou, max_det)
    batch_size = positive_int(batch_size, "batch_size")
    workers = positive_int(workers, "workers", minimum=0)
    index = load_split(load_data_config(data), split)
    backend = load_backend(weights, cfg=cfg, device=device, half=half, trust=trust)
    nc = getattr(backend, "num_classes", None) or len(backend.names)
    if nc != len(index.names):
        raise InputError(f"the model has {count(nc, 'class')}, the data {len(index.names)} "
                         f"({', '.join(index.names[:5])}"
                         f"{', ...' if len(index.names) > 5 else ''})", str(data))
    if index.report is not None:  # once the run will go on: a refused one says one line
        index.report.warn_dropped()
    img_size = _fixed_size(backend, img_size, rect, weights)  # a multiple of the model's stride
    letterbox = wants_letterbox(backend) if letterbox is None else bool(letterbox)
    dataset = DetectionDataset(index, img_size, train=False, rect=rect, batch_size=batch_size, stride=backend.stride,
                               letterbox=letterbox)
    loader = build_loader(dataset, batch_size, train=False, workers=workers, seed=0)
    batches = loader
    if progress:
        from tqdm import tqdm

        batches = tqdm(loader, desc=f"val {split}", unit="batch")
    evaluator, times = evaluate_batches(backend, batches, index, conf, iou, max_det)
    n = max(len(evaluator), 1)
    return ValResult(evaluator.compute(), evaluator, index, {k: 1000 * v / n for k, v in times.items()}, len(evaluator))


def _fixed_size(backend, img_size: int | None, rect: bool, weights) -> int:
    """The size to validate at: ``img_size`` rounded up to the model's stride (None: 416, rounded up), or a
    fixed-size export's own square size (with a warning, as ``yolo detect`` does); an export of a non-square
    size, or with ``rect``, cannot be validated."""
    fixed = getattr(backend, "fixed_shape", None)
    if fixed is not None and (rect or fixed[0] != fixed[1]):
        how = (f"{option('rect')} gives each batch its own rectangular shape" if rect else
               f"validation letterboxes to a square of {option('img_size')}")
        raise InputError(f"exported for {fixed[0]}x{fixed[1]} inputs only; {how}: export with "
                         f"{option('dynamic', True)}",
                         str(weights))
    return int(input_size(backend, None if img_size is None else (img_size, img_size))[0])


def evaluate_batches(backend, batches, index: DatasetIndex, conf: float = 0.001, iou: float = 0.6,
                     max_det: int = 300) -> tuple[Evaluator, dict]:
    """Run ``backend`` over ``batches`` of a loader of ``index`` (``images [B, 3, H, W]`` uint8, targets,
    paths, letterbox infos, as ``DetectionDataset(train=False)`` gives them) and score the detections in the
    original images' pixels (mapped back through each image's letterbox and clipped to the image) against the
    index's labels: what ``yolo val`` and the trainer's validation both run.
    -> (the Evaluator, seconds spent in ``pre`` (reading + letterbox), ``inference`` and ``nms``)."""
    evaluator = Evaluator(len(index.names), list(index.names))
    diou_beta = wanted_diou_beta(backend)  # DIoU-NMS where the cfg says so, as darknet's map does
    row_of = {str(p): j for j, p in enumerate(index.images)}
    times = {"pre": 0.0, "inference": 0.0, "nms": 0.0}
    t0 = time.perf_counter()
    for images, _, paths, infos in batches:
        t1 = time.perf_counter()
        pred = run_backend(backend, images.float().div_(255))  # [B, N, 5+C]
        t2 = time.perf_counter()
        dets = postprocess(pred.float().cpu(), infos, conf, iou, max_det=max_det, multi_label=True,
                           diou_beta=diou_beta)  # [K, 6] each
        t3 = time.perf_counter()
        for det, path, info in zip(dets, paths, infos):
            j = row_of[str(path)]
            if index.coco_gt:  # a COCO json: its annotations as written, with their areas (as pycocotools)
                (boxes, classes, areas), (crowd_boxes, crowd_classes, crowd_areas) = (
                    _written(index.coco_gt[j]), _written(index.coco_crowd[j]))
            else:
                boxes, classes = _pixels(index.labels[j], info.shape)
                crowd = index.crowd[j] if index.crowd else np.zeros((0, 5), np.float32)
                (crowd_boxes, crowd_classes), areas, crowd_areas = _pixels(crowd, info.shape), None, None
            evaluator.update(det, boxes, classes, crowd_boxes, crowd_classes, image_id=_image_id(index, j),
                             gt_areas=areas, crowd_areas=crowd_areas)
        times["pre"] += t1 - t0
        times["inference"] += t2 - t1
        times["nms"] += t3 - t2
        t0 = time.perf_counter()
    return evaluator, times

def coco_files(result: ValResult) -> tuple[dict, list[dict]]:
    """(annotations dict, results list) in COCO form: the split's own image ids and category ids when it came
    from a COCO json, else ids 1..N and class indices; ``file_name`` of every image. Evaluating the pair
    gives exactly ``result.metrics['stats']``."""
    gt, results = result.evaluator.to_coco()
    index = result.index
    cat = list(index.category_ids) if index.category_ids else list(range(len(index.names)))
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in index.images]) if index.images else ""
    files = {_image_id(index, j): Path(os.path.relpath(os.path.abspath(p), root)).as_posix()
             for j, p in enumerate(index.images)}  # below the images' common folder: nested names stay apart
    sizes = {_image_id(index, j): (int(h), int(w)) for j, (h, w) in enumerate(index.shapes)} \
        if index.shapes is not None else {}
    for image in gt["images"]:
        image["file_name"] = files.get(image["id"], "")
        if image["id"] in sizes:
            image["height"], image["width"] = sizes[image["id"]]
    for category in gt["categories"]:
        category["id"] = cat[category["id"]]
    for row in (*gt["annotations"], *results):
        row["category_id"] = cat[row["category_id"]]
    return gt, results


def save_json(result: ValResult, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``predictions.json`` (COCO results) and ``annotations.json`` (the ground truth as COCO
    instances) into ``out_dir``, atomically. ``yolo val --predictions ... --annotations ...`` on them
    reproduces the run's 12 COCO figures."""
    gt, results = coco_files(result)
    paths = Path(out_dir) / "predictions.json", Path(out_dir) / "annotations.json"
    for path, obj in zip(paths, (results, gt)):
        with atomic_write(path) as f:
            f.write(json.dumps(obj).encode())
    return paths


def format_result(result: ValResult) -> str:
    """The summary table: overall and per-class P, R, mAP@0.5, mAP@0.5:0.95, then the time split."""
    m = result.metrics
    lines = [f"{'class':>14} {'images':>7} {'instances':>9} {'P':>6} {'R':>6} {'mAP50':>6} {'mAP50-95':>8}"]
    total = sum(row["instances"] for row in m["per_class"])  # what was scored (a COCO json: as written)
    overall = (f"{m['precision']:6.3f} {m['recall']:6.3f} {m['map50']:6.3f} {m['map']:8.3f}" if total else
               f"{'-':>6} {'-':>6} {'-':>6} {'-':>8}")  # no ground truth at all: undefined, as per class
    lines.append(f"{'all':>14} {result.images:>7} {total:>9} {overall}")
    for row in m["per_class"]:
        cells = [f"{v:{w}.3f}" if row["instances"] else f"{'-':>{w}}"  # no ground truth: undefined
                 for v, w in ((row["P"], 6), (row["R"], 6), (max(row["AP50"], 0), 6), (max(row["AP"], 0), 8))]
        lines.append(f"{row['name'][:14]:>14} {row['images']:>7} {row['instances']:>9} {' '.join(cells)}")
    t = result.times_ms
    lines.append(f"speed per image: {t['pre']:.1f} ms pre-processing, {t['inference']:.1f} ms inference, "
                 f"{t['nms']:.1f} ms NMS")
    return "\n".join(lines)
