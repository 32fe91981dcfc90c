"""Pictures of a run: results.png (the curves people look for, from results.csv), results_time.png (where the
time of an epoch went) and mosaics of batches with their boxes (drawn by ``yolo.utils.draw``)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from yolo.utils.checkpoint import atomic_write
from yolo.utils.draw import draw_boxes, mosaic_line_width

LOSS_ORDER = ("box", "obj", "cls", "loss")  # loss parts in this order first, any others after them
LOSS_TITLES = {"box": "box loss", "obj": "objectness loss", "cls": "class loss", "loss": "total loss"}
MAX_LOSS_PANELS = 4
# the second row: (column, title); "lr" ends the first row
METRIC_PANELS = (("precision", "precision"), ("recall", "recall"), ("map50", "mAP@0.5"),
                 ("map", "mAP@0.5:0.95"), ("fitness", "fitness (best.pt)"))


def results_panels(columns: list[str]) -> list[tuple[str, list[str]]]:
    """The panels of results.png for a CSV with ``columns``: (title, columns drawn in it), row by row.

    Row 1: up to four training losses (``train/<part>``, with ``val/<part>`` in the same panel when the CSV has
    it), then the learning rate; row 2: precision, recall, mAP@0.5, mAP@0.5:0.95 and fitness. Metric panels
    whose column is missing stay in place, empty. Other columns (timings, image counts, F1, ...) are not drawn.
    """
    parts = [c[len("train/"):] for c in columns if c.startswith("train/")]
    parts.sort(key=lambda p: LOSS_ORDER.index(p) if p in LOSS_ORDER else len(LOSS_ORDER))  # stable
    row1 = [(LOSS_TITLES.get(p, f"{p} loss"), [f"train/{p}"] + ([f"val/{p}"] if f"val/{p}" in columns else []))
            for p in parts[:MAX_LOSS_PANELS]]
    row1 += [("", [])] * (MAX_LOSS_PANELS - len(row1)) + [("learning rate", ["lr"] if "lr" in columns else [])]
    row2 = [(title, [c] if c in columns else []) for c, title in METRIC_PANELS]
    return row1 + row2


def time_columns(columns: list[str]) -> list[str]:
    """The timing columns (seconds per epoch): ``time`` and its parts ``time/<part>``."""
    return [c for c in columns if c == "time" or c.startswith("time/")]


def _series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of column ``key`` over the rows where it holds a finite number (validation may skip
    epochs)."""
    xs, ys = [], []
    for r in rows:
        try:
            x, y = float(r["epoch"]), float(r.get(key, ""))
        except (TypeError, ValueError):
            continue
        if not math.isfinite(y):  # fitness of an epoch that val.period skipped
            continue
        xs.append(x + 1)  # epochs are counted from 1 in pictures, as in the progress bar
        ys.append(y)
    return xs, ys


def have_matplotlib() -> bool:
    """matplotlib imports (a declared dependency, but trimmed environments drop it): the pictures drawn with it
    are then skipped with a warning, or refused where the picture was the thing asked for."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def results_figure(rows: list[dict], plt):
    """The results.png figure (2 rows x 5 panels, see :func:`results_panels`) of results.csv ``rows``."""
    panels = results_panels(list(rows[0]))
    fig, axes = plt.subplots(2, 5, figsize=(15, 6), squeeze=False)
    for ax, (title, keys) in zip(axes.flat, panels):
        if not title:
            ax.axis("off")
            continue
        ax.set_title(title, fontsize=10)
        for key in keys:
            xs, ys = _series(rows, key)
            ax.plot(xs, ys, marker=".", linestyle="--" if key.startswith("val/") else "-", label=key.split("/")[0])
        if len(keys) > 1:
            ax.legend(fontsize=8)
        if not keys or not any(_series(rows, k)[0] for k in keys):
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="0.5")
        if title.startswith("fitness") and keys and _series(rows, keys[0])[0]:
            xs, ys = _series(rows, keys[0])
            best = int(np.argmax(ys))
            ax.plot([xs[best]], [ys[best]], marker="*", markersize=12, linestyle="", label="best.pt")
            ax.legend(fontsize=8)
        _epoch_axis(ax)
    fig.tight_layout()
    return fig


def _epoch_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.set_xlabel("epoch", fontsize=8)


def time_figure(rows: list[dict], plt):
    """results_time.png: seconds per epoch, in total and by part (data, forward, backward, optimizer)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in time_columns(list(rows[0])):
        ax.plot(*_series(rows, key), marker=".", label=key.replace("time/", "") if key != "time" else "total")
    ax.set_title("seconds per epoch", fontsize=10)
    ax.legend(fontsize=8)
    _epoch_axis(ax)
    fig.tight_layout()
    return fig


def _save_figure(fig, path: Path, plt) -> None:
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def plot_results(csv_path: str | Path, out: str | Path | None = None) -> Path | None:
    """results.png (and results_time.png when the CSV has timing columns) next to ``results.csv``, or at ``out``;
    returns the path of results.png, None when matplotlib is missing or the CSV is empty."""
    plt = _pyplot()
    if plt is None:
        return None
    csv_path = Path(csv_path)
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "epoch" not in rows[0]:
        return None
    out = Path(out) if out else csv_path.with_name("results.png")
    _save_figure(results_figure(rows, plt), out, plt)
    if time_columns(list(rows[0])):
        _save_figure(time_figure(rows, plt), out.with_name(f"{out.stem}_time{out.suffix}"), plt)
    return out


def save_batch_image(images, targets, path: str | Path, names: list[str] | None = None, max_images: int = 16) -> None:
    """A mosaic of ``images [B, 3, H, W]`` (uint8 or float in [0, 1], RGB) with ``targets [M, 6]`` (image,
    class, cx, cy, w, h normalized) drawn, or ``[M, 7]`` with a score last (predictions: tags show it).

    Lines and tags are sized for the whole mosaic (what a viewer scales to the screen); each tag stays inside
    its own tile; white lines as wide as the box lines separate the tiles.
    """
    imgs = images[:max_images].detach().cpu()
    if imgs.dtype.is_floating_point:
        imgs = (imgs.clamp(0, 1) * 255).round()
    imgs = imgs.to(dtype=torch.uint8).permute(0, 2, 3, 1).numpy()  # [B, H, W, 3]
    b, h, w, _ = imgs.shape
    cols = int(np.ceil(np.sqrt(b)))
    rows = -(-b // cols)
    lw = mosaic_line_width((rows * h, cols * w))
    gap = lw  # white lines between the tiles (training tiles are mosaics themselves)
    canvas = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, np.uint8)
    t = targets.detach().cpu().float().numpy().reshape(-1, targets.shape[-1] if targets.ndim == 2 else 6)
    for i in range(b):
        mine = t[t[:, 0] == i]  # [K, 6 or 7]
        cx, cy, bw, bh = mine[:, 2] * w, mine[:, 3] * h, mine[:, 4] * w, mine[:, 5] * h
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)  # [K, 4] tile pixels
        tile = draw_boxes(imgs[i][:, :, ::-1], boxes, mine[:, 1], mine[:, 6] if t.shape[1] > 6 else None, names,
                          lw=lw)  # BGR for cv2
        y, x = (k * (n + gap) for k, n in zip(divmod(i, cols), (h, w)))
        canvas[y:y + h, x:x + w] = tile
    ok, buf = cv2.imencode(Path(path).suffix or ".jpg", canvas)
    if ok:
        with atomic_write(path) as f:
            f.write(buf.tobytes())
