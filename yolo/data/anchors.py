"""Anchors by k-means on label box sizes, with the distance ``1 - IoU`` of boxes sharing one centre.

Quality is reported as the mean best IoU and as best possible recall (BPR, ultralytics' definition): the
fraction of boxes whose best anchor has both side ratios within ``ratio`` (4.0), i.e. a box the YOLO loss
could assign to some anchor under the usual ``max(w/a, a/w) < 4`` rule.
"""

from __future__ import annotations

import numpy as np
import torch

from yolo.errors import InputError, positive_int
from yolo.utils.boxes import wh_iou
from yolo.utils.text import count


def label_wh(index, img_size: tuple[int, int], min_size: float = 2.0) -> tuple[np.ndarray, int]:
    """Box sizes ``[N, 2]`` (w, h) in pixels after letterboxing each image (``index.shapes`` ``[n, 2]`` h, w)
    into ``img_size`` (H, W) keeping its aspect ratio; boxes under ``min_size`` px are left out and counted."""
    H, W = img_size
    out = []
    for lab, (h, w) in zip(index.labels, index.shapes):
        if len(lab):
            r = min(H / h, W / w)
            out.append(lab[:, 3:5] * np.array([w * r, h * r], np.float64))
    wh = np.concatenate(out) if out else np.zeros((0, 2))
    keep = (wh >= min_size).all(1)
    return wh[keep], int((~keep).sum())


def _iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """``[N, 2]`` x ``[K, 2]`` -> ``[N, K]`` IoU of centred boxes."""
    return wh_iou(torch.from_numpy(np.asarray(wh, np.float64)), torch.from_numpy(np.asarray(anchors, np.float64))).numpy()


def kmeans_anchors(wh: np.ndarray, n: int = 9, seed: int = 0, iters: int = 300, restarts: int = 3) -> np.ndarray:
    """``n`` anchors ``[n, 2]`` (w, h) sorted by area, from box sizes ``wh`` ``[N, 2]``.

    k-means++ seeding with distance ``1 - IoU``, then Lloyd iterations (assign each box to the anchor of
    highest IoU, move each anchor to the mean size of its boxes) until assignments settle; the best of
    ``restarts`` runs by mean best IoU wins. Deterministic for a given ``seed``.
    """
    n = positive_int(n, "n")
    wh = np.asarray(wh, np.float64)
    if wh.ndim != 2 or wh.shape[1] != 2:
        raise InputError(f"wh must be box sizes [N, 2] (w, h), got an array of shape {list(wh.shape)}")
    if len(wh) < n:
        raise InputError(f"only {count(len(wh), 'box')}: too few for {count(n, 'anchor')}")
    rng = np.random.default_rng(seed)
    best, best_fit = None, -1.0
    for _ in range(restarts):
        anchors = _lloyd(wh, _kmeans_pp(wh, n, rng), iters, rng)
        fit = _iou(wh, anchors).max(1).mean()
        if fit > best_fit:
            best, best_fit = anchors, fit
    return best[np.argsort(best.prod(1))]


def _kmeans_pp(wh: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds ``[n, 2]``: each next seed drawn with probability proportional to distance squared."""
    centres = [wh[rng.integers(len(wh))]]
    dist = 1 - _iou(wh, np.array(centres))[:, 0]
    for _ in range(1, n):
        p = dist ** 2
        idx = rng.choice(len(wh), p=p / p.sum()) if p.sum() > 0 else rng.integers(len(wh))
        centres.append(wh[idx])
        dist = np.minimum(dist, 1 - _iou(wh, wh[idx:idx + 1])[:, 0])
    return np.array(centres)


def _lloyd(wh: np.ndarray, anchors: np.ndarray, iters: int, rng: np.random.Generator) -> np.ndarray:
    assign = None
    for _ in range(iters):
        new = _iou(wh, anchors).argmax(1)  # [N]
        if assign is not None and (new == assign).all():
            break
        assign = new
        for k in range(len(anchors)):
            members = wh[assign == k]
            anchors[k] = members.mean(0) if len(members) else wh[rng.integers(len(wh))]  # re-seed empty ones
    return anchors


def evolve_anchors(wh: np.ndarray, anchors: np.ndarray, generations: int = 1000, seed: int = 0,
                   sigma: float = 0.1) -> np.ndarray:
    """Refine ``anchors`` ``[K, 2]`` by mutation (each side scaled by ``N(1, sigma)`` with probability 0.9,
    kept only when the mean best IoU over ``wh`` ``[N, 2]`` improves); returns ``[K, 2]`` sorted by area."""
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    rng = np.random.default_rng(seed)
    best = np.asarray(anchors, np.float64).copy()
    best_fit = _iou(wh, best).max(1).mean()
    for _ in range(generations):
        factor = np.where(rng.random(best.shape) < 0.9, rng.normal(1, sigma, best.shape), 1.0).clip(0.3, 3.0)
        candidate = (best * factor).clip(min=2.0)
        fit = _iou(wh, candidate).max(1).mean()
        if fit > best_fit:
            best, best_fit = candidate, fit
    return best[np.argsort(best.prod(1))]


def anchor_fitness(wh: np.ndarray, anchors: np.ndarray, ratio: float = 4.0) -> dict:
    """How well ``anchors`` ``[K, 2]`` fit box sizes ``wh`` ``[N, 2]``: ``bpr`` (best possible recall under
    the side-ratio rule), ``mean_best_iou``, ``mean_anchors_per_box`` (anchors within the ratio), ``boxes``."""
    wh, anchors = np.asarray(wh, np.float64).reshape(-1, 2), np.asarray(anchors, np.float64).reshape(-1, 2)
    if not len(wh):
        return {"bpr": 0.0, "mean_best_iou": 0.0, "mean_anchors_per_box": 0.0, "boxes": 0}
    r = wh[:, None] / anchors[None]  # [N, K, 2]
    worst_side = np.minimum(r, 1 / r).min(2)  # [N, K]: 1 = same size, 0.25 = a side 4x off
    ok = worst_side > 1 / ratio
    return {"bpr": float(ok.any(1).mean()), "mean_best_iou": float(_iou(wh, anchors).max(1).mean()),
            "mean_anchors_per_box": float(ok.sum(1).mean()), "boxes": int(len(wh))}


def format_anchors(anchors: np.ndarray) -> str:
    """``anchors = 10,13, 16,30, ...`` (rounded ints, the cfg's syntax)."""
    return "anchors = " + ", ".join(f"{round(w)},{round(h)}" for w, h in np.asarray(anchors))
