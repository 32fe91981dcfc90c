"""Image transforms that move boxes with the pixels. Images are ``[H, W, 3]`` uint8 arrays."""

from __future__ import annotations

import cv2
import numpy as np

from yolo.utils.boxes import LetterboxInfo

PAD_VALUE = 114  # grey border, as darknet-era PyTorch toolkits use


def letterbox(img: np.ndarray, size: tuple[int, int], scaleup: bool = True,
              pad_value: int = PAD_VALUE) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize ``img`` ``[h, w, C]`` keeping its aspect ratio to fit ``size`` (H, W), then pad it centred
    to exactly ``[H, W, C]``. ``scaleup=False`` never enlarges (small images are only padded).

    Returns the new image and the ``LetterboxInfo`` that ``unletterbox_boxes`` inverts exactly.
    """
    h, w = img.shape[:2]
    H, W = size
    r = min(H / h, W / w)
    if not scaleup:
        r = min(r, 1.0)
    nw, nh = max(1, min(W, round(w * r))), max(1, min(H, round(h * r)))
    if (nw, nh) != (w, h):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    if img.ndim == 2:
        img = img[:, :, None]
    left, top = (W - nw) // 2, (H - nh) // 2
    out = np.full((H, W, img.shape[2]), pad_value, dtype=img.dtype)
    out[top:top + nh, left:left + nw] = img
    return out, LetterboxInfo((h, w), (nw / w, nh / h), (float(left), float(top)))
