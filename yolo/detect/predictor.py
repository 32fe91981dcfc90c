"""``Detector``: pictures in, ``Detections`` out; ``Detector.run`` is what ``yolo detect`` calls.

A *backend* runs the network: ``backend(x [B, 3, H, W] float in [0, 1]) -> [B, N, 5+C]`` decoded
(cx, cy, w, h in input pixels, objectness, class probabilities), with attributes ``names``, ``stride``,
``fixed_shape`` ((H, W) or None), ``device`` and ``dtype``. :class:`TorchBackend` runs our models;
``.onnx`` / ``.torchscript`` files go to ``yolo.export.load_exported``.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from yolo.data.augment import letterbox
from yolo.errors import InputError
from yolo.model.checkpoint import load_model
from yolo.model.darknet import Darknet
from yolo.model.inference import prepare_for_inference
from yolo.postprocess import check_thresholds, postprocess
from yolo.sources import read_image, to_bgr8
from yolo.utils.boxes import LetterboxInfo, xyxy_to_xywh
from yolo.utils.device import half_dtype, half_warning, select_device, synchronize
from yolo.utils.names import load_names

EXPORTED_SUFFIXES = (".onnx", ".torchscript")


class TorchBackend:
    """A ``Darknet`` on ``device``, BN folded into the convs, channels-last on CPU, in ``dtype``.
    The network runs in ``dtype``; decoding runs in float32 (pixel coordinates need the precision).

    ``winograd`` (default: on for float32 on CPU) computes the 3x3 stride-1 convs with 128 or more input
    channels by Winograd's algorithm (``yolo.model.winograd``): about 2x faster on those layers, results equal
    to the direct convolution within about 1e-5 relative. ``self.winograd`` is the number of convs swapped.
    """

    fixed_shape = None

    def __init__(self, model: Darknet, device: str | torch.device = "cpu", half: bool = False,
                 winograd: bool | None = None):
        self.device = select_device(str(device))
        self.dtype = half_dtype(self.device) if half else torch.float32
        self.model, self.memory_format, self.winograd = prepare_for_inference(model, self.device, self.dtype, winograd)
        self.names = list(model.names or [])
        self.stride = model.max_stride
        self.num_classes = model.num_classes

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` float in [0, 1] -> ``[B, N, 5+C]`` float32."""
        x = x.to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
        raw = self.model(x)  # [[B, A, H/s, W/s, 5+C] per head]
        return self.model.decode([r.float() for r in raw])


def _run_backend(backend, x: torch.Tensor) -> torch.Tensor:
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


def load_backend(weights, cfg: str | Path | None = None, device: str = "cpu", half: bool = False,
                 names: str | Path | Sequence[str] | None = None):
    """A backend for ``weights``: a backend object (returned as is), a ``Darknet``, or a file: our ``.pt``,
    a darknet ``.weights`` (with ``cfg``), another toolkit's checkpoint (with ``cfg``), ``.onnx``/``.torchscript``."""
    if callable(weights) and hasattr(weights, "stride") and not isinstance(weights, Darknet):
        return weights
    if isinstance(weights, Darknet):
        backend = TorchBackend(copy.deepcopy(weights), device, half)  # fusing must not change the caller's model
    elif str(weights).lower().endswith(EXPORTED_SUFFIXES):
        if not Path(weights).is_file():
            raise InputError("weights file not found", str(weights))
        from yolo.exported import load_exported  # onnxruntime only when an .onnx is asked for

        backend = load_exported(str(weights), str(device))
    else:
        names_file = names if isinstance(names, (str, Path)) else None
        backend = TorchBackend(load_model(weights, cfg=cfg, names=names_file), device, half)
    if half and torch.device(backend.device).type == "cpu":
        warning = half_warning(torch.device(backend.device))
        if warning:
            print(warning, file=sys.stderr)
    if names is not None:
        names = load_names(names) if isinstance(names, (str, Path)) else list(names)
        if backend.names and len(names) != len(backend.names):
            raise InputError(f"{len(names)} class names for a model with {len(backend.names)} classes")
        backend.names = names
    return backend


