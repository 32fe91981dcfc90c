"""Box formats and overlaps (the one home of box math; where ``torchvision.ops`` does the job, call it). Boxes are ``[N, 4]``; xyxy = corners, cxcywh = centre and size."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` cx, cy, w, h -> x1, y1, x2, y2."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), -1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` x1, y1, x2, y2 -> cx, cy, w, h."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), -1)


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` corners -> COCO's x, y (top-left), w, h."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack((x1, y1, x2 - x1, y2 - y1), -1)


def wh_iou(wh1: torch.Tensor, wh2: torch.Tensor) -> torch.Tensor:
    """IoU of boxes sharing one centre: ``[N, 2]`` x ``[M, 2]`` widths/heights -> ``[N, M]``."""
    inter = torch.min(wh1[:, None], wh2[None]).clamp(min=0).prod(-1)
    return inter / (wh1.prod(-1)[:, None] + wh2.prod(-1)[None] - inter)


def box_iou_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of numpy ``[N, 4]`` and ``[M, 4]`` corner boxes -> ``[N, M]`` (0 where the union is empty).
    For tensors use ``torchvision.ops.box_iou``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


class LetterboxInfo(NamedTuple):
    """How an image of ``shape`` (h, w) was letterboxed: resized by ``scale`` (sx, sy), then padded by
    ``pad`` (left, top) pixels. ``scale`` is the exact per-axis ratio after rounding the resized size."""

    shape: tuple[int, int]
    scale: tuple[float, float]
    pad: tuple[float, float]


def unletterbox_boxes(boxes: torch.Tensor, info: LetterboxInfo, clip: bool = True) -> torch.Tensor:
    """``[N, 4]`` xyxy in letterboxed pixels -> xyxy in the original image's pixels (the exact inverse
    of the letterbox's resize and pad), clipped to the image when ``clip``."""
    (sx, sy), (left, top) = info.scale, info.pad
    out = boxes.clone()
    out[:, 0::2] = (out[:, 0::2] - left) / sx
    out[:, 1::2] = (out[:, 1::2] - top) / sy
    if clip:
        h, w = info.shape
        out[:, 0::2] = out[:, 0::2].clamp(0, w)
        out[:, 1::2] = out[:, 1::2].clamp(0, h)
    return out


def letterbox_boxes(boxes: torch.Tensor, info: LetterboxInfo) -> torch.Tensor:
    """``[N, 4]`` xyxy in original pixels -> letterboxed pixels (the forward map of ``unletterbox_boxes``)."""
    (sx, sy), (left, top) = info.scale, info.pad
    out = boxes.clone()
    out[:, 0::2] = out[:, 0::2] * sx + left
    out[:, 1::2] = out[:, 1::2] * sy + top
    return out
