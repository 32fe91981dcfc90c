#!/usr/bin/env python
"""Inference speed of our YOLOv3 models against OpenCV's DNN and against the FLOPs floor; training images/s.

For each model and size: our network for every batch x precision x path, and OpenCV's DNN darknet importer
(``readNetFromDarknet``, batch 1, fp32) on the same ``.weights``, timed round-robin (each round calls every
variant once, so a burst of load hits all alike; median of the rounds, after one warm-up round). One call =
read the images from disk, letterbox (pre), forward (network + decode), NMS and boxes back to the original
pixels (post). On a machine shared with other jobs run it with OMP_WAIT_POLICY=PASSIVE (PyTorch's OpenMP
threads otherwise spin-wait and lose badly to descheduling; on an idle machine PASSIVE costs PyTorch about 20%,
so it is not the default). The weights are random with BN statistics calibrated on the images (no downloads); the images
are validation images of the built-in synthetic shapes data at 640x480.

Paths: eager = the model as trained (BN unfused, contiguous, no_grad); optimized = ``yolo.detect.TorchBackend``
(what ``yolo detect`` runs: BN folded, channels-last on CPU, inference_mode, and its convolution choices);
compile = ``torch.compile`` of the optimized model without its Winograd convs (its compile time is reported; an error is reported in
the row). Precisions: fp32, bf16 (CPU) or fp16 (CUDA); a reduced-precision row reports how many of the fp32
row's boxes it finds (same class, IoU >= 0.9; its own threshold 0.03 lower so scores rounded near the threshold
do not count as misses).

FLOPs floor = FLOPs (darknet convention: 2 x conv multiply-adds) x batch / the rate of large ``torch.mm``
products of that precision measured at the start of the run on the same threads. Timings are wall-clock on
whatever else the machine runs: trust ratios measured in the same run, not absolute numbers.

    python scripts/bench.py --quick                 # first look: a few minutes on 2 CPU cores
    python scripts/bench.py --json bench.json       # the full grid: can take an hour or more on a small CPU
    python scripts/bench.py --train                 # also training images/s and the data-wait share
    python scripts/bench.py --peers-only --models yolov3-tiny,yolov3 --sizes 416
                                                    # ours vs OpenCV DNN, onnxruntime, OpenVINO; whole command
    python scripts/bench.py --startup-only          # start-up: import torch, yolo --help, a one-image detect
    python scripts/bench.py --train-amp-only        # the shapes demo trained in float32 and with AMP: speed, mAP50

--peers (``_bench_peers.py``): a batch-1 forward table of ours, OpenCV DNN, onnxruntime and OpenVINO (our own
ONNX export) in fp32 and bf16 (bf16 only where the CPU has AVX512_BF16/AMX, else n/a; a peer that is not
installed is skipped with a line saying so), and ``yolo detect`` against an OpenCV-DNN script as whole processes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from _bench_common import (  # noqa: E402
    OpenCVPipeline,
    box_agreement,
    calibrated_weights,
    format_machine,
    machine_info,
    matmul_gflops,
    median_ms,
    round_robin,
    synthetic_images,
)
from _bench_startup import format_startup, startup_times  # noqa: E402
from _bench_train import format_train, train_throughput  # noqa: E402
from _bench_train_amp import amp_comparison, format_amp  # noqa: E402

from yolo.model.checkpoint import load_model  # noqa: E402
from yolo.runtime.backends import TorchBackend  # noqa: E402
from yolo.runtime.postprocess import postprocess  # noqa: E402
from yolo.runtime.preprocess import preprocess
from yolo.utils.device import synchronize  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
AGREE_MARGIN = 0.03  # the reduced-precision run keeps scores down to conf - this, for the agreement count only


class OursRunner:
    """One table row's network. ``runner(round)`` detects on ``batch`` images (chosen by the round, cycling over
    the image list) and returns seconds of ``read``, ``pre``, ``forward``, ``post`` and ``total``; detections
    per image index are kept in ``dets`` (at ``conf``) and ``dets_low`` (at ``conf - AGREE_MARGIN``)."""

    def __init__(self, weights: Path, cfg: str, size: int, batch: int, precision: str, path: str,
                 device: torch.device, images: list[Path], conf: float, iou: float):
        self.size, self.batch, self.precision, self.path = size, batch, precision, path
        self.images, self.conf, self.iou, self.device = images, conf, iou, device
        self.dtype = DTYPES[precision]
        self.dets: dict[int, torch.Tensor] = {}
        self.dets_low: dict[int, torch.Tensor] = {}
        self.compile_s: float | None = None
        model = load_model(weights, cfg=cfg)
        if path == "eager":
            self.model = model.eval().to(device, self.dtype)
            self.forward = self._eager
        else:
            # torch.compile gets the model without the Winograd convs: their workspace and out= products
            # break dynamo's graphs (a recompile per conv); inductor generates its own kernels instead.
            self.backend = TorchBackend(model, device, half=precision != "fp32", winograd=None if path == "optimized"
                                        else False)
            assert self.backend.dtype == self.dtype, (self.backend.dtype, self.dtype)
            if path == "compile":
                self.backend.model = torch.compile(self.backend.model)
            self.forward = self.backend

    @torch.no_grad()
    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> decoded ``[B, N, 5+C]`` float32."""
        raw = self.model(x.to(self.device, self.dtype))  # [[B, A, H/s, W/s, 5+C] per head]
        return self.model.decode([r.float() for r in raw])

    def warm_up(self) -> None:
        """One call (compiles on the compile path: ``compile_s`` = that call's time)."""
        t0 = time.perf_counter()
        self(0)
        if self.path == "compile":
            self.compile_s = time.perf_counter() - t0

    def __call__(self, round_index: int) -> dict:
        index = [(round_index * self.batch + k) % len(self.images) for k in range(self.batch)]
        t0 = time.perf_counter()
        imgs = [cv2.imread(str(self.images[i])) for i in index]
        t1 = time.perf_counter()
        x, infos = preprocess(imgs, (self.size, self.size))  # [B, 3, S, S]
        t2 = time.perf_counter()
        pred = self.forward(x)  # [B, N, 5+C]
        synchronize(pred.device)
        t3 = time.perf_counter()
        dets = postprocess(pred, infos, self.conf, self.iou)  # per image [K, 6]
        t4 = time.perf_counter()
        self._keep(index, pred)
        return {"read": t1 - t0, "pre": t2 - t1, "forward": t3 - t2, "post": t4 - t3, "total": t4 - t0}

    def _keep(self, index: list[int], pred: torch.Tensor) -> None:
        """Detections for the agreement count (not timed), in network-input pixels before clipping to the
        image (random weights put some boxes in the padding, which clipping makes zero-area)."""
        ref = postprocess(pred, None, self.conf, self.iou)  # per image [K, 6]
        low = postprocess(pred, None, max(self.conf - AGREE_MARGIN, 0.0), self.iou)
        for i, d, d_low in zip(index, ref, low):
            self.dets[i], self.dets_low[i] = d.cpu(), d_low.cpu()


