"""``Detector``: pictures in, ``Detections`` out; ``Detector.run`` is what ``yolo detect`` calls.

Backends (what runs the network) live in ``yolo.runtime.backends``; pre- and post-processing in
``yolo.runtime.preprocess`` / ``yolo.runtime.postprocess``.
"""

from __future__ import annotations

import numbers
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from yolo.errors import InputError, option, positive_int
from yolo.runtime.backends import input_size, load_backend, run_backend, wanted_diou_beta, wants_letterbox
from yolo.runtime.postprocess import check_thresholds, postprocess
from yolo.runtime.preprocess import as_image, preprocess
from yolo.utils.boxes import LetterboxInfo, xyxy_to_xywh
from yolo.utils.device import synchronize
from yolo.utils.sizes import check_img_size
from yolo.utils.text import count


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
        return f"Detections({count(len(self), 'box')}, path={self.path!r}, shape={self.shape})"

    def tensor(self) -> torch.Tensor:
        """``[K, 6]`` x1, y1, x2, y2, score, class."""
        return torch.cat((self.boxes, self.scores[:, None], self.classes[:, None].float()), 1)

    def labels(self) -> list[str]:
        return [self.names[c] if c < len(self.names) else str(c) for c in self.classes.tolist()]

    def to_json(self, file_name: str | None = None) -> list[dict]:
        """COCO-style results: ``{"file_name", "category_id" (class index), "bbox": [x, y, w, h] pixels,
        "score"}`` per detection, plus ``"path"`` (the source as given; bytes of a name that is not valid UTF-8
        as ``\\xNN``) when the image came from a file. ``file_name``: default the path's name."""
        name = file_name or (Path(self.path).name if self.path else "")
        where = {"path": os.fsencode(self.path).decode("utf-8", "backslashreplace")} if self.path else {}
        xywh = xyxy_to_xywh(self.boxes).tolist()
        return [{"file_name": name, "category_id": int(c), "bbox": [round(v, 3) for v in b], "score": round(s, 5),
                 **where} for b, s, c in zip(xywh, self.scores.tolist(), self.classes.tolist())]

    def to_txt(self) -> str:
        """YOLO txt lines ``class cx cy w h conf`` normalized by the image size."""
        h, w = self.shape
        lines = []
        for (x1, y1, x2, y2), s, c in zip(self.boxes.tolist(), self.scores.tolist(), self.classes.tolist()):
            cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
            lines.append(f"{c} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f} {s:.5f}\n")
        return "".join(lines)


