"""AlexeyAB's [yolo] heads (``scale_x_y``, ``new_coords=1``) and ``[net] letter_box``.

Oracles: the formulas of AlexeyAB darknet's ``src/yolo_layer.c`` (``get_yolo_box`` and ``forward_yolo_layer``:
x = (i + s*p - (s-1)/2) / lw, w = exp(t_w) * anchor_w / net_w, or with new_coords w = p_w^2 * 4 * anchor_w /
net_w, p being the logistic output of the conv before) computed here in numpy from the conv's own output, and
OpenCV's darknet importer on a hand-written cfg holding both kinds of head.
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import calibrated_model, photo_batch
from yolo.data.augment import stretch
from yolo.errors import InputError
from yolo.model.cfg_edit import set_letter_box, set_num_classes
from yolo.model.cfg_parser import parse_cfg_text
from yolo.model.darknet import Darknet
from yolo.utils.boxes import unletterbox_boxes

# Two heads: stride 4 with new_coords=1 (logistic conv before it), stride 8 classic with scale_x_y=1.2.
HEADS_CFG = """[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=32
size=3
stride=2
pad=1
activation=leaky

[convolutional]
filters=21
size=1
stride=1
pad=1
activation=logistic

[yolo]
mask=0,1,2
anchors=6,8, 12,10, 16,30, 30,24, 40,60, 64,50
classes=2
num=6
scale_x_y=2.0
new_coords=1

[route]
layers=-3

[convolutional]
batch_normalize=1
filters=32
size=3
stride=2
pad=1
activation=leaky

[convolutional]
filters=21
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=3,4,5
anchors=6,8, 12,10, 16,30, 30,24, 40,60, 64,50
classes=2
num=6
scale_x_y=1.2
"""


def _cfg_file(tmp_path, text=HEADS_CFG, name="heads.cfg"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------- parsing


def test_parse_heads():
    spec = parse_cfg_text(HEADS_CFG)
    first, second = spec.heads
    assert (first.new_coords, first.scale_x_y) == (True, 2.0)
    assert (second.new_coords, second.scale_x_y) == (False, 1.2)


def test_new_coords_needs_a_logistic_conv_before():
    text = HEADS_CFG.replace("filters=21\nsize=1\nstride=1\npad=1\nactivation=logistic",
                             "filters=21\nsize=1\nstride=1\npad=1\nactivation=linear", 1)
    with pytest.raises(InputError) as info:
        parse_cfg_text(text, "h.cfg")
    line = text.splitlines().index("new_coords=1") + 1
    assert str(info.value).startswith(f"h.cfg:{line}: ") and "activation=logistic" in str(info.value)


@pytest.mark.parametrize("value,want", [(None, True), ("1", True), ("0", False)])
def test_letter_box_key(value, want):
    text = HEADS_CFG if value is None else HEADS_CFG.replace("channels=3", f"channels=3\nletter_box={value}")
    spec = parse_cfg_text(text)
    assert spec.net.letter_box == (None if value is None else int(value))
    assert Darknet(spec).letterbox is want
    assert "letter_box" not in spec.net.extras


def test_letter_box_out_of_range_is_refused():
    with pytest.raises(InputError, match=r"h.cfg:5: letter_box=2"):
        parse_cfg_text(HEADS_CFG.replace("channels=3", "channels=3\nletter_box=2"), "h.cfg")


def test_set_letter_box_keeps_the_rest():
    out = set_letter_box(HEADS_CFG, False)
    assert parse_cfg_text(out).net.letter_box == 0
    back = set_letter_box(out, True)
    assert parse_cfg_text(back).net.letter_box == 1
    assert back.replace("letter_box=1\n", "") == HEADS_CFG


def test_set_num_classes_on_new_coords_heads_keeps_the_logistic_conv():
    out = set_num_classes(HEADS_CFG, 7)
    spec = parse_cfg_text(out)
    assert [h.classes for h in spec.heads] == [7, 7]
    conv = spec.layers[spec.heads[0].index - 1]
    assert (conv.filters, conv.activation, conv.batch_normalize) == (3 * 12, "logistic", False)


# ---------------------------------------------------------------------------- decoding vs darknet's formulas


def _darknet_decode(conv_out: np.ndarray, anchors, stride: int, s: float, new_coords: bool, net_hw) -> np.ndarray:
    """AlexeyAB's forward_yolo_layer + get_yolo_box on one head's conv output ``[A*(5+C), H, W]`` (after the
    conv's own activation) -> ``[A*H*W, 5+C]`` cx, cy, w, h in pixels, objectness, classes; rows anchor, y, x."""
    a = len(anchors)
    n = conv_out.shape[0] // a
    h, w = conv_out.shape[1:]
    out = conv_out.reshape(a, n, h, w).astype(np.float64)
    logistic = 1 / (1 + np.exp(-out))
    rows = []
    for k in range(a):
        if new_coords:
            p = out[k]
        else:
            p = out[k].copy()
            p[:2] = logistic[k, :2]
            p[4:] = logistic[k, 4:]
        x = s * p[0] - 0.5 * (s - 1)
        y = s * p[1] - 0.5 * (s - 1)
        jj, ii = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        bx = (ii + x) / w * net_hw[1]
        by = (jj + y) / h * net_hw[0]
        if new_coords:
            bw = p[2] * p[2] * 4 * anchors[k][0]
            bh = p[3] * p[3] * 4 * anchors[k][1]
        else:
            bw = np.exp(p[2]) * anchors[k][0]
            bh = np.exp(p[3]) * anchors[k][1]
        block = np.stack([bx, by, bw, bh, *p[4:]], -1)  # [H, W, 5+C]
        rows.append(block.reshape(-1, n))
    return np.concatenate(rows)


@torch.no_grad()
def test_decode_matches_darknet_formulas(tmp_path):
    model = calibrated_model(_cfg_file(tmp_path), seed=3, size=(96, 128))
    # the conv before the new_coords head is built linear: its logistic is the head's
    conv = model.module_list[model.spec.heads[0].index - 1]
    assert isinstance(conv.act, torch.nn.Identity)
    x = photo_batch(96, 128)
    captured = {}
    hooks = [model.module_list[h.index - 1].register_forward_hook(
        lambda m, i, o, k=h.index: captured.__setitem__(k, o)) for h in model.spec.heads]
    pred = model.decode(model(x))[0].numpy()
    for hook in hooks:
        hook.remove()
    expected = []
    for head in model.spec.heads:
        out = captured[head.index][0].numpy()
        if head.new_coords:
            out = 1 / (1 + np.exp(-out.astype(np.float64)))  # the cfg's activation=logistic
        expected.append(_darknet_decode(out, head.head_anchors, head.out_stride, head.scale_x_y,
                                        head.new_coords, (96, 128)))
    expected = np.concatenate(expected)
    assert pred.shape == expected.shape == (3 * 24 * 32 + 3 * 12 * 16, 7)
    assert np.abs(pred - expected).max() < 1e-4
    # scale_x_y reaches beyond the cell: new_coords head offsets in (-0.5, 1.5) cells
    assert np.isfinite(pred).all()


def test_decode_reaches_cell_edges_with_scale_x_y():
    """With s > 1, finite logits put a centre exactly on the cell's left and right edges (s = 1 cannot)."""
    spec = parse_cfg_text(HEADS_CFG)
    from yolo.model.head import YoloHead

    for head_spec in spec.heads:
        head = YoloHead(head_spec)
        s = head_spec.scale_x_y
        raw = torch.zeros(1, 3, 1, 2, 7)
        for frac, col in ((0.0, 0), (1.0, 1)):
            p = (frac + (s - 1) / 2) / s  # s * p - (s - 1) / 2 = frac
            raw[0, 0, 0, col, 0] = torch.logit(torch.tensor(p))
        out = head.decode(raw)[0]  # rows anchor, y, x
        stride = head_spec.out_stride
        assert out[0, 0].item() == pytest.approx(0.0, abs=1e-5)  # left edge of column 0
        assert out[1, 0].item() == pytest.approx(2.0 * stride, abs=1e-4)  # right edge of column 1


# ---------------------------------------------------------------------------- OpenCV


@pytest.mark.skipif(not hasattr(cv2.dnn, "readNetFromDarknet"), reason="OpenCV without the darknet importer")
def test_heads_match_opencv(tmp_path):
    model = calibrated_model(_cfg_file(tmp_path), seed=1, bn_eps=1e-6, size=(96, 128))
    weights = tmp_path / "heads.weights"
    model.save_darknet_weights(weights)
    cv_cfg = _cfg_file(tmp_path, re.sub(r"\[yolo\]", "[yolo]\nthresh=0\nnms_threshold=0", HEADS_CFG), "cv.cfg")
    x = torch.flip(photo_batch(96, 128), dims=[3]).contiguous()
    with torch.no_grad():
        raw = model(x)
        pred = model.decode(raw)[0]
    rows, start = [], 0
    for r in raw:  # ours: anchor, y, x; OpenCV: y, x, anchor
        a, h, w, n = r.shape[1:]
        rows.append(pred[start:start + a * h * w].view(a, h, w, n).permute(1, 2, 0, 3).reshape(-1, n))
        start += a * h * w
    ours = torch.cat(rows).numpy()
    net = cv2.dnn.readNetFromDarknet(str(cv_cfg), str(weights))
    net.setInput(x.numpy())
    theirs = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))
    assert theirs.shape == ours.shape
    assert np.abs(ours[:, :2] - theirs[:, :2] * [128, 96]).max() / 128 < 1e-5
    assert (np.abs(ours[:, 2:4] - theirs[:, 2:4] * [128, 96]) / (theirs[:, 2:4] * [128, 96])).max() < 1e-4
    assert np.abs(ours[:, 4] - theirs[:, 4]).max() < 1e-5
    assert np.abs(ours[:, 5:] * ours[:, 4:5] - theirs[:, 5:]).max() < 1e-5  # OpenCV: objectness x class
    assert ours[:, 4].std() > 0.05  # the outputs depend on the pixels


