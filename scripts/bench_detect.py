#!/usr/bin/env python
"""Time the whole detection pipeline against OpenCV's DNN module doing the same work with the same weights.

Both sides: read each image from disk, letterbox it to --img-size (grey 114 borders, centred), run the
network, keep scores (objectness x class) above --conf, class-aware NMS at --iou, map the boxes back to the
original pixels. No drawing and nothing written. Ours is ``Detector.run(..., nosave=True)`` (BN folded,
channels-last, batches of --batch-size); OpenCV's is ``readNetFromDarknet`` + ``blobFromImageWithParams``
(letterbox mode) + ``forward`` + ``NMSBoxesBatched``, one image at a time as its API does.

The weights are random (BN statistics measured on the images so outputs depend on the pixels), written by
``save_darknet_weights`` and read by both. Timings are wall-clock on a machine other jobs may be loading:
trust the ratio (measured in the same run, interleaved), not the absolute numbers. On a machine shared with
other jobs, PyTorch's OpenMP threads spin-wait for each other and lose badly to descheduling; run with
``OMP_WAIT_POLICY=PASSIVE`` (OpenCV's own thread pool sleeps instead) or ``--threads 1`` to see past that.
Detection counts differ a little: OpenCV's letterbox resamples slightly differently, and these random
weights are sensitive to that (fed the same tensor, both networks give the same candidates).

    python scripts/bench_detect.py --cfg cfg/yolov3-tiny.cfg --img-size 416 --n-images 16 [--half] [--threads 2]
                                   [--batch-size 1] [--prefetch-gain]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _bench_common import OpenCVPipeline, calibrated_weights, make_images, time_interleaved  # noqa: E402

from yolo.detect.predictor import Detector  # noqa: E402


@torch.inference_mode()
def fuse_gain(weights: Path, cfg: str, size: int, dtype: torch.dtype, repeats: int) -> tuple[float, float]:
    """Median forward ms of the network with BN as separate layers and with BN folded into the convs."""
    from yolo.model.checkpoint import load_model

    x = torch.rand(1, 3, size, size).to(dtype).contiguous(memory_format=torch.channels_last)
    out = []
    for fuse in (False, True):
        model = load_model(weights, cfg=cfg)
        model = (model.fuse() if fuse else model).to(dtype).to(memory_format=torch.channels_last)
        model(x)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
        out.append(statistics.median(times) * 1000)
    return out[0], out[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cfg", default=str(ROOT / "cfg" / "yolov3.cfg"))
    ap.add_argument("--img-size", type=int, default=416)
    ap.add_argument("--n-images", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=1, help="ours: images per forward (OpenCV: always 1)")
    ap.add_argument("--half", action="store_true", help="ours in bfloat16 (CPU); OpenCV stays float32")
    ap.add_argument("--threads", type=int, default=0, help="torch and OpenCV threads (0: their defaults)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes over the folder, each side (median)")
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.45)
    ap.add_argument("--prefetch-gain", action="store_true",
                    help="also time yolo detect's loop without and with its reader thread (interleaved)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "images").mkdir()
        paths = make_images(tmp / "images", args.n_images)
        weights = tmp / "model.weights"
        calibrated_weights(args.cfg, weights, paths, args.img_size)
        ours = Detector(str(weights), cfg=args.cfg, img_size=args.img_size, conf=args.conf, iou=args.iou,
                        half=args.half)
        theirs = OpenCVPipeline(args.cfg, weights, args.img_size, args.conf, args.iou)

        def run_ours():
            return ours.run(tmp / "images", out=tmp / "runs" / "exp", nosave=True, progress=False,
                            batch_size=args.batch_size)

        def run_theirs():
            return [theirs(p) for p in paths]

        (t_ours, summary), (t_theirs, dets) = time_interleaved(run_ours, run_theirs, args.repeats)
        unfused, fused = fuse_gain(weights, args.cfg, args.img_size, ours.backend.dtype, args.repeats)
        if args.prefetch_gain:
            from yolo.detect.run import run_detection

            def run(prefetch: bool):
                return lambda: run_detection(ours, tmp / "images", tmp / "runs" / "p", nosave=True, progress=False,
                                             batch_size=args.batch_size, prefetch=prefetch)

            (t_off, s_off), (t_on, s_on) = time_interleaved(run(False), run(True), args.repeats)

    n = args.n_images
    a, b = statistics.median(t_ours) / n * 1000, statistics.median(t_theirs) / n * 1000
    split = summary["ms_per_image"]
    print(f"cfg {Path(args.cfg).name}, {args.img_size}x{args.img_size}, {n} images, ours "
          f"{'bf16' if args.half else 'fp32'} batch {args.batch_size}, threads {torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, no drawing, nothing written")
    print(f"ours:   {a:8.1f} ms/image  (pre {split['pre']:.1f}, infer {split['infer']:.1f}, post {split['post']:.1f}); "
          f"{summary['detections']} detections")
    print(f"opencv: {b:8.1f} ms/image; {sum(len(d) for d in dets)} detections")
    target = 0.5 if args.half else 0.75  # issue 18
    print(f"ratio ours/opencv: {a / b:.3f} (target <= {target})")
    print(f"BN folding: forward {unfused:.1f} ms unfused -> {fused:.1f} ms fused (x{unfused / fused:.2f})")
    if args.prefetch_gain:
        off, on = statistics.median(t_off) / n * 1000, statistics.median(t_on) / n * 1000
        print(f"reader thread: {off:.1f} ms/image without -> {on:.1f} ms/image with (x{on / off:.3f}); the loop "
              f"waited {s_off['ms_per_image']['pre']:.1f} -> {s_on['ms_per_image']['pre']:.1f} ms/image for "
              "read + letterbox")
    return 0


if __name__ == "__main__":
    sys.exit(main())
