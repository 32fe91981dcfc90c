"""YOLOv3 loss against independent references: torchvision's box losses and IoU, brute-force assignment."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou, complete_box_iou_loss, generalized_box_iou_loss

from tests.helpers import CFG
from yolo.model.darknet import Darknet
from yolo.train.loss import YoloLoss, iou_loss

TINY_ANCHORS = [torch.tensor([[81., 82], [135, 169], [344, 319]]), torch.tensor([[10., 14], [23, 27], [37, 58]])]
TINY_STRIDES = [32, 16]


def _random_boxes(n, gen):
    xy = torch.rand(n, 2, generator=gen) * 100
    wh = torch.rand(n, 2, generator=gen) * 50 + 1
    return torch.cat((xy, xy + wh), 1)


@pytest.mark.parametrize("kind,reference", [("giou", generalized_box_iou_loss), ("ciou", complete_box_iou_loss)])
def test_iou_losses_match_torchvision(kind, reference):
    gen = torch.Generator().manual_seed(0)
    a, b = _random_boxes(500, gen), _random_boxes(500, gen)
    b[:100] = a[:100] + torch.rand(100, 4, generator=gen)  # many overlapping pairs too
    ours = iou_loss(a, b, kind)
    theirs = reference(a, b, reduction="none")
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def _fake_outputs(batch, size, num_classes, gen):
    """Random raw head maps ``[B, 3, H, W, 5+C]`` for yolov3-tiny's two heads at ``size`` px."""
    return [torch.randn(batch, 3, size // s, size // s, 5 + num_classes, generator=gen) for s in TINY_STRIDES]


def _random_targets(m, batch, num_classes, gen):
    b = torch.randint(0, batch, (m, 1), generator=gen).float()
    c = torch.randint(0, num_classes, (m, 1), generator=gen).float()
    wh = torch.rand(m, 2, generator=gen) * 0.6 + 0.02
    xy = wh / 2 + torch.rand(m, 2, generator=gen) * (1 - wh)
    return torch.cat((b, c, xy, wh), 1)


def _brute_force_assignment(targets, size, iou_t):
    """{(head, image, anchor, row, col): gt index} by plain Python loops; later gts overwrite earlier ones."""
    anchors = [(h, k, float(w), float(hh)) for h, a in enumerate(TINY_ANCHORS) for k, (w, hh) in enumerate(a.tolist())]
    result = {}
    for g, (b, _, cx, cy, w, h) in enumerate(targets.tolist()):
        w_px, h_px = w * size, h * size
        ious = []
        for head, k, aw, ah in anchors:
            inter = min(w_px, aw) * min(h_px, ah)
            ious.append(inter / (w_px * h_px + aw * ah - inter))
        best = max(range(len(ious)), key=lambda i: ious[i])
        for i, (head, k, _, _) in enumerate(anchors):
            if i == best or ious[i] > iou_t:
                s = TINY_STRIDES[head]
                n = size // s
                col, row = min(int(cx * size / s), n - 1), min(int(cy * size / s), n - 1)
                result[(head, int(b), k, row, col)] = g
    return result


@pytest.mark.parametrize("iou_t", [1.0, 0.2])
def test_assignment_matches_brute_force(iou_t):
    gen = torch.Generator().manual_seed(1)
    size = 160
    outputs = _fake_outputs(3, size, 4, gen)
    targets = _random_targets(40, 3, 4, gen)
    targets = torch.cat((targets, targets[:5]))  # duplicates: the same cells wanted twice, last must win
    targets[-5:, 1] = (targets[-5:, 1] + 1) % 4
    loss = YoloLoss(TINY_ANCHORS, TINY_STRIDES, 4, iou_t=iou_t)
    ours = {}
    for h, t in enumerate(loss.build_targets(outputs, targets)):
        for b, a, j, i, c, box in zip(t.b.tolist(), t.a.tolist(), t.gj.tolist(), t.gi.tolist(), t.cls.tolist(),
                                      t.box.tolist()):
            ours[(h, b, a, j, i)] = (c, [round(v * TINY_STRIDES[h] / size, 5) for v in box])
    expected = _brute_force_assignment(targets, size, iou_t)
    assert set(ours) == set(expected)
    for key, g in expected.items():
        assert ours[key][0] == int(targets[g, 1])
        assert ours[key][1] == [round(v, 5) for v in targets[g, 2:].tolist()]


def test_ignore_mask_matches_torchvision_box_iou():
    gen = torch.Generator().manual_seed(2)
    size = 128
    model = Darknet.from_cfg(CFG / "yolov3-tiny.cfg")
    outputs = [o * 0.5 for o in _fake_outputs(2, size, 80, gen)]
    targets = _random_targets(12, 2, 80, gen)
    loss = YoloLoss([h.anchors for h in model.heads], [int(h.stride) for h in model.heads], 80, ignore_thresh=0.3)
    masks = loss.ignore_masks(outputs, targets)
    decoded = model.decode(outputs)  # [B, N, 85], the model's own decode
    xyxy = torch.cat((decoded[..., :2] - decoded[..., 2:4] / 2, decoded[..., :2] + decoded[..., 2:4] / 2), -1)
    t = targets[:, 2:] * size
    gts = torch.cat((t[:, :2] - t[:, 2:] / 2, t[:, :2] + t[:, 2:] / 2), 1)
    ours = torch.cat([m.flatten(1) for m in masks], 1)  # [B, N]
    for b in range(2):
        expected = box_iou(xyxy[b], gts[targets[:, 0] == b]).max(1).values > 0.3
        assert torch.equal(ours[b], expected)
    assert 0 < ours.sum() < ours.numel()  # the threshold actually cuts


def _perfect_outputs(loss, outputs, targets):
    """Raw maps whose assigned cells predict their gt exactly (and confident class logits)."""
    outputs = [o.clone() for o in outputs]
    for h, t in enumerate(loss.build_targets(outputs, targets)):
        off = (t.box[:, :2] - torch.stack((t.gi, t.gj), 1)).clamp(1e-4, 1 - 1e-4)
        o = outputs[h]
        o[t.b, t.a, t.gj, t.gi, 0:2] = torch.log(off / (1 - off))
        o[t.b, t.a, t.gj, t.gi, 2:4] = torch.log(t.box[:, 2:] / t.anchor)
        logits = torch.full((len(t.b), o.shape[-1] - 5), -30.0)
        logits[torch.arange(len(t.b)), t.cls] = 30.0
        o[t.b, t.a, t.gj, t.gi, 5:] = logits
    return outputs


@pytest.mark.parametrize("box_loss", ["darknet", "giou", "ciou"])
@pytest.mark.parametrize("cls_loss", ["bce", "ce"])
def test_perfect_prediction_has_no_box_or_class_loss(box_loss, cls_loss):
    gen = torch.Generator().manual_seed(3)
    outputs = _fake_outputs(2, 128, 5, gen)
    targets = _random_targets(6, 2, 5, gen)
    loss = YoloLoss(TINY_ANCHORS, TINY_STRIDES, 5, box_loss=box_loss, cls_loss=cls_loss, iou_t=1.0)
    _, bad = loss(outputs, targets)
    _, parts = loss(_perfect_outputs(loss, outputs, targets), targets)
    assert bad["box"] > 1e-3 and bad["cls"] > 1e-3
    assert parts["box"] < 1e-6 and parts["cls"] < 1e-6


@pytest.mark.parametrize("box_loss", ["darknet", "giou", "ciou"])
def test_a_box_of_zero_width_gives_a_finite_loss(box_loss):
    """A label of a line (w = 0; the built-in data drops them, a data factory of one's own may not): the
    darknet form took log 0 = -inf and training stopped with a non-finite loss; GIoU and CIoU were finite."""
    gen = torch.Generator().manual_seed(4)
    outputs = [o.requires_grad_() for o in _fake_outputs(2, 128, 5, gen)]
    targets = _random_targets(4, 2, 5, gen)
    targets[0, 4] = 0.0  # zero width
    loss = YoloLoss(TINY_ANCHORS, TINY_STRIDES, 5, box_loss=box_loss)
    total, parts = loss(outputs, targets)
    assert torch.isfinite(total) and all(torch.isfinite(torch.as_tensor(v)) for v in parts.values())
    total.backward()
    assert all(torch.isfinite(o.grad).all() for o in outputs)


def test_gradients_flow_to_every_head_and_term():
    gen = torch.Generator().manual_seed(4)
    outputs = [o.requires_grad_() for o in _fake_outputs(2, 128, 3, gen)]
    targets = _random_targets(10, 2, 3, gen)
    total, parts = YoloLoss(TINY_ANCHORS, TINY_STRIDES, 3, iou_t=0.1)(outputs, targets)
    total.backward()
    for o in outputs:
        assert torch.isfinite(o.grad).all()
        for sl in (slice(0, 4), slice(4, 5), slice(5, None)):
            assert o.grad[..., sl].abs().sum() > 0
    assert set(parts) == {"box", "obj", "cls"}
    empty_total, _ = YoloLoss(TINY_ANCHORS, TINY_STRIDES, 3)(outputs, torch.zeros(0, 6))  # no gts: obj only
    assert torch.isfinite(empty_total)


def _shapes_batch(n=4, size=128, seed=0):
    """Images with drawn rectangles/circles and their targets ``[M, 6]``."""
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for b in range(n):
        img = np.full((size, size, 3), 40, np.uint8)
        for _ in range(2):
            w, h = rng.integers(20, 60, 2)
            x, y = rng.integers(0, size - w), rng.integers(0, size - h)
            cls = int(rng.integers(0, 2))
            if cls == 0:
                cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), (230, 60, 60), -1)
            else:
                cv2.ellipse(img, (int(x + w / 2), int(y + h / 2)), (int(w / 2), int(h / 2)), 0, 0, 360, (60, 220, 60), -1)
            targets.append([b, cls, (x + w / 2) / size, (y + h / 2) / size, w / size, h / size])
        images.append(img)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return x, torch.tensor(targets, dtype=torch.float32)


def test_tiny_model_overfits_a_few_images():
    torch.manual_seed(0)
    model = Darknet.from_cfg(CFG / "yolov3-tiny.cfg").train()
    loss = YoloLoss([h.anchors for h in model.heads], [int(h.stride) for h in model.heads], model.num_classes,
                    box_loss="ciou")
    x, targets = _shapes_batch(n=2)  # 2 images, 12 steps: the shared 2-core CI machine runs ~1-2 s per step
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = []
    for _ in range(12):
        total, _ = loss(model(x), targets)
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(total.item())
    assert history[-1] < 0.5 * history[0], history
