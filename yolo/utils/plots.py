"""Pictures of a run: results.png (curves from results.csv) and training batches with their boxes."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import torch

from yolo.utils.checkpoint import atomic_write


def plot_results(csv_path: str | Path, out: str | Path | None = None) -> Path | None:
    """One small plot per numeric column of ``results.csv`` against epoch; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    csv_path = Path(csv_path)
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    keys = [k for k in rows[0] if k != "epoch" and _numbers([r.get(k) for r in rows]) is not None]
    epochs = _numbers([r["epoch"] for r in rows])
    cols = min(5, max(len(keys), 1))
    nrows = -(-len(keys) // cols) or 1
    fig, axes = plt.subplots(nrows, cols, figsize=(3 * cols, 2.4 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        ax.plot(epochs, _numbers([r[key] for r in rows]), marker=".")
        ax.set_title(key, fontsize=9)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.08, top=0.92, hspace=0.45, wspace=0.3)
    out = Path(out) if out else csv_path.with_name("results.png")
    with atomic_write(out) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return out


def _numbers(values) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def save_batch_image(images, targets, path: str | Path, names: list[str] | None = None, max_images: int = 16) -> None:
    """A mosaic of ``images [B, 3, H, W]`` (uint8 or float in [0, 1], RGB) with ``targets [M, 6]`` drawn."""
    imgs = images[:max_images].detach().cpu()
    if imgs.dtype.is_floating_point:
        imgs = (imgs.clamp(0, 1) * 255).round()
    imgs = imgs.to(dtype=torch.uint8).permute(0, 2, 3, 1).numpy()  # [B, H, W, 3]
    b, h, w, _ = imgs.shape
    cols = int(np.ceil(np.sqrt(b)))
    rows = -(-b // cols)
    canvas = np.full((rows * h, cols * w, 3), 255, np.uint8)
    t = targets.detach().cpu().numpy()
    for i in range(b):
        tile = np.ascontiguousarray(imgs[i][:, :, ::-1])  # BGR for cv2
        for _, cls, cx, cy, bw, bh in t[t[:, 0] == i]:
            x1, y1, x2, y2 = (int((cx - bw / 2) * w), int((cy - bh / 2) * h), int((cx + bw / 2) * w),
                              int((cy + bh / 2) * h))
            color = tuple(int(c) for c in np.random.default_rng(int(cls)).integers(64, 255, 3))
            cv2.rectangle(tile, (x1, y1), (x2, y2), color, 1)
            label = names[int(cls)] if names and int(cls) < len(names) else str(int(cls))
            cv2.putText(tile, label, (x1, max(y1 - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.3, color, 1)
        r, c = divmod(i, cols)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    ok, buf = cv2.imencode(Path(path).suffix or ".jpg", canvas)
    if ok:
        with atomic_write(path) as f:
            f.write(buf.tobytes())
