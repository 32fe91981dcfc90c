"""Time yolo.val.coco.coco_eval against pycocotools' COCOeval on synthetic COCO-sized data.

Data: --images images (default 5000), --classes categories (80), about --gt-per-image ground truths per image
(7, Poisson; 1 in 20 crowd), --dets detections per image (100): jittered copies of the image's boxes (mostly
the right class) and random boxes, scores with ties. Both sides start from the same in-memory Python objects
(the gt dict and the results list; no JSON file reading is timed). pycocotools' time covers COCO() indexing,
loadRes, evaluate, accumulate and summarize; ours covers coco_eval() (parsing the lists included).
Prints both times, the speed ratio and the largest difference over the 12 statistics; --json FILE writes them.

    python scripts/bench_metrics.py [--images 5000] [--dets 100] [--classes 80] [--gt-per-image 7] [--seed 0]
                                    [--json out.json [--force]]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_data(images: int, classes: int, gt_per_image: float, dets: int, seed: int) -> tuple[dict, list]:
    """Synthetic COCO instances dict and results list."""
    rng = np.random.default_rng(seed)
    gt = {"images": [{"id": i + 1, "width": 640, "height": 480} for i in range(images)],
          "categories": [{"id": c + 1, "name": f"class{c}"} for c in range(classes)], "annotations": []}
    results = []
    for img in range(1, images + 1):
        n = rng.poisson(gt_per_image)
        wh = np.exp(rng.uniform(np.log(4), np.log(400), (n, 2)))  # sizes in every area range
        xy = rng.uniform(0, 640 - wh)
        cls = rng.integers(1, classes + 1, n)
        crowd = rng.random(n) < 0.05
        for b, c, k in zip(np.c_[xy, wh].tolist(), cls.tolist(), crowd.tolist()):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": img, "category_id": c,
                                      "bbox": b, "area": b[2] * b[3], "iscrowd": int(k)})
        near = min(dets, int(dets * 0.7)) if n else 0
        src = rng.integers(0, max(n, 1), near)
        jitter = rng.normal(0, 0.1, (near, 4)) * np.tile(wh[src] if n else np.ones((0, 2)), 2)
        boxes = np.c_[xy[src], wh[src]] + jitter if n else np.zeros((0, 4))
        boxes[:, 2:] = np.abs(boxes[:, 2:]) + 1
        labels = np.where(rng.random(near) < 0.8, cls[src] if n else 0, rng.integers(1, classes + 1, near))
        rand_wh = np.exp(rng.uniform(np.log(4), np.log(400), (dets - near, 2)))
        boxes = np.r_[boxes, np.c_[rng.uniform(0, 640 - rand_wh), rand_wh]]
        labels = np.r_[labels, rng.integers(1, classes + 1, dets - near)]
        scores = np.round(rng.random(dets), 3)  # rounding makes ties
        for b, c, s in zip(boxes.tolist(), labels.tolist(), scores.tolist()):
            results.append({"image_id": img, "category_id": c, "bbox": b, "score": s})
    return gt, results


def run_pycocotools(gt: dict, results: list) -> tuple[np.ndarray, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.array(ev.stats), time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--classes", type=int, default=80)
    ap.add_argument("--gt-per-image", type=float, default=7.0)
    ap.add_argument("--dets", type=int, default=100, help="detections per image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--force", action="store_true", help="replace the --json file if it exists")
    args = ap.parse_args(argv)
    if args.json and Path(args.json).exists() and not args.force:
        ap.error(f"{args.json} exists (use --force to replace it)")

    from yolo.val.coco import coco_eval

    gt, results = make_data(args.images, args.classes, args.gt_per_image, args.dets, args.seed)
    start = time.perf_counter()
    ours = coco_eval(gt, results)  # first: pycocotools' loadRes adds keys to the result dicts
    t_ours = time.perf_counter() - start
    ref, t_ref = run_pycocotools(gt, results)
    diff = float(np.abs(np.array(ours.stats) - ref).max())
    out = {"images": args.images, "classes": args.classes, "annotations": len(gt["annotations"]),
           "detections": len(results), "seconds_ours": round(t_ours, 3), "seconds_pycocotools": round(t_ref, 3),
           "speedup": round(t_ref / t_ours, 2), "max_abs_stat_diff": diff,
           "stats": dict(zip(ours.names, ours.stats)), "timed": "from in-memory gt dict and results list"}
    print(ours.format())
    print(f"{len(results)} detections, {len(gt['annotations'])} annotations: ours {t_ours:.2f} s, pycocotools "
          f"{t_ref:.2f} s, {t_ref / t_ours:.1f}x faster; largest stat difference {diff:.2e}")
    if args.json:
        from yolo.utils.checkpoint import atomic_write

        with atomic_write(args.json) as f:
            f.write(json.dumps(out, indent=1).encode())
    return 0 if diff <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
