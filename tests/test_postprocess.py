"""Post-processing against references written here: greedy NMS with our own IoU, torchvision's nms,
and a letterbox geometry computed independently (and measured on real pixels)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import nms as tv_nms

from yolo.data.augment import letterbox
from yolo.errors import InputError
from yolo.runtime.postprocess import non_max_suppression, postprocess
from yolo.utils.boxes import letterbox_boxes, unletterbox_boxes

# ---------------------------------------------------------------- brute-force reference (independent code)

def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _reference(pred: np.ndarray, conf, iou, agnostic=False, multi_label=False, classes=None, max_det=10**9):
    """One image's ``[N, 5+C]`` -> sorted list of (x1, y1, x2, y2, score, class), greedy NMS by score."""
    cands = []
    for row in pred:
        cx, cy, w, h, obj = row[:5]
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        scores = obj * row[5:]
        picks = [c for c in range(len(scores)) if scores[c] > conf] if multi_label else \
            [int(np.argmax(scores))] if scores.max() > conf else []
        cands += [(*box, float(scores[c]), c) for c in picks if classes is None or c in classes]
    cands.sort(key=lambda d: -d[4])
    kept = []
    for d in cands:
        if all(_iou(d, k) <= iou for k in kept if agnostic or k[5] == d[5]):
            kept.append(d)
    return kept[:max_det]


