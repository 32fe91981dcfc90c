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


# ---------------------------------------------------------------- degenerate boxes (issue 19)


def _rows(boxes_cxcywh, scores, classes=None, c=2) -> torch.Tensor:
    """``[1, N, 5+c]`` decoded rows: the given boxes (input pixels), objectness = score, class prob 1."""
    n = len(boxes_cxcywh)
    pred = torch.zeros(1, n, 5 + c)
    pred[0, :, :4] = torch.tensor(boxes_cxcywh, dtype=torch.float32)
    pred[0, :, 4] = torch.tensor(scores)
    pred[0, torch.arange(n), 5 + torch.tensor(classes or [0] * n)] = 1.0
    return pred


def test_box_in_the_letterbox_border_is_dropped_before_nms():
    """The reported case: a 640x480 photo letterboxed to 416 (52 px of grey above and below); a box lying in
    the top border came out as ``bbox [292.851, 0.0, 40.152, 0.0]`` (zero height once clipped)."""
    _, info = letterbox(np.zeros((480, 640, 3), np.uint8), (416, 416))
    assert info.pad == (0, 52) and info.scale == (0.65, 0.65)
    border = (203.4026, 30.0, 26.0988, 40.0)  # y 10..50 in input pixels: above the image, which starts at y=52
    real = (150.0, 200.0, 80.0, 60.0)
    half_in = (203.4026, 45.0, 26.0988, 60.0)  # y 15..75: mostly in the border, 23 input px inside the image
    old = non_max_suppression(_rows([border, real], [0.9, 0.8]), 0.25, 0.45)[0]
    (x1, y1, x2, y2) = unletterbox_boxes(old[:1, :4], info)[0].tolist()
    assert len(old) == 2 and (y1, y2) == (0.0, 0.0)  # what used to be written: [292.851, 0.0, 40.152, 0.0]
    assert (x1, x2 - x1) == (pytest.approx(292.851, abs=1e-3), pytest.approx(40.152, abs=1e-3))
    (det,) = postprocess(_rows([border, real, half_in], [0.9, 0.8, 0.7]), [info], 0.25, 0.45)
    assert len(det) == 2 and det[:, 4].tolist() == pytest.approx([0.8, 0.7])
    assert ((det[:, 2] - det[:, 0]) >= 1).all() and ((det[:, 3] - det[:, 1]) >= 1).all()
    assert det[1, 1] == 0 and det[1, 3] == pytest.approx((75 - 52) / 0.65)


def test_degenerate_box_neither_suppresses_nor_takes_a_max_det_slot():
    _, info = letterbox(np.zeros((480, 640, 3), np.uint8), (416, 416))
    border = (100.0, 33.0, 60.0, 38.0)  # y 14..52: ends exactly where the image starts
    real = (100.0, 40.0, 60.0, 40.0)  # y 20..60: 8 input px (12 image px) inside; IoU with border 0.71
    (det,) = postprocess(_rows([border, real], [0.9, 0.8]), [info], 0.25, 0.45, max_det=1)
    assert len(det) == 1 and det[0, 4] == pytest.approx(0.8)
    assert det[0, 3] - det[0, 1] == pytest.approx(8 / 0.65)


@pytest.mark.parametrize("size, kept", [(0.5, False), (0.98, False), (1.02, True), (1.5, True)])
def test_sub_pixel_boxes_are_dropped_in_image_pixels(size, kept):
    """A box must be a pixel wide and high in the image it is reported in (original pixels with infos)."""
    _, info = letterbox(np.zeros((100, 200, 3), np.uint8), (416, 416))  # scale 2.08: 1 image px = 2.08 input px
    s = info.scale[0]
    pred = _rows([(200.0, 208.0, size * s, 30.0), (100.0, 208.0, 30.0, size * s)], [0.9, 0.8], [0, 1])
    (det,) = postprocess(pred, [info], 0.25, 0.45)
    assert len(det) == (2 if kept else 0)
    (raw,) = non_max_suppression(pred, 0.25, 0.45)  # without infos: input pixels (2.08x larger) count
    assert len(raw) == (2 if size * s >= 1 else 0)


