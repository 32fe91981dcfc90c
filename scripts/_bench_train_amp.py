"""Mixed precision against float32 in training, for ``bench.py --train-amp``: the same ``yolo train`` run (the
shapes demo by default: yolov3-tiny, 500 synthetic images at 256 px, 10 epochs) once with ``amp=false`` and once
with ``amp=true`` (bfloat16 autocast on CPU, float16 with a gradient scaler on CUDA), each as a whole process
with the same seed. From each run's ``results.csv``: the images per second of the training steps (forward,
backward and optimizer, the ``time`` column: neither data loading nor validation) and the last epoch's mAP@0.5.
Issue 18's targets: AMP at least 1.5x float32's images/s, its mAP@0.5 within 0.02 of float32's.

On a CPU without bf16 hardware (no AVX512_BF16/AMX) bfloat16 is emulated and far slower: the comparison is
reported as n/a there unless forced (``--train-amp-force``; e.g. to check that bf16 training learns as well).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SPEEDUP, TARGET_MAP50 = 1.5, 0.02  # issue 18


def amp_wanted(device: str, force: bool) -> tuple[bool, str]:
    """(run the comparison, why not when not): always on CUDA; on CPU where it has bf16 hardware or ``force``."""
    from yolo.utils.device import cpu_has_fast_bf16

    if device.startswith("cuda") or force or cpu_has_fast_bf16():
        return True, ""
    return False, "n/a (no AVX512_BF16/AMX: bfloat16 is emulated; --train-amp-force runs it anyway)"


def _train_images(run_dir: Path) -> int:
    """Images in the training split of the run's data (from its saved ``run.yaml``)."""
    from yolo.data.formats import load_data_config
    from yolo.data.split import load_split
    from yolo.train.config import load_run_config

    cfg = load_run_config(run_dir / "run.yaml", [])
    return len(load_split(load_data_config(cfg.data), "train"))


def read_results(run_dir: Path) -> dict:
    """A finished run's ``results.csv`` -> ``{epochs, train_s, images_per_s, map50, map}`` (mAP of the last
    epoch; ``train_s`` the sum of the epochs' step time: forward + backward + optimizer)."""
    with open(run_dir / "results.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise RuntimeError(f"{run_dir / 'results.csv'}: no epochs")
    train_s = sum(float(r["time"]) for r in rows)
    last = rows[-1]
    return {"epochs": len(rows), "train_s": train_s,
            "images_per_s": _train_images(run_dir) * len(rows) / train_s,
            "map50": float(last["map50"]), "map": float(last["map"])}


def train_run(out: Path, amp: bool, epochs: int, device: str, overrides: list[str], run: str | None) -> dict:
    """One ``yolo train`` process -> :func:`read_results` plus its wall-clock seconds and the line where it says
    how it trains (device, amp)."""
    cmd = [sys.executable, "-m", "yolo", "train", *(["--cfg", run] if run else []), "--set", f"epochs={epochs}",
           f"amp={'true' if amp else 'false'}", f"out={out}", *([f"device={device}"] if device else []), *overrides]
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))  # this checkout first
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=out.parent, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path})
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"yolo train (amp={amp}) exited {done.returncode}: {last}")
    run_line = next((line for line in (done.stdout + done.stderr).splitlines() if line.startswith("train:")), "")
    return {**read_results(out), "wall_s": time.perf_counter() - t0, "run_line": run_line.strip()}


def amp_comparison(tmp: Path, epochs: int, device: str = "cpu", overrides: list[str] | None = None,
                   run: str | None = None, force: bool = False) -> dict:
    """float32 then AMP (:func:`train_run`) -> ``{device, epochs, overrides, fp32, amp, speedup, map50_delta,
    targets}``, or ``{..., "skipped": why}`` where AMP would be emulated (:func:`amp_wanted`)."""
    overrides = list(overrides or [])
    base = {"device": device or "auto", "epochs": epochs, "run": run or "shapes.yaml (built-in)",
            "overrides": overrides, "targets": {"speedup": TARGET_SPEEDUP, "map50_delta": TARGET_MAP50}}
    wanted, why = amp_wanted(device, force)
    if not wanted:
        return {**base, "skipped": why}
    tmp.mkdir(parents=True, exist_ok=True)
    fp32 = train_run(tmp / "train-fp32", False, epochs, device, overrides, run)
    amp = train_run(tmp / "train-amp", True, epochs, device, overrides, run)
    return {**base, "fp32": fp32, "amp": amp, "speedup": amp["images_per_s"] / fp32["images_per_s"],
            "map50_delta": amp["map50"] - fp32["map50"]}


def format_amp(result: dict) -> str:
    """The comparison as a few lines, with the targets."""
    head = (f"training with AMP against float32 ({result['run']}, {result['epochs']} epochs, device "
            f"{result['device']}{', ' + ' '.join(result['overrides']) if result['overrides'] else ''}):")
    if "skipped" in result:
        return f"{head} {result['skipped']}"
    lines = [head, f"{'':>6} {'img/s':>8} {'train s':>8} {'wall s':>8} {'mAP50':>7} {'mAP':>7}"]
    for name in ("fp32", "amp"):
        r = result[name]
        lines.append(f"{name:>6} {r['images_per_s']:>8.2f} {r['train_s']:>8.1f} {r['wall_s']:>8.1f} "
                     f"{r['map50']:>7.4f} {r['map']:>7.4f}")
    t = result["targets"]
    lines.append(f"AMP speed-up {result['speedup']:.2f}x (target >= {t['speedup']}x); mAP50 AMP - fp32 "
                 f"{result['map50_delta']:+.4f} (target within {t['map50_delta']})")
    return "\n".join(lines)
