"""The one drawing helper of every picture: ``yolo detect``'s images, training batches, validation predictions.

A box per detection in its class colour and a filled tag ``name [score]`` on it. Line width and font scale
follow the size of the picture; tags are moved so they lie fully inside the image (a box at the right or top
border keeps its whole text); the text is black or white, whichever contrasts more with the tag (WCAG 2
relative luminance).
"""

from __future__ import annotations

import cv2
import numpy as np

# 20 distinct BGR colours; class i gets PALETTE[i % 20]. Neighbouring classes get far-apart hues (the
# ultralytics colours, taken with a stride of 7 through their hue order: red, light green, blue, pink, ...).
PALETTE = [(56, 56, 255), (134, 219, 61), (236, 24, 0), (151, 157, 255), (52, 147, 26), (255, 56, 132),
           (31, 112, 255), (187, 212, 0), (133, 0, 82), (29, 178, 255), (168, 153, 44), (255, 56, 203),
           (49, 210, 207), (255, 194, 0), (200, 149, 255), (10, 249, 72), (147, 69, 52), (199, 55, 255),
           (23, 204, 146), (255, 115, 100)]
BLACK, WHITE = (0, 0, 0), (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX
MIN_FONT_SCALE = 0.4  # below this cv2's Hershey text is no longer readable


def class_color(cls: int) -> tuple[int, int, int]:
    """The BGR colour of class ``cls``."""
    return PALETTE[int(cls) % len(PALETTE)]


def line_width(shape: tuple[int, ...]) -> int:
    """Box line width for a picture of ``shape`` (h, w, ...): ~0.3% of its mean side, at least 1 pixel
    (256 px: 1, 640 px: 2, 1024 px: 3, 1920 x 1080: 4)."""
    return max(1, round(0.003 * (shape[0] + shape[1]) / 2))


def mosaic_line_width(shape: tuple[int, ...]) -> int:
    """Line width for a mosaic of small pictures of ``shape`` (h, w, ...) in all: 0.1% of h + w, thinner than
    :func:`line_width` so small objects in the tiles stay visible (1024 x 1024: 2)."""
    return max(1, round(0.001 * (shape[0] + shape[1])))


def font_scale(lw: int) -> float:
    """cv2 font scale that goes with line width ``lw`` (capitals about 22 * scale pixels high)."""
    return max(lw / 3, MIN_FONT_SCALE)


def text_thickness(lw: int) -> int:
    """Stroke width of the tag text for line width ``lw``."""
    return max(lw - 1, 1)


def relative_luminance(bgr: tuple[int, int, int]) -> float:
    """WCAG 2 relative luminance of an sRGB colour given as BGR 0..255 (0: black, 1: white)."""
    def linear(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    b, g, r = bgr
    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)


def text_color(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black text on light colours, white on dark ones: whichever has the higher WCAG contrast ratio with ``bg``
    (at least 4.58:1 for any colour)."""
    lum = relative_luminance(bg)
    return BLACK if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else WHITE


def label_box(text: str, x: int, y: int, lw: int, shape: tuple[int, ...]) -> tuple[int, int, int, int, float]:
    """Where the tag of ``text`` for a box with top-left corner (x, y) goes in an image of ``shape``: (left, top,
    width, height, font scale). Above the box when there is room, else just inside it; moved left and up so it
    stays inside the image; the font shrinks when the text is wider than the image."""
    h, w = shape[:2]
    scale, thick = font_scale(lw), text_thickness(lw)
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    if tw + 2 > w:  # a very narrow image: shrink the text to its width
        scale *= (w - 2) / (tw + 2)
        (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    tag_w, tag_h = tw + 2, th + base + 2
    top = y - tag_h if y - tag_h >= 0 else y
    top = max(min(top, h - tag_h), 0)
    left = max(min(x, w - tag_w), 0)
    return left, top, tag_w, tag_h, scale


def put_label(img: np.ndarray, x: int, y: int, text: str, color: tuple[int, int, int], lw: int) -> None:
    """Draw a filled tag in ``color`` with ``text`` for a box whose top-left corner is (x, y), in place."""
    left, top, tag_w, tag_h, scale = label_box(text, x, y, lw, img.shape)
    thick = text_thickness(lw)
    (_, th), _ = cv2.getTextSize(text, FONT, scale, thick)
    cv2.rectangle(img, (left, top), (left + tag_w - 1, top + tag_h - 1), color, -1, cv2.LINE_8)
    cv2.putText(img, text, (left + 1, top + 1 + th), FONT, scale, text_color(color), thick, cv2.LINE_AA)


def outline(img: np.ndarray, p1: tuple[int, int], p2: tuple[int, int], color: tuple[int, int, int], lw: int) -> None:
    """A rectangle with edges exactly ``lw`` pixels wide centred on the corners ``p1``, ``p2``, in place
    (``cv2.rectangle`` draws thickness 3 and 4 as 5-pixel lines)."""
    a, b = (lw - 1) // 2, lw // 2
    (x1, y1), (x2, y2) = p1, p2
    for q1, q2 in (((x1, y1), (x2, y1)), ((x1, y2), (x2, y2)), ((x1, y1), (x1, y2)), ((x2, y1), (x2, y2))):
        cv2.rectangle(img, (q1[0] - a, q1[1] - a), (q2[0] + b, q2[1] + b), color, -1, cv2.LINE_8)


def draw_boxes(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, scores: np.ndarray | None = None,
               names: list[str] | None = None, labels: bool = True, color: tuple[int, int, int] | None = None,
               lw: int | None = None) -> np.ndarray:
    """Draw ``boxes [K, 4]`` (x1, y1, x2, y2 pixels) of ``classes [K]`` (tags ``name score`` with ``scores
    [K]``, ``name`` without) on a copy of BGR ``img [H, W, 3]`` uint8.

    Rectangles with ``lw``-pixel edges (default: from the image size) centred on the rounded box edges, which
    are clipped to the image so edges on its far border stay visible (an infinite edge too: an untrained
    model's exp(tw) overflows; a box with a NaN coordinate is not drawn). ``color`` forces one colour (default:
    per class). The first box is drawn last, so it ends on top.
    """
    out = np.ascontiguousarray(img).copy()
    lw = lw or line_width(out.shape)
    boxes = np.clip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), -1e9, 1e9)  # +-inf -> far outside
    classes = np.asarray(classes).reshape(-1).astype(int)
    h, w = out.shape[:2]
    for i in range(len(boxes) - 1, -1, -1):
        if np.isnan(boxes[i]).any():
            continue
        c = color or class_color(classes[i])
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[i])
        p1 = (min(max(x1, 0), w - 1), min(max(y1, 0), h - 1))
        p2 = (min(max(x2, 0), w - 1), min(max(y2, 0), h - 1))
        outline(out, p1, p2, c, lw)
        if labels:
            name = names[classes[i]] if names and 0 <= classes[i] < len(names) else str(classes[i])
            put_label(out, p1[0], p1[1], name if scores is None else f"{name} {float(scores[i]):.2f}", c, lw)
    return out


def draw_detections(img: np.ndarray, dets: np.ndarray, names: list[str] | None = None, labels: bool = True,
                    color: tuple[int, int, int] | None = None, lw: int | None = None) -> np.ndarray:
    """:func:`draw_boxes` for ``dets [K, 6]`` (x1, y1, x2, y2 pixels, score, class) on a copy of BGR ``img``."""
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 6)
    return draw_boxes(img, dets[:, :4], dets[:, 5], dets[:, 4], names, labels, color, lw)