class OpenCVRunner:
    """OpenCV's DNN on one image per call: the same timing keys as :class:`OursRunner`."""

    batch, precision, path, compile_s = 1, "fp32", "opencv", None

    def __init__(self, cfg: str, weights: Path, size: int, images: list[Path], conf: float, iou: float):
        self.pipeline = OpenCVPipeline(cfg, weights, size, conf, iou)
        self.size, self.images = size, images

    def warm_up(self) -> None:
        self(0)

    def __call__(self, round_index: int) -> dict:
        t0 = time.perf_counter()
        img = cv2.imread(str(self.images[round_index % len(self.images)]))
        t1 = time.perf_counter()
        blob = self.pipeline.blob(img)
        t2 = time.perf_counter()
        out = self.pipeline.forward(blob)
        t3 = time.perf_counter()
        self.pipeline.post(out, img.shape[:2])
        t4 = time.perf_counter()
        return {"read": t1 - t0, "pre": t2 - t1, "forward": t3 - t2, "post": t4 - t3, "total": t4 - t0}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Inference latency/throughput of yolov3 models (paths x precisions x batches) against "
                    "OpenCV DNN and the FLOPs floor; training images/s with --train. The default full grid "
                    "(3 models x 3 sizes x 2 batches x 2 precisions x 3 paths) takes an hour or more on a "
                    "small CPU; start with --quick (a few minutes).",
        epilog="Columns: fwd ms = network + decode per batch; e2e img/s = images per second of read + letterbox "
               "+ forward + NMS; x cv fwd / x cv e2e = our time per image / OpenCV's (same model and size, batch "
               "1, fp32); x floor = fwd ms / the FLOPs floor; agree = fp32 boxes found at IoU >= 0.9 with the same class "
               "(note: also of any class).")
    ap.add_argument("--models", default="yolov3-tiny,yolov3,yolov3-spp", help="cfg names under cfg/ (or cfg paths)")
    ap.add_argument("--sizes", default="320,416,608", help="square input sizes, multiples of 32")
    ap.add_argument("--batch", default="1,8", help="batch sizes (OpenCV always runs batch 1)")
    ap.add_argument("--precisions", default=None, help="default fp32,bf16 on CPU; fp32,fp16 on CUDA")
    ap.add_argument("--paths", default="eager,optimized,compile", help="eager, optimized, compile")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds (median) after one warm-up round")
    ap.add_argument("--threads", type=int, default=0, help="torch and OpenCV threads (0: their defaults)")
    ap.add_argument("--images", type=int, default=16, help="synthetic validation images to cycle through")
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.45)
    ap.add_argument("--no-opencv", action="store_true", help="skip OpenCV DNN")
    ap.add_argument("--quick", action="store_true",
                    help="yolov3-tiny and yolov3 at 416, batch 1, eager and optimized, 3 repeats (a few minutes)")
    ap.add_argument("--train", action="store_true", help="also training images/s and the data-wait share")
    ap.add_argument("--train-only", action="store_true", help="only the training measurement")
    ap.add_argument("--train-sizes", default="256,416")
    ap.add_argument("--train-steps", type=int, default=20,
                    help="timed steps per size after one warm-up step; more than the loader buffers "
                         "(2 batches per worker), or the wait is underestimated")
    ap.add_argument("--train-batch", type=int, default=None, help="default: yolo train's (RunConfig)")
    ap.add_argument("--train-workers", type=int, default=None, help="default: yolo train's (RunConfig)")
    ap.add_argument("--train-data", default="data/shapes.yaml", help="dataset YAML (default: built-in shapes)")
    _add_peer_args(ap)
    _add_train_amp_args(ap)
    ap.add_argument("--startup", action="store_true", help="also start-up: whole processes of import torch, "
                                                           "yolo --help and a one-image yolo detect")
    ap.add_argument("--startup-only", action="store_true", help="only the start-up measurement")
    ap.add_argument("--startup-runs", type=int, default=5, help="interleaved rounds of the start-up commands")
    ap.add_argument("--startup-against", metavar="DIR", help="also time the detect command from another checkout")
    ap.add_argument("--json", dest="json_out", default=None, help="write the results here as JSON")
    ap.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.sizes, args.batch, args.paths, args.repeats = "yolov3-tiny,yolov3", "416", "1", \
            "eager,optimized", 3
    if args.json_out and Path(args.json_out).exists() and not args.force:
        ap.error(f"{args.json_out} exists; pass --force to overwrite it")
    _check(ap, args)
    return args


