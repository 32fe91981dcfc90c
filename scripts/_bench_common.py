"""Pieces shared by the benchmark scripts (``bench.py``, ``bench_detect.py``): test pictures, random weights
that behave like trained ones, OpenCV's DNN pipeline, the machine description, the matmul rate and
interleaved timing. Not part of the ``yolo`` package; scripts import it from their own folder."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from _opencv_pipeline import OpenCVPipeline  # noqa: F401 - handed on to the bench scripts

ROOT = Path(__file__).resolve().parents[1]


def _photo() -> np.ndarray:
    from matplotlib import cbook

    return cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))  # BGR [512, 600, 3]


def make_images(folder: Path, n: int) -> list[Path]:
    """``n`` JPEGs of a few sizes (640x480, 480x640, 800x600, ...) cut from a real photograph."""
    photo, sizes, paths = _photo(), [(480, 640), (640, 480), (600, 800), (375, 500)], []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        crop = photo[(i * 17) % 60:, (i * 29) % 80:]
        paths.append(folder / f"img{i:03d}.jpg")
        cv2.imwrite(str(paths[-1]), cv2.resize(crop, (w, h)))
    return paths


def synthetic_images(folder: Path, n: int, size: tuple[int, int] = (480, 640)) -> list[Path]:
    """``n`` validation images of the built-in shapes dataset (``yolo.data.synthetic``), ``size`` (h, w)."""
    from yolo.data.synthetic import write_dataset

    root = write_dataset(folder / "shapes", 0, n, size, seed=0)
    return sorted((root / "images" / "val").glob("*.png"))


@torch.no_grad()
def calibrated_weights(cfg: str, out: Path, paths: list[Path], size: int) -> None:
    """Random weights as a darknet .weights file, made to behave like a trained model's: BN running
    statistics measured on two of the images (so outputs depend on the pixels), and objectness biases
    sharpened and lowered so that only ~0.5% of the predictions per head are confident (a few dozen
    candidates per image, not thousands)."""
    from yolo.model.darknet import Darknet

    torch.manual_seed(0)
    model = Darknet.from_cfg(cfg)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    x = [cv2.resize(cv2.imread(str(p)), (size, size))[:, :, ::-1] for p in paths[:2]]
    x = torch.from_numpy(np.stack(x).copy()).permute(0, 3, 1, 2).float() / 255  # [2, 3, S, S]
    model.train()(x)
    model.eval()
    for head_index, raw in zip(model.head_indices, model(x)):  # raw [B, A, H, W, 5+C]
        conv = model.module_list[head_index - 1].conv  # the 1x1 output conv feeding the [yolo] layer
        a = raw.shape[1]
        q = torch.quantile(raw[..., 4].flatten(), 0.995)  # logit l -> 4 (l - q): sharp, 0.5% above 0.5
        conv.weight.view(a, -1, *conv.weight.shape[1:])[:, 4] *= 4
        bias = conv.bias.view(a, -1)[:, 4]  # [A] objectness biases
        bias.sub_(q).mul_(4)
    model.save_darknet_weights(out)


def time_interleaved(first, second, repeats: int) -> tuple[tuple[list, object], tuple[list, object]]:
    """Warm both up, then time them alternately (a burst of load hits both alike): (seconds, last result) each."""
    first(), second()
    out = ([], None), ([], None)
    for _ in range(repeats):
        out = tuple(_timed(f, times) for f, (times, _) in zip((first, second), out))
    return out


def _timed(f, times: list) -> tuple[list, object]:
    t0 = time.perf_counter()
    result = f()
    times.append(time.perf_counter() - t0)
    return times, result


def round_robin(runners: dict[str, Callable[[int], object]], repeats: int) -> dict[str, list]:
    """Call every runner once per round, in turn, for ``repeats`` rounds (a burst of load hits all alike);
    ``runner(round)`` returns what it measured itself. -> {name: [result of each round]}."""
    out: dict[str, list] = {name: [] for name in runners}
    for r in range(repeats):
        for name, run in runners.items():
            out[name].append(run(r))
    return out


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000


def _cpu_flags() -> tuple[str, set[str]]:
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("unknown", "x86_64", ""):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, flags


def machine_info(device: torch.device) -> dict:
    """CPU model, cores, torch threads, ISA flags (avx2, avx512f, avx512_bf16, amx), GPU, versions, load."""
    model, flags = _cpu_flags()
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16") if f in flags]
    info = {
        "cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "isa": isa,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__, "opencv": cv2.__version__, "opencv_threads": cv2.getNumThreads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    return info


def format_machine(info: dict) -> str:
    gpu = f", GPU {info['gpu']}" if info["gpu"] else ", no GPU"
    return (f"machine: {info['cpu']}, {info['cores']} cores, torch threads {info['torch_threads']}, ISA "
            f"{'/'.join(info['isa']) or 'none of avx2/avx512/amx'} (torch uses {info['torch_cpu_capability']})"
            f"{gpu}; torch {info['torch']}, OpenCV {info['opencv']} ({info['opencv_threads']} threads); "
            f"OMP_WAIT_POLICY={info['omp_wait_policy']}; load average at start {info['load_average']}")


def matmul_gflops(dtype: torch.dtype, device: torch.device, n: int, repeats: int = 3) -> float:
    """The best rate (GFLOP/s, 2 n^3 per product) of ``torch.mm`` on two ``[n, n]`` matrices of ``dtype``
    over ``repeats`` timed products after one warm-up, on the current torch threads."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def box_agreement(reference: list[torch.Tensor], other: list[torch.Tensor], iou: float = 0.9,
                  same_class: bool = True) -> tuple[int, int]:
    """How many of ``reference``'s boxes (per image ``[K, 6]`` x1, y1, x2, y2, score, class) have a box in
    ``other`` (same image; of the same class when ``same_class``) overlapping at IoU >= ``iou``: (matched, total)."""
    from torchvision.ops import box_iou

    matched = total = 0
    for a, b in zip(reference, other):
        total += len(a)
        if len(a) and len(b):
            overlap = box_iou(a[:, :4].double(), b[:, :4].double())  # [Ka, Kb]
            if same_class:
                overlap = overlap * (a[:, 5, None] == b[None, :, 5])
            matched += int((overlap.max(1).values >= iou).sum())
    return matched, total
