"""The YOLO toolkits' extra metrics: precision/recall/F1 against confidence, and the confusion matrix.

Both work on numpy arrays; the matching that decides true positives comes from the COCO-exact evaluation
in ``yolo.val.coco`` (IoU 0.5, all areas, top 100 per image and class), so P/R here agree with its AP50.
"""

from __future__ import annotations

import numpy as np

from yolo.utils.boxes import box_iou_numpy

CONF_GRID = np.linspace(0, 1, 1000)  # [1000] confidences the P/R/F1 curves are sampled at


def pr_conf_curves(score: np.ndarray, cls: np.ndarray, tp: np.ndarray, fp: np.ndarray, n_gt: np.ndarray) -> dict:
    """Precision, recall and F1 against confidence, per class.

    ``score``/``cls``/``tp``/``fp`` ``[D]`` (detections neither tp nor fp are ignored ones), ``n_gt`` ``[C]``
    gt instances per class. Returns ``conf`` ``[1000]`` and ``p``, ``r``, ``f1`` ``[C, 1000]``: the running
    precision/recall of the detections with score >= conf, interpolated linearly between the detections'
    scores (recall 0 and precision 1 above a class's top score; precision 0 for a class without detections:
    no detection is not a precise one; as ultralytics computes them), plus ``best`` (index into ``conf``
    maximizing the F1 averaged over classes with instances)."""
    n_cls = len(n_gt)
    p = np.zeros((n_cls, len(CONF_GRID)))
    r = np.zeros((n_cls, len(CONF_GRID)))
    keep = tp | fp
    order = np.argsort(-score[keep], kind="mergesort")
    score, cls, tp = score[keep][order], cls[keep][order], tp[keep][order]
    for c in np.flatnonzero(n_gt > 0):
        mine = cls == c
        if not mine.any():
            continue
        tpc = np.cumsum(tp[mine])
        n = np.arange(1, len(tpc) + 1)
        # np.interp needs increasing x: walk confidences from high to low
        r[c] = np.interp(-CONF_GRID, -score[mine], tpc / n_gt[c], left=0)
        p[c] = np.interp(-CONF_GRID, -score[mine], tpc / n, left=1)
    f1 = 2 * p * r / (p + r + 1e-16)
    with_gt = n_gt > 0
    best = int(f1[with_gt].mean(0).argmax()) if with_gt.any() else 0
    return {"conf": CONF_GRID, "p": p, "r": r, "f1": f1, "best": best}


def confusion_update(matrix: np.ndarray, pred: np.ndarray, gt_boxes: np.ndarray, gt_cls: np.ndarray,
                     conf: float = 0.25, iou: float = 0.45) -> None:
    """Add one image to ``matrix`` ``[C+1, C+1]`` (rows predicted class, columns true class; index C is
    background). ``pred`` ``[K, 6]`` xyxy, conf, class; ``gt_boxes`` ``[M, 4]``, ``gt_cls`` ``[M]``.

    Detections with conf > ``conf`` are matched to gts regardless of class, greedily by IoU (highest first,
    each used once, IoU > ``iou``). A match counts at (predicted, true); an unmatched gt at (background,
    true); an unmatched detection at (predicted, background)."""
    n_cls = matrix.shape[0] - 1
    pred = pred[pred[:, 4] > conf]
    det_cls, gt_cls = pred[:, 5].astype(np.int64), np.asarray(gt_cls, np.int64)
    if len(pred) == 0 or len(gt_cls) == 0:
        g_idx = d_idx = np.zeros(0, np.int64)
    else:
        ious = box_iou_numpy(gt_boxes, pred[:, :4])  # [M, K]
        g_idx, d_idx = np.nonzero(ious > iou)
    order = np.argsort(-ious[g_idx, d_idx], kind="stable") if len(g_idx) else g_idx
    gt_used, det_used = np.zeros(len(gt_cls), bool), np.zeros(len(pred), bool)
    for g, d in zip(g_idx[order].tolist(), d_idx[order].tolist()):
        if not gt_used[g] and not det_used[d]:
            gt_used[g] = det_used[d] = True
            matrix[det_cls[d], gt_cls[g]] += 1
    matrix[n_cls] += np.bincount(gt_cls[~gt_used], minlength=n_cls + 1)
    matrix[:, n_cls] += np.bincount(det_cls[~det_used], minlength=n_cls + 1)
