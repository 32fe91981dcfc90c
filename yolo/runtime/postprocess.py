"""Decoded predictions -> detections: score filter -> NMS -> max-det -> boxes back to the original pixels.

Input everywhere is ``pred [B, N, 5+C]`` as ``Darknet.decode`` returns it: cx, cy, w, h in network-input
pixels, objectness, class probabilities. A detection's score is objectness x class probability.
Output per image is ``[K, 6]`` float: x1, y1, x2, y2, score, class, sorted by decreasing score.

Degenerate boxes are dropped before NMS: a candidate whose width or height, once clipped to the image it
will be reported in, is under ``MIN_BOX_SIZE`` (1 pixel of that image) is not a detection (a box lying in the
letterbox border would otherwise come out with zero height). The image is the original one when letterbox
infos are given, else the network input (``image_size``); exported ``--nms`` graphs apply the same rule to
their input (:func:`sized_mask`).
"""

from __future__ import annotations

import numbers
from typing import Sequence

import torch

from yolo.errors import InputError, option, positive_int
from yolo.utils.boxes import LetterboxInfo, cxcywh_to_xyxy, unletterbox_boxes
from yolo.utils.nms import batched_nms, diou_nms, nms

MAX_CANDIDATES = 30_000  # highest-scoring candidates per image that go into NMS
MIN_BOX_SIZE = 1.0  # pixels of the reported image: narrower or lower boxes (after clipping) are dropped
Bounds = tuple[float, float, float, float, float, float]  # x1, y1, x2, y2 of the image in input pixels, sx, sy


def image_bounds(info: LetterboxInfo) -> Bounds:
    """Where the original image lies in the letterboxed input, and its scale (input pixels per image pixel)."""
    (sx, sy), (left, top) = info.scale, info.pad
    h, w = info.shape
    return left, top, left + w * sx, top + h * sy, sx, sy