# ---------------------------------------------------------------------------- stretch


@pytest.mark.parametrize("shape", [(120, 200), (300, 90), (64, 64)])
def test_stretch_inverse_is_exact_on_pixels(shape):
    """Paint a rectangle, stretch the picture, find the rectangle again by its pixels, map it back."""
    h, w = shape
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = w // 5, h // 4, w // 2, (3 * h) // 4
    img[y1:y2, x1:x2] = 255
    out, info = stretch(img, (160, 96))
    assert out.shape == (160, 96, 3) and info.pad == (0.0, 0.0)
    ys, xs = np.nonzero(out[..., 0] > 127)
    measured = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float64)
    back = unletterbox_boxes(measured, info)[0]
    tol = 1.0 / min(info.scale) + 0.01  # a stretched pixel, in original pixels
    assert torch.allclose(back, torch.tensor([x1, y1, x2, y2], dtype=torch.float64), atol=tol)
    assert info.scale == (96 / w, 160 / h)


def test_dataset_stretches_for_validation(tmp_path):
    """``DetectionDataset(letterbox=False)``: the image fills the whole input, normalized labels are unchanged,
    and the info maps the input back to the original pixels."""
    from yolo.data.dataset import DetectionDataset
    from yolo.data.formats import load_data_config
    from yolo.data.split import load_split
    from yolo.data.synthetic import write_dataset

    root = write_dataset(tmp_path / "d", 0, 2, (96, 128), seed=0)
    data = tmp_path / "d.yaml"
    data.write_text(f"path: {root}\ntrain: images/val\nval: images/val\nnames: [a, b, c, d, e]\n")
    index = load_split(load_data_config(data), "val")
    dataset = DetectionDataset(index, 64, train=False, letterbox=False)
    for i in range(len(dataset)):
        img, labels, path, info = dataset[i]
        assert img.shape == (3, 64, 64) and info.shape == (96, 128)
        assert info.scale == (64 / 128, 64 / 96) and info.pad == (0.0, 0.0)
        want = np.asarray(index.labels[i], np.float32).reshape(-1, 5)
        np.testing.assert_allclose(labels[:, 1:].numpy(), want, atol=1e-6)
    with pytest.raises(InputError, match="stretching is for validation"):
        DetectionDataset(index, 64, train=True, letterbox=False)
