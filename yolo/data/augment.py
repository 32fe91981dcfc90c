"""Image transforms that move boxes with the pixels: letterbox, stretch, affine, mosaic, mixup, HSV, flips.

Images are ``[H, W, 3]`` uint8 RGB numpy arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import cv2
import numpy as np

from yolo.errors import InputError
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


def stretch(img: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize ``img`` ``[h, w, C]`` to exactly ``size`` (H, W) without keeping its aspect ratio (AlexeyAB
    darknet's ``resize_image`` for models without ``letter_box=1``); bilinear, as darknet.

    Returns the new image and the ``LetterboxInfo`` (scale W/w, H/h; no padding) that ``unletterbox_boxes``
    inverts exactly.
    """
    h, w = img.shape[:2]
    H, W = size
    if (h, w) != (H, W):
        img = cv2.resize(img, (W, H), interpolation=cv2.INTER_LINEAR)
    if img.ndim == 2:
        img = img[:, :, None]
    return img, LetterboxInfo((h, w), (W / w, H / h), (0.0, 0.0))


# Inside the transforms below, labels are ``[N, 5]`` float32 numpy arrays: class, x1, y1, x2, y2 in the
# current image's pixels (pixel edges: a box covering columns 3..7 has x1=3, x2=8). Masks, when given, are
# ``[N, H, W]`` bool (one per label) and move with exactly the same transform; they exist so tests can
# check that boxes stay on their objects. Every random draw comes from the ``np.random.Generator`` passed in.

@dataclass
class AugmentConfig:
    """Training augmentation switches (probabilities) and magnitudes; YOLO-style defaults.

    Built from a run YAML's ``augment:`` mapping with :meth:`from_dict` (unknown keys are errors).
    """

    mosaic: float = 1.0     # probability of a 4-image mosaic (else one letterboxed image)
    mixup: float = 0.0      # probability of blending with a second (mosaic) sample
    degrees: float = 0.0    # rotation, +- degrees
    translate: float = 0.1  # translation, +- fraction of the output size
    scale: float = 0.5      # zoom factor drawn from [1 - scale, 1 + scale]
    shear: float = 0.0      # shear, +- degrees
    hsv_h: float = 0.015    # hue gain, fraction of the full hue circle
    hsv_s: float = 0.7      # saturation gain
    hsv_v: float = 0.4      # value (brightness) gain
    fliplr: float = 0.5     # probability of a left-right flip
    flipud: float = 0.0     # probability of an up-down flip

    @classmethod
    def from_dict(cls, values: dict | None, path: str | None = None) -> AugmentConfig:
        """Defaults overridden by ``values``; unknown keys or bad numbers raise ``InputError`` naming ``path``."""
        values = dict(values or {})
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise InputError(f"augment.{unknown[0]}: unknown key (valid: {', '.join(valid)})", path)
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"augment.{key}: expected a number, got {value!r}", path)
            high = {"degrees": 180.0, "shear": 89.0}.get(key, 1.0)
            if not 0 <= value <= high or (key == "scale" and value >= 1):
                raise InputError(f"augment.{key}: expected a number in [0, {high}{')' if key == 'scale' else ']'}, "
                                 f"got {value!r}", path)
        return cls(**{k: float(v) for k, v in values.items()})