@dataclass
class Detections:
    """One image's detections: ``boxes [K, 4]`` x1, y1, x2, y2 in the original image's pixels, ``scores [K]``,
    ``classes [K]`` (int64), best first. ``shape`` is the original (h, w); ``names`` the model's class names."""

    boxes: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor
    names: list[str]
    path: str | None = None
    shape: tuple[int, int] = (0, 0)
    frame: int = 0  # frame number for video sources
    times: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_tensor(cls, det: torch.Tensor, names: list[str], path: str | None, shape: tuple[int, int],
                    frame: int = 0) -> "Detections":
        """From a postprocess row block ``[K, 6]`` (x1, y1, x2, y2, score, class)."""
        det = det.detach().float().cpu()
        return cls(det[:, :4], det[:, 4], det[:, 5].long(), names, path, tuple(shape), frame)

    def __len__(self) -> int:
        return len(self.scores)

    def __repr__(self) -> str:
        return f"Detections({len(self)} boxes, path={self.path!r}, shape={self.shape})"

    def tensor(self) -> torch.Tensor:
        """``[K, 6]`` x1, y1, x2, y2, score, class."""
        return torch.cat((self.boxes, self.scores[:, None], self.classes[:, None].float()), 1)

    def labels(self) -> list[str]:
        return [self.names[c] if c < len(self.names) else str(c) for c in self.classes.tolist()]

    def to_json(self, file_name: str | None = None) -> list[dict]:
        """COCO-style results: ``{"file_name", "category_id" (class index), "bbox": [x, y, w, h] pixels,
        "score"}`` per detection."""
        name = file_name or (Path(self.path).name if self.path else "")
        xywh = xyxy_to_xywh(self.boxes).tolist()
        return [{"file_name": name, "category_id": int(c), "bbox": [round(v, 3) for v in b], "score": round(s, 5)}
                for b, s, c in zip(xywh, self.scores.tolist(), self.classes.tolist())]

    def to_txt(self) -> str:
        """YOLO txt lines ``class cx cy w h conf`` normalized by the image size."""
        h, w = self.shape
        lines = []
        for (x1, y1, x2, y2), s, c in zip(self.boxes.tolist(), self.scores.tolist(), self.classes.tolist()):
            cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
            lines.append(f"{c} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f} {s:.5f}\n")
        return "".join(lines)


def preprocess(images: Sequence[np.ndarray], size: tuple[int, int]) -> tuple[torch.Tensor, list[LetterboxInfo]]:
    """BGR ``[h, w, 3]`` uint8 images -> letterboxed RGB ``[B, 3, H, W]`` float in [0, 1] and their infos."""
    boxed, infos = letterbox_images(images, size)
    return to_input(boxed), infos


def letterbox_images(images: Sequence[np.ndarray], size: tuple[int, int]) -> tuple[np.ndarray, list[LetterboxInfo]]:
    """BGR ``[h, w, 3]`` uint8 images -> letterboxed BGR ``[B, H, W, 3]`` uint8 and their infos (OpenCV only:
    no torch threads, so a reader thread can run it beside the network)."""
    boxed, infos = [], []
    for img in images:
        lb, info = letterbox(img, size)  # [H, W, 3]
        boxed.append(lb)
        infos.append(info)
    return np.stack(boxed), infos


def to_input(boxed: np.ndarray) -> torch.Tensor:
    """Letterboxed BGR ``[B, H, W, 3]`` uint8 -> RGB ``[B, 3, H, W]`` float in [0, 1]."""
    x = torch.from_numpy(boxed[..., ::-1].copy())  # [B, H, W, 3] RGB uint8
    return x.permute(0, 3, 1, 2).float().div_(255)  # [B, 3, H, W]


def _as_image(item) -> tuple[np.ndarray, str | None]:
    """A path or an array -> (BGR ``[h, w, 3]`` uint8, path or None); unreadable files are an InputError."""
    if isinstance(item, np.ndarray):
        return to_bgr8(item), None
    img = read_image(item)
    if img is None:
        raise InputError("cannot read image" if Path(item).is_file() else "image not found", str(item))
    return img, str(item)


