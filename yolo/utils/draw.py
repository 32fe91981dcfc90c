"""Draw detections onto an image: a box per detection and a filled label ``name score`` above it."""

from __future__ import annotations

import cv2
import numpy as np

# 20 distinct BGR colours; class i gets PALETTE[i % 20]
PALETTE = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
           (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0),
           (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203),
           (200, 149, 255), (199, 55, 255)]


def class_color(cls: int) -> tuple[int, int, int]:
    return PALETTE[int(cls) % len(PALETTE)]


def line_width(shape: tuple[int, ...]) -> int:
    """Box line thickness for an image of ``shape`` (h, w, ...): ~0.3% of its size, at least 1 pixel."""
    return max(1, round(0.003 * (shape[0] + shape[1]) / 2))


def _text_color(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones (BGR luma)."""
    b, g, r = bg
    return (0, 0, 0) if 0.114 * b + 0.587 * g + 0.299 * r > 140 else (255, 255, 255)


def _label(img: np.ndarray, x1: int, y1: int, text: str, color: tuple[int, int, int], lw: int) -> None:
    """A filled box with ``text`` just above (x1, y1), or just inside when there is no room above."""
    scale, thick = lw / 3, max(lw - 1, 1)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    th += base
    above = y1 - th - 2 >= 0
    top = y1 - th - 2 if above else y1
    cv2.rectangle(img, (x1, top), (x1 + tw + 2, top + th + 2), color, -1, cv2.LINE_8)
    cv2.putText(img, text, (x1 + 1, top + th - base + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, _text_color(color),
                thick, cv2.LINE_AA)


def draw_detections(img: np.ndarray, dets: np.ndarray, names: list[str] | None = None, labels: bool = True,
                    color: tuple[int, int, int] | None = None, lw: int | None = None) -> np.ndarray:
    """Draw ``dets [K, 6]`` (x1, y1, x2, y2 pixels, score, class) on a copy of BGR ``img [H, W, 3]`` uint8.

    Boxes are rectangles of thickness ``lw`` (default from the image size) centred on the rounded box
    edges, moved inside the image when they lie on its far border (x = W or y = H); ``labels`` adds
    ``"<name> <score>"`` tags. ``color`` forces one colour (default: per class).
    """
    out = np.ascontiguousarray(img).copy()
    lw = lw or line_width(out.shape)
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 6)
    h, w = out.shape[:2]
    for x1, y1, x2, y2, score, cls in dets[::-1]:  # best last, so it ends on top
        c = color or class_color(int(cls))
        p1 = (min(max(int(round(x1)), 0), w - 1), min(max(int(round(y1)), 0), h - 1))
        p2 = (min(max(int(round(x2)), 0), w - 1), min(max(int(round(y2)), 0), h - 1))  # edges stay visible
        cv2.rectangle(out, p1, p2, c, lw, cv2.LINE_8)
        if labels:
            name = names[int(cls)] if names and int(cls) < len(names) else str(int(cls))
            _label(out, p1[0], p1[1], f"{name} {score:.2f}", c, lw)
    return out
