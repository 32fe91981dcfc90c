"""``yolo profile``: parameters, FLOPs, a per-layer table, latency and memory.

FLOPs are per image and follow two stated conventions:

- ``gflops`` — pjreddie darknet's (``darknet ops``): 2 x multiply-adds of the conv layers only.
- ``bflops`` — AlexeyAB darknet's printed "Total BFLOPS": ``gflops`` plus ``size*size`` per max-pool output
  and 1 per shortcut output (``cfg_counts.darknet_layer_flops``).
- ``gflops_total`` — ``gflops`` plus 1 per conv bias add, 2 per BN output (scale and shift), 1 per
  activation output (whatever the activation), 1 per shortcut addition, ``size*size - 1`` comparisons per
  max-pool output, 1 add per avg-pool input and 1 multiply per scale_channels output. Route, upsample,
  dropout and the YOLO reshape count 0.
"""

from __future__ import annotations

import copy
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from yolo.errors import InputError, option, positive_int
from yolo.model.cfg_counts import conv_param_count, darknet_layer_flops, layer_shapes, param_count
from yolo.model.cfg_specs import (
    AvgPoolSpec,
    ConvSpec,
    MaxPoolSpec,
    ModelSpec,
    RouteSpec,
    ScaleChannelsSpec,
    ShortcutSpec,
    UpsampleSpec,
)
from yolo.model.darknet import Darknet
from yolo.model.inference import prepare_for_inference
from yolo.utils.device import describe_device, half_dtype, select_device, synchronize
from yolo.utils.memory import PeakMemory
from yolo.utils.sizes import check_img_size, default_img_size, round_to_stride

FLOPS_CONVENTION = {
    "gflops": "darknet: 2 x multiply-adds of conv layers, per image",
    "bflops": "AlexeyAB darknet's Total BFLOPS: gflops + max-pool (size*size/output) + shortcut (1/output), "
              "per image",
    "gflops_total": "gflops + conv bias adds + BN (2/element) + activations (1/element) + shortcut adds "
                    "(1/element) + max-pool comparisons (size*size-1 per output) + avg-pool adds (1/input) + "
                    "scale_channels multiplies (1/output), per image",
}


@dataclass
class LayerCost:
    index: int
    type: str
    output_shape: list[int]  # [C, H, W] for one image
    params: int
    gflops: float
    gflops_total: float
    receptive_field: int | float | None  # None: the whole input (after a global pool)
    stride: int | float
    bflops: float = 0.0
    latency_ms: float | None = None


def _activation_ops(name: str, elements: int) -> int:
    return 0 if name == "linear" else elements


