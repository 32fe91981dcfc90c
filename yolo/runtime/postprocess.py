"""Decoded predictions -> detections: score filter -> NMS -> max-det -> boxes back to the original pixels.

Input everywhere is ``pred [B, N, 5+C]`` as ``Darknet.decode`` returns it: cx, cy, w, h in network-input
pixels, objectness, class probabilities. A detection's score is objectness x class probability.
Output per image is ``[K, 6]`` float: x1, y1, x2, y2, score, class, sorted by decreasing score.
"""

from __future__ import annotations

from typing import Sequence

import torch

from yolo.errors import InputError
from yolo.utils.boxes import LetterboxInfo, cxcywh_to_xyxy, unletterbox_boxes
from yolo.utils.nms import batched_nms, nms

MAX_CANDIDATES = 30_000  # highest-scoring candidates per image that go into NMS


def check_thresholds(conf: float, iou: float, max_det: int = 1) -> None:
    """``InputError`` unless 0 <= conf <= 1, 0 <= iou <= 1 and max_det >= 1."""
    if not 0.0 <= conf <= 1.0:
        raise InputError(f"--conf must be in [0, 1], got {conf}")
    if not 0.0 <= iou <= 1.0:
        raise InputError(f"--iou must be in [0, 1], got {iou}")
    if max_det < 1:
        raise InputError(f"--max-det must be >= 1, got {max_det}")


def _candidates(p: torch.Tensor, conf: float, classes: torch.Tensor | None, multi_label: bool
                ) -> torch.Tensor:
    """One image's ``p [N, 5+C]`` -> candidates ``[M, 6]`` (xyxy, score, class) with score > conf."""
    p = p[p[:, 4] > conf]  # score = obj x cls <= obj: rows with obj <= conf can never pass
    scores = p[:, 5:] * p[:, 4:5]  # [M, C]
    boxes = cxcywh_to_xyxy(p[:, :4])  # [M, 4]
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
                        multi_label: bool = False) -> list[torch.Tensor]:
    """``pred [B, N, 5+C]`` -> per image ``[K, 6]`` (x1, y1, x2, y2 in input pixels, score, class).

    Candidates have score > ``conf`` (one per box: its best class; with ``multi_label`` one per class above
    ``conf``, as COCO evaluation wants), optionally only ``classes``. NMS at ``iou`` is per class
    (``yolo.utils.nms.batched_nms``: torchvision's operator and semantics without importing torchvision)
    unless ``agnostic``; the ``max_det`` best survivors are kept.
    """
    check_thresholds(conf, iou, max_det)
    wanted = None if classes is None else torch.as_tensor(list(classes), dtype=torch.long, device=pred.device)
    out = []
    for p in pred.float():  # [N, 5+C]
        c = _candidates(p, conf, wanted, multi_label)  # [M, 6]
        if agnostic:
            keep = nms(c[:, :4], c[:, 4], iou)
        else:
            keep = batched_nms(c[:, :4], c[:, 4], c[:, 5].long(), iou)
        out.append(c[keep[:max_det]])  # keep is sorted by decreasing score
    return out


def postprocess(pred: torch.Tensor, infos: Sequence[LetterboxInfo] | None = None, conf: float = 0.25,
                iou: float = 0.45, classes: Sequence[int] | None = None, agnostic: bool = False,
                max_det: int = 300, multi_label: bool = False) -> list[torch.Tensor]:
    """:func:`non_max_suppression`, then each image's boxes mapped back through its letterbox ``infos[b]``
    (the exact inverse, clipped to the image). ``infos=None`` leaves boxes in input pixels.
    -> per image ``[K, 6]`` x1, y1, x2, y2 (original pixels), score, class."""
    dets = non_max_suppression(pred, conf, iou, classes, agnostic, max_det, multi_label)
    if infos is None:
        return dets
    if len(infos) != len(dets):
        raise ValueError(f"{len(infos)} letterbox infos for a batch of {len(dets)}")
    for d, info in zip(dets, infos):
        d[:, :4] = unletterbox_boxes(d[:, :4], info)
    return dets
