"""Time darknet's DIoU-NMS (``yolo.utils.nms.diou_nms``: the C kernel, and the NumPy blocks it replaces) against
torchvision's compiled IoU NMS (``batched_nms``, the reference) on the same random candidates, in one run.

Candidates: N boxes (2..82 px) in a 600x600 image, uniform scores, spread over C classes (C = 1: one category,
as a one-class model at ``conf 0.001``, or agnostic NMS). Prints the median time of each over --repeats, the
ratios to torchvision's, how many boxes each kept, and the machine.

    python scripts/bench_nms.py [--cases 5000x80,5000x1,30000x80,30000x1] [--repeats 3] [--threshold 0.45]
                                [--beta 0.6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def candidates(n: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``boxes [n, 4]`` xyxy, ``scores [n]``, ``classes [n]``."""
    g = torch.Generator().manual_seed(seed)
    xy, wh = torch.rand(n, 2, generator=g) * 600, torch.rand(n, 2, generator=g) * 80 + 2
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g), torch.randint(0, classes, (n,), generator=g)


def timed(f, repeats: int) -> tuple[float, torch.Tensor]:
    """(median seconds, the last result)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="5000x80,5000x1,30000x80,30000x1", help="NxC candidates x classes, ...")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=0.45)
    ap.add_argument("--beta", type=float, default=0.6)
    args = ap.parse_args()

    from _bench_common import format_machine, machine_info

    from yolo.utils import nms, nms_native

    torch.set_num_threads(1)
    lib = nms_native.checked_library(nms._native_agrees)
    print(format_machine(machine_info(torch.device("cpu"))))
    print(f"DIoU-NMS kernel: {'built' if lib is not None else 'not built (no C compiler): NumPy only'}; "
          f"threshold {args.threshold}, beta {args.beta}; median of {args.repeats}")
    print(f"{'candidates':>16} {'torchvision IoU':>16} {'DIoU C':>16} {'DIoU NumPy':>16}  kept (IoU / DIoU)")
    for case in args.cases.split(","):
        n, c = (int(v) for v in case.lower().split("x"))
        boxes, scores, classes = candidates(n, c)
        t_ref, ref = timed(lambda: nms.batched_nms(boxes, scores, classes, args.threshold), args.repeats)
        t_c, kept = timed(lambda: nms.diou_nms(boxes, scores, args.threshold, args.beta, classes), args.repeats) \
            if lib is not None else (float("nan"), None)
        original = nms_native.checked_library
        nms_native.checked_library = lambda agrees: None  # the NumPy blocks
        try:
            t_np, kept_np = timed(lambda: nms.diou_nms(boxes, scores, args.threshold, args.beta, classes),
                                  args.repeats)
        finally:
            nms_native.checked_library = original
        if kept is not None and not torch.equal(kept, kept_np):
            raise SystemExit(f"{case}: the C kernel and the NumPy path kept different boxes")
        cells = [f"{t * 1000:8.1f} ms ({t / t_ref:4.2f}x)" for t in (t_c, t_np)]
        print(f"{n:>8} x {c:<5} {t_ref * 1000:13.1f} ms {cells[0]:>16} {cells[1]:>16}  {len(ref)} / {len(kept_np)}")


if __name__ == "__main__":
    main()
