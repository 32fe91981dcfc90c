"""Check an exported file against PyTorch on a real (or synthetic) letterboxed image.

The metric, one number ``max_diff``: box coordinates are compared relative to the input size (|d cx|, |d w|
divided by the input width W; |d cy|, |d h| by its height H), or relative to the value itself where PyTorch's
value is larger than that side (a box 8x wider than the image, which random weights make, has float32 rounding
of its own size); probabilities and scores absolutely. ``max_diff`` is the largest of all these over every row
(non-finite values count only where the two sides differ: :func:`decoded_max_diff`). For NMS graphs rows are
matched within (batch, class) by the smallest such difference; a detection present on one side only counts as
infinite unless its score is within the tolerance of the score threshold (a legitimate borderline flip).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from yolo.errors import option
from yolo.utils.text import count

TOLERANCE = 1e-4  # float32 exports (raised where the float32 model itself drifts more from float64: DRIFT_FACTOR)
DRIFT_FACTOR = 3  # export vs reference <= both of their float32 errors (each about the reference's own drift), + slack
MAX_DRIFT_TOLERANCE = 1e-3  # never raised past this (a model whose float32 output is that unstable: --tolerance)
TOLERANCE_HALF = 1e-1  # float16 exports vs the float32 PyTorch model: rounding compounds over ~75 layers (yolov3 with
# random calibrated weights: 4.6e-2, mostly w, h = exp(logit); yolov3-tiny: 1.7e-2)


def verification_image() -> tuple[np.ndarray, str]:
    """``[H, W, 3]`` uint8 RGB: matplotlib's Grace Hopper photo when matplotlib is installed, else a
    deterministic synthetic picture (smooth gradients, a disc and a bar). Returns (image, description)."""
    try:
        import cv2
        from matplotlib import cbook

        bgr = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
        if bgr is not None:
            return np.ascontiguousarray(bgr[:, :, ::-1]), "grace_hopper.jpg"
    except Exception:  # matplotlib missing or its sample data stripped: fall back to the synthetic image
        pass
    h, w = 480, 640
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack((xx / w * 255, yy / h * 255, (xx + yy) / (h + w) * 255), -1)
    img[(yy - 200) ** 2 + (xx - 260) ** 2 < 90 ** 2] = (230, 40, 40)
    img[300:360, 380:600] = (30, 30, 200)
    return img.astype(np.uint8), "synthetic image"


def verification_batch(size: tuple[int, int], n: int) -> tuple[torch.Tensor, str]:
    """``[n, 3, H, W]`` float in [0, 1]: crops of the verification image (image i shifted by i*37, i*53 px),
    each letterboxed to ``size`` with ``yolo.data.augment.letterbox``."""
    from yolo.data.augment import letterbox

    img, what = verification_image()
    out = [letterbox(img[i * 37 % 100:, i * 53 % 100:], size)[0] for i in range(n)]
    x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div(255)  # [n, 3, H, W]
    return x.contiguous(), what


def _row_diff(a: torch.Tensor, b: torch.Tensor, h: float, w: float) -> torch.Tensor:
    """``[..., 5+C]`` decoded rows -> ``[...]`` the metric per row."""
    scale = torch.maximum(a.new_tensor([w, h, w, h]), a[..., :4].abs())  # [..., 4]
    box = ((a[..., :4] - b[..., :4]).abs() / scale).amax(-1)
    prob = (a[..., 4:] - b[..., 4:]).abs().amax(-1)
    return torch.maximum(box, prob)


def decoded_max_diff(ref: torch.Tensor, out: torch.Tensor, size: tuple[int, int]) -> tuple[float, str]:
    """Decoded outputs ``[B, N, 5+C]`` (PyTorch's, the export's) for input ``size`` (H, W) -> (max_diff, note).

    Non-finite values (a box that overflowed to inf, a NaN) agree only where both sides hold the same one; such
    elements are left out of the metric (and counted in the note), every finite one is compared. Non-finite
    values on one side only, or different ones, give inf."""
    if ref.shape != out.shape:
        return math.inf, f"output shape {list(out.shape)} differs from PyTorch's {list(ref.shape)}"
    if not ref.numel():
        return 0.0, ""
    ref, out = ref.double(), out.double()
    bad_ref, bad_out = ~torch.isfinite(ref), ~torch.isfinite(out)
    same = bad_ref & bad_out & ((ref == out) | (torch.isnan(ref) & torch.isnan(out)))  # inf == inf, NaN and NaN
    lone = (bad_ref | bad_out) & ~same
    if lone.any():
        return math.inf, (f"non-finite values differ: {int(bad_ref.sum())} in PyTorch's output, "
                          f"{int(bad_out.sum())} in the export's, {int(lone.sum())} of them not matched")
    note = f"{int(same.sum())} non-finite values alike on both sides left out" if same.any() else ""
    if same.any():
        ref, out = ref.masked_fill(same, 0.0), out.masked_fill(same, 0.0)
    return float(_row_diff(ref, out, *size).max()), note


def detections_max_diff(ref: torch.Tensor, out: torch.Tensor, size: tuple[int, int], conf_thres: float,
                        iou_thres: float, tol: float) -> tuple[float, str]:
    """NMS outputs ``[K, 7]`` (batch, x1, y1, x2, y2, score, class) -> (max_diff, note); see the module doc."""
    h, w = size
    scale = np.array([w, h, w, h], dtype=np.float64)
    ref, out = ref.double().cpu().numpy(), out.double().cpu().numpy()
    worst, lost, hard = 0.0, 0, 0
    for key in {tuple(r) for r in np.concatenate((ref, out))[:, [0, 6]]}:
        a = ref[(ref[:, 0] == key[0]) & (ref[:, 6] == key[1])]  # [Ka, 7]
        b = out[(out[:, 0] == key[0]) & (out[:, 6] == key[1])]  # [Kb, 7]
        diff, free_a, free_b = _match(a, b, scale)
        worst = max(worst, diff)
        for rows, free, other, other_free in ((a, free_a, b, free_b), (b, free_b, a, free_a)):
            for i in np.flatnonzero(free):
                lost += 1
                hard += not _borderline(rows[i], other, other_free, conf_thres, iou_thres, tol)
    if hard:
        note = f"{count(hard, 'detection')} found on one side only (PyTorch {len(ref)}, export {len(out)})"
        _, counts = np.unique(ref[:, [0, 6, 5]], axis=0, return_counts=True)
        tied = int(counts[counts > 1].sum())  # rows sharing their exact score with another of their image and class
        if tied > len(ref) // 10:
            note += (f"; {tied} of PyTorch's share their exact score with another of the same class, and NMS "
                     "breaks such ties in any order: random weights make them; verify a trained model, or export "
                     f"without {option('nms', True)}")
        return math.inf, note
    return worst, f"{count(lost, 'borderline detection')} at a threshold ignored" if lost else ""


def _match(a: np.ndarray, b: np.ndarray, scale: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Greedy matching of rows ``[Ka, 7]`` and ``[Kb, 7]``, closest pairs first -> (largest difference of a
    matched pair, unmatched mask of a ``[Ka]``, unmatched mask of b ``[Kb]``)."""
    rel = np.maximum(scale, np.abs(a[:, None, 1:5]))  # [Ka, 1, 4]
    cost = np.maximum((np.abs(a[:, None, 1:5] - b[None, :, 1:5]) / rel).max(-1),
                      np.abs(a[:, None, 5] - b[None, :, 5]))  # [Ka, Kb]
    free_a, free_b = np.ones(len(a), bool), np.ones(len(b), bool)
    worst, pairs = 0.0, 0
    for flat in np.argsort(cost, axis=None):
        if pairs == min(cost.shape):
            break
        i, j = divmod(int(flat), cost.shape[1])
        if free_a[i] and free_b[j]:
            free_a[i] = free_b[j] = False
            worst, pairs = max(worst, float(cost[i, j])), pairs + 1
    return worst, free_a, free_b


def _borderline(row: np.ndarray, other: np.ndarray, other_free: np.ndarray, conf_thres: float, iou_thres: float,
                tol: float) -> bool:
    """A detection found on one side only is a legitimate flip when its score is within ``tol`` of the score
    threshold, or when a higher-scored detection of the same image and class on the other side overlaps it with
    IoU within 1e-3 of the IoU threshold (or above it, if that detection is itself on one side only: a cascade)."""
    if abs(row[5] - conf_thres) <= tol:
        return True
    higher = other[:, 5] > row[5]  # [Ko]
    x1 = np.maximum(row[1], other[:, 1])
    y1 = np.maximum(row[2], other[:, 2])
    x2 = np.minimum(row[3], other[:, 3])
    y2 = np.minimum(row[4], other[:, 4])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[..., 3] - r[..., 1]) * (r[..., 4] - r[..., 2])  # noqa: E731
    iou = inter / (area(row) + area(other) - inter + 1e-12)  # [Ko]
    near = np.abs(iou - iou_thres) <= 1e-3
    cascade = other_free & (iou > iou_thres - 1e-3)
    return bool((higher & (near | cascade)).any())
