"""Export a model to ONNX or TorchScript with decoding inside, then prove the file computes what PyTorch does.

The exported graph is ``model.fuse()`` followed by ``model.decode``: input ``images [B, 3, H, W]`` RGB float in
[0, 1], output ``[B, N, 5+C]``. With ``nms=True`` (ONNX only) the graph ends in NMS and outputs ``detections
[K, 7]``. Files are written to a temporary name, loaded back (onnxruntime / ``torch.jit.load``), compared with
PyTorch (see :mod:`yolo.export.verify`) and only then renamed into place; a file that fails is deleted.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torchvision.ops import batched_nms

from yolo import __version__
from yolo.errors import InputError, option, positive_int, warn
from yolo.export.verify import (
    DRIFT_FACTOR,
    MAX_DRIFT_TOLERANCE,
    TOLERANCE,
    TOLERANCE_HALF,
    decoded_max_diff,
    detections_max_diff,
    verification_batch,
)
from yolo.model.checkpoint import load_model
from yolo.model.darknet import Darknet
from yolo.runtime.exported import META_FORMAT, META_VERSION, TS_CONFIG, ExportedBackend, load_exported, require_onnx
from yolo.runtime.postprocess import MIN_BOX_SIZE
from yolo.utils.boxes import cxcywh_to_xyxy
from yolo.utils.files import missing_folders, remove_empty
from yolo.utils.sizes import check_img_size
from yolo.utils.temps import new_temp_file
from yolo.utils.text import count

DEFAULT_OPSET = 17  # the TorchScript-based exporter of torch 2.x supports 7..20; NMS needs >= 11
MIN_OPSET = 11
DEFAULT_CONF, DEFAULT_IOU = 0.25, 0.45  # the NMS inside an --nms graph
FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript"}


class ExportVerificationError(RuntimeError):
    """The exported file's outputs differ from PyTorch's (the file was deleted); the CLI exits 1."""


@dataclass
class ExportResult:
    path: Path
    max_diff: float  # the verification metric (see yolo.export.verify); <= tolerance
    tolerance: float
    metadata: dict = field(default_factory=dict)
    seconds: float = 0.0  # export plus verification
    note: str = ""  # what was verified, on which image

    def __str__(self) -> str:
        return (f"{self.path}: verified, max difference {self.max_diff:.3g} <= {self.tolerance:.3g} ({self.note}); "
                f"{self.seconds:.1f} s")


class DecodedModel(nn.Module):
    """``images [B, 3, H, W] -> [B, N, 5+C]``: the network followed by ``Darknet.decode``."""

    def __init__(self, model: Darknet):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.decode(self.model(images))


class NmsModel(nn.Module):
    """``images [B, 3, H, W] -> detections [K, 7]``: batch index, x1, y1, x2, y2 (input pixels), score, class.

    Each box keeps its best class (score = objectness * that class's probability); boxes with score >
    ``conf_thres`` and at least ``MIN_BOX_SIZE`` pixels wide and high once clipped to the input (the rule of
    :func:`yolo.runtime.postprocess.non_max_suppression` with ``image_size``) go through
    ``torchvision.ops.batched_nms`` per image and class (IoU > ``iou_thres`` suppressed), exported as ONNX
    NonMaxSuppression. Rows are in descending score over the whole batch. A float16 model's predictions go
    into the NMS, and come out, as float32: ONNX's NonMaxSuppression takes float32 only (and torch's CPU
    kernel no float16).
    """

    def __init__(self, model: Darknet, conf_thres: float, iou_thres: float):
        super().__init__()
        self.decoded = DecodedModel(model)
        self.conf_thres, self.iou_thres = conf_thres, iou_thres

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pred = self.decoded(images).float()  # [B, N, 5+C]
        b, n, k = pred.shape
        boxes = cxcywh_to_xyxy(pred[..., :4]).reshape(-1, 4)  # [B*N, 4]
        cls_prob, cls = pred[..., 5:].max(-1)  # [B, N] each
        score = (pred[..., 4] * cls_prob).reshape(-1)  # [B*N]
        cls = cls.reshape(-1)
        batch = torch.arange(b, device=images.device).view(b, 1).expand(b, n).reshape(-1)  # [B*N]
        h, w = images.shape[-2:]  # traced as the input's size, so dynamic exports follow it
        x1, y1, x2, y2 = boxes.unbind(-1)  # clipped extents: (x2 - x1) - overhang right - overhang left
        width = (x2 - x1) - torch.relu(x2 - w) - torch.relu(-x1)
        height = (y2 - y1) - torch.relu(y2 - h) - torch.relu(-y1)
        keep = (score > self.conf_thres) & (width >= MIN_BOX_SIZE) & (height >= MIN_BOX_SIZE)
        boxes, score, cls, batch = boxes[keep], score[keep], cls[keep], batch[keep]  # [M, ...]
        # the class offsets keep classes apart only for coordinates >= 0: boxes reaching past the top-left edge
        # are moved first (by 0 when none does), as yolo.utils.nms.batched_nms does for yolo detect
        shift = torch.cat((boxes.reshape(-1), boxes.new_zeros(1))).min()
        keep = batched_nms(boxes - shift, score, batch * (k - 5) + cls, self.iou_thres)  # [K]
        return torch.cat((batch[keep, None].to(pred.dtype), boxes[keep], score[keep, None],
                          cls[keep, None].to(pred.dtype)), 1)  # [K, 7]


def _metadata(model: Darknet, fmt: str, size: tuple[int, int], batch_size: int, dynamic: bool, half: bool,
              nms: bool, conf_thres: float, iou_thres: float) -> dict:
    meta = {
        "format": META_FORMAT, "format_version": META_VERSION, "toolkit_version": __version__,
        "export_format": fmt, "cfg_name": model.cfg_name or Path(model.spec.source).name,
        "names": list(model.names), "num_classes": model.num_classes, "stride": model.max_stride,
        "strides": [int(h.stride) for h in model.heads], "input_size": list(size), "batch_size": batch_size,
        "dynamic": dynamic, "half": half, "dtype": "float16" if half else "float32", "nms": nms,
        "input": "images [B, 3, H, W] RGB float in [0, 1], " + ("letterboxed" if model.letterbox else "stretched"),
        "letterbox": model.letterbox, "diou_beta": model.diou_beta,
        "output": ("detections [K, 7]: batch index, x1, y1, x2, y2, score, class" if nms else
                   "[B, N, 5+C]: cx, cy, w, h (input pixels), objectness, class probabilities"),
    }
    if nms:
        meta.update(conf_thres=conf_thres, iou_thres=iou_thres)
    return meta


def _onnx_bytes(wrapper: nn.Module, x: torch.Tensor, meta: dict, opset: int) -> bytes:
    """Trace ``wrapper`` with torch's TorchScript-based ONNX exporter and attach ``meta`` as metadata_props."""
    (onnx,) = require_onnx(need_runtime=False)
    out_name = "detections" if meta["nms"] else "output"
    axes = None
    if meta["dynamic"]:
        axes = {"images": {0: "batch", 2: "height", 3: "width"},
                out_name: {0: "detections"} if meta["nms"] else {0: "batch", 1: "boxes"}}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about shape checks frozen into the graph
        torch.onnx.export(wrapper, (x,), buf, dynamo=False, opset_version=opset, input_names=["images"],
                          output_names=[out_name], dynamic_axes=axes, do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    proto.producer_name, proto.producer_version = "yolo-toolkit", __version__
    for key, value in {**meta, "opset": opset}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    return proto.SerializeToString()


def _torchscript_bytes(wrapper: nn.Module, x: torch.Tensor, meta: dict) -> bytes:
    """``torch.jit.trace`` (shapes stay symbolic, so other sizes and batches run) with ``meta`` as config.json
    (its ``device``: where the file runs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, x, check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf, _extra_files={TS_CONFIG: json.dumps(meta)})
    return buf.getvalue()


def _check_args(fmt: str, batch_size: int, opset: int | None, nms: bool, conf: float | None, iou: float | None
                ) -> tuple[int, float, float]:
    """The checked opset, score and IoU thresholds (defaults filled in), or an ``InputError`` in one line."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}: expected onnx or torchscript")
    positive_int(batch_size, "batch_size")
    if fmt == "torchscript" and (nms or opset is not None):
        raise InputError(f"{option('nms', True)} and {option('opset')} apply to {option('format', 'onnx')} only")
    if not nms and (conf is not None or iou is not None):  # they were ignored without a word
        raise InputError(f"{option('conf_thres')} and {option('iou_thres')} set the NMS inside the graph: they go with "
                         f"{option('nms', True)}")
    conf = DEFAULT_CONF if conf is None else conf
    iou = DEFAULT_IOU if iou is None else iou
    if not (0 <= conf < 1 and 0 < iou <= 1):
        raise InputError(f"{option('conf_thres')} must be in [0, 1) and {option('iou_thres')} in (0, 1], got {conf}, "
                         f"{iou}")
    opset = DEFAULT_OPSET if opset is None else opset
    try:
        from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as max_opset
    except ImportError:
        max_opset = 20
    if not MIN_OPSET <= opset <= max_opset:
        raise InputError(f"{option('opset')} must be between {MIN_OPSET} and {max_opset} (this torch), got {opset}")
    return opset, conf, iou


