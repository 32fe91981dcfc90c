"""Start-up of whole processes: ``python -c "import torch"``, ``yolo --help`` and a one-image ``yolo detect``.

Each is a fresh process (``python -m yolo ...`` with this checkout first on ``PYTHONPATH``), timed wall-clock
from start to exit; its CPU time (user + system, from ``os.wait4``) is reported too: on a loaded machine the
wall clock mostly measures waiting for the cores and for the page cache, the CPU time much less so. The commands run interleaved, round after round (one untimed warm-up round first, so every
file is in the page cache), and the medians are reported with their ratio to ``import torch`` measured in the
same run: that ratio, not the absolute time, is what to compare across machines and loads. ``against`` adds
the same detect command run from another checkout (``--startup-against /path/to/old/checkout``), for a
before/after in one run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _inputs(tmp: Path) -> tuple[Path, Path]:
    """A yolov3-tiny checkpoint (random weights: start-up does not depend on them) and a 640x480 image."""
    import cv2
    import numpy as np

    from yolo.model.checkpoint import save_checkpoint
    from yolo.model.darknet import Darknet

    weights, image = tmp / "yolov3-tiny.pt", tmp / "image.jpg"
    save_checkpoint(Darknet.from_cfg("yolov3-tiny.cfg"), weights)
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))
    return weights, image


def _commands(tmp: Path, weights: Path, image: Path, against: str | None) -> dict[str, tuple[list[str], str]]:
    """label -> (argv, PYTHONPATH)."""
    py = sys.executable
    detect = ["-m", "yolo", "detect", "--weights", str(weights), "--source", str(image), "--no-progress",
              "--out", str(tmp / "runs" / "exp")]
    out = {
        'python -c "import torch"': ([py, "-c", "import torch"], str(ROOT)),
        "yolo --help": ([py, "-m", "yolo", "--help"], str(ROOT)),
        "yolo detect (1 image, yolov3-tiny)": ([py, *detect], str(ROOT)),
    }
    if against:
        out[f"yolo detect from {against}"] = ([py, *detect], str(Path(against).resolve()))
    return out


def _time(argv: list[str], pythonpath: str, cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of ``argv`` in the folder ``cwd``. (``python -m`` puts the working
    folder first on sys.path, before PYTHONPATH: run from a checkout, it would take that checkout's code.)"""
    env = {**os.environ, "PYTHONPATH": pythonpath}
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {stderr.decode()[-500:]}")
    return elapsed, usage.ru_utime + usage.ru_stime


def startup_times(tmp: Path, runs: int = 5, against: str | None = None) -> dict:
    """Median wall and CPU seconds of each command over ``runs`` interleaved rounds, and each median over
    ``import torch``'s."""
    commands = _commands(tmp, *_inputs(tmp), against)
    empty = tmp / "empty"  # every command runs from an empty folder
    empty.mkdir(exist_ok=True)
    wall: dict[str, list[float]] = {label: [] for label in commands}
    cpu: dict[str, list[float]] = {label: [] for label in commands}
    for round_index in range(runs + 1):
        labels = list(commands)
        labels = labels[round_index % len(labels):] + labels[:round_index % len(labels)]  # rotate the order
        for label in labels:
            w, c = _time(*commands[label], cwd=empty)
            if round_index:  # round 0 warms the page cache
                wall[label].append(w)
                cpu[label].append(c)
    base = 'python -c "import torch"'
    out = {"runs": runs, "seconds": wall, "cpu_seconds": cpu}
    for name, series in (("", wall), ("cpu_", cpu)):
        medians = {label: statistics.median(ts) for label, ts in series.items()}
        out[f"{name}median_s"] = medians
        out[f"{name}ratio_to_import_torch"] = {label: m / medians[base] for label, m in medians.items()}
    return out


def format_startup(result: dict) -> str:
    lines = [f"start-up (whole processes, median of {result['runs']} interleaved rounds; ratio to import torch):",
             f"  {'':<40} {'wall s':>7} {'(min-max)':>13} {'ratio':>6}   {'CPU s':>6} {'ratio':>6}"]
    for label, median in result["median_s"].items():
        spread = f"{min(result['seconds'][label]):.2f}-{max(result['seconds'][label]):.2f}"
        lines.append(f"  {label:<40} {median:7.2f} {spread:>13} {result['ratio_to_import_torch'][label]:5.2f}x   "
                     f"{result['cpu_median_s'][label]:6.2f} {result['cpu_ratio_to_import_torch'][label]:5.2f}x")
    return "\n".join(lines)
