"""Non-maximum suppression through torchvision's compiled operator, without importing the torchvision package.

Importing ``torchvision`` costs 1.5-2 s of start-up (its Python package pulls in ``torch._dynamo``), while its
NMS kernels live in a compiled library (``_C_stable``, ``_C`` before torchvision 0.29) that
``torch.ops.load_library`` loads in milliseconds. The library is found with ``importlib.util.find_spec``
(which does not import the package) and loaded on the first call; where it cannot be found or loaded,
``import torchvision`` registers the operator instead (and explains a torch/torchvision mismatch).

``nms`` and ``batched_nms`` return exactly what ``torchvision.ops.nms`` / ``batched_nms`` return (tested
against them): the same operator, the same class-offset trick and the same size switch to one NMS per class.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os

import torch

_LIBRARIES = ("_C_stable", "_C")  # torchvision's compiled extension, newest name first
_state: dict = {}  # "op": the loaded torch.ops.torchvision.nms, "via": "library" or "torchvision"


def torchvision_library() -> str | None:
    """Path of torchvision's compiled extension library, or None; the torchvision package is not imported."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    details = (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES)
    for folder in spec.submodule_search_locations:
        finder = importlib.machinery.FileFinder(folder, details)
        for name in _LIBRARIES:
            found = finder.find_spec(name)
            if found is not None and found.origin:
                return found.origin
    return None


def _load_library(path: str) -> bool:
    try:
        if os.name == "nt":
            os.add_dll_directory(os.path.dirname(path))  # what torchvision does for its DLL's neighbours
        torch.ops.load_library(path)
        torch.ops.torchvision.nms  # noqa: B018  (raises unless the library registered the operator)
        return True
    except (OSError, RuntimeError, AttributeError):
        return False


def _nms_op():
    """``torch.ops.torchvision.nms``, loaded on first use: the library alone, else through the package."""
    if "op" not in _state:
        path = torchvision_library()
        if path is not None and _load_library(path):
            _state["via"] = "library"
        else:
            import torchvision.ops  # noqa: F401  (registers the operator; fails with torchvision's own message)

            _state["via"] = "torchvision"
        _state["op"] = torch.ops.torchvision.nms
    return _state["op"]


def loaded_via() -> str | None:
    """How the operator was loaded: ``"library"``, ``"torchvision"`` (the fallback) or None (not yet)."""
    return _state.get("via")


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """``boxes [N, 4]`` x1, y1, x2, y2 and ``scores [N]`` -> kept indices ``[K]`` int64, by decreasing score;
    a box is dropped when its IoU with a kept higher-scoring box is > ``iou_threshold``."""
    return _nms_op()(boxes, scores, float(iou_threshold))


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
                ) -> torch.Tensor:
    """NMS within each category ``idxs [N]`` (never across): ``boxes [N, 4]``, ``scores [N]`` -> kept
    indices ``[K]`` int64 by decreasing score. As ``torchvision.ops.batched_nms``: boxes of different
    categories are moved apart by an offset and go through one NMS; large inputs (over 4,000 coordinates on
    CPU, 100,000 on CUDA) run one NMS per category instead."""
    if boxes.numel() > (4000 if boxes.device.type == "cpu" else 100_000) and not torch.jit.is_tracing():
        return _batched_nms_per_class(boxes, scores, idxs, iou_threshold)
    return _batched_nms_offsets(boxes, scores, idxs, iou_threshold)


def _batched_nms_offsets(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
                         ) -> torch.Tensor:
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))  # [N]: no overlap across classes
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def _batched_nms_per_class(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
                           ) -> torch.Tensor:
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)  # [N]
    for class_id in torch.unique(idxs):
        members = torch.where(idxs == class_id)[0]
        keep_mask[members[nms(boxes[members], scores[members], iou_threshold)]] = True
    keep = torch.where(keep_mask)[0]
    return keep[scores[keep].sort(descending=True)[1]]


def diou(a: torch.Tensor, b: torch.Tensor, beta: float) -> torch.Tensor:
    """Darknet's DIoU-NMS measure between ``a [N, 4]`` and ``b [M, 4]`` (x1, y1, x2, y2) -> ``[N, M]``:
    ``IoU - (d / c) ** beta``, d the squared distance between the centres, c the squared diagonal of the
    smallest box enclosing both (``IoU`` alone where c is 0): ``box_diounms`` in darknet's src/box.c."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)  # [N, M]
    area_a = (a[:, 2:] - a[:, :2]).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).prod(1)
    union = area_a[:, None] + area_b[None, :] - inter
    iou = torch.where((inter > 0) & (union > 0), inter / union.clamp(min=1e-30), torch.zeros_like(inter))
    d = ((a[:, None, :2] + a[:, None, 2:] - b[None, :, :2] - b[None, :, 2:]) / 2).pow(2).sum(2)
    c = (torch.max(a[:, None, 2:], b[None, :, 2:]) - torch.min(a[:, None, :2], b[None, :, :2])).pow(2).sum(2)
    return torch.where(c > 0, iou - (d / c.clamp(min=1e-30)).pow(beta), iou)


def diou_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, beta: float,
             idxs: torch.Tensor | None = None, block: int = 1024) -> torch.Tensor:
    """Darknet's DIoU-NMS (``nms_kind=diounms``, or ``greedynms`` with beta 0.6): ``boxes [N, 4]`` xyxy,
    ``scores [N]`` -> kept indices ``[K]`` int64 by decreasing score (ties in index order); a box is dropped when
    :func:`diou` with a kept higher-scoring box of its category (``idxs [N]``; all one without) is >
    ``threshold``. The greedy result exactly, computed ``block`` boxes at a time: each block is first
    suppressed by the boxes kept before it, then within itself by iterating ``keep = ~any(kept i suppresses
    j)`` until it holds still (Cluster-NMS: the k-th pass settles the k-th box, most settle in a few passes)."""
    order = torch.argsort(scores, descending=True, stable=True)
    boxes = boxes[order].float()
    idxs = None if idxs is None else idxs[order]
    keep = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    kept = torch.zeros(0, dtype=torch.long, device=boxes.device)
    for s in range(0, len(order), block):
        e = min(s + block, len(order))
        blk = boxes[s:e]
        alive = torch.ones(e - s, dtype=torch.bool, device=boxes.device)
        if len(kept):
            hit = diou(boxes[kept], blk, beta) > threshold  # [K, B]
            if idxs is not None:
                hit &= idxs[kept][:, None] == idxs[None, s:e]
            alive &= ~hit.any(0)
        hit = (diou(blk, blk, beta) > threshold).triu(1)  # [B, B]: i before j
        if idxs is not None:
            hit &= idxs[s:e, None] == idxs[None, s:e]
        now = alive
        while True:
            after = alive & ~(hit & now[:, None]).any(0)
            if torch.equal(after, now):
                break
            now = after
        keep[s:e] = now
        kept = torch.cat((kept, torch.nonzero(now).flatten() + s))
    return order[keep]