def _resolve(weights_or_model, fmt: str, out, cfg, force: bool) -> tuple[Darknet, Path]:
    """The model (a private copy) and the output path; refuses to replace an existing file without ``force``."""
    if isinstance(weights_or_model, Darknet):
        model = copy.deepcopy(weights_or_model).cpu().float().eval()
        if model.names is None:
            from yolo.utils.names import default_names

            model.names = default_names(model.num_classes)
        if out is None:
            raise InputError("give the output path when exporting a model object")
    else:
        model = load_model(weights_or_model, cfg=cfg)
        out = Path(weights_or_model).with_suffix(FORMATS[fmt]) if out is None else out
    out = Path(out)
    if out.suffix.lower() != FORMATS[fmt]:
        raise InputError(f"the output of {option('format', fmt)} must end in {FORMATS[fmt]}", str(out))
    if out.is_dir():
        raise InputError("is a folder; give the path of the file to write", str(out))
    if out.exists() and not force:
        raise InputError(f"output exists; pass {option('force', True)} to replace it", str(out))
    return model, out


def _sizes(size: tuple[int, int], batch: int, stride: int, dynamic: bool) -> list[tuple[int, int, int]]:
    """(batch, H, W) to verify at: the export's, plus for dynamic exports another batch and size."""
    sizes = [(batch, *size)]
    if dynamic:
        sizes.append((batch + 1, max(stride, size[0] - stride), size[1] + stride))
    return sizes


