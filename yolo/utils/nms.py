"""Non-maximum suppression through torchvision's compiled operator, without importing the torchvision package.

Importing ``torchvision`` costs 1.5-2 s of start-up (its Python package pulls in ``torch._dynamo``), while its
NMS kernels live in a compiled library (``_C_stable``, ``_C`` before torchvision 0.29) that
``torch.ops.load_library`` loads in milliseconds. The library is found with ``importlib.util.find_spec``
(which does not import the package) and loaded on the first call; where it cannot be found or loaded,
``import torchvision`` registers the operator instead (and explains a torch/torchvision mismatch).

``nms`` and ``batched_nms`` return exactly what ``torchvision.ops.nms`` / ``batched_nms`` return (tested
against them): the same operator, the same class-offset trick and the same size switch to one NMS per class;
but where a box reaches below 0 (candidates are not clipped before NMS), all are first moved by the same
amount, which torchvision's trick needs to keep the classes apart and does not do.
``diou_nms`` is darknet's DIoU-NMS (the cfg's ``nms_kind=greedynms`` / ``diounms``), which torchvision has not:
the same greedy suppression with ``IoU - (d / c) ** beta`` for IoU (tested against darknet's loops).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os

import numpy as np
import torch

from yolo.utils import nms_native

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
    low = boxes.min()
    if low < 0:  # torchvision's offsets keep classes apart only for coordinates >= 0: a box reaching far past
        boxes = boxes - low  # the top-left edge could suppress another class's; moved (IoU does not change)
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
    as_np = (t.detach().float().cpu().numpy() for t in (a, b))
    return torch.from_numpy(_diou(*as_np, beta, None))


def _diou(a: np.ndarray, b: np.ndarray, beta: float, threshold: float | None) -> np.ndarray:
    """:func:`diou` of float32 arrays ``[N, 4]``, ``[M, 4]`` -> ``[N, M]``; with ``threshold`` only
    ``diou > threshold`` as bool, the distance term computed only where the IoU alone passes (it only lowers
    it). NumPy: NMS calls it on many small groups, where torch's per-op cost would dominate."""
    ax1, ay1, ax2, ay2 = (v[:, None] for v in a.T)  # [N, 1] each
    bx1, by1, bx2, by2 = b.T  # [M] each
    inter = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None) * \
        np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)  # [N, M]
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=(inter > 0) & (union > 0))
    if threshold is None:
        i, j = (v.ravel() for v in np.indices(iou.shape))
    else:
        i, j = np.nonzero(iou > threshold)
    a, b = a[i], b[j]
    d = ((a[:, 0] + a[:, 2] - b[:, 0] - b[:, 2]) / 2) ** 2 + ((a[:, 1] + a[:, 3] - b[:, 1] - b[:, 3]) / 2) ** 2
    c = (np.maximum(a[:, 2], b[:, 2]) - np.minimum(a[:, 0], b[:, 0])) ** 2 + \
        (np.maximum(a[:, 3], b[:, 3]) - np.minimum(a[:, 1], b[:, 1])) ** 2
    term = np.power(np.divide(d, c, out=np.zeros_like(d), where=c > 0), np.float32(beta))
    value = iou[i, j] - np.where(c > 0, term, np.float32(0))
    if threshold is None:
        return value.reshape(iou.shape)
    out = np.zeros(iou.shape, dtype=bool)
    out[i, j] = value > threshold
    return out


def diou_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, beta: float,
             idxs: torch.Tensor | None = None, block: int = 2048) -> torch.Tensor:
    """Darknet's DIoU-NMS (``nms_kind=diounms``, or ``greedynms`` with beta 0.6): ``boxes [N, 4]`` xyxy,
    ``scores [N]`` -> kept indices ``[K]`` int64 by decreasing score (ties in index order); a box is dropped when
    :func:`diou` with a kept higher-scoring box of its category (``idxs [N]``; all one without) is >
    ``threshold``. Darknet's greedy result exactly, per category, ``block`` boxes at a time: a block is first
    suppressed by the boxes kept before it, then box by box within itself (only boxes that overlap a later one
    enough take a step). Where the C kernel is built (:mod:`yolo.utils.nms_native`), it runs darknet's loop
    instead, with the same result."""
    lib = nms_native.checked_library(_native_agrees)
    order = torch.argsort(scores.detach().cpu(), descending=True, stable=True)
    keep = np.zeros(len(order), dtype=bool)
    boxes_np = boxes.detach().float().cpu().numpy()
    if idxs is None:
        groups = [order]
    else:  # by category, each in decreasing score: one stable sort, then split where the category changes
        ranked = idxs.detach().cpu()[order]
        by_class = torch.argsort(ranked, stable=True)
        sizes = torch.unique_consecutive(ranked[by_class], return_counts=True)[1]
        groups = order[by_class].split(sizes.tolist())
    for group in groups:
        rows = group.numpy()
        if len(rows) < 2:
            keep[rows] = True
        elif lib is not None:
            keep[rows[nms_native.greedy(lib, boxes_np[rows], threshold, beta)]] = True
        else:
            keep[rows[_greedy(boxes_np[rows], threshold, beta, block)]] = True
    kept = torch.from_numpy(np.nonzero(keep)[0]).to(scores.device)
    return kept[torch.argsort(scores[kept], descending=True, stable=True)]


def _greedy(boxes: np.ndarray, threshold: float, beta: float, block: int) -> np.ndarray:
    """``boxes [N, 4]`` in decreasing score -> ``[N]`` bool, kept: each box not suppressed by a kept earlier one."""
    n = len(boxes)
    keep = np.ones(n, dtype=bool)
    for s in range(0, n, block):
        e = min(s + block, n)
        here = keep[s:e]  # a view: suppression below writes into keep
        before = np.nonzero(keep[:s])[0]
        for c in range(0, len(before), block):  # the kept boxes of earlier blocks, a block of them at a time
            here &= ~_diou(boxes[before[c:c + block]], boxes[s:e], beta, threshold).any(0)
        hit = np.triu(_diou(boxes[s:e], boxes[s:e], beta, threshold), 1)  # [B, B]: i before j
        for i in np.nonzero(hit.any(1))[0]:
            if here[i]:
                here &= ~hit[i]
    return keep


def _native_agrees(lib) -> bool:
    """The C kernel keeps what :func:`_greedy` keeps on crowded random boxes (many suppressions, ties of
    coincident boxes, blocks of 64), at three betas and thresholds."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (700, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(1, 40, (700, 2)).astype(np.float32)], 1)
    boxes[600:] = boxes[:100]  # coincident boxes: c = 0 never, IoU 1
    for beta, threshold in ((0.6, 0.45), (0.3, 0.3), (1.0, 0.6)):
        if not np.array_equal(nms_native.greedy(lib, boxes, threshold, beta), _greedy(boxes, threshold, beta, 64)):
            return False
    return True