def _add_peer_args(ap: argparse.ArgumentParser) -> None:
    """``--peers``: onnxruntime and OpenVINO beside OpenCV DNN, and the whole-command comparison."""
    ap.add_argument("--peers", action="store_true",
                    help="also the peer table (ours, OpenCV DNN, onnxruntime, OpenVINO; fp32 and bf16, batch 1, "
                         "forward + decode) and the whole command (yolo detect against an OpenCV-DNN script)")
    ap.add_argument("--peers-only", action="store_true", help="only --peers (no grid)")
    ap.add_argument("--peer-images", type=int, default=24, help="640x480 photos for --peers (default 24)")
    ap.add_argument("--peer-repeats", type=int, default=3, help="whole-command runs per side (median)")
    ap.add_argument("--peer-bf16", choices=("auto", "on", "off"), default="auto",
                    help="bf16 cells: auto = only where the CPU has AVX512_BF16/AMX (else n/a)")


def _add_train_amp_args(ap: argparse.ArgumentParser) -> None:
    """``--train-amp``: ``yolo train`` with AMP against float32, images/s and mAP@0.5 after the same epochs."""
    ap.add_argument("--train-amp", action="store_true",
                    help="also the shapes demo trained twice, float32 and AMP (bf16 on CPU, fp16 on CUDA): images/s "
                         "of the training steps and mAP50 after the same epochs (targets: >= 1.5x, within 0.02)")
    ap.add_argument("--train-amp-only", action="store_true", help="only --train-amp")
    ap.add_argument("--train-amp-epochs", type=int, default=10, help="epochs of each run (default 10: the demo's)")
    ap.add_argument("--train-amp-run", default=None, help="run YAML (default: the built-in shapes.yaml demo)")
    ap.add_argument("--train-amp-set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="overrides for both runs, as yolo train --set (e.g. data=shapes-mini.yaml img_size=128)")
    ap.add_argument("--train-amp-force", action="store_true",
                    help="run it on a CPU without AVX512_BF16/AMX too (bfloat16 emulated: slow)")


def run_peer_part(args, tmp: Path) -> dict:
    """``--peers``: the peer forward table and the whole-command comparison (``_bench_peers``)."""
    from _bench_peers import format_forward, format_whole, run_peers

    result = run_peers(args, _cfg_path, _list(args.models), _list(args.sizes, int), tmp)
    print("peers (ms per image):\n" + format_forward(result["forward"]) + "\n" + format_whole(result["whole_command"]),
          flush=True)
    return result


def _check(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors (exit 2) before any work: unknown paths or precisions, sizes not multiples of 32."""
    cuda = args.device.startswith("cuda")
    reduced = "fp16" if cuda else "bf16"  # what TorchBackend's half means on that device
    for p in _list(args.precisions or "fp32"):
        if p not in ("fp32", reduced):
            ap.error(f"--precisions: {p!r} on {'CUDA' if cuda else 'CPU'}; choose from fp32,{reduced}")
    for path in _list(args.paths):
        if path not in ("eager", "optimized", "compile"):
            ap.error(f"--paths: unknown {path!r}; choose from eager,optimized,compile")
    try:
        bad = [s for s in _list(args.sizes, int) if s <= 0 or s % 32] + [b for b in _list(args.batch, int) if b < 1]
    except ValueError as e:
        ap.error(f"--sizes/--batch: {e}")
    if bad:
        ap.error(f"sizes must be positive multiples of 32 and batches >= 1, got {bad}")


def _list(text: str, kind=str) -> list:
    return [kind(v.strip()) for v in text.split(",") if v.strip()]


def _cfg_path(name: str) -> str:
    path = Path(name)
    return str(path) if path.suffix == ".cfg" and path.exists() else str(ROOT / "cfg" / f"{Path(name).stem}.cfg")


def _gflops(cfg: str, size: int) -> float:
    """Darknet-convention GFLOPs of one ``size x size`` image (2 x conv multiply-adds)."""
    from yolo.model.cfg_parser import parse_cfg
    from yolo.model.profile import layer_costs

    return sum(c.gflops for c in layer_costs(parse_cfg(cfg), size, size))


def matmul_rates(precisions: list[str], device: torch.device) -> dict[str, float]:
    """GFLOP/s of large ``torch.mm`` per precision (smaller products where that precision is emulated)."""
    from yolo.utils.device import cpu_has_fast_bf16

    rates = {}
    for p in precisions:
        slow = device.type == "cpu" and p != "fp32" and not cpu_has_fast_bf16()
        n = 8192 if device.type == "cuda" else (512 if slow else 2048)
        rates[p] = matmul_gflops(DTYPES[p], device, n, repeats=2 if slow else 3)
    return rates


def _build_runners(args, cfg: str, weights: Path, size: int, images: list[Path], device, precisions) -> tuple:
    """-> ({name: runner} that warmed up fine, [rows of those that failed])."""
    runners, failed = {}, []
    specs = [(b, p, path) for b in _list(args.batch, int) for p in precisions for path in _list(args.paths)]
    if not args.no_opencv:
        specs.append((1, "fp32", "opencv"))
    for batch, precision, path in specs:
        name = f"{batch}/{precision}/{path}"
        try:
            if path == "opencv":
                runner = OpenCVRunner(cfg, weights, size, images, args.conf, args.iou)
            else:
                runner = OursRunner(weights, cfg, size, batch, precision, path, device, images, args.conf, args.iou)
            runner.warm_up()
            runners[name] = runner
        except Exception as e:  # noqa: BLE001 - e.g. inductor without a compiler: reported in the row
            failed.append({"batch": batch, "precision": precision, "path": path,
                           "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"})
    return runners, failed


def _row(runner, times: list[dict], gflops: float, rate: float) -> dict:
    """The timing columns of one runner from its rounds."""
    fwd, total = median_ms([t["forward"] for t in times]), median_ms([t["total"] for t in times])
    floor = gflops * runner.batch / rate * 1000
    return {
        "batch": runner.batch, "precision": runner.precision, "path": runner.path,
        "forward_ms": fwd, "forward_images_per_s": runner.batch * 1000 / fwd,
        "e2e_ms": total, "e2e_images_per_s": runner.batch * 1000 / total,
        "split_ms": {k: median_ms([t[k] for t in times]) for k in ("read", "pre", "forward", "post")},
        "forward_nms_images_per_s": runner.batch * 1000 / median_ms([t["forward"] + t["post"] for t in times]),
        "floor_ms": floor, "ratio_floor": fwd / floor, "compile_s": runner.compile_s,
    }


def _agreement(runner, runners: dict) -> dict | None:
    """Boxes of the fp32 row (same batch and path; else any fp32 row of ours) that this row finds."""
    if runner.precision == "fp32" or runner.path == "opencv":
        return None
    refs = [r for r in runners.values() if r.precision == "fp32" and r.path != "opencv"]
    refs.sort(key=lambda r: (r.path != runner.path, r.batch != runner.batch))
    if not refs:
        return None
    ref = refs[0]
    common = sorted(set(ref.dets) & set(runner.dets_low))
    a, b = [ref.dets[i] for i in common], [runner.dets_low[i] for i in common]
    matched, total = box_agreement(a, b)
    any_class, _ = box_agreement(a, b, same_class=False)
    return {"matched": matched, "total": total, "fraction": matched / total if total else None,
            "matched_any_class": any_class, "reference": f"{ref.path} fp32 batch {ref.batch}",
            "images": len(common)}


def bench_model_size(args, model: str, size: int, weights: Path, images: list[Path], device, precisions,
                     rates: dict) -> list[dict]:
    """All rows of one model at one size (one round-robin over every variant)."""
    cfg = _cfg_path(model)
    gflops = _gflops(cfg, size)
    runners, failed = _build_runners(args, cfg, weights, size, images, device, precisions)
    times = round_robin(runners, args.repeats)
    base = {"model": model, "size": size, "gflops_per_image": gflops}
    rows = [{**base, **row} for row in failed]
    cv = next((_row(r, times[n], gflops, rates["fp32"]) for n, r in runners.items() if r.path == "opencv"), None)
    for name, runner in runners.items():
        row = {**base, **_row(runner, times[name], gflops, rates.get(runner.precision, rates["fp32"]))}
        if cv is not None:
            row["ratio_opencv_forward"] = (row["forward_ms"] / runner.batch) / cv["forward_ms"]
            row["ratio_opencv_e2e"] = (row["e2e_ms"] / runner.batch) / cv["e2e_ms"]
        row["agreement"] = _agreement(runner, runners)
        rows.append(row)
    return rows


def _fmt(v, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:>{width}{spec}}"


def format_rows(rows: list[dict]) -> str:
    head = (f"{'model':<12} {'size':>4} {'batch':>5} {'prec':>4} {'path':>9} {'fwd ms':>9} {'fwd img/s':>9} "
            f"{'e2e img/s':>9} {'x cv fwd':>8} {'x cv e2e':>8} {'x floor':>7} {'agree':>13}  note")
    lines = [head]
    for r in rows:
        lead = f"{r['model']:<12} {r['size']:>4} {r['batch']:>5} {r['precision']:>4} {r['path']:>9}"
        if "error" in r:
            lines.append(f"{lead} error: {r['error']}")
            continue
        a = r.get("agreement")
        agree = f"{a['matched']}/{a['total']}" + (f" {a['fraction']:.1%}" if a["total"] else "") if a else "-"
        notes = [f"compile {r['compile_s']:.0f} s"] if r.get("compile_s") is not None else []
        notes += [f"any class {a['matched_any_class']}/{a['total']}"] if a else []
        note = "; ".join(notes)
        lines.append(f"{lead} {r['forward_ms']:>9.1f} {r['forward_images_per_s']:>9.2f} "
                     f"{r['e2e_images_per_s']:>9.2f} {_fmt(r.get('ratio_opencv_forward'), '.3f', 8)} "
                     f"{_fmt(r.get('ratio_opencv_e2e'), '.3f', 8)} {r['ratio_floor']:>7.2f} {agree:>13}  {note}")
    return "\n".join(lines)


def run_inference(args, device: torch.device, tmp: Path) -> tuple[dict, list[dict]]:
    precisions = _list(args.precisions) if args.precisions else (["fp32", "fp16"] if device.type == "cuda"
                                                                 else ["fp32", "bf16"])
    rates = matmul_rates(precisions, device)
    print("matmul rate (torch.mm, GFLOP/s): " + ", ".join(f"{p} {r:.1f}" for p, r in rates.items()), flush=True)
    images = synthetic_images(tmp, args.images)
    rows = []
    for model in _list(args.models):
        cfg, sizes = _cfg_path(model), _list(args.sizes, int)
        weights = tmp / f"{Path(cfg).stem}.weights"
        calibrated_weights(cfg, weights, images, sizes[0])
        for size in sizes:
            t0 = time.perf_counter()
            new = bench_model_size(args, Path(cfg).stem, size, weights, images, device, precisions, rates)
            text = format_rows(new)
            print((text.split("\n", 1)[1] if rows else text) + f"   [{time.perf_counter() - t0:.0f} s]", flush=True)
            rows += new
    return rates, rows


PARTS = ("startup", "peers", "train", "train_amp")  # the parts beside the inference grid, each with --X-only


def main(argv=None) -> int:
    args = parse_args(argv)
    from yolo.utils.checkpoint import atomic_write
    from yolo.utils.device import select_device

    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    device = select_device(args.device)
    result = {"machine": machine_info(device), "settings": vars(args),
              "flops_convention": "darknet: 2 x conv multiply-adds per image", "rows": [], "train": []}
    print(format_machine(result["machine"]), flush=True)
    only = {part for part in PARTS if getattr(args, f"{part}_only")}  # --X-only: these parts and no grid

    def wanted(part: str) -> bool:
        return (getattr(args, part) or part in only) and (not only or part in only)

    with tempfile.TemporaryDirectory() as tmp:
        if wanted("startup"):
            result["startup"] = startup_times(Path(tmp), args.startup_runs, args.startup_against)
            print(format_startup(result["startup"]), flush=True)
        if not only:
            result["matmul_gflops"], result["rows"] = run_inference(args, device, Path(tmp))
        if wanted("peers"):
            result["peers"] = run_peer_part(args, Path(tmp))
        if wanted("train_amp"):
            result["train_amp"] = amp_comparison(Path(tmp) / "train-amp", args.train_amp_epochs, str(device),
                                                 args.train_amp_set, args.train_amp_run, args.train_amp_force)
            print(format_amp(result["train_amp"]), flush=True)
    if wanted("train"):
        for size in _list(args.train_sizes, int):
            try:
                result["train"].append(train_throughput(size, args.train_steps, args.train_batch, args.train_workers,
                                                        args.train_data, device=str(device)))
            except Exception as e:  # noqa: BLE001 - reported, the inference results are kept
                result["train"].append({"model": "yolov3-tiny", "size": size, "error": f"{type(e).__name__}: {e}"})
        print("training (yolov3-tiny, synthetic shapes; wait = time in next(loader)):\n" + format_train(result["train"]))
    if args.json_out:
        with atomic_write(args.json_out) as f:
            f.write(json.dumps(result, indent=1).encode("utf-8"))
        print(f"results in {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
