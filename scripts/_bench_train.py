"""Training throughput for ``bench.py --train``: images/s of the real trainer (``yolo.train.engine.Trainer`` with
the detection task of ``yolo train``) on a synthetic dataset, and the share of each step spent waiting for
data, i.e. in ``next(loader)``, with the loader settings of ``yolo train`` (``RunConfig`` defaults unless
overridden)."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _abs(path: str) -> str:
    """A path as given if it exists from here, else relative to the repository root."""
    return path if Path(path).exists() else str(ROOT / path)


def train_throughput(size: int, steps: int, batch: int | None = None, workers: int | None = None,
                     data: str = "data/shapes.yaml", model: str = "cfg/yolov3-tiny.cfg", device: str = "cpu") -> dict:
    """Time ``steps`` training steps (after one warm-up step) at ``size``; each step = waiting on
    ``next(loader)`` + ``Trainer.train_step`` (forward, loss, backward, optimizer/EMA when it steps).

    -> ``{model, size, batch, workers, steps, images_per_s, step_ms (median), data_wait_ms (median),
    data_wait_share (total wait / total step time), loader_start_s}``."""
    from yolo.train.config import load_run_config
    from yolo.train.defaults import default_data
    from yolo.train.engine import Trainer
    from yolo.train.run import build_model, detection_task
    from yolo.utils.dist import DistEnv

    overrides = [f"img_size={size}", f"data={_abs(data)}", f"model={_abs(model)}", f"device={device}"]
    overrides += [f"batch_size={batch}"] if batch else []
    overrides += [f"workers={workers}"] if workers is not None else []
    cfg = load_run_config(None, overrides)
    env = DistEnv()
    train_data = default_data(cfg, env)
    net = build_model(cfg, train_data.names, env)
    task = detection_task(cfg, net, train_data, None, env)
    task.on_first_batches = None  # no pictures of the first batches: not part of a step
    steps = max(1, min(steps, len(train_data.train_loader) - 1))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, task, tmp, device, env, progress=False, plots=False)
        trainer.before_train()
        trainer.model.train()
        task.on_epoch_start(0)
        t0 = time.perf_counter()
        it = iter(train_data.train_loader)
        trainer.train_step(0, next(it))  # worker start-up and first allocations: not counted
        start = time.perf_counter() - t0
        waits, totals = [], []
        for i in range(1, steps + 1):
            t0 = time.perf_counter()
            batch_data = next(it)
            t1 = time.perf_counter()
            trainer.train_step(i, batch_data)
            waits.append(t1 - t0)
            totals.append(time.perf_counter() - t0)
        trainer.after_train()
        del it  # stops the loader's workers
    return {
        "model": Path(cfg.model).stem, "size": size, "batch": cfg.batch_size, "workers": cfg.workers,
        "steps": steps, "images_per_s": cfg.batch_size * steps / sum(totals),
        "step_ms": statistics.median(totals) * 1000, "data_wait_ms": statistics.median(waits) * 1000,
        "data_wait_share": sum(waits) / sum(totals), "loader_start_s": start,
        "buffered_batches": 2 * cfg.workers,  # DataLoader prefetch: steps beyond these show the steady state
    }


def format_train(rows: list[dict]) -> str:
    head = f"{'model':<12} {'size':>4} {'batch':>5} {'workers':>7} {'steps':>5} {'img/s':>7} {'step ms':>8} " \
           f"{'wait ms':>8} {'wait share':>10}"
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['model']:<12} {r['size']:>4} error: {r['error']}")
            continue
        lines.append(f"{r['model']:<12} {r['size']:>4} {r['batch']:>5} {r['workers']:>7} {r['steps']:>5} "
                     f"{r['images_per_s']:>7.1f} {r['step_ms']:>8.0f} {r['data_wait_ms']:>8.1f} "
                     f"{r['data_wait_share']:>9.1%}" +
                     ("  (no more steps than the loader buffers: wait underestimated)"
                      if r["steps"] <= r["buffered_batches"] else ""))
    return "\n".join(lines)
