#!/usr/bin/env python
"""What an OpenCV user would write for ``yolo detect --save-txt --nosave``: every image of a folder, letterbox
(grey 114), ``readNetFromDarknet`` forward, score filter, class-aware NMS, boxes back to the original pixels,
one YOLO txt per image (``class cx cy w h conf``, normalized). cv2 and numpy only (no torch), so the process
starts as such a script would. ``bench.py --peers`` times it as a whole process against ``yolo detect``.

    python scripts/_opencv_detect.py --cfg cfg/yolov3.cfg --weights yolov3.weights --source images/ --out out/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2  # noqa: E402

from _opencv_pipeline import OpenCVPipeline  # noqa: E402

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def txt_lines(det, shape: tuple[int, int]) -> str:
    """``[K, 6]`` x1, y1, x2, y2 (pixels), score, class -> YOLO txt lines normalized by ``shape`` (h, w)."""
    h, w = shape
    lines = []
    for x1, y1, x2, y2, score, cls in det.tolist():
        lines.append(f"{int(cls)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} "
                     f"{(y2 - y1) / h:.6f} {score:.5f}\n")
    return "".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cfg", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--source", required=True, help="a folder of images")
    ap.add_argument("--out", required=True, help="txt files go to OUT/labels/")
    ap.add_argument("--img-size", type=int, default=416)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.45)
    ap.add_argument("--threads", type=int, default=0, help="OpenCV threads (0: its default)")
    args = ap.parse_args()
    if args.threads:
        cv2.setNumThreads(args.threads)
    pipeline = OpenCVPipeline(args.cfg, Path(args.weights), args.img_size, args.conf, args.iou)
    labels = Path(args.out) / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    images = sorted(p for p in Path(args.source).iterdir() if p.suffix.lower() in SUFFIXES)
    for path in images:
        img = cv2.imread(str(path))
        det = pipeline.post(pipeline.forward(pipeline.blob(img)), img.shape[:2])  # [K, 6]
        (labels / f"{path.stem}.txt").write_text(txt_lines(det, img.shape[:2]))
    print(f"{len(images)} images, results in {labels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