def test_input_size_clips_before_the_size_rule():
    pred = _rows([(416.0, 100.0, 1.6, 20.0), (414.0, 100.0, 3.0, 20.0)], [0.9, 0.8], [0, 1])  # x 415.2..416.8
    assert len(non_max_suppression(pred, 0.25, 0.45)[0]) == 2
    (det,) = non_max_suppression(pred, 0.25, 0.45, image_size=(416, 416))  # first: 1.2 px, but 0.8 inside
    assert det[:, 4].tolist() == pytest.approx([0.8])


class _FixedBackend:
    """A backend whose output is fixed rows, whatever the image (the Detector's own code does the rest)."""

    names, stride, fixed_shape, fixed_batch, device = ["a", "b"], 32, None, None, "cpu"

    def __init__(self, rows: torch.Tensor):
        self.rows = rows

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.rows.expand(len(x), -1, -1).clone()


def test_detector_writes_no_zero_height_box():
    from yolo.detect.predictor import Detector

    rows = _rows([(203.5, 30.0, 26.1, 40.0), (150.0, 200.0, 80.0, 60.0)], [0.9, 0.8])
    (dets,), _ = Detector(_FixedBackend(rows), img_size=416).detect_batch([np.zeros((480, 640, 3), np.uint8)])
    assert len(dets.boxes) == 1 and (dets.boxes[:, 3] - dets.boxes[:, 1] >= 1).all()
    assert all(row["bbox"][2] >= 1 and row["bbox"][3] >= 1 for row in dets.to_json("x.jpg"))


def test_exported_nms_graph_applies_the_same_rule(tmp_path):
    """The ``--nms`` graph (ONNX, dynamic) keeps exactly what ``non_max_suppression(image_size=...)`` keeps."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from yolo.export.exporter import NmsModel

    class Fixed(torch.nn.Module):  # stands in for Darknet: its decode gives rows scaled to the input size
        def __init__(self, rows):
            super().__init__()
            self.register_buffer("rows", rows)  # [1, N, 5+C], boxes as fractions of the input

        def forward(self, images):
            h, w = images.shape[-2:]
            scale = torch.stack([w + 0 * images[0, 0, 0, 0], h + 0 * images[0, 0, 0, 0]]).repeat(2)
            rows = self.rows.repeat(images.shape[0], 1, 1)
            return torch.cat((rows[..., :4] * scale, rows[..., 4:]), -1)

        def decode(self, raw):
            return raw

    g = torch.Generator().manual_seed(0)
    n = 400
    frac = torch.rand(1, n, 4, generator=g)
    frac[..., 2:] = frac[..., 2:] * 0.02  # many boxes of 0..2% of the input: some under a pixel
    frac[0, :100, 0] = 1 - frac[0, :100, 2] * torch.rand(100, generator=g)  # hanging over the right edge
    rows = torch.cat((frac, torch.rand(1, n, 1, generator=g), torch.rand(1, n, 2, generator=g)), -1)
    model = NmsModel(Fixed(rows), 0.2, 0.45).eval()
    path = tmp_path / "nms.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 64, 96),), str(path), dynamo=False, opset_version=17,
                      input_names=["images"], output_names=["det"],
                      dynamic_axes={"images": {0: "batch", 2: "h", 3: "w"}, "det": {0: "k"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for h, w in ((64, 96), (128, 64)):
        x = torch.zeros(2, 3, h, w)
        (out,) = session.run(None, {"images": x.numpy()})
        ref = non_max_suppression(model.decoded(x), 0.2, 0.45, image_size=(h, w), max_det=10**6)
        unsized = non_max_suppression(model.decoded(x), 0.2, 0.45, max_det=10**6)
        assert sum(map(len, unsized)) > sum(map(len, ref)) > 20  # the rule drops some here
        for b in range(2):
            mine = torch.from_numpy(out[out[:, 0] == b][:, 1:])
            order = torch.argsort(mine[:, 4], descending=True)
            torch.testing.assert_close(mine[order], ref[b], atol=1e-4, rtol=0)
        torch.testing.assert_close(model(x), torch.from_numpy(out), atol=1e-4, rtol=0)
