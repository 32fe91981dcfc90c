"""Metric plots as PNGs: PR curves, F1/precision/recall against confidence, the normalized confusion matrix.

matplotlib is imported inside the functions (Figure objects, no pyplot and no global backend change).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from yolo.errors import MATPLOTLIB_MISSING, warn
from yolo.utils.checkpoint import atomic_write
from yolo.utils.plots import have_matplotlib

_MAX_LEGEND = 20  # classes named in a legend; more are drawn thin and unnamed


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150)
    with atomic_write(path) as f:
        f.write(buf.getvalue())
    return path


def _curve_plot(x: np.ndarray, ys: np.ndarray, valid: np.ndarray, names: list[str], xlabel: str, ylabel: str,
                mean_label: str, path: Path) -> Path:
    """Per-class curves ``ys`` ``[C, N]`` over ``x`` ``[N]`` (classes with ``valid``) and their mean, bold."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 6), tight_layout=True)
    ax = fig.add_subplot()
    show = np.flatnonzero(valid)
    for c in show:
        label = names[c] if len(show) <= _MAX_LEGEND else None
        ax.plot(x, ys[c], linewidth=1 if label else 0.5, label=label, color=None if label else "grey")
    if len(show):
        ax.plot(x, ys[show].mean(0), linewidth=3, color="blue", label=mean_label)
    ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=7, ncol=2)
    return _save(fig, path)


def _confusion_plot(matrix: np.ndarray, names: list[str], path: Path) -> Path:
    """Column-normalized ``[C+1, C+1]`` matrix (rows predicted, columns true, last background)."""
    from matplotlib.figure import Figure

    totals = matrix.sum(0, keepdims=True)
    norm = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    labels = list(names) + ["background"]
    size = max(6, 0.3 * len(labels))
    fig = Figure(figsize=(size + 2, size), tight_layout=True)
    ax = fig.add_subplot()
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ticks = np.arange(len(labels)) if len(labels) <= 40 else []
    ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=90, fontsize=7)
    ax.set_yticks(ticks, [labels[i] for i in ticks], fontsize=7)
    if len(labels) <= 20:
        for (i, j), v in np.ndenumerate(norm):
            if v > 0:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.5 else "black")
    ax.set(xlabel="true", ylabel="predicted", title="confusion matrix (columns sum to 1)")
    return _save(fig, path)


def save_plots(result: dict, names: list[str], out_dir: str | Path) -> list[Path]:
    """Write ``pr_curve.png``, ``f1_curve.png``, ``p_curve.png``, ``r_curve.png`` and ``confusion_matrix.png``
    from an ``Evaluator.compute()`` result into ``out_dir``; returns their paths (none, with a warning, without
    matplotlib)."""
    if not have_matplotlib():
        warn(MATPLOTLIB_MISSING.format(what="curves or confusion matrix"))
        return []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    valid = np.array([c["instances"] > 0 for c in result["per_class"]], bool)
    pr, conf = result["pr_curve"], result["conf_curves"]
    paths = [_curve_plot(pr["recall"], np.clip(pr["precision"], 0, None), valid, names, "recall", "precision",
                         f"all classes mAP@0.5 {result['map50']:.3f}", out / "pr_curve.png")]
    for key, label in (("f1", "F1"), ("p", "precision"), ("r", "recall")):
        best = conf["best"]
        mean_label = f"all classes {label} {conf[key][valid, best].mean() if valid.any() else 0:.2f} " \
                     f"at {conf['conf'][best]:.3f}"
        paths.append(_curve_plot(conf["conf"], conf[key], valid, names, "confidence", label, mean_label,
                                 out / f"{key}_curve.png"))
    paths.append(_confusion_plot(result["confusion_matrix"], names, out / "confusion_matrix.png"))
    return paths
