"""YOLOv3 loss: assign each ground truth to anchors across all heads, then box + objectness + class terms.

Conventions (the network's, see ``yolo.model.head``): a head map is ``[B, A, H, W, 5+C]`` raw logits; a cell's
box is ``cx = (s * sigmoid(tx) - (s - 1) / 2 + i) * stride`` with s = the head's ``scale_x_y`` (1 in YOLOv3),
``w = exp(tw) * anchor_w``, or with ``new_coords`` ``w = (2 * sigmoid(tw))^2 * anchor_w`` (anchors in input
pixels). Objectness and classes are logits for every head (a new_coords head's logistic is applied in decoding,
not in the conv), so their BCE runs on logits: finite under AMP whatever the outputs saturate to. Targets are
``[M, 6]``: batch index, class, cx, cy, w, h normalized to the input image ``[0, 1]``.

Assignment (darknet): a gt goes to the anchor, among ALL heads' anchors, whose shape fits it best (wh-IoU of
boxes sharing a centre), in the cell holding its centre; with ``iou_t < 1`` also to every other anchor whose
wh-IoU exceeds ``iou_t``. When two gts want the same (image, anchor, cell), the LAST one in ``targets`` wins,
as in darknet where later truths overwrite earlier ones.

Reduction (documented, ultralytics-style): box and class terms are means over the assigned predictions; the
objectness term is the mean BCE over every cell of a head, summed over heads; the total is
``(box_gain * box + obj_gain * obj + cls_gain * cls) * B`` so the gradient scale follows the batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from yolo.errors import InputError
from yolo.model.head import decode_boxes
from yolo.utils.boxes import cxcywh_to_xyxy, wh_iou

MAX_LOG_WH = 10.0  # exp(tw) is clamped at exp(10) in the loss, so a wild start cannot overflow
MIN_TARGET_WH = 1e-3  # grid cells: the darknet box loss's target size floor (its log / sqrt of 0 is -inf / no slope)


@dataclass
class HeadTargets:
    """Assigned predictions of one head: ``P`` rows of image, anchor, cell row, cell column."""

    b: torch.Tensor  # [P] long
    a: torch.Tensor  # [P] long, anchor index inside the head
    gj: torch.Tensor  # [P] long, cell row
    gi: torch.Tensor  # [P] long, cell column
    box: torch.Tensor  # [P, 4] cx, cy, w, h in grid units of this head
    cls: torch.Tensor  # [P] long
    anchor: torch.Tensor  # [P, 2] anchor (w, h) in grid units
    scale: torch.Tensor  # [P] darknet coordinate weight 2 - w*h (w, h normalized)


def iou_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "ciou", eps: float = 1e-7) -> torch.Tensor:
    """Row-wise ``1 - GIoU`` or ``1 - CIoU`` of ``pred [P, 4]`` and ``target [P, 4]`` (xyxy) -> ``[P]``."""
    px1, py1, px2, py2 = pred.unbind(-1)
    tx1, ty1, tx2, ty2 = target.unbind(-1)
    inter = (torch.min(px2, tx2) - torch.max(px1, tx1)).clamp(min=0) * \
            (torch.min(py2, ty2) - torch.max(py1, ty1)).clamp(min=0)
    pw, ph, tw, th = px2 - px1, py2 - py1, tx2 - tx1, ty2 - ty1
    union = pw * ph + tw * th - inter + eps
    iou = inter / union
    cw = torch.max(px2, tx2) - torch.min(px1, tx1)  # enclosing box
    ch = torch.max(py2, ty2) - torch.min(py1, ty1)
    if kind == "giou":
        enclose = cw * ch + eps
        return 1 - (iou - (enclose - union) / enclose)
    c2 = cw ** 2 + ch ** 2 + eps  # squared diagonal of the enclosing box
    rho2 = ((px1 + px2 - tx1 - tx2) ** 2 + (py1 + py2 - ty1 - ty2) ** 2) / 4  # squared centre distance
    v = (4 / math.pi ** 2) * (torch.atan(tw / (th + eps)) - torch.atan(pw / (ph + eps))) ** 2
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return 1 - (iou - rho2 / c2 - alpha * v)


class YoloLoss:
    """``loss(outputs, targets) -> (total, {"box", "obj", "cls"})``.

    ``anchors``: per head ``[A_h, 2]`` (w, h) in input pixels; ``strides``: per head; ``scale_x_y`` and
    ``new_coords``: per head (default 1.0 and False: YOLOv3's head). Gains and kinds as in
    ``yolo.train.config.LossConfig``. :meth:`for_model` reads all of them from a ``Darknet``'s heads.
    """

    def __init__(self, anchors: list[torch.Tensor], strides: list[int], num_classes: int, box: float = 0.05,
                 obj: float = 1.0, cls: float = 0.5, box_loss: str = "ciou", cls_loss: str = "bce",
                 ignore_thresh: float = 0.7, iou_t: float = 0.2, label_smoothing: float = 0.0,
                 scale_x_y: list[float] | None = None, new_coords: list[bool] | None = None):
        if len(anchors) != len(strides):
            raise InputError(f"{len(anchors)} anchor sets for {len(strides)} strides")
        self.scale_x_y = [float(v) for v in scale_x_y] if scale_x_y is not None else [1.0] * len(strides)
        self.new_coords = [bool(v) for v in new_coords] if new_coords is not None else [False] * len(strides)
        if not len(self.scale_x_y) == len(self.new_coords) == len(strides):
            raise InputError(f"{len(self.scale_x_y)} scale_x_y and {len(self.new_coords)} new_coords values for "
                             f"{len(strides)} heads")
        self.anchors = [a.detach().float().cpu().reshape(-1, 2) for a in anchors]
        self.strides = [int(s) for s in strides]
        self.num_classes = num_classes
        self.gains = {"box": box, "obj": obj, "cls": cls}
        self.box_loss, self.cls_loss = box_loss, cls_loss
        self.ignore_thresh, self.iou_t, self.label_smoothing = ignore_thresh, iou_t, label_smoothing
        all_anchors = torch.cat(self.anchors)  # [NA, 2] pixels
        self._head_of = torch.cat([torch.full((len(a),), h) for h, a in enumerate(self.anchors)])  # [NA]
        self._index_in_head = torch.cat([torch.arange(len(a)) for a in self.anchors])  # [NA]
        self._all_anchors = all_anchors

    @classmethod
    def for_model(klass, model, **gains) -> "YoloLoss":  # not ``cls``: that is a gain's name
        """The loss of a ``Darknet``: its heads' anchors, strides, ``scale_x_y`` and ``new_coords``."""
        heads = model.heads
        return klass([h.anchors for h in heads], [int(h.stride) for h in heads], model.num_classes, **gains,
                   scale_x_y=[h.scale_x_y for h in heads], new_coords=[h.new_coords for h in heads])

    def match(self, targets: torch.Tensor, img_hw: tuple[int, int]) -> torch.Tensor:
        """Which (gt, global anchor) pairs learn: ``[M, NA]`` bool (best anchor, plus wh-IoU > ``iou_t``)."""
        wh = targets[:, 4:6].cpu() * torch.tensor([img_hw[1], img_hw[0]], dtype=torch.float32)  # [M, 2] px
        ious = wh_iou(wh, self._all_anchors)  # [M, NA]
        chosen = ious > self.iou_t
        if len(ious):
            chosen[torch.arange(len(ious)), ious.argmax(1)] = True
        return chosen

    def build_targets(self, outputs: list[torch.Tensor], targets: torch.Tensor) -> list[HeadTargets]:
        """Per head, the assigned predictions (last gt wins a shared image/anchor/cell)."""
        img_hw = (outputs[0].shape[2] * self.strides[0], outputs[0].shape[3] * self.strides[0])
        targets = targets.detach().float()
        chosen = self.match(targets, img_hw)  # [M, NA]
        device = outputs[0].device
        result = []
        for h, out in enumerate(outputs):
            _, na, ny, nx, _ = out.shape
            gt, k = chosen[:, self._head_of == h].nonzero(as_tuple=True)  # [P], [P] anchor in head
            t = targets[gt.to(targets.device)].to(device)  # [P, 6]
            s = self.strides[h]
            box = t[:, 2:6] * torch.tensor([img_hw[1], img_hw[0]] * 2, device=device) / s  # [P, 4] grid units
            gi = box[:, 0].long().clamp(0, nx - 1)
            gj = box[:, 1].long().clamp(0, ny - 1)
            b, k = t[:, 0].long(), k.to(device)
            keep = _last_wins(((b * na + k) * ny + gj) * nx + gi)
            anchor = self.anchors[h].to(device)[k] / s  # [P, 2]
            result.append(HeadTargets(b[keep], k[keep], gj[keep], gi[keep], box[keep], t[keep, 1].long(),
                                      anchor[keep], (2 - t[keep, 4] * t[keep, 5])))
        return result

    def decode_boxes(self, raw: torch.Tensor, head: int) -> torch.Tensor:
        """``[B, A, H, W, 5+C]`` raw -> ``[B, A, H, W, 4]`` cx, cy, w, h in input pixels."""
        _, na, ny, nx, _ = raw.shape
        ys, xs = torch.meshgrid(torch.arange(ny, device=raw.device), torch.arange(nx, device=raw.device),
                                indexing="ij")
        grid = torch.stack((xs, ys), -1).to(raw.dtype)  # [H, W, 2]
        anchors = self.anchors[head].to(raw.device, raw.dtype).view(1, na, 1, 1, 2)
        xy, wh = decode_boxes(raw[..., :4], grid, anchors, self.strides[head], self.scale_x_y[head],
                              self.new_coords[head], MAX_LOG_WH)  # [B, A, H, W, 2] each
        return torch.cat((xy, wh), -1)

    @torch.no_grad()
    def ignore_masks(self, outputs: list[torch.Tensor], targets: torch.Tensor) -> list[torch.Tensor]:
        """Per head ``[B, A, H, W]`` bool: the prediction's best IoU with a gt of its image > ``ignore_thresh``."""
        img_hw = (outputs[0].shape[2] * self.strides[0], outputs[0].shape[3] * self.strides[0])
        scale = torch.tensor([img_hw[1], img_hw[0]] * 2, device=outputs[0].device, dtype=torch.float32)
        gts = cxcywh_to_xyxy(targets[:, 2:6].to(scale.device).float() * scale)  # [M, 4] pixels
        masks = []
        for h, out in enumerate(outputs):
            boxes = cxcywh_to_xyxy(self.decode_boxes(out.detach().float(), h))  # [B, A, H, W, 4]
            mask = torch.zeros(out.shape[:4], dtype=torch.bool, device=out.device)
            for b in range(out.shape[0]):
                mine = gts[targets[:, 0].to(scale.device).long() == b]
                if len(mine):
                    best = box_iou(boxes[b].reshape(-1, 4), mine).max(1).values  # [A*H*W]
                    mask[b] = (best > self.ignore_thresh).view(out.shape[1:4])
            masks.append(mask)
        return masks

    def __call__(self, outputs: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """``outputs``: per head ``[B, A, H, W, 5+C]`` raw; ``targets [M, 6]`` -> (total scalar, parts)."""
        assigned = self.build_targets(outputs, targets)
        ignored = self.ignore_masks(outputs, targets)
        device = outputs[0].device
        zero = torch.zeros((), device=device)
        box_sum, cls_sum, obj, n_pos = zero, zero, zero, 0
        for h, (out, t) in enumerate(zip(outputs, assigned)):
            out = out.float()
            tobj = torch.zeros(out.shape[:4], device=device)  # [B, A, H, W]
            weight = (~ignored[h]).float()
            if len(t.b):
                p = out[t.b, t.a, t.gj, t.gi]  # [P, 5+C]
                box_sum = box_sum + self._box_term(p, t, h).sum()
                cls_sum = cls_sum + self._cls_term(p[:, 5:], t.cls).sum()
                tobj[t.b, t.a, t.gj, t.gi] = 1.0
                weight[t.b, t.a, t.gj, t.gi] = 1.0
                n_pos += len(t.b)
            obj = obj + (F.binary_cross_entropy_with_logits(out[..., 4], tobj, reduction="none") * weight).mean()
        box_l = box_sum / max(n_pos, 1)
        cls_l = cls_sum / max(n_pos, 1)
        parts = {"box": box_l * self.gains["box"], "obj": obj * self.gains["obj"], "cls": cls_l * self.gains["cls"]}
        total = (parts["box"] + parts["obj"] + parts["cls"]) * outputs[0].shape[0]
        return total, {k: v.detach() for k, v in parts.items()}

    def _box_term(self, p: torch.Tensor, t: HeadTargets, head: int) -> torch.Tensor:
        """``[P]`` coordinate loss of assigned predictions ``p [P, 5+C]`` of ``head`` (grid units)."""
        s, new_coords = self.scale_x_y[head], self.new_coords[head]
        cell = torch.stack((t.gi, t.gj), 1).to(p.dtype)  # [P, 2]
        if self.box_loss == "darknet":  # AlexeyAB's MSE form: on the scaled offsets, log sizes or sqrt sizes
            txy = (t.box[:, :2] - cell).clamp(0, 1)
            pxy = p[:, :2].sigmoid() * s - (s - 1) / 2
            size = t.box[:, 2:4].clamp(min=MIN_TARGET_WH)  # a zero width (a label of a line) would give log 0
            if new_coords:
                twh, pwh = torch.sqrt(size / (4 * t.anchor)), p[:, 2:4].sigmoid()
            else:
                twh, pwh = torch.log(size / t.anchor), p[:, 2:4]
            err = (pxy - txy) ** 2 + (pwh - twh) ** 2  # [P, 2]
            return t.scale * err.sum(1)
        xy, wh = decode_boxes(p[:, :4], cell, t.anchor, 1, s, new_coords, MAX_LOG_WH)  # [P, 2] each
        pred = cxcywh_to_xyxy(torch.cat((xy, wh), 1))
        return iou_loss(pred, cxcywh_to_xyxy(t.box), self.box_loss)

    def _cls_term(self, logits: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """``[P]`` class loss; zero for a single-class model (objectness says it all)."""
        if self.num_classes <= 1:
            return logits.sum(1) * 0
        eps = self.label_smoothing
        if self.cls_loss == "ce":
            return F.cross_entropy(logits, cls, label_smoothing=eps, reduction="none")
        target = torch.full_like(logits, eps / 2)
        target[torch.arange(len(cls)), cls] = 1 - eps / 2
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(1)


def _last_wins(keys: torch.Tensor) -> torch.Tensor:
    """``[P]`` bool: True for the last occurrence of each key in ``keys [P]``."""
    if not len(keys):
        return torch.zeros(0, dtype=torch.bool, device=keys.device)
    uniq, inverse = torch.unique(keys, return_inverse=True)
    order = torch.arange(len(keys), device=keys.device)
    last = torch.full((len(uniq),), -1, dtype=torch.long, device=keys.device).scatter_reduce(
        0, inverse, order, reduce="amax")
    return last[inverse] == order