def sized_mask(boxes: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    """``boxes [..., 4]`` xyxy in input pixels -> ``[...]`` bool: at least ``MIN_BOX_SIZE`` image pixels wide and
    high once clipped to ``bounds`` (x1, y1, x2, y2 of the image in input pixels, sx, sy)."""
    x1, y1, x2, y2, sx, sy = bounds
    w = boxes[..., 2].clamp(max=x2) - boxes[..., 0].clamp(min=x1)
    h = boxes[..., 3].clamp(max=y2) - boxes[..., 1].clamp(min=y1)
    return (w >= MIN_BOX_SIZE * sx) & (h >= MIN_BOX_SIZE * sy)


def check_thresholds(conf: float, iou: float, max_det: int = 1) -> None:
    """``InputError`` unless conf and iou are numbers in [0, 1] and max_det an integer >= 1."""
    for name, value in (("conf", conf), ("iou", iou)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InputError(f"{option(name)} must be a number in [0, 1], got {value!r}")
        if not 0.0 <= value <= 1.0:  # NaN too
            raise InputError(f"{option(name)} must be in [0, 1], got {value}")
    positive_int(max_det, "max_det")


def _candidates(p: torch.Tensor, conf: float, classes: torch.Tensor | None, multi_label: bool,
                bounds: Bounds | None = None) -> torch.Tensor:
    """One image's ``p [N, 5+C]`` -> candidates ``[M, 6]`` (xyxy, score, class) with score > conf, at least
    a pixel wide and high inside ``bounds`` (unclipped sizes without)."""
    p = p[p[:, 4] > conf]  # score = obj x cls <= obj: rows with obj <= conf can never pass
    boxes = cxcywh_to_xyxy(p[:, :4])  # [M, 4]
    inf = float("inf")
    sized = sized_mask(boxes, bounds if bounds is not None else (-inf, -inf, inf, inf, 1.0, 1.0))  # [M]
    p, boxes = p[sized], boxes[sized]
    scores = p[:, 5:] * p[:, 4:5]  # [M, C]
    if multi_label:
        i, j = (scores > conf).nonzero(as_tuple=True)
        out = torch.cat((boxes[i], scores[i, j, None], j[:, None].to(p.dtype)), 1)
    else:
        score, j = scores.max(1)
        keep = score > conf
        out = torch.cat((boxes[keep], score[keep, None], j[keep, None].to(p.dtype)), 1)
    if classes is not None:
        out = out[torch.isin(out[:, 5].long(), classes)]
    if len(out) > MAX_CANDIDATES:
        out = out[out[:, 4].topk(MAX_CANDIDATES).indices]
    return out


def non_max_suppression(pred: torch.Tensor, conf: float = 0.25, iou: float = 0.45,
                        classes: Sequence[int] | None = None, agnostic: bool = False, max_det: int = 300,
                        multi_label: bool = False, image_size: tuple[int, int] | None = None,
                        bounds: Sequence[Bounds] | None = None, diou_beta: float | None = None
                        ) -> list[torch.Tensor]:
    """``pred [B, N, 5+C]`` -> per image ``[K, 6]`` (x1, y1, x2, y2 in input pixels, score, class).

    Candidates have score > ``conf`` (one per box: its best class; with ``multi_label`` one per class above
    ``conf``, as COCO evaluation wants), optionally only ``classes``, and are at least ``MIN_BOX_SIZE`` wide
    and high once clipped to the input ``image_size`` (H, W), or to each image's ``bounds`` (see
    :func:`image_bounds`); without either, by their unclipped size. NMS at ``iou`` is per class
    (``yolo.utils.nms.batched_nms``: torchvision's operator and semantics without importing torchvision)
    unless ``agnostic``; with ``diou_beta`` it is darknet's DIoU-NMS at that beta instead (the cfg's
    ``nms_kind=diounms`` / ``greedynms``: ``Darknet.diou_beta``). The ``max_det`` best survivors are kept.
    """
    check_thresholds(conf, iou, max_det)
    wanted = None if classes is None else torch.as_tensor(list(classes), dtype=torch.long, device=pred.device)
    if bounds is None and image_size is not None:
        bounds = [(0.0, 0.0, float(image_size[1]), float(image_size[0]), 1.0, 1.0)] * len(pred)
    out = []
    for b, p in enumerate(pred.float()):  # [N, 5+C]
        c = _candidates(p, conf, wanted, multi_label, bounds[b] if bounds is not None else None)  # [M, 6]
        if diou_beta is not None:
            keep = diou_nms(c[:, :4], c[:, 4], iou, diou_beta, None if agnostic else c[:, 5].long())
        elif agnostic:
            keep = nms(c[:, :4], c[:, 4], iou)
        else:
            keep = batched_nms(c[:, :4], c[:, 4], c[:, 5].long(), iou)
        out.append(c[keep[:max_det]])  # keep is sorted by decreasing score
    return out


def postprocess(pred: torch.Tensor, infos: Sequence[LetterboxInfo] | None = None, conf: float = 0.25,
                iou: float = 0.45, classes: Sequence[int] | None = None, agnostic: bool = False,
                max_det: int = 300, multi_label: bool = False, image_size: tuple[int, int] | None = None,
                diou_beta: float | None = None) -> list[torch.Tensor]:
    """:func:`non_max_suppression`, then each image's boxes mapped back through its letterbox ``infos[b]``
    (the exact inverse, clipped to the image). ``infos=None`` leaves boxes in input pixels. Boxes under a
    pixel wide or high inside the original image (``infos``) or the input (``image_size``) are dropped before
    NMS.
    -> per image ``[K, 6]`` x1, y1, x2, y2 (original pixels), score, class."""
    if infos is not None and len(infos) != len(pred):
        raise ValueError(f"{len(infos)} letterbox infos for a batch of {len(pred)}")
    bounds = None if infos is None else [image_bounds(info) for info in infos]
    dets = non_max_suppression(pred, conf, iou, classes, agnostic, max_det, multi_label,
                               image_size=image_size, bounds=bounds, diou_beta=diou_beta)
    if infos is None:
        return dets
    for d, info in zip(dets, infos):
        d[:, :4] = unletterbox_boxes(d[:, :4], info)
    return dets