def clip_boxes(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Clip the boxes of ``labels`` ``[N, 5]`` to an image of ``shape`` (h, w), in place; returns ``labels``."""
    h, w = shape[:2]
    labels[:, [1, 3]] = labels[:, [1, 3]].clip(0, w)
    labels[:, [2, 4]] = labels[:, [2, 4]].clip(0, h)
    return labels


def filter_boxes(before: np.ndarray, after: np.ndarray, wh_thr: float = 2, ar_thr: float = 20,
                 area_thr: float = 0.1) -> np.ndarray:
    """Which boxes survive a transform: ``before`` ``[N, 4]`` xyxy (scaled by the transform's zoom) and
    ``after`` ``[N, 4]`` xyxy (transformed and clipped) -> ``[N]`` bool. Drops boxes thinner than ``wh_thr``
    pixels, more elongated than ``ar_thr``, or keeping less than ``area_thr`` of their area (mostly cut off)."""
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    eps = 1e-16
    aspect = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (aspect < ar_thr)


def affine_matrix(shape: tuple[int, int], degrees: float, translate: float, scale: float, shear: float,
                  border: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int], float]:
    """A random affine map for an image of ``shape`` (h, w): ``M [3, 3]`` (pixel coordinates in -> out), the
    output size (h + 2*border[0], w + 2*border[1]) and the zoom factor. Centre, rotate+zoom, shear, then
    translate the centre to (0.5 +- translate) of the output."""
    h, w = shape[:2]
    out_h, out_w = h + 2 * border[0], w + 2 * border[1]
    centre = np.eye(3)
    centre[:2, 2] = -w / 2, -h / 2
    rot = np.eye(3)
    zoom = rng.uniform(1 - scale, 1 + scale)
    rot[:2] = cv2.getRotationMatrix2D((0, 0), rng.uniform(-degrees, degrees), zoom)
    sh = np.eye(3)
    sh[0, 1], sh[1, 0] = np.tan(np.radians(rng.uniform(-shear, shear, 2)))
    move = np.eye(3)
    move[:2, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * out_w, \
        rng.uniform(0.5 - translate, 0.5 + translate) * out_h
    return move @ sh @ rot @ centre, (out_h, out_w), zoom


def warp_boxes(boxes: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``[N, 4]`` xyxy -> ``[N, 4]`` xyxy: the 4 corners of each box mapped by ``M [3, 3]``, then re-boxed."""
    corners = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(-1, 2)  # [4N, 2]
    xy = corners @ M[:2, :2].T + M[:2, 2]
    xy = xy.reshape(-1, 4, 2)  # [N, 4, 2]
    return np.concatenate((xy.min(1), xy.max(1)), 1)


def _warp_masks(masks: np.ndarray | None, M: np.ndarray, out: tuple[int, int]) -> np.ndarray | None:
    """``[N, H, W]`` bool -> ``[N, out_h, out_w]`` bool, nearest neighbour."""
    if masks is None:
        return None
    warped = [cv2.warpAffine(m.astype(np.uint8), M[:2], (out[1], out[0]), flags=cv2.INTER_NEAREST) for m in masks]
    return np.stack(warped).astype(bool) if warped else np.zeros((0, *out), bool)


def random_affine(img: np.ndarray, labels: np.ndarray, degrees: float = 0.0, translate: float = 0.1,
                  scale: float = 0.5, shear: float = 0.0, border: tuple[int, int] = (0, 0),
                  rng: np.random.Generator | None = None, masks: np.ndarray | None = None):
    """One random ``cv2.warpAffine`` of ``img`` ``[H, W, 3]`` to ``[H + 2*border[0], W + 2*border[1], 3]``
    (a negative border crops, as after a mosaic). Boxes move by their 4 corners, are clipped, and those
    ``filter_boxes`` rejects are dropped (with their masks). Returns ``(img, labels [M, 5], masks or None)``."""
    rng = rng if rng is not None else np.random.default_rng()
    M, out, zoom = affine_matrix(img.shape, degrees, translate, scale, shear, border, rng)
    if border != (0, 0) or not np.allclose(M, np.eye(3)):
        img = cv2.warpAffine(img, M[:2], (out[1], out[0]), flags=cv2.INTER_LINEAR,
                             borderValue=(PAD_VALUE,) * img.shape[2])
    new = labels.copy()
    if len(labels):
        new[:, 1:5] = warp_boxes(labels[:, 1:5], M)
        clip_boxes(new, out)
        keep = filter_boxes(labels[:, 1:5] * zoom, new[:, 1:5])
        new = new[keep]
        masks = _warp_masks(masks[keep], M, out) if masks is not None else None
    else:
        masks = _warp_masks(masks, M, out)
    return img, new, masks


def augment_hsv(img: np.ndarray, hgain: float, sgain: float, vgain: float, rng: np.random.Generator) -> None:
    """Random hue/saturation/value gains on ``img`` ``[H, W, 3]`` uint8 RGB, in place (lookup tables)."""
    if not (hgain or sgain or vgain):
        return
    r = rng.uniform(-1, 1, 3) * (hgain, sgain, vgain) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_RGB2HSV))
    x = np.arange(256, dtype=np.float64)
    lut_hue = (x * r[0] % 180).astype(np.uint8)
    lut_sat = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB, dst=img)