class Detector:
    """Detect objects with a YOLO model.

    ``weights``: our ``.pt``, a darknet ``.weights`` (with ``cfg``), another toolkit's checkpoint (with
    ``cfg``), ``.onnx``/``.torchscript`` (through ``yolo.export``), a ``Darknet`` or a backend object.
    ``img_size``: int or (H, W), multiples of the model stride. Scores are objectness x class probability;
    ``conf`` and ``iou`` in [0, 1]; ``classes`` keeps only those class indices; ``agnostic`` runs NMS across
    classes. ``half``: bfloat16 on CPU, float16 on CUDA. ``names``: list or names file (default: the model's).
    """

    def __init__(self, weights, cfg=None, img_size=416, conf=0.25, iou=0.45, classes=None, agnostic=False,
                 max_det=300, device="cpu", half=False, names=None):
        check_thresholds(conf, iou, max_det)
        self.backend = load_backend(weights, cfg, device, half, names)
        self.img_size = self._size(img_size)
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.classes = None if classes is None else [int(c) for c in classes]
        self.agnostic = agnostic

    def _size(self, img_size) -> tuple[int, int]:
        h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        fixed = self.backend.fixed_shape
        if fixed is not None and tuple(fixed) != (h, w):
            print(f"warning: this exported model takes {fixed[0]}x{fixed[1]} inputs; using that size",
                  file=sys.stderr)
            return tuple(fixed)
        s = self.backend.stride
        if h <= 0 or w <= 0 or h % s or w % s:
            raise InputError(f"image size {h}x{w} must be positive multiples of the model stride {s}")
        return h, w

    @property
    def names(self) -> list[str]:
        return self.backend.names

    def detect_batch(self, images: Sequence[np.ndarray], paths: Sequence[str | None] = (),
                     frames: Sequence[int] = ()) -> tuple[list[Detections], dict]:
        """BGR uint8 images -> their Detections and the seconds spent in ``pre``, ``infer`` and ``post``."""
        t0 = time.perf_counter()
        x, infos = preprocess(images, self.img_size)  # [B, 3, H, W]
        pre = time.perf_counter() - t0
        dets, seconds = self.detect_letterboxed(x, infos, paths, frames)
        return dets, {"pre": pre, **seconds}

    def detect_letterboxed(self, x: torch.Tensor, infos: Sequence[LetterboxInfo], paths: Sequence[str | None] = (),
                           frames: Sequence[int] = ()) -> tuple[list[Detections], dict]:
        """``x [B, 3, H, W]`` and ``infos`` from :func:`preprocess` (of ``self.img_size``) -> Detections and
        the seconds spent in ``infer`` and ``post`` (``yolo detect`` letterboxes ahead, in a reader thread)."""
        t1 = time.perf_counter()
        pred = _run_backend(self.backend, x)  # [B, N, 5+C]
        synchronize(pred.device)
        t2 = time.perf_counter()
        dets = postprocess(pred, infos, self.conf, self.iou, self.classes, self.agnostic, self.max_det)
        out = [Detections.from_tensor(d, self.names, (list(paths) + [None] * len(x))[i], info.shape,
                                      (list(frames) + [0] * len(x))[i])
               for i, (d, info) in enumerate(zip(dets, infos))]
        t3 = time.perf_counter()
        return out, {"infer": t2 - t1, "post": t3 - t2}

    def __call__(self, images, batch_size: int = 8) -> list[Detections]:
        """``images``: one BGR array ``[h, w(, 3|4)]`` (uint8/uint16, as ``cv2.imread`` gives), one path, or a
        list of them -> one :class:`Detections` per image, in order."""
        if isinstance(images, (np.ndarray, str, Path)):
            images = [images]
        if batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        results = []
        for start in range(0, len(images), batch_size):
            loaded = [_as_image(item) for item in images[start:start + batch_size]]
            dets, _ = self.detect_batch([img for img, _ in loaded], [p for _, p in loaded])
            results += dets
        return results

    def run(self, source, out: str | Path = "runs/detect/exp", save_txt: bool = False, save_json: bool = False,
            save_crop: bool = False, nosave: bool = False, batch_size: int = 8, progress: bool = True,
            increment: bool = True) -> dict:
        """Detect on every frame of ``source`` (path, folder, glob, list file, video, camera index, URL or a
        ``yolo.sources.Source``) and write results into a new run folder (``out``, ``out2``, ... unless
        ``increment=False``, then ``out`` must exist). Returns the summary dict (see ``yolo.detect_io``)."""
        from yolo.detect_io import run_detection

        return run_detection(self, source, out, save_txt=save_txt, save_json=save_json, save_crop=save_crop,
                             nosave=nosave, batch_size=batch_size, progress=progress, increment=increment)
