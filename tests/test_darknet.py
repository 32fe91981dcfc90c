"""The Darknet module: parameter counts, input sizes, decode layout, state-dict contract, fuse."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import CFG, calibrated_model, photo_batch
from yolo import Darknet

# Published figures of the official darknet networks
PARAMS = {"yolov3": 61_949_149, "yolov3-tiny": 8_852_366, "yolov3-spp": 62_998_749}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts_match_official_networks(name):
    model = Darknet.from_cfg(CFG / f"{name}.cfg")
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    assert model.num_classes == 80


def test_fused_yolov3_parameter_count():
    model = Darknet.from_cfg(CFG / "yolov3.cfg").fuse()
    assert sum(p.numel() for p in model.parameters()) == 61_922_845


def test_fuse_keeps_outputs():
    model = calibrated_model(CFG / "yolov3-tiny.cfg", seed=3)
    x = photo_batch(128, 160)
    with torch.no_grad():
        before = model.decode(model(x))
        after = model.fuse().decode(model(x))
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("height,width", [(416, 416), (320, 640), (96, 32)])
def test_any_multiple_of_32(height, width):
    model = Darknet.from_cfg(CFG / "yolov3-tiny.cfg").eval()
    with torch.no_grad():
        raw = model(torch.rand(2, 3, height, width))
    assert [tuple(r.shape) for r in raw] == [(2, 3, height // 32, width // 32, 85), (2, 3, height // 16, width // 16, 85)]
    pred = model.decode(raw)
    assert pred.shape == (2, 3 * (height // 32) * (width // 32) + 3 * (height // 16) * (width // 16), 85)


def test_rejects_bad_input_shapes():
    """An InputError (the documented error for bad input; a ValueError too), not a plain ValueError."""
    from yolo.errors import InputError

    model = Darknet.from_cfg(CFG / "yolov3-tiny.cfg")
    with pytest.raises(InputError, match="multiple of 32"):
        model(torch.rand(1, 3, 100, 96))
    with pytest.raises(InputError, match=r"expected input \[B, 3, H, W\]"):
        model(torch.rand(1, 4, 64, 64))


TOY = """[net]
width=64
height=64
channels=3
[convolutional]
filters=14
size=1
stride=32
pad=1
activation=linear
[yolo]
mask=0,1
anchors=10,20, 30,40, 50,60
classes=2
num=3
"""


def test_decode_follows_the_documented_formula_and_row_order():
    """Rows: head by head, then anchor, then y, then x; cx = (sigmoid(tx) + col) * stride, w = exp(tw) * anchor."""
    model = Darknet.from_cfg_text(TOY).eval()
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 96)  # map 2 x 3, stride 32
    with torch.no_grad():
        raw = model(x)[0]
        conv = model.module_list[0](x)  # [1, 2*(5+2), 2, 3]
        pred = model.decode([raw])[0]
    assert raw.shape == (1, 2, 2, 3, 7) and pred.shape == (12, 7)
    anchors = [(10, 20), (30, 40)]
    for a in range(2):
        for y in range(2):
            for x_ in range(3):
                t = conv[0, a * 7:(a + 1) * 7, y, x_]
                row = pred[a * 6 + y * 3 + x_]
                expect = torch.stack([
                    (torch.sigmoid(t[0]) + x_) * 32, (torch.sigmoid(t[1]) + y) * 32,
                    torch.exp(t[2]) * anchors[a][0], torch.exp(t[3]) * anchors[a][1],
                    *torch.sigmoid(t[4:]),
                ])
                torch.testing.assert_close(row, expect)


def test_state_dict_holds_only_weights_with_stable_names():
    model = Darknet.from_cfg(CFG / "yolov3-tiny.cfg")
    keys = list(model.state_dict())
    assert keys[:6] == ["module_list.0.conv.weight", "module_list.0.bn.weight", "module_list.0.bn.bias",
                        "module_list.0.bn.running_mean", "module_list.0.bn.running_var",
                        "module_list.0.bn.num_batches_tracked"]
    assert "module_list.15.conv.bias" in keys
    assert not any("anchor" in k or "stride" in k for k in keys)


def test_batch_items_are_independent():
    model = calibrated_model(CFG / "yolov3-tiny.cfg", seed=2)
    x = photo_batch(128, 128, n=3)
    with torch.no_grad():
        whole = model.decode(model(x))
        single = model.decode(model(x[1:2]))
    torch.testing.assert_close(whole[1:2], single, rtol=1e-4, atol=1e-4)
