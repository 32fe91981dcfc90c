"""`yolo train` for zoo models: starting weights from a darknet ``.weights`` with a class-count change that
rebuilds the heads (the logistic, BN-free convs of yolov7-tiny's new_coords heads included), and short real
trainings of yolov4-tiny (scale_x_y heads) and yolov7-tiny (new_coords heads) whose loss falls and mAP rises.

The trainings keep every layer, route group and head of the cfgs but divide the filters of the inner convs by
8 (the suite must stay quick on 2 CPU cores), and they learn 8 synthetic images: validation runs on those same
images, so the mAP that rises is the mAP of what the model was shown (the training machinery works; it says
nothing about generalization).
"""

from __future__ import annotations

import csv
import re

import pytest
import torch

from tests.helpers import CFG
from tests.test_train import NAMES, fake_data, run_cfg
from yolo.model.cfg_parser import parse_cfg_text
from yolo.model.cfg_specs import ConvSpec
from yolo.model.checkpoint import load_model
from yolo.model.darknet import Darknet
from yolo.train.run import build_model, train

SHAPES = ["circle", "rectangle", "triangle", "star", "cross"]


@pytest.mark.parametrize("name", ["yolov4-tiny", "yolov7-tiny"])
def test_start_from_darknet_weights_with_other_classes(tmp_path, name):
    torch.manual_seed(1)
    coco = Darknet.from_cfg(CFG / f"{name}.cfg")  # 80 classes
    coco.save_darknet_weights(tmp_path / "coco.weights")
    model = build_model(run_cfg(tmp_path, str(CFG / f"{name}.cfg"), weights=str(tmp_path / "coco.weights")), NAMES)
    assert model.num_classes == 3 and model.letterbox
    heads = {i - 1 for i in coco.head_indices}
    source = coco.state_dict()
    for k, v in model.state_dict().items():
        if int(k.split(".")[1]) in heads:
            assert v.shape != source[k].shape, k  # rebuilt for 3 classes: fresh
        else:
            assert torch.equal(v, source[k]), k
    for i in heads:
        conv = model.module_list[i]
        assert conv.bn is None and conv.conv.bias is not None and conv.conv.out_channels == 3 * 8
        if name == "yolov7-tiny":  # the cfg's logistic is the head's: the conv is linear, decode applies it
            assert model.spec.layers[i].activation == "logistic" and isinstance(conv.act, torch.nn.Identity)
    assert [h.new_coords for h in model.heads] == [name == "yolov7-tiny"] * len(heads)


def test_one_epoch_from_weights_then_detect(tmp_path):
    """(thin) yolov7-tiny from a .weights file, 3 classes instead of 80: one epoch, the checkpoint rebuilds
    itself."""
    torch.manual_seed(1)
    cfg = tmp_path / "yolov7-tiny-thin.cfg"
    cfg.write_text(_thin_cfg("yolov7-tiny"))
    Darknet.from_cfg(cfg).save_darknet_weights(tmp_path / "coco.weights")
    out = train(run_cfg(tmp_path, str(cfg), weights=str(tmp_path / "coco.weights"), epochs=1),
                data_factory=fake_data(), progress=False, plots=False)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 1 and float(rows[0]["train/loss"]) > 0
    model = load_model(out / "weights" / "last.pt")
    assert model.num_classes == 3 and all(h.new_coords for h in model.heads)
    with torch.no_grad():
        pred = model.decode(model(torch.rand(1, 3, 64, 96)))
    assert pred.shape == (1, 3 * (2 * 3 + 4 * 6 + 8 * 12), 8) and torch.isfinite(pred).all()


def _thin_cfg(name: str, divide: int = 8) -> str:
    """The zoo cfg with the filters of every conv that does not feed a [yolo] divided by ``divide``."""
    text = (CFG / f"{name}.cfg").read_text()
    spec = parse_cfg_text(text)
    into_head = {h.index - 1 for h in spec.heads}
    lines = text.splitlines()
    for s in spec.layers:
        if isinstance(s, ConvSpec) and s.index not in into_head:
            j = s.line
            while j < len(lines) and not lines[j].lstrip().startswith("["):
                if re.match(r"\s*filters\s*=", lines[j]):
                    lines[j] = f"filters={max(s.filters // divide, 4)}"
                j += 1
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def shapes8(tmp_path_factory):
    """8 synthetic shapes images (96 x 96) in YOLO layout; a data YAML whose train and val are both of them."""
    from yolo.data.synthetic import write_dataset

    root = write_dataset(tmp_path_factory.mktemp("shapes") / "shapes8", 8, 0, 96, seed=3)
    data = root.parent / "same.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/train\nnames: [{', '.join(SHAPES)}]\n")
    return data


@pytest.mark.parametrize("name", ["yolov4-tiny", "yolov7-tiny"])
def test_short_training_learns(tmp_path, shapes8, name):
    """100 steps of batch 2: BN's running statistics (momentum 0.03) need about that many before the model in
    eval mode (what validation runs) depends on its input; after 24 steps its outputs were still constant."""
    cfg = tmp_path / f"{name}-thin.cfg"
    cfg.write_text(_thin_cfg(name))
    run = run_cfg(tmp_path, str(cfg), data=str(shapes8), epochs=25, batch_size=2, nbs=2, img_size=96,
                  lr0=0.01, warmup_epochs=0, augment={"mosaic": 0.0, "fliplr": 0.0, "hsv_h": 0.0, "hsv_s": 0.0,
                                                         "hsv_v": 0.0, "translate": 0.0, "scale": 0.0},
                  ema={"enabled": False})
    out = train(run, progress=False, plots=False)
    rows = list(csv.DictReader((out / "results.csv").open()))
    loss = [float(r["train/loss"]) for r in rows]
    map50 = [float(r["map50"]) for r in rows]
    print(name, [f"{v:.2f}" for v in loss], [f"{v:.3f}" for v in map50])
    assert loss[-1] < 0.5 * loss[0], loss
    assert max(map50[-3:]) > max(0.01, 3 * map50[0]), map50
