"""The one image reader, with an explicit colour order, and the array normalizer behind it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from yolo.errors import InputError


IMAGE_SUFFIXES = {".bmp", ".dib", ".jpg", ".jpeg", ".jpe", ".jfif", ".jp2", ".png", ".webp", ".tif", ".tiff", ".pbm",
                  ".pgm", ".ppm", ".pnm", ".pxm", ".sr", ".ras", ".exr", ".hdr", ".pic", ".avif"}  # cv2.imread's
JPEG_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm", ".flv", ".ts",
                  ".asf", ".3gp", ".ogv", ".gif"}  # read with cv2.VideoCapture


class UnreadableImage(Exception):
    """An image file that OpenCV cannot decode (or that does not exist)."""


def to_bgr8(img: np.ndarray) -> np.ndarray:
    """Any array OpenCV might return -> BGR ``[H, W, 3]`` uint8: ``[H, W]`` gray, ``[H, W, 1]``, BGRA
    ``[H, W, 4]``; uint16 keeps its high byte (``>> 8``: what ``cv2.IMREAD_COLOR`` does, so an array and its
    file give the same pixels), floats are taken as [0, 1] (a float image reaching past 1, most likely 0-255
    pixels as floats, or below 0, centred or normalized pixels, or holding NaN, is an ``InputError``: clipped,
    it would be another picture). An empty image (a side of 0)
    is an ``InputError``."""
    if 0 in img.shape[:2] or img.ndim < 2:
        raise InputError(f"empty image (shape {list(img.shape)}): nothing to detect on")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype.kind == "f":
        if not np.isfinite(img).all():
            raise InputError("a float image must hold values in [0, 1], this one holds NaN or infinity")
        low, top = (float(img.min()), float(img.max())) if img.size else (0.0, 0.0)
        if top > 1.0 + 1e-3:
            raise InputError(f"a float image must hold values in [0, 1], this one reaches {top:g} (0-255 pixels: "
                             "pass them as uint8)")
        if low < -1e-3:
            raise InputError(f"a float image must hold values in [0, 1], this one goes down to {low:g} (centred or "
                             "mean/std-normalized pixels: pass the plain image)")
        img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise InputError(f"unsupported image dtype {img.dtype} (expected uint8, uint16 or float)")
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    raise InputError(f"unsupported image shape {list(img.shape)} (expected [H, W], [H, W, 3] or [H, W, 4])")


def read_image(path: str | Path, order: Literal["bgr", "rgb"]) -> np.ndarray:
    """``[H, W, 3]`` uint8 in colour ``order`` ("bgr", as OpenCV draws and writes, or "rgb", as the network
    takes). ``cv2.IMREAD_COLOR`` applies the EXIF orientation, makes grayscale 3-channel, drops alpha and
    scales 16-bit images to 8 bits. Raises ``UnreadableImage`` when the file cannot be decoded."""
    if order not in ("bgr", "rgb"):
        raise ValueError(f"order must be 'bgr' or 'rgb', got {order!r}")
    try:
        img = imread(path, cv2.IMREAD_COLOR)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        raise UnreadableImage(str(path))
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if order == "rgb" else img


def opencv_safe(path: str | Path) -> bool:
    """Whether OpenCV can be given ``path`` as text: a name that is not valid UTF-8 (Python keeps its bytes as
    lone surrogates) crashes OpenCV's path conversion."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def imread(path: str | Path, flags: int) -> np.ndarray | None:
    """``cv2.imread(path, flags)``, also for a file name that is not valid UTF-8 (its bytes are read by Python
    and decoded by ``cv2.imdecode`` with the same flags, EXIF orientation included); None when undecodable."""
    if opencv_safe(path):
        return cv2.imread(str(path), flags)
    try:
        data = np.fromfile(os.fsencode(path), dtype=np.uint8)
    except OSError:
        return None
    return cv2.imdecode(data, flags) if data.size else None