def _layer_flops(s, shape: tuple[int, int, int], in_shape: tuple[int, int, int]) -> tuple[int, int]:
    """(darknet conv FLOPs, total FLOPs) of one layer for one image (``in_shape``: the previous layer's output)."""
    c, h, w = shape
    out = c * h * w
    if isinstance(s, ConvSpec):
        conv = 2 * out * (s.in_channels // s.groups) * s.size * s.size
        extra = 2 * out if s.batch_normalize else out  # BN scale+shift, or the bias add
        return conv, conv + extra + _activation_ops(s.activation, out)
    if isinstance(s, ShortcutSpec):
        return 0, out + _activation_ops(s.activation, out)
    if isinstance(s, MaxPoolSpec):
        return 0, out * (s.size * s.size - 1)
    if isinstance(s, AvgPoolSpec):
        return 0, math.prod(in_shape)
    if isinstance(s, ScaleChannelsSpec):
        return 0, out + _activation_ops(s.activation, out)
    return 0, 0


def _receptive_fields(spec: ModelSpec) -> list[tuple[float, float]]:
    """(theoretical receptive field in input pixels, cumulative stride) after each layer.

    conv/max-pool: ``rf += (size - 1) * jump; jump *= stride``; upsample: ``jump /= stride``; route and
    shortcut take the largest field of their inputs. Not clipped to the image.
    """
    out: list[tuple[float, float]] = []
    rf, jump = 1.0, 1.0
    for s in spec.layers:
        if isinstance(s, (ConvSpec, MaxPoolSpec)):
            rf, jump = rf + (s.size - 1) * jump, jump * s.stride
        elif isinstance(s, UpsampleSpec):
            jump = jump / s.stride
        elif isinstance(s, RouteSpec):
            rf, jump = max(out[i][0] for i in s.sources), out[s.sources[0]][1]
        elif isinstance(s, ShortcutSpec):
            rf = max(rf, out[s.source][0])
        elif isinstance(s, AvgPoolSpec):
            rf = math.inf
        elif isinstance(s, ScaleChannelsSpec):
            rf, jump = max(rf, out[s.source][0]), out[s.source][1]
        out.append((rf, jump))
    return out


def _number(v: float) -> int | float | None:
    if math.isinf(v):
        return None
    return int(v) if float(v).is_integer() else v


def layer_costs(spec: ModelSpec, height: int, width: int) -> list[LayerCost]:
    """Per-layer output shape, parameters, FLOPs, receptive field and stride for one ``height x width`` image."""
    shapes = layer_shapes(spec, height, width)
    rfs = _receptive_fields(spec)
    costs = []
    for s, shape, (rf, jump) in zip(spec.layers, shapes, rfs):
        in_shape = shapes[s.index - 1] if s.index else (spec.net.channels, height, width)
        conv, total = _layer_flops(s, shape, in_shape)
        params = conv_param_count(s) if isinstance(s, ConvSpec) else 0
        costs.append(LayerCost(s.index, s.kind, list(shape), params, conv / 1e9, total / 1e9,
                               _number(rf), _number(jump), bflops=darknet_layer_flops(s, shape)[1] / 1e9))
    return costs


@torch.inference_mode()
def _time_layers(model, x: torch.Tensor, runs: int) -> list[float]:
    """Median milliseconds of each module, measured with forward hooks (they add a little overhead)."""
    device, starts, times = x.device, {}, {i: [] for i in range(len(model.module_list))}

    def pre(i):
        def hook(module, args):
            synchronize(device)
            starts[i] = time.perf_counter()
        return hook

    def post(i):
        def hook(module, args, output):
            synchronize(device)
            times[i].append((time.perf_counter() - starts[i]) * 1e3)
        return hook

    handles = []
    for i, m in enumerate(model.module_list):
        handles += [m.register_forward_pre_hook(pre(i)), m.register_forward_hook(post(i))]
    try:
        for _ in range(runs):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return [statistics.median(times[i]) for i in range(len(times))]


@torch.inference_mode()
def measure_latency(model, x: torch.Tensor, runs: int, warmup: int) -> dict:
    """Warm up, then time ``runs`` forwards (synchronized on CUDA): median, mean, std, min, p90, max in ms.

    Peak memory covers warm-up too: the first forward is where activations get allocated.
    """
    samples = []
    with PeakMemory(x.device) as mem:
        for _ in range(warmup):
            model(x)
        synchronize(x.device)
        for _ in range(runs):
            t = time.perf_counter()
            model(x)
            synchronize(x.device)
            samples.append((time.perf_counter() - t) * 1e3)
    ordered = sorted(samples)
    return {
        "median": statistics.median(samples), "mean": statistics.fmean(samples),
        "std": statistics.pstdev(samples), "min": ordered[0], "max": ordered[-1],
        "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], "peak_memory_bytes": mem.peak_bytes,
    }


def _size(img_size, stride: int) -> tuple[int, int]:
    """``img_size`` rounded up to the stride with a warning, as ``Detector`` does; None: 416, rounded quietly."""
    if img_size is None:
        return default_img_size(stride)
    return round_to_stride(check_img_size(img_size), stride)


def profile_model(model, img_size: int | tuple[int, int] | None = None, batch_size: int = 1,
                  device: str | None = "cpu",
                  half: bool = False, runs: int = 30, warmup: int = 3, optimized: bool = False,
                  cfg: str | os.PathLike | None = None) -> dict:
    """Profile ``model`` (a ``Darknet``, or what ``load_model`` reads: a ``.pt`` or a checkpoint path, a
    ``.weights`` with its ``cfg``; a cfg path or built-in name builds an untrained one): counts always; latency,
    per-layer time and memory when ``runs > 0``.

    ``optimized``: time the model as ``yolo detect`` runs it (a copy with BN folded, channels-last and Winograd
    convs on CPU; see ``yolo.model.inference``) instead of as trained.

    Returns a dict with ``params``, ``params_trainable``, ``params_fused``, ``gflops``, ``bflops``, ``gflops_total``,
    ``input_size`` [H, W], ``batch_size``, ``device``, ``dtype``, ``latency_ms`` (median, or None),
    ``latency`` (spread), ``images_per_second``, ``peak_memory_mb``, ``memory_kind``, ``conventions``,
    ``machine`` (what the times ran on: CPU or GPU model, cores and torch threads, ISA, versions) and ``layers``
    (each: ``index``, ``type``, ``output_shape``, ``params``, ``gflops``, ``gflops_total``, ``receptive_field``
    (None after a global pool), ``stride``, ``bflops``, ``latency_ms``).
    """
    if isinstance(model, (str, os.PathLike)):
        model = _load(model, cfg)
    elif not isinstance(model, Darknet):
        raise InputError(f"model must be a Darknet, or the path of a checkpoint or cfg, got {type(model).__name__}")
    batch_size = positive_int(batch_size, "batch_size")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 0:
        raise InputError(f"{option('runs')} must be an integer >= 0, got {runs!r}")
    h, w = _size(img_size, model.max_stride)
    costs = layer_costs(model.spec, h, w)
    dev = select_device(device)
    dtype = half_dtype(dev) if half else torch.float32
    result = {
        "model": model.spec.source,
        "params": sum(p.numel() for p in model.parameters()),
        "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "params_fused": param_count(model.spec, fused=True),
        "gflops": sum(c.gflops for c in costs), "bflops": sum(c.bflops for c in costs),
        "gflops_total": sum(c.gflops_total for c in costs),
        "input_size": [h, w], "batch_size": batch_size, "device": str(dev), "dtype": str(dtype).replace("torch.", ""),
        "latency_ms": None, "latency": None, "images_per_second": None, "peak_memory_mb": None,
        "memory_kind": "cuda_max_allocated" if dev.type == "cuda" else "cpu_rss_growth",
        "conventions": FLOPS_CONVENTION, "optimized": optimized, "machine": describe_device(dev),
    }
    if runs > 0:
        memory_format = torch.contiguous_format
        if optimized:
            model, memory_format, _ = prepare_for_inference(copy.deepcopy(model), dev, dtype)
        model = model.eval().to(dev, dtype)
        x = torch.rand(batch_size, model.spec.net.channels, h, w, device=dev, dtype=dtype)
        x = x.contiguous(memory_format=memory_format)
        lat = measure_latency(model, x, runs, warmup)
        for cost, ms in zip(costs, _time_layers(model, x, max(1, min(runs, 10)))):
            cost.latency_ms = ms
        result.update(latency_ms=lat["median"], latency={k: v for k, v in lat.items() if k != "peak_memory_bytes"},
                      images_per_second=batch_size * 1e3 / lat["median"], peak_memory_mb=lat["peak_memory_bytes"] / 2**20)
    result["layers"] = [asdict(c) for c in costs]
    return result


def format_table(result: dict) -> str:
    """The per-layer table and totals, for the terminal."""
    rows = [f"{'idx':>4} {'type':<14} {'output':>16} {'params':>11} {'GFLOPs':>8} {'BFLOPS':>8} {'RF':>6} "
            f"{'stride':>6} {'ms':>8}"]
    for L in result["layers"]:
        shape = "x".join(map(str, L["output_shape"]))
        ms = f"{L['latency_ms']:.3f}" if L["latency_ms"] is not None else "-"
        stride = f"{L['stride']:g}"
        rf = "all" if L["receptive_field"] is None else L["receptive_field"]
        rows.append(f"{L['index']:>4} {L['type']:<14} {shape:>16} {L['params']:>11,} {L['gflops']:>8.3f} "
                    f"{L['bflops']:>8.3f} {rf:>6} {stride:>6} {ms:>8}")
    h, w = result["input_size"]
    rows += [
        "",
        f"model {result['model']}",  # the file read: a local file may shadow a built-in's name
        f"input {h}x{w}, batch {result['batch_size']}, {result['device']} {result['dtype']}",
        f"params {result['params']:,} (trainable {result['params_trainable']:,}; BN folded {result['params_fused']:,})",
        f"GFLOPs {result['gflops']:.3f}  [{FLOPS_CONVENTION['gflops']}]",
        f"BFLOPS {result['bflops']:.3f}  [{FLOPS_CONVENTION['bflops']}]",
        f"GFLOPs total {result['gflops_total']:.3f}  [{FLOPS_CONVENTION['gflops_total']}]",
    ]
    if result["latency_ms"] is not None:
        lat = result["latency"]
        rows.append(f"latency {lat['median']:.2f} ms median (p90 {lat['p90']:.2f}, min {lat['min']:.2f}, "
                    f"std {lat['std']:.2f}) -> {result['images_per_second']:.1f} images/s; "
                    f"peak memory {result['peak_memory_mb']:.1f} MiB ({result['memory_kind']}); "
                    + ("optimized as yolo detect runs it" if result.get("optimized") else "the model as trained"))
        rows.append(f"machine {result['machine']}")
        rows.append("per-layer times: medians of separate runs timed with forward hooks; "
                    "their sum is near the latency, not equal to it")
    return "\n".join(rows)


def _load(path, cfg=None) -> Darknet:
    """A cfg (path or built-in name) -> an untrained ``Darknet``; anything else through ``load_model``."""
    from yolo.model.checkpoint import load_model

    if str(path).lower().endswith(".cfg") and cfg is None:
        return Darknet.from_cfg(path)
    return load_model(path, cfg=cfg)
