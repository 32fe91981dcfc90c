"""Validation: the :class:`Evaluator` our pipeline feeds image by image, and evaluation of COCO json files.

The Evaluator keeps every image's detections and ground truth, computes the 12 COCO statistics with the
COCO-exact code of ``yolo.val.coco`` (gt areas: the ones given, e.g. a COCO json's, else box w*h), and adds what the
YOLO toolkits report: precision and recall at the max-F1 confidence, per-class numbers, PR curves, a
confusion matrix and ``fitness = 0.1 * mAP50 + 0.9 * mAP50:95``. ``state()``/``Evaluator.merge()`` carry it
across DDP ranks; ``to_coco()`` writes the same problem as COCO dicts, on which ``coco_eval`` gives the same
statistics.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from yolo.errors import InputError
from yolo.val.coco import REC_THRS, STAT_NAMES, CocoArrays, CocoStats, coco_eval, evaluate_arrays
from yolo.val.curves import confusion_update, pr_conf_curves


def _np(x, shape_tail: tuple[int, ...], what: str, dtype=np.float64) -> np.ndarray:
    """A tensor/array/list -> numpy ``[N, *shape_tail]`` (empty when None); ``InputError`` naming ``what`` for
    another shape."""
    if x is None:
        return np.zeros((0, *shape_tail), dtype)
    if hasattr(x, "detach"):  # a torch tensor (torch itself is imported only where needed)
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype)
    if shape_tail and a.size and a.shape[-1:] != shape_tail:  # rows of another width ([K, 5] for [K, 6])
        raise InputError(f"{what} must be [N, {shape_tail[0]}], got shape {list(a.shape)}")
    return a.reshape(-1, *shape_tail)


class Evaluator:
    """Collects per-image results; ``compute()`` returns every metric (see the module doc)."""

    def __init__(self, num_classes: int, names: list[str] | None = None, conf_matrix: float = 0.25,
                 iou_matrix: float = 0.45):
        self.num_classes = int(num_classes)
        self.names = list(names) if names is not None else [str(i) for i in range(self.num_classes)]
        if len(self.names) != self.num_classes:
            raise ValueError(f"{len(self.names)} names for {self.num_classes} classes")
        self.conf_matrix, self.iou_matrix = conf_matrix, iou_matrix
        self.image_ids: list = []
        self._pred: list[np.ndarray] = []  # per image [K, 6] xyxy, conf, class
        self._gt: list[np.ndarray] = []  # per image [M, 7] xyxy, class, crowd, area (NaN: box w*h)
        self.result: dict | None = None

    def __len__(self) -> int:
        return len(self.image_ids)

    def update(self, pred, gt_boxes, gt_classes, crowd_boxes=None, crowd_classes=None, image_id=None,
               gt_areas=None, crowd_areas=None) -> None:
        """One image. ``pred`` ``[K, 6]`` x1, y1, x2, y2 (pixels), conf, class; ``gt_boxes`` ``[M, 4]`` xyxy
        pixels, ``gt_classes`` ``[M]``; ``crowd_boxes`` ``[Q, 4]`` with ``crowd_classes`` ``[Q]`` (COCO
        iscrowd regions: matching them is neither right nor wrong); ``image_id`` optional (int);
        ``gt_areas`` ``[M]`` / ``crowd_areas`` ``[Q]`` optional: each object's area in pixels for COCO's small /
        medium / large split (a COCO json's ``area``, its segmentation's; default: the box's w*h)."""
        pred, boxes, cls = _np(pred, (6,), "pred"), _np(gt_boxes, (4,), "gt_boxes"), _np(gt_classes, (), "gt_classes")
        crowd, crowd_cls = _np(crowd_boxes, (4,), "crowd_boxes"), _np(crowd_classes, (), "crowd_classes")
        area = _np(gt_areas, (), "gt_areas") if gt_areas is not None else np.full(len(boxes), np.nan)
        crowd_area = _np(crowd_areas, (), "crowd_areas") if crowd_areas is not None else np.full(len(crowd), np.nan)
        if len(boxes) != len(cls) or len(crowd) != len(crowd_cls) or len(area) != len(boxes) or \
                len(crowd_area) != len(crowd):
            raise InputError(f"{len(boxes)} gt boxes with {len(cls)} classes and {len(area)} areas, {len(crowd)} "
                             f"crowd boxes with {len(crowd_cls)} classes and {len(crowd_area)} areas")
        for what, c in (("prediction", pred[:, 5]), ("gt", cls), ("crowd", crowd_cls)):
            if len(c) and (c.min() < 0 or c.max() >= self.num_classes or (c != np.round(c)).any()):
                raise InputError(f"{what} classes must be integers in [0, {self.num_classes})")
        gt = np.concatenate([np.c_[boxes, cls, np.zeros(len(cls)), area],
                             np.c_[crowd, crowd_cls, np.ones(len(crowd)), crowd_area]])
        self.image_ids.append(image_id)
        self._pred.append(pred)
        self._gt.append(gt)
        self.result = None

    def state(self) -> dict:
        """Plain tensors and lists (for ``torch.distributed.gather_object``): ``pred`` ``[D, 6]`` and ``gt``
        ``[G, 7]`` (xyxy, class, crowd, area or NaN) of all images, split per image by ``pred_counts``/
        ``gt_counts`` ``[N]``."""
        import torch

        def cat(parts, width):
            return torch.from_numpy(np.concatenate(parts) if parts else np.zeros((0, width)))

        return {"num_classes": self.num_classes, "names": list(self.names), "image_ids": list(self.image_ids),
                "pred": cat(self._pred, 6),
                "pred_counts": torch.tensor([len(p) for p in self._pred], dtype=torch.int64),
                "gt": cat(self._gt, 7), "gt_counts": torch.tensor([len(g) for g in self._gt], dtype=torch.int64)}

    @classmethod
    def merge(cls, states: list[dict], **kwargs) -> "Evaluator":
        """One Evaluator holding the images of all ``states`` (in order)."""
        if not states:
            raise ValueError("no states to merge")
        out = cls(states[0]["num_classes"], states[0]["names"], **kwargs)
        for s in states:
            if s["num_classes"] != out.num_classes:
                raise ValueError("states disagree on the number of classes")
            out.image_ids += list(s["image_ids"])
            for key, counts, dest, width in (("pred", "pred_counts", out._pred, 6), ("gt", "gt_counts", out._gt, 7)):
                rows = np.asarray(s[key], np.float64).reshape(-1, width)
                dest += np.split(rows, np.cumsum(np.asarray(s[counts]))[:-1]) if len(s[counts]) else []
        return out

    def _coco_image_ids(self) -> list[int]:
        """The ids given to ``update`` when all were given (they must be unique), else 1..N."""
        if self.image_ids and all(i is not None for i in self.image_ids):
            if len(set(self.image_ids)) != len(self.image_ids):
                raise ValueError("image ids given to update() are not unique")
            return [int(i) for i in self.image_ids]
        return list(range(1, len(self.image_ids) + 1))

    def _flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(pred ``[D, 6]`` with xywh boxes, its image index ``[D]``, gt ``[G, 6]`` with xywh, its image index)."""
        pred = np.concatenate(self._pred) if self._pred else np.zeros((0, 6))
        gt = np.concatenate(self._gt) if self._gt else np.zeros((0, 7))
        pred_img = np.repeat(np.arange(len(self._pred)), [len(p) for p in self._pred])
        gt_img = np.repeat(np.arange(len(self._gt)), [len(g) for g in self._gt])
        pred, gt = pred.copy(), gt.copy()
        pred[:, 2:4] -= pred[:, 0:2]  # xyxy -> x, y, w, h (COCO)
        gt[:, 2:4] -= gt[:, 0:2]
        gt[:, 6] = np.where(np.isnan(gt[:, 6]), gt[:, 2] * gt[:, 3], gt[:, 6])  # no area given: the box's
        return pred, pred_img, gt, gt_img

    def to_coco(self) -> tuple[dict, list[dict]]:
        """(COCO instances dict, results list) of everything collected: category id = class index, gt
        ``area`` as given to ``update`` (default w*h), annotation ids 1..G. ``coco_eval`` on them equals
        ``compute()["stats"]``."""
        ids = self._coco_image_ids()
        pred, pred_img, gt, gt_img = self._flat()
        gt_dict = {"images": [{"id": i} for i in ids],
                   "categories": [{"id": c, "name": n} for c, n in enumerate(self.names)],
                   "annotations": [{"id": k + 1, "image_id": ids[i], "category_id": int(g[4]), "bbox": g[:4].tolist(),
                                    "area": float(g[6]), "iscrowd": int(g[5])}
                                   for k, (g, i) in enumerate(zip(gt, gt_img.tolist()))]}
        results = [{"image_id": ids[i], "category_id": int(p[5]), "bbox": p[:4].tolist(), "score": float(p[4])}
                   for p, i in zip(pred, pred_img.tolist())]
        return gt_dict, results

    def coco_stats(self) -> CocoStats:
        """The COCO evaluation of everything collected (the arrays ``to_coco`` would write, without json)."""
        ids = np.array(self._coco_image_ids(), np.int64)
        rank = np.empty(len(ids), np.int64)
        rank[np.argsort(ids, kind="stable")] = np.arange(len(ids))  # COCO walks images in sorted id order
        pred, pred_img, gt, gt_img = self._flat()
        arrays = CocoArrays(cat_ids=np.arange(self.num_classes), num_images=len(ids), gt_img=rank[gt_img],
                            gt_cat=gt[:, 4].astype(np.int64), gt_box=gt[:, :4], gt_area=gt[:, 6],
                            gt_crowd=gt[:, 5] > 0, gt_id=np.arange(1, len(gt) + 1), dt_img=rank[pred_img],
                            dt_cat=pred[:, 5].astype(np.int64), dt_box=pred[:, :4], dt_score=pred[:, 4])
        return evaluate_arrays(arrays)

    def confusion_matrix(self) -> np.ndarray:
        """``[C+1, C+1]`` counts (rows predicted, columns true, last = background) at ``conf_matrix`` and
        ``iou_matrix``; crowd gts are left out."""
        matrix = np.zeros((self.num_classes + 1, self.num_classes + 1), np.int64)
        for pred, gt in zip(self._pred, self._gt):
            real = gt[:, 5] == 0
            confusion_update(matrix, pred, gt[real, :4], gt[real, 4], self.conf_matrix, self.iou_matrix)
        return matrix

    def compute(self) -> dict:
        """All metrics (floats, lists and numpy arrays); also kept as ``self.result`` for ``save_plots``."""
        coco = self.coco_stats()
        m = coco.matches
        curves = pr_conf_curves(m["score"], m["cat"], m["tp50"], m["fp50"], m["npig"])
        best, with_gt = curves["best"], m["npig"] > 0
        p_cls, r_cls = curves["p"][:, best], curves["r"][:, best]
        precision, recall = (float(v[with_gt].mean()) if with_gt.any() else 0.0 for v in (p_cls, r_cls))
        stats = dict(zip(STAT_NAMES, coco.stats))
        map50, map5095 = max(stats["AP50"], 0.0), max(stats["AP"], 0.0)
        holding = np.zeros(self.num_classes, np.int64)  # [C] images with a (non-crowd) truth of each class
        for gt in self._gt:
            holding[np.unique(gt[gt[:, 5] == 0, 4].astype(np.int64))] += 1
        per_class = [{"class": c, "name": self.names[c], "images": int(holding[c]), "instances": int(m["npig"][c]),
                      "AP": coco.per_class[c][0], "AP50": coco.per_class[c][1],
                      "P": float(p_cls[c]) if with_gt[c] else -1.0, "R": float(r_cls[c]) if with_gt[c] else -1.0}
                     for c in range(self.num_classes)]  # -1: undefined without ground truth, as COCO's AP
        self.result = {
            "stats": stats, "map50": map50, "map": map5095, "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall + 1e-16), "conf_best": float(curves["conf"][best]),
            "fitness": 0.1 * map50 + 0.9 * map5095, "per_class": per_class, "images": len(self),
            "pr_curve": {"recall": REC_THRS, "precision": coco.precision[0, :, :, 0, -1].T},  # [C, 101], IoU .5
            "conf_curves": curves, "confusion_matrix": self.confusion_matrix(),
        }
        return self.result

    def save_plots(self, out_dir: str | Path) -> list[Path]:
        """PR, F1/P/R-vs-confidence and normalized confusion-matrix PNGs in ``out_dir``; returns the paths."""
        from yolo.val.plots import save_plots

        return save_plots(self.result if self.result is not None else self.compute(), self.names, out_dir)


def _read_json(path: str | Path, what: str):
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found", str(path))
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON ({e.msg})", str(path), e.lineno) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {what} ({e})", str(path)) from None


def evaluate_files(predictions_json: str | Path, annotations_json: str | Path) -> CocoStats:
    """COCO box evaluation of a results file against an instances file (pycocotools' numbers, exactly).

    Errors (one line, naming the file): a missing or unreadable file, invalid JSON, a results entry missing
    keys (naming its index), an image or category id the annotations lack."""
    gt = _read_json(annotations_json, "annotations")
    results = _read_json(predictions_json, "predictions")
    return coco_eval(gt, results, str(annotations_json), str(predictions_json))