@torch.no_grad()
def float32_drift(model: Darknet, x: torch.Tensor) -> float:
    """How far the float32 ``model``'s decoded output on ``x [B, 3, H, W]`` is from the same model's in float64
    (the verification metric, float64 as the truth): the float32 rounding that no export can be judged by."""
    exact = DecodedModel(copy.deepcopy(model).double().eval())(x.double())
    return decoded_max_diff(exact, DecodedModel(model)(x.float()), tuple(x.shape[-2:]))[0]


@torch.no_grad()
def verify(backend: ExportedBackend, reference: nn.Module, sizes: list[tuple[int, int, int]], tol: float,
           drift: Callable[[torch.Tensor], float] | None = None) -> tuple[float, str, float]:
    """Run ``backend`` and the float32 PyTorch ``reference`` (on CPU) on the verification image at each
    (batch, H, W) -> (max_diff, description, tolerance used). Raises ExportVerificationError when max_diff >
    the tolerance: ``tol``, or with ``drift`` (the reference's own float32 error on an input, see
    :func:`float32_drift`), measured once where ``tol`` is exceeded, ``max(tol, DRIFT_FACTOR * drift)``."""
    worst, notes, raised = 0.0, [], None
    for b, h, w in sizes:
        x, what = verification_batch((h, w), b)  # [b, 3, h, w]
        ref = reference(x)
        try:
            out = backend(x).cpu()
        except Exception as e:  # e.g. onnxruntime without a kernel for this dtype on this device
            raise ExportVerificationError(f"the exported file failed to run ({type(e).__name__}: "
                                          f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''})")
        if backend.has_nms:
            diff, note = detections_max_diff(ref, out, (h, w), backend.metadata["conf_thres"],
                                             backend.metadata["iou_thres"], tol)
            note = count(len(ref), "detection") + (f", {note}" if note else "")
            if not len(ref) and not len(out):  # nothing compared: say so rather than "max difference 0"
                note += (f" on either side: the NMS was not exercised on this image (a lower "
                         f"{option('conf_thres')} would)")
        else:
            diff, note = decoded_max_diff(ref, out, (h, w))
        if diff > tol and drift is not None and raised is None and math.isfinite(diff):
            own = drift(x)
            raised = f"tolerance raised to {DRIFT_FACTOR} x {own:.3g}: the float32 model's own error against float64"
            if tol < DRIFT_FACTOR * own <= MAX_DRIFT_TOLERANCE:
                tol = DRIFT_FACTOR * own
                notes.insert(0, raised)
            else:  # within float32 rounding (a real difference), or a model too unstable to judge: say which
                raised = (f"the float32 model's own error against float64 is {own:.3g}"
                          + ("" if DRIFT_FACTOR * own <= tol else
                             f"; over {MAX_DRIFT_TOLERANCE:g} the bound is not raised: {option('tolerance')} sets it"))
        if not diff <= tol:  # NaN fails too
            what_failed = (f"at batch {b}, {h}x{w}, {note}" if diff == math.inf and note else  # not a number
                           f"max difference {diff:.3g} > tolerance {tol:.3g} at batch {b}, {h}x{w}"
                           + (f": {note}" if note else ""))
            raise ExportVerificationError(what_failed + (f" ({raised})" if raised else ""))
        worst = max(worst, diff)
        notes.append(f"batch {b} at {h}x{w}" + (f" ({note})" if note else ""))
    return worst, f"{what}, " + "; ".join(notes), tol


