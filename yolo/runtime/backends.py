"""Backends: what every task runs a model through.

A *backend* runs the network: ``backend(x [B, 3, H, W] float in [0, 1]) -> [B, N, 5+C]`` decoded
(cx, cy, w, h in input pixels, objectness, class probabilities), with attributes ``names``, ``stride``,
``fixed_shape`` ((H, W) or None), ``device``, ``dtype`` and optionally ``letterbox`` (the resize the model
wants: True letterbox, False stretch; :func:`wants_letterbox` reads it, True when absent) and ``diou_beta`` (the
NMS it wants: darknet's DIoU-NMS at that beta, None or absent for IoU NMS). :class:`TorchBackend` runs our models;
``.onnx`` / ``.torchscript`` files go to :func:`yolo.runtime.exported.load_exported`.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Sequence

import torch

from yolo.errors import InputError, not_a_weights_file, option, warn
from yolo.model.checkpoint import load_model
from yolo.model.darknet import Darknet
from yolo.model.inference import prepare_for_inference
from yolo.runtime.preprocess import check_input
from yolo.utils.device import half_dtype, select_device, warn_slow_half
from yolo.utils.names import default_names, load_names
from yolo.utils.sizes import default_img_size, round_to_stride
from yolo.utils.text import count

EXPORTED_SUFFIXES = (".onnx", ".torchscript")


class TorchBackend:
    """A ``Darknet`` on ``device``, BN folded into the convs, channels-last on CPU, in ``dtype``.
    The network runs in ``dtype``; decoding runs in float32 (pixel coordinates need the precision). The model
    is changed in place (folded, convs swapped): give it a copy to keep the original (``load_backend`` does).

    ``winograd`` (default: on for float32 on CPU) computes the 3x3 stride-1 convs with 64 or more input
    channels by Winograd's algorithm (``yolo.model.winograd``; its transforms as C kernels built at first use
    where a C compiler is found, with the leaky ReLU fused): 1.3-2x faster on those layers, results equal to
    the direct convolution within about 1e-5 relative. ``self.winograd`` is the number of convs swapped. With
    it, where the native matrix product is built, the 1x1 and strided convs with 128 or more inputs run as
    implicit GEMMs in C (``yolo.model.native_conv``; their leaky ReLU fused); ``winograd=False`` turns both off.

    ``cpu_batch``: on CPU a batch of B > 1 images may run faster as B forwards of one image (smaller working
    sets stay in cache) or slower (more, smaller products); which one depends on the CPU. ``None`` (default)
    decides by the running CPU, so a machine always gives the same digits for the same input: one image per
    forward where torch runs AVX-512 kernels (measured faster there: 291 against 336 ms per yolov3 image),
    the whole batch elsewhere (faster on AVX2: 4354 against 5242 ms per image under load). ``"auto"``
    measures it per input shape: the first four calls of a shape alternate the two ways (two warm-ups, two
    timed), and later calls take the faster (``self.batch_plan``: ``(B, H, W)`` -> images per forward); its
    results can then differ between runs in the last float digits. An int fixes the images per forward.
    """

    fixed_shape = None
    TRIALS = 4  # calls of a shape that try both ways: warm-up whole, warm-up split, timed whole, timed split

    def __init__(self, model: Darknet, device: str | torch.device = "cpu", half: bool = False,
                 winograd: bool | None = None, cpu_batch: int | str | None = None):
        self.device = select_device(str(device))
        self.dtype = half_dtype(self.device) if half else torch.float32
        self.model, self.memory_format, self.winograd = prepare_for_inference(model, self.device, self.dtype, winograd)
        self.names = list(model.names or default_names(model.num_classes))  # as load_model names a .weights
        self.stride = model.max_stride
        self.num_classes = model.num_classes
        self.letterbox = model.letterbox  # the resize the model wants (its cfg's [net] letter_box)
        self.diou_beta = model.diou_beta  # the NMS it wants (its cfg's nms_kind): DIoU at this beta, None IoU
        self.cpu_batch = _cpu_batch(cpu_batch)  # images per forward on CPU; None: measured per shape
        self.batch_plan: dict[tuple[int, int, int], int] = {}  # (B, H, W) -> images per forward, once measured
        self._trials: dict[tuple[int, int, int], list[tuple[int, float]]] = {}  # (B, H, W) -> [(chunk, seconds)]

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` float in [0, 1] -> ``[B, N, 5+C]`` float32 (anything else: ``InputError``)."""
        check_input(x)
        x = x.to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
        b, _, h, w = x.shape
        if b == 1 or self.device.type != "cpu":
            return self._forward(x)
        if self.cpu_batch is not None:
            return self._forward_chunked(x, self.cpu_batch)
        key = (b, h, w)
        if key in self.batch_plan:
            return self._forward_chunked(x, self.batch_plan[key])
        return self._trial(x, key)

    def _trial(self, x: torch.Tensor, key: tuple[int, int, int]) -> torch.Tensor:
        """One of the first ``TRIALS`` calls of a shape: whole or split by turns, timed; then the plan."""
        trials = self._trials.setdefault(key, [])
        chunk = len(x) if len(trials) % 2 == 0 else 1
        t0 = time.perf_counter()
        out = self._forward_chunked(x, chunk)
        trials.append((chunk, time.perf_counter() - t0))
        if len(trials) >= self.TRIALS:
            timed = dict(trials[2:])  # {chunk: seconds} of the calls after the warm-ups
            self.batch_plan[key] = min(timed, key=timed.get)
        return out

    def _forward_chunked(self, x: torch.Tensor, chunk: int) -> torch.Tensor:
        """``[B, 3, H, W]`` -> ``[B, N, 5+C]`` in forwards of ``chunk`` images."""
        if chunk >= len(x):
            return self._forward(x)
        return torch.cat([self._forward(part) for part in x.split(chunk)])

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in ``dtype`` and ``memory_format`` -> ``[B, N, 5+C]`` float32. The backend's own
        precision holds inside a caller's ``torch.autocast`` (which broke the Winograd convs' float32 buffers:
        ``half=True`` is the way to ask for reduced precision)."""
        with torch.autocast(self.device.type, enabled=False):
            raw = self.model(x)  # [[B, A, H/s, W/s, 5+C] per head]
            return self.model.decode([r.float() for r in raw])


def _cpu_batch(value: int | str | None) -> int | None:
    """``TorchBackend``'s ``cpu_batch`` -> images per forward (a large number: the whole batch), or None for
    the measured plan ("auto")."""
    if value == "auto":
        return None
    if value is None:
        return 1 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 1 << 30
    if isinstance(value, str) or value < 1:
        raise InputError(f"cpu_batch must be >= 1, None or 'auto', got {value!r}")
    return int(value)


def wants_letterbox(backend) -> bool:
    """The resize ``backend``'s model was trained with: True letterbox (also when the backend does not say),
    False stretch."""
    return bool(getattr(backend, "letterbox", True))


def wanted_diou_beta(backend) -> float | None:
    """The NMS ``backend``'s model asks for: darknet's DIoU-NMS at this beta (its cfg's ``nms_kind=greedynms`` /
    ``diounms``), or None for IoU NMS (also when the backend does not say)."""
    beta = getattr(backend, "diou_beta", None)
    return None if beta is None else float(beta)


def input_size(backend, size: tuple[int, int] | None) -> tuple[int, int]:
    """The (H, W) to run ``backend`` at: ``size`` rounded up to multiples of the model's stride (with a warning),
    or the fixed (H, W) of an export that takes only that (with a warning when they differ); ``size`` None (not
    asked for): the export's own size, else ``default_img_size``: 416 rounded up to the stride (448 for a
    stride-64 model), without a word."""
    fixed = getattr(backend, "fixed_shape", None)
    stride = int(getattr(backend, "stride", 1) or 1)
    if size is None:
        return tuple(fixed) if fixed is not None else default_img_size(stride)
    if fixed is None:
        return round_to_stride(tuple(size), stride)
    if tuple(fixed) == tuple(size):
        return tuple(size)
    warn(f"this exported model takes {fixed[0]}x{fixed[1]} inputs; using that size")
    return tuple(fixed)


def run_backend(backend, x: torch.Tensor) -> torch.Tensor:
    """``backend(x)`` ``[B, 3, H, W] -> [B, N, 5+C]``; a backend with a ``fixed_batch`` (static export) gets
    chunks of exactly that size, the last one padded with zeros (their rows are dropped)."""
    fixed = getattr(backend, "fixed_batch", None)
    if not fixed or fixed == len(x):
        return backend(x)
    out = []
    for chunk in x.split(fixed):
        pad = fixed - len(chunk)
        if pad:
            chunk = torch.cat((chunk, chunk.new_zeros(pad, *chunk.shape[1:])))
        out.append(backend(chunk)[:fixed - pad])
    return torch.cat(out)


BACKEND_ATTRIBUTES = ("names", "stride", "fixed_shape")  # what Detector reads, besides __call__


def load_backend(weights, cfg: str | Path | None = None, device: str = "cpu", half: bool = False,
                 names: str | Path | Sequence[str] | None = None, trust: bool = False):
    """A backend for ``weights``: a backend object (returned as is), a ``Darknet``, or a file: our ``.pt``,
    a darknet ``.weights`` (with ``cfg``), another toolkit's checkpoint (with ``cfg``), ``.onnx``/``.torchscript``
    (``trust``: also a ``.torchscript`` without our export metadata, whose code then runs)."""
    if callable(weights) and hasattr(weights, "stride") and not isinstance(weights, Darknet):
        missing = [a for a in BACKEND_ATTRIBUTES if not hasattr(weights, a)]
        if missing:
            raise InputError(f"a backend object needs the attributes {', '.join(BACKEND_ATTRIBUTES)}; "
                             f"{type(weights).__name__} lacks {', '.join(missing)}")
        return weights
    if not isinstance(weights, (str, Path, Darknet)):
        raise InputError(f"weights must be a file path (.pt, .weights with a cfg, .onnx, .torchscript), a Darknet or "
                         f"a backend object; got {type(weights).__name__}")
    if isinstance(weights, Darknet):
        backend = TorchBackend(copy.deepcopy(weights), device, half)  # fusing must not change the caller's model
    elif str(weights).lower().endswith(EXPORTED_SUFFIXES):
        if not Path(weights).is_file():
            raise InputError(not_a_weights_file(weights), str(weights))
        from yolo.runtime.exported import load_exported  # onnxruntime only when an .onnx is asked for

        backend = load_exported(str(weights), str(device), trust=trust)
        if half:  # an export runs in the precision it was exported in; --half asked for nothing it could do
            if backend.dtype == torch.float32:
                warn(f"{weights}: {option('half')} does not apply to an exported model, which runs in the "
                     f"precision it was exported in (float32); export it with {option('half')} for float16")
            half = False
        if getattr(backend, "has_nms", False):
            nms = option("nms", True)
            raise InputError(f"exported with {nms}: its output is final detections [K, 7], not the predictions "
                             f"[B, N, 5+C] that detect and val filter themselves; export it again without {nms}",
                             str(weights))
    else:
        names_file = names if isinstance(names, (str, Path)) else None
        backend = TorchBackend(load_model(weights, cfg=cfg, names=names_file), device, half)
    if half and torch.device(backend.device).type == "cpu":
        warn_slow_half(torch.device(backend.device))
    if names is not None:
        names = load_names(names) if isinstance(names, (str, Path)) else list(names)
        if backend.names and len(names) != len(backend.names):
            raise InputError(f"{count(len(names), 'class name')} for a model with {count(len(backend.names), 'class')}")
        backend.names = names
    return backend
