"""Check an exported file against PyTorch on a real (or synthetic) letterboxed image.

The metric, one number ``max_diff``: boxes are compared relative to the input size (|d cx|, |d w| divided by
the input width; |d cy|, |d h| by its height), probabilities and scores absolutely; ``max_diff`` is the largest
of all these over every row. For NMS graphs rows are matched within (batch, class) by the smallest such
difference; a detection present on one side only counts as infinite unless its score is within the tolerance
of the score threshold (a legitimate borderline flip).
"""

from __future__ import annotations

import math

import numpy as np
import torch

TOLERANCE = 1e-4  # float32 exports
TOLERANCE_HALF = 2e-2  # float16 exports, against the float32 PyTorch model (large boxes amplify fp16 rounding)


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
    scale = a.new_tensor([w, h, w, h])
    box = ((a[..., :4] - b[..., :4]).abs() / scale).amax(-1)
    prob = (a[..., 4:] - b[..., 4:]).abs().amax(-1)
    return torch.maximum(box, prob)


def decoded_max_diff(ref: torch.Tensor, out: torch.Tensor, size: tuple[int, int]) -> tuple[float, str]:
    """Decoded outputs ``[B, N, 5+C]`` (PyTorch's, the export's) for input ``size`` (H, W) -> (max_diff, note)."""
    if ref.shape != out.shape:
        return math.inf, f"output shape {list(out.shape)} differs from PyTorch's {list(ref.shape)}"
    return float(_row_diff(ref.double(), out.double(), *size).max()) if ref.numel() else 0.0, ""


def detections_max_diff(ref: torch.Tensor, out: torch.Tensor, size: tuple[int, int], conf_thres: float,
                        tol: float) -> tuple[float, str]:
    """NMS outputs ``[K, 7]`` (batch, x1, y1, x2, y2, score, class) -> (max_diff, note); see the module doc."""
    h, w = size
    scale = np.array([w, h, w, h], dtype=np.float64)
    ref, out = ref.double().cpu().numpy(), out.double().cpu().numpy()
    worst, lost = 0.0, []
    for key in {tuple(r) for r in np.concatenate((ref, out))[:, [0, 6]]}:
        a = ref[(ref[:, 0] == key[0]) & (ref[:, 6] == key[1])]
        b = out[(out[:, 0] == key[0]) & (out[:, 6] == key[1])]
        cost = np.maximum((np.abs(a[:, None, 1:5] - b[None, :, 1:5]) / scale).max(-1),
                          np.abs(a[:, None, 5] - b[None, :, 5]))  # [Ka, Kb]
        used_a, used_b = set(), set()
        for flat in np.argsort(cost, axis=None):
            if len(used_a) == min(cost.shape):
                break
            i, j = divmod(int(flat), cost.shape[1])
            if i in used_a or j in used_b:
                continue
            used_a.add(i), used_b.add(j)
            worst = max(worst, float(cost[i, j]))
        lost += [r for k, r in enumerate(a) if k not in used_a] + [r for k, r in enumerate(b) if k not in used_b]
    hard = [r for r in lost if abs(r[5] - conf_thres) > tol]
    if hard:
        return math.inf, f"{len(hard)} detection(s) found on one side only (PyTorch {len(ref)}, export {len(out)})"
    note = f"{len(lost)} borderline detection(s) at the score threshold ignored" if lost else ""
    return worst, note