def hflip(img: np.ndarray, labels: np.ndarray, masks: np.ndarray | None = None):
    """Mirror left-right: ``img [H, W, C]``, boxes (x -> W - x) and masks. Returns ``(img, labels, masks)``."""
    w = img.shape[1]
    labels = labels.copy()
    labels[:, [1, 3]] = w - labels[:, [3, 1]]
    return np.ascontiguousarray(img[:, ::-1]), labels, None if masks is None else masks[:, :, ::-1].copy()


def vflip(img: np.ndarray, labels: np.ndarray, masks: np.ndarray | None = None):
    """Mirror up-down: ``img [H, W, C]``, boxes (y -> H - y) and masks. Returns ``(img, labels, masks)``."""
    h = img.shape[0]
    labels = labels.copy()
    labels[:, [2, 4]] = h - labels[:, [4, 2]]
    return np.ascontiguousarray(img[::-1]), labels, None if masks is None else masks[:, ::-1].copy()


def _quadrant(i: int, xc: int, yc: int, h: int, w: int, side: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Where tile ``i`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) of size (h, w) goes on a
    ``side`` x ``side`` canvas around the centre (xc, yc): canvas slice (x1, y1, x2, y2) and tile slice."""
    if i == 0:
        a = (max(xc - w, 0), max(yc - h, 0), xc, yc)
        return a, (w - (a[2] - a[0]), h - (a[3] - a[1]), w, h)
    if i == 1:
        a = (xc, max(yc - h, 0), min(xc + w, side), yc)
        return a, (0, h - (a[3] - a[1]), a[2] - a[0], h)
    if i == 2:
        a = (max(xc - w, 0), yc, xc, min(side, yc + h))
        return a, (w - (a[2] - a[0]), 0, w, a[3] - a[1])
    a = (xc, yc, min(xc + w, side), min(side, yc + h))
    return a, (0, 0, a[2] - a[0], a[3] - a[1])


def mosaic4(samples: list, size: int, rng: np.random.Generator):
    """Tile 4 samples ``(img [h, w, 3], labels [n, 5][, masks [n, h, w]])`` around a random centre in
    [S/2, 3S/2) on a grey ``[2S, 2S, 3]`` canvas (S = ``size``), as YOLO toolkits do. Boxes are shifted,
    clipped to the canvas, and boxes cut away entirely are dropped. Follow with ``random_affine(...,
    border=(-S // 2, -S // 2))`` to crop back to ``[S, S, 3]``. Returns ``(img, labels [N, 5], masks or None)``
    (masks only when every sample has them)."""
    side = 2 * size
    xc, yc = (int(rng.uniform(size // 2, side - size // 2)) for _ in range(2))
    canvas = np.full((side, side, samples[0][0].shape[2]), PAD_VALUE, np.uint8)
    with_masks = all(len(s) > 2 and s[2] is not None for s in samples)
    all_labels, all_masks = [], []
    for i, sample in enumerate(samples):
        img, labels = sample[0], sample[1].copy()
        (x1a, y1a, x2a, y2a), (x1b, y1b, x2b, y2b) = _quadrant(i, xc, yc, *img.shape[:2], side)
        canvas[y1a:y2a, x1a:x2a] = img[y1b:y2b, x1b:x2b]
        labels[:, [1, 3]] += x1a - x1b
        labels[:, [2, 4]] += y1a - y1b
        all_labels.append(labels)
        if with_masks:
            m = np.zeros((len(labels), side, side), bool)
            m[:, y1a:y2a, x1a:x2a] = sample[2][:, y1b:y2b, x1b:x2b]
            all_masks.append(m)
    labels = clip_boxes(np.concatenate(all_labels, 0), (side, side))
    keep = (labels[:, 3] > labels[:, 1]) & (labels[:, 4] > labels[:, 2])
    masks = np.concatenate(all_masks, 0)[keep] if with_masks else None
    return canvas, labels[keep], masks


def mixup(a: tuple, b: tuple, rng: np.random.Generator):
    """Blend two samples ``(img [H, W, 3], labels [n, 5][, masks])`` of the same size with a Beta(32, 32)
    weight; the result keeps both label sets. Returns ``(img, labels, masks or None)``."""
    r = rng.beta(32.0, 32.0)
    img = (a[0].astype(np.float32) * r + b[0].astype(np.float32) * (1 - r)).round().astype(np.uint8)
    labels = np.concatenate((a[1], b[1]), 0)
    has_masks = len(a) > 2 and len(b) > 2 and a[2] is not None and b[2] is not None
    return img, labels, np.concatenate((a[2], b[2]), 0) if has_masks else None
