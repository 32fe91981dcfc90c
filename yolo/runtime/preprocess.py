"""Pre-processing: images -> the network's letterboxed (or stretched) ``[B, 3, H, W]`` input.

``letterbox=True`` keeps each image's aspect ratio and pads it (grey) to the input size; ``False`` stretches it to
the input size (AlexeyAB darknet's resize for models without ``[net] letter_box=1``). Either way the returned
``LetterboxInfo`` maps boxes back exactly (``yolo.utils.boxes.unletterbox_boxes``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from yolo.data.augment import letterbox, stretch
from yolo.errors import InputError
from yolo.utils.boxes import LetterboxInfo
from yolo.utils.image import VIDEO_SUFFIXES, UnreadableImage, read_image, to_bgr8


def preprocess(images: Sequence[np.ndarray], size: tuple[int, int], letterbox: bool = True
               ) -> tuple[torch.Tensor, list[LetterboxInfo]]:
    """BGR ``[h, w, 3]`` uint8 images -> letterboxed (or stretched) RGB ``[B, 3, H, W]`` float in [0, 1] and
    their infos."""
    boxed, infos = letterbox_images(images, size, letterbox)
    return to_input(boxed), infos


def letterbox_images(images: Sequence[np.ndarray], size: tuple[int, int], letterbox: bool = True
                     ) -> tuple[np.ndarray, list[LetterboxInfo]]:
    """BGR ``[h, w, 3]`` uint8 images -> letterboxed (``letterbox=False``: stretched) BGR ``[B, H, W, 3]`` uint8
    and their infos (OpenCV only: no torch threads, so a reader thread can run it beside the network)."""
    resize = _letterbox if letterbox else stretch
    boxed, infos = [], []
    for img in images:
        lb, info = resize(img, size)  # [H, W, 3]
        boxed.append(lb)
        infos.append(info)
    return np.stack(boxed), infos


_letterbox = letterbox  # the parameter of the functions above shadows the function


def to_input(boxed: np.ndarray) -> torch.Tensor:
    """Letterboxed BGR ``[B, H, W, 3]`` uint8 -> RGB ``[B, 3, H, W]`` float in [0, 1]."""
    x = torch.from_numpy(boxed[..., ::-1].copy())  # [B, H, W, 3] RGB uint8
    return x.permute(0, 3, 1, 2).float().div_(255)  # [B, 3, H, W]


def as_image(item) -> tuple[np.ndarray, str | None]:
    """A path or an array -> (BGR ``[h, w, 3]`` uint8, path or None); unreadable files are an InputError."""
    if isinstance(item, np.ndarray):
        return to_bgr8(item), None
    if not isinstance(item, (str, Path)):
        raise InputError(f"expected an image array (numpy, BGR as cv2.imread gives) or a path, got "
                         f"{type(item).__name__}")
    if Path(item).is_dir() or (not Path(item).exists() and any(ch in str(item) for ch in "*?[")):
        raise InputError("a folder or pattern holds many files: pass them to Detector.run, or a list of paths here",
                         str(item))
    if not Path(item).exists():  # before OpenCV, which would log its own line about it
        raise InputError("image not found", str(item))
    try:
        return read_image(item, "bgr"), str(item)
    except UnreadableImage:
        if Path(item).suffix.lower() in VIDEO_SUFFIXES:
            raise InputError("a video, not an image: Detector.run detects on its frames", str(item)) from None
        raise InputError("cannot read image", str(item)) from None


def check_input(x, source: str | Path | None = None) -> None:
    """Refuse what a backend cannot take for ``[B, 3, H, W]`` float pixels in [0, 1]: not a float tensor (uint8
    or a numpy array), another shape, or values outside [0, 1] (0-255 floats, mean/std-normalized input: each
    would run and give garbage). One ``amin``/``amax`` pass over ``x``; ``source`` names the model file."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        if isinstance(x, torch.Tensor):
            got, hint = f"a {x.dtype} tensor", " (pixels 0-255: x.float() / 255)"
        else:
            got, hint = type(x).__name__, " (a numpy array: torch.from_numpy(x))" if hasattr(x, "__array__") else ""
        raise InputError(f"expected a float tensor [B, 3, H, W] in [0, 1], got {got}{hint}", source)
    if x.dim() != 4 or x.shape[1] != 3:
        raise InputError(f"expected input [B, 3, H, W], got {list(x.shape)}", source)
    if x.numel():
        low, top = (float(v) for v in torch.aminmax(x.detach()))
        if low != low or top != top:  # NaN: every output of the network would be NaN, and nothing detected
            raise InputError("expected pixels in [0, 1], this input holds NaN", source)
        if top > 1.0 + 1e-3 or low < -1e-3:
            hint = (" (0-255 pixels: x / 255)" if low >= 0 else
                    " (mean/std normalization: the models take plain x / 255)")
            raise InputError(f"expected pixels in [0, 1], this input holds [{low:g}, {top:g}]{hint}", source)