class Detector:
    """Detect objects with a YOLO model.

    ``weights``: our ``.pt``, a darknet ``.weights`` (with ``cfg``), another toolkit's checkpoint (with
    ``cfg``), ``.onnx``/``.torchscript`` (through ``yolo.export``), a ``Darknet`` or a backend object.
    ``img_size``: int or (H, W), rounded up to multiples of the model stride with a warning (None: 416, rounded
    up to the stride, or a fixed-size export's own).
    Scores are objectness x class probability; ``conf`` and ``iou`` in [0, 1]; ``classes`` keeps only those
    classes (indices or names, one or a list); ``agnostic`` runs NMS across classes. ``half``: bfloat16 on
    CPU, float16 on CUDA. ``names``: list or names file (default: the model's).
    ``trust``: load a ``.torchscript`` without our export metadata (it runs the file's code).
    ``letterbox``: True letterboxes the images (aspect kept, padded), False stretches them to ``img_size``;
    None (default) does what the model wants (``model.letterbox``: its cfg's ``[net] letter_box``).
    """

    def __init__(self, weights, cfg=None, img_size=None, conf=0.25, iou=0.45, classes=None, agnostic=False,
                 max_det=300, device="cpu", half=False, names=None, trust=False, letterbox: bool | None = None):
        check_thresholds(conf, iou, max_det)
        self.backend = load_backend(weights, cfg, device, half, names, trust)
        self.letterbox = wants_letterbox(self.backend) if letterbox is None else bool(letterbox)
        self.diou_beta = wanted_diou_beta(self.backend)  # DIoU-NMS where the cfg says nms_kind=diounms/greedynms
        self.img_size = self._size(img_size)
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.classes = self._class_indices(classes)
        self._check_classes()
        self.agnostic = agnostic

    def _class_indices(self, classes) -> list[int] | None:
        """``classes`` as indices: None, one class or a list of them, each an index or a name of the model's."""
        if classes is None:
            return None
        items = [classes] if isinstance(classes, (str, numbers.Integral)) else classes
        try:
            items = list(items)
        except TypeError:
            raise InputError(f"{option('classes')} must be class indices or names, got {classes!r}") from None
        names = list(self.backend.names or [])
        out = []
        for c in items:
            if isinstance(c, str):
                if c not in names:
                    raise InputError(f"{option('classes')}: the model has no class named {c!r}"
                                     + (f" (it has {', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"
                                        if names else ""))
                out.append(names.index(c))
            elif isinstance(c, numbers.Integral) and not isinstance(c, bool):
                out.append(int(c))
            else:
                raise InputError(f"{option('classes')} must be class indices or names, got {c!r}")
        return out

    def _check_classes(self) -> None:
        """``InputError`` for a ``classes`` index the model does not have (it would silently keep nothing)."""
        nc = getattr(self.backend, "num_classes", None) or len(self.backend.names or [])
        bad = [c for c in self.classes or [] if not 0 <= c < nc] if nc else []
        if bad:
            raise InputError(f"{option('classes')} {' '.join(map(str, bad))}: the model has {count(nc, 'class')}, "
                             f"0 to {nc - 1}")

    def _size(self, img_size) -> tuple[int, int]:
        if img_size is None:
            return input_size(self.backend, None)
        return input_size(self.backend, check_img_size(img_size))  # rounded up to the stride, with a warning

    @property
    def names(self) -> list[str]:
        return self.backend.names

    def detect_batch(self, images: Sequence[np.ndarray], paths: Sequence[str | None] = (),
                     frames: Sequence[int] = ()) -> tuple[list[Detections], dict]:
        """BGR uint8 images -> their Detections and the seconds spent in ``pre``, ``infer`` and ``post``."""
        t0 = time.perf_counter()
        x, infos = preprocess(images, self.img_size, self.letterbox)  # [B, 3, H, W]
        pre = time.perf_counter() - t0
        dets, seconds = self.detect_letterboxed(x, infos, paths, frames)
        return dets, {"pre": pre, **seconds}

    def detect_letterboxed(self, x: torch.Tensor, infos: Sequence[LetterboxInfo], paths: Sequence[str | None] = (),
                           frames: Sequence[int] = ()) -> tuple[list[Detections], dict]:
        """``x [B, 3, H, W]`` and ``infos`` from :func:`preprocess` (of ``self.img_size``) -> Detections and
        the seconds spent in ``infer`` and ``post`` (``yolo detect`` letterboxes ahead, in a reader thread)."""
        t1 = time.perf_counter()
        pred = run_backend(self.backend, x)  # [B, N, 5+C]
        synchronize(pred.device)
        t2 = time.perf_counter()
        dets = postprocess(pred, infos, self.conf, self.iou, self.classes, self.agnostic, self.max_det,
                           diou_beta=self.diou_beta)
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
        elif not isinstance(images, (list, tuple)):
            hint = " (a PIL image: np.asarray(img.convert('RGB'))[:, :, ::-1])" if hasattr(images, "getbands") else ""
            raise InputError("expected an image array (numpy, BGR as cv2.imread gives), a path, or a list of them, "
                             f"got {type(images).__name__}{hint}")
        batch_size = positive_int(batch_size, "batch_size")
        results = []
        for start in range(0, len(images), batch_size):
            loaded = [as_image(item) for item in images[start:start + batch_size]]
            dets, _ = self.detect_batch([img for img, _ in loaded], [p for _, p in loaded])
            results += dets
        return results

    def run(self, source, out: str | Path = "runs/detect/exp", save_txt: bool = False, save_json: bool = False,
            save_crop: bool = False, nosave: bool = False, batch_size: int = 8, progress: bool = True,
            increment: bool = True) -> dict:
        """Detect on every frame of ``source`` (path, folder, glob, list file, video, camera index, URL or a
        ``yolo.detect.sources.Source``) and write results into a new run folder (``out``, ``out2``, ... unless
        ``increment=False``, then ``out`` must exist). Returns the summary dict (see ``yolo.detect.run``)."""
        from yolo.detect.run import run_detection

        return run_detection(self, source, out, save_txt=save_txt, save_json=save_json, save_crop=save_crop,
                             nosave=nosave, batch_size=batch_size, progress=progress, increment=increment)

    def stream(self, source, batch_size: int = 1):
        """Detections of every frame of ``source`` (what :meth:`run` reads: a path, folder, glob, list file,
        video, camera index, URL or a ``Source``), one :class:`Detections` at a time, in order, as they are made
        (a generator: a video or camera never has to fit in memory), nothing written. ``.path`` names the file,
        ``.frame`` the frame of a video; an unreadable file is skipped with a ``YoloWarning``. Reading runs a
        batch ahead in a thread; ``batch_size`` frames go through the network together (live sources: 1)."""
        from yolo.detect.run import stream_detections

        return stream_detections(self, source, batch_size)