@contextlib.contextmanager
def _temp_next_to(out: Path):
    """A temporary path in ``out``'s folder, removed unless it was renamed away; locked while it is used, and
    the ones of earlier exports to ``out`` that a kill cut short are removed first (:mod:`yolo.utils.temps`)."""
    made = missing_folders(out)  # the folders made for it
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = new_temp_file(out)
    except OSError as e:
        remove_empty(made)
        raise InputError(f"cannot write here ({e.strerror or e})", str(out)) from None
    done = False
    try:
        yield Path(tmp)
        done = True
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if not done:  # nothing written: no folders either
            remove_empty(made)


def _write_verified(data: bytes, out: Path, fmt: str, device: torch.device, check, force: bool):
    """Write ``data`` to a temporary file, fsync, ``check(backend)`` it, then rename it to ``out``."""
    with _temp_next_to(out) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        result = check(load_exported(tmp, device, fmt=fmt))
        if out.exists() and not force:
            raise InputError(f"output appeared while exporting; pass {option('force', True)} to replace it", str(out))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; give the file the mode open() would
        try:
            os.replace(tmp, out)
        except OSError as e:
            raise InputError(f"cannot write here ({e.strerror or e})", str(out)) from None
    return result


def export_model(weights_or_model, format: str, out=None, img_size=416, batch_size: int = 1,
                 dynamic: bool = False, half: bool = False, opset: int | None = None, nms: bool = False,
                 cfg=None, force: bool = False, conf_thres: float | None = None, iou_thres: float | None = None,
                 device: str | torch.device = "cpu", tolerance: float | None = None) -> ExportResult:
    """Export ``weights_or_model`` (a path ``load_model`` reads, or a ``Darknet``) to ``out`` and verify it.

    ``img_size``: int or (H, W), multiples of the model's stride. ``conf_thres`` / ``iou_thres``: the NMS inside
    the graph (with ``nms`` only; default 0.25 / 0.45). ``device``: where the graph is traced
    (TorchScript files run on that device type only). ``tolerance``: the verification's bound (None: 1e-4 for
    float32, raised to 3x the float32 model's own error against float64 where that is larger; 0.1 for ``half``).
    Returns an ExportResult; raises InputError for bad arguments and ExportVerificationError (nothing written)
    when the file disagrees with PyTorch.
    """
    start = time.perf_counter()
    opset, conf_thres, iou_thres = _check_args(format, batch_size, opset, nms, conf_thres, iou_thres)
    model, out = _resolve(weights_or_model, format, out, cfg, force)
    size = check_img_size(img_size)  # an int or (H, W), else one line saying so
    if size[0] % model.max_stride or size[1] % model.max_stride:
        raise InputError(f"{option('img_size')} {size} must be positive multiples of {model.max_stride}")
    if format == "onnx":
        require_onnx()
    device = torch.device(device)
    meta = _metadata(model, format, size, batch_size, dynamic, half, nms, conf_thres, iou_thres)
    if nms and model.diou_beta is not None:
        warn(f"the cfg asks for darknet's DIoU-NMS (nms_kind, beta {model.diou_beta:g}); the graph's NMS is ONNX's "
             "NonMaxSuppression, IoU NMS, so its detections can differ from yolo detect's (export without "
             f"{option('nms', True)} to keep DIoU-NMS)")
    reference = NmsModel(model, conf_thres, iou_thres) if nms else DecodedModel(model)
    # an inference graph: parameters without requires_grad, so the file runs outside no_grad (torch.jit.load,
    # .numpy()) without building an autograd graph
    fused = copy.deepcopy(model).fuse().to(device, torch.float16 if half else torch.float32).requires_grad_(False)
    wrapper = (NmsModel(fused, conf_thres, iou_thres) if nms else DecodedModel(fused)).eval()
    x = verification_batch(size, batch_size)[0].to(device, torch.float16 if half else torch.float32)
    if format == "torchscript":
        meta["device"] = str(x.device)  # a traced file runs on this device type only (ONNX graphs run anywhere)
    data = _onnx_bytes(wrapper, x, meta, opset) if format == "onnx" else _torchscript_bytes(wrapper, x, meta)
    del fused, wrapper
    if tolerance is not None and not tolerance > 0:
        raise InputError(f"{option('tolerance')} must be > 0, got {tolerance}")
    tol = tolerance or (TOLERANCE_HALF if half else TOLERANCE)
    drift = (lambda x: float32_drift(model, x)) if tolerance is None and not half else None
    sizes = _sizes(size, batch_size, model.max_stride, dynamic)
    max_diff, note, tol = _write_verified(data, out, format, device, lambda b: verify(b, reference, sizes, tol, drift),
                                          force)
    if format == "onnx":
        meta["opset"] = opset
    return ExportResult(out, max_diff, tol, meta, time.perf_counter() - start, note)
