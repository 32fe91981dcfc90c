"""Benchmark: first vs cached open of a 2,000-image split, and header-only sizes vs OpenCV decoding.

    python scripts/bench_label_cache.py [--images 2000] [--size 640 480]

Builds a throw-away YOLO dataset in a temporary folder and prints ratios measured in the same run
(absolute times depend on the machine and its load).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from yolo.data.formats import load_data_config
from yolo.data.imageinfo import image_size
from yolo.data.split import load_split


def _make(root: Path, n: int, w: int, h: int) -> Path:
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 3)
    (root / "images/train").mkdir(parents=True)
    (root / "labels/train").mkdir(parents=True)
    for i in range(n):
        ext = ".jpg" if i % 4 else ".png"
        cv2.imwrite(str(root / f"images/train/{i:05d}{ext}"), np.roll(base, i, axis=1))
        rows = [f"{rng.integers(3)} {rng.uniform(.2, .8):.6f} {rng.uniform(.2, .8):.6f} {rng.uniform(.05, .3):.6f} "
                f"{rng.uniform(.05, .3):.6f}" for _ in range(rng.integers(0, 8))]
        (root / f"labels/train/{i:05d}.txt").write_text("\n".join(rows) + "\n" if rows else "")
    (root / "d.yaml").write_text("train: images/train\nnames: [a, b, c]\n")
    return root / "d.yaml"


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--size", type=int, nargs=2, default=[640, 480], metavar=("W", "H"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = _make(Path(tmp), args.images, *args.size)
        config = load_data_config(data)
        first = _time(lambda: load_split(config, "train"))
        second = min(_time(lambda: load_split(config, "train")) for _ in range(3))
        print(f"{args.images} images {args.size[0]}x{args.size[1]}: first open {first:.3f} s, cached open "
              f"{second:.3f} s -> {first / second:.1f}x faster")
        images = sorted((Path(tmp) / "images/train").iterdir())[:400]
        header = _time(lambda: [image_size(i) for i in images])
        reduced = _time(lambda: [cv2.imread(str(i), cv2.IMREAD_REDUCED_GRAYSCALE_8).shape for i in images])
        full = _time(lambda: [cv2.imread(str(i)).shape for i in images])
        print(f"size of {len(images)} images (3/4 JPEG, 1/4 PNG): header {header:.3f} s; "
              f"cv2 IMREAD_REDUCED_GRAYSCALE_8 {reduced / header:.1f}x slower; full cv2.imread {full / header:.1f}x "
              "slower")


if __name__ == "__main__":
    main()
