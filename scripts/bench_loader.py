"""Is the training loader faster than the training step? Samples/s of the mosaic loader (workers 0/1/2) on
the synthetic shapes dataset, against a CPU forward+backward of yolov3-tiny (and yolov3) measured in the
same run. Prints ratios "loader time per batch / step time" (below 1: the loader keeps up).

    python scripts/bench_loader.py [--img-size 416] [--batch-size 8] [--batches 6] [--full]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's yolo package
from yolo.data.augment import AugmentConfig
from yolo.data.dataset import DetectionDataset
from yolo.data.index import DatasetIndex
from yolo.data.loader import build_loader, to_device
from yolo.data.synthetic import SHAPES_NAMES, write_dataset
from yolo.model.darknet import Darknet

ROOT = Path(__file__).resolve().parents[1]


def _index(root: Path) -> DatasetIndex:
    images = sorted((root / "images" / "train").glob("*.png"))
    labels = [np.loadtxt(root / "labels" / "train" / f"{p.stem}.txt", ndmin=2, dtype=np.float32).reshape(-1, 5)
              for p in images]
    return DatasetIndex(images, labels, SHAPES_NAMES)


def loader_seconds_per_batch(index, size, batch, workers, batches) -> float:
    ds = DetectionDataset(index, size, AugmentConfig(), train=True, seed=0)
    it = iter(build_loader(ds, batch, train=True, workers=workers, seed=0))
    next(it)  # start-up (worker processes) not counted
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return (time.perf_counter() - t) / batches


def step_seconds(cfg: str, size: int, batch: int, steps: int) -> float:
    model = Darknet.from_cfg(ROOT / "cfg" / cfg).train()
    x = torch.rand(batch, 3, size, size)
    for i in range(steps + 1):
        if i == 1:
            t = time.perf_counter()
        out = model(x)
        sum(o.float().pow(2).mean() for o in out).backward()  # a stand-in loss touching every head
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--img-size", type=int, default=416)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--full", action="store_true", help="also time yolov3 (slow on CPU)")
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        root = write_dataset(Path(tmp) / "shapes", 64, 0, args.img_size, seed=0)
        print(f"generated 64 images at {args.img_size}: {time.perf_counter() - t:.2f} s")
        index = _index(root)
        steps = {cfg: step_seconds(cfg, args.img_size, args.batch_size, 2)
                 for cfg in (["yolov3-tiny.cfg"] + (["yolov3.cfg"] if args.full else []))}
        for cfg, s in steps.items():
            print(f"{cfg}: train step (fwd+bwd, batch {args.batch_size}, CPU) {s * 1000:.0f} ms")
        for workers in (0, 1, 2):
            b = loader_seconds_per_batch(index, args.img_size, args.batch_size, workers, args.batches)
            ratios = ", ".join(f"{b / s:.3f} x {cfg} step" for cfg, s in steps.items())
            print(f"workers={workers}: {args.batch_size / b:.1f} samples/s, {b * 1000:.0f} ms/batch = {ratios}")
        images, targets = to_device(*next(iter(build_loader(DetectionDataset(index, args.img_size), 2, False, 0, 0)))[:2],
                                    "cpu")
        assert images.dtype == torch.float32 and float(images.max()) <= 1.0


if __name__ == "__main__":
    main()