def _random_pred(seed: int, n=300, c=4, size=320.0) -> torch.Tensor:
    """``[2, n, 5+c]`` decoded predictions with clusters of overlapping boxes (so NMS has work to do)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(2, 12, 2, generator=g) * size
    pick = torch.randint(0, 12, (2, n), generator=g)
    cxcy = torch.gather(centres, 1, pick[..., None].expand(-1, -1, 2)) + torch.randn(2, n, 2, generator=g) * 8
    wh = 20 + torch.rand(2, n, 2, generator=g) * 60
    obj = torch.rand(2, n, 1, generator=g)
    cls = torch.rand(2, n, c, generator=g)
    return torch.cat((cxcy, wh, obj, cls), -1).double()


def _same(ours: torch.Tensor, ref: list, tol=1e-6):
    assert len(ours) == len(ref), (len(ours), len(ref))
    if ref:
        np.testing.assert_allclose(ours.double().numpy(), np.array(ref), atol=tol, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("agnostic", [False, True])
@pytest.mark.parametrize("multi_label", [False, True])
def test_nms_matches_greedy_reference(seed, agnostic, multi_label):
    pred = _random_pred(seed)
    ours = non_max_suppression(pred.float(), conf=0.3, iou=0.45, agnostic=agnostic, multi_label=multi_label)
    for b in range(2):
        ref = _reference(pred[b].numpy(), 0.3, 0.45, agnostic=agnostic, multi_label=multi_label)
        assert len(ref) > 10
        _same(ours[b], ref, tol=1e-3)


def test_max_det_and_classes():
    pred = _random_pred(5)
    ours = non_max_suppression(pred.float(), conf=0.2, iou=0.5, classes=[1, 3], max_det=7)
    for b in range(2):
        ref = _reference(pred[b].numpy(), 0.2, 0.5, classes=[1, 3], max_det=7)
        assert len(ref) == 7
        _same(ours[b], ref, tol=1e-3)
        assert set(ours[b][:, 5].long().tolist()) <= {1, 3}


def test_agnostic_equals_torchvision_nms():
    pred = _random_pred(7).float()
    (ours, _) = non_max_suppression(pred, conf=0.25, iou=0.3, agnostic=True)
    p = pred[0]
    scores, cls = (p[:, 5:] * p[:, 4:5]).max(1)
    keep = scores > 0.25
    cx, cy, w, h = p[keep, :4].unbind(1)
    boxes = torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), 1)
    idx = tv_nms(boxes, scores[keep], 0.3)
    expected = torch.cat((boxes[idx], scores[keep][idx, None], cls[keep][idx, None].float()), 1)
    torch.testing.assert_close(ours, expected)


def test_class_aware_equals_torchvision_nms_per_class():
    pred = _random_pred(8).float()
    (ours, _) = non_max_suppression(pred, conf=0.25, iou=0.45)
    p = pred[0]
    scores, cls = (p[:, 5:] * p[:, 4:5]).max(1)
    cx, cy, w, h = p[:, :4].unbind(1)
    boxes = torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), 1)
    for c in range(4):
        m = (cls == c) & (scores > 0.25)
        idx = tv_nms(boxes[m], scores[m], 0.45)
        mine = ours[ours[:, 5] == c]
        torch.testing.assert_close(mine[:, :4], boxes[m][idx])
        torch.testing.assert_close(mine[:, 4], scores[m][idx])


def test_nothing_above_threshold_and_bad_thresholds():
    pred = _random_pred(0).float()
    pred[..., 4] = 0.1
    out = non_max_suppression(pred, conf=0.2)
    assert [d.shape for d in out] == [(0, 6), (0, 6)]
    for kwargs in ({"conf": 1.5}, {"conf": -0.1}, {"iou": 2.0}, {"max_det": 0}):
        with pytest.raises(InputError):
            non_max_suppression(pred, **kwargs)


# ---------------------------------------------------------------- letterbox geometry

SHAPES = [(480, 640), (640, 480), (333, 517), (101, 999), (77, 55), (416, 416)]


def _expected_geometry(h, w, size, scaleup):
    """Independent: fit (h, w) into size keeping aspect, pad evenly (left/top get the floor)."""
    H, W = size
    r = min(H / h, W / w)
    if not scaleup:
        r = min(r, 1.0)
    nw, nh = round(w * r), round(h * r)
    return nw / w, nh / h, (W - nw) // 2, (H - nh) // 2


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", [(320, 320), (256, 416)])
@pytest.mark.parametrize("scaleup", [True, False])
def test_postprocess_returns_boxes_to_original_pixels(shape, size, scaleup):
    h, w = shape
    _, info = letterbox(np.zeros((h, w, 3), np.uint8), size, scaleup=scaleup)
    sx, sy, left, top = _expected_geometry(h, w, size, scaleup)
    g = torch.Generator().manual_seed(h * w)
    x1y1 = torch.rand(20, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
    wh = (0.05 + torch.rand(20, 2, generator=g) * 0.25) * torch.tensor([w, h])
    orig = torch.cat((x1y1, x1y1 + wh), 1).double()  # [20, 4] inside the image
    # the same boxes in letterboxed pixels, as the network would report them (cx, cy, w, h)
    lx1, lx2 = orig[:, 0] * sx + left, orig[:, 2] * sx + left
    ly1, ly2 = orig[:, 1] * sy + top, orig[:, 3] * sy + top
    pred = torch.zeros(1, 20, 6, dtype=torch.float64)
    pred[0, :, :4] = torch.stack(((lx1 + lx2) / 2, (ly1 + ly2) / 2, lx2 - lx1, ly2 - ly1), 1)
    pred[0, :, 4] = torch.linspace(0.99, 0.9, 20, dtype=torch.float64)
    pred[0, :, 5] = 1.0
    (det,) = postprocess(pred, [info], conf=0.5, iou=1.0)  # iou=1: NMS keeps every box
    order = torch.argsort(pred[0, :, 4], descending=True)
    assert (det[:, :4].double() - orig[order]).abs().max() < 1e-3  # float32 rounding only
    assert torch.allclose(unletterbox_boxes(letterbox_boxes(orig, info), info), orig, atol=1e-9)


@pytest.mark.parametrize("shape", [(240, 320), (333, 517), (91, 203)])
@pytest.mark.parametrize("scaleup", [True, False])
def test_unletterbox_matches_measured_pixels(shape, scaleup):
    """Paint a rectangle, letterbox the picture, find the rectangle again by its pixels, map it back."""
    h, w = shape
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = w // 5, h // 4, w // 5 + w // 2, h // 4 + h // 3  # pixels [x1, x2) x [y1, y2)
    img[y1:y2, x1:x2] = 255
    lb, info = letterbox(img, (256, 256), scaleup=scaleup, pad_value=0)
    ys, xs = np.nonzero(lb[:, :, 0] >= 128)
    measured = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float64)
    back = unletterbox_boxes(measured, info)[0]
    tol = 0.6 / min(info.scale) + 0.01  # half a letterboxed pixel, in original pixels
    assert (back - torch.tensor([x1, y1, x2, y2], dtype=torch.float64)).abs().max() <= tol
    assert lb.shape[:2] == (256, 256) and cv2.countNonZero(lb[:, :, 0]) > 0
