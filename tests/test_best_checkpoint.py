"""best.pt is what a person deploys (the EMA weights and what rebuilds the model, no training state, about the
size of the darknet .weights); last.pt is the one full checkpoint; --resume on best.pt says how to fine-tune."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import CFG, photo_rgb
from tests.test_train import NAMES, fake_data, run_cfg
from yolo.cli import main
from yolo.detect import Detector
from yolo.model.checkpoint import load_model
from yolo.runtime.backends import TorchBackend
from yolo.errors import InputError
from yolo.train.config import load_run_config
from yolo.train.run import build_model, config_for_resume, train

TRAINING_STATE = ("train_model", "ema", "optimizer", "scaler", "scheduler", "rng")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two one-epoch yolov3-tiny runs (heads rebuilt for 3 classes): float32 and float16 best.pt. With one
    epoch, best.pt and last.pt hold the same EMA weights."""
    root = tmp_path_factory.mktemp("best")
    tiny = str(CFG / "yolov3-tiny.cfg")
    f32 = train(run_cfg(root / "f32", model=tiny, epochs=1), data_factory=fake_data(n=2), progress=False,
                plots=False)
    f16 = train(run_cfg(root / "f16", model=tiny, epochs=1, best_half=True), data_factory=fake_data(n=2),
                progress=False, plots=False)
    return f32 / "weights", f16 / "weights"


@pytest.fixture(scope="module")
def ema(runs):
    """last.pt's deployable model: the unstripped EMA weights (of the same epoch as best.pt)."""
    return load_model(runs[0] / "last.pt")


def test_best_pt_holds_the_deployable_model_only(runs, tmp_path):
    f32, f16 = runs
    best = torch.load(f32 / "best.pt", map_location="cpu", weights_only=True)
    last = torch.load(f32 / "last.pt", map_location="cpu", weights_only=True)
    assert not any(k in best for k in TRAINING_STATE) and all(k in last for k in TRAINING_STATE)
    assert best["names"] == NAMES and "[yolo]" in best["cfg"] and best["darknet"]["major"] == 0
    assert best["run_config"]["epochs"] == 1 and best["epoch"] == 0 and best["training_state"] is False
    assert "fitness" in best["metrics"] and not any(k.startswith("time") for k in best["metrics"])
    for k, v in last["model"].items():  # the EMA weights, as they were
        assert torch.equal(best["model"][k], v), k
    half = torch.load(f16 / "best.pt", map_location="cpu", weights_only=True)
    last16 = torch.load(f16 / "last.pt", map_location="cpu", weights_only=True)
    for k, v in last16["model"].items():
        assert half["model"][k].dtype == (torch.float16 if v.is_floating_point() else v.dtype), k
        assert torch.equal(half["model"][k], v.half() if v.is_floating_point() else v), k
    assert last16["model"]["module_list.0.conv.weight"].dtype == torch.float32  # last.pt stays float32

    weights = tmp_path / "same.weights"  # what our darknet writer makes for the same cfg
    load_model(f32 / "best.pt").save_darknet_weights(weights)
    size, full = weights.stat().st_size, (f32 / "last.pt").stat().st_size
    assert abs((f32 / "best.pt").stat().st_size / size - 1) < 0.10  # ~35 MB for yolov3-tiny
    assert abs((f16 / "best.pt").stat().st_size / (size / 2) - 1) < 0.10
    assert full > 3.5 * size  # last.pt: EMA + raw weights + AdamW's two moments


def test_best_pt_detects_like_the_ema_model(runs, ema):
    f32, f16 = runs
    img = np.ascontiguousarray(cv2.resize(photo_rgb(), (160, 128))[:, :, ::-1])  # BGR
    run = lambda model: Detector(TorchBackend(model, winograd=False), img_size=128, conf=0.01)(img)[0]
    expected, got = run(copy.deepcopy(ema)), run(load_model(f32 / "best.pt"))  # (Winograd's first call is slow
    # on CPU; TorchBackend folds BN into the model it is given)
    assert len(expected.boxes) > 0
    for a, b in ((expected.boxes, got.boxes), (expected.scores, got.scores), (expected.classes, got.classes)):
        assert torch.equal(a, b)
    half = load_model(f16 / "best.pt")  # float16 in the file, float32 once loaded
    assert next(half.parameters()).dtype == torch.float32


def test_best_pt_converts_to_weights(runs, ema, tmp_path, capsys):
    f32, _ = runs
    assert main(["convert-weights", str(f32 / "best.pt"), "-o", str(tmp_path / "best.weights")]) == 0
    ema.save_darknet_weights(tmp_path / "ema.weights")
    assert (tmp_path / "best.weights").read_bytes() == (tmp_path / "ema.weights").read_bytes()


def test_resume_from_best_pt_is_refused_with_the_way_to_fine_tune(runs, capsys):
    f32, f16 = runs
    assert main(["train", "--resume", str(f32 / "best.pt")]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "holds no training state" in lines[0] and "last.pt" in lines[0]
    assert f"yolo train --cfg {f32.parent / 'run.yaml'} --set weights={f32 / 'best.pt'}" in lines[0]
    run_yaml, best_pt = f32.parent / "run.yaml", f32 / "best.pt"
    with pytest.raises(InputError) as e:  # from Python, the same advice as Python
        config_for_resume(best_pt)
    assert str(e.value).endswith(f"to fine-tune from it instead: train(load_run_config({str(run_yaml)!r}, "
                                 f"['weights={best_pt}']))")
    assert load_run_config(run_yaml, [f"weights={best_pt}"]).weights == str(best_pt)  # the advice works
    cfg = run_cfg(f16.parent.parent, model=str(CFG / "yolov3-tiny.cfg"), weights=str(f16 / "best.pt"))
    model = build_model(cfg, NAMES)  # the fine-tune the message points at starts from every tensor of best.pt
    best = torch.load(f16 / "best.pt", map_location="cpu", weights_only=True)["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, best[k].to(v.dtype)), k


def test_generic_trainer_writes_a_lean_best_pt_with_plain_metrics(tmp_path):
    from tests.test_engine import toy_cfg, toy_trainer

    scores = iter([0.2, 0.5, 0.4])  # best at epoch 1
    tr = toy_trainer(tmp_path, toy_cfg(epochs=3), validate=lambda model, epoch: {
        "map50": np.float32(0.0), "map": np.float64(next(scores) / 0.9), "images": np.int64(48), "note": "x"})
    tr.fit()
    best = torch.load(tmp_path / "run" / "weights" / "best.pt", weights_only=True)  # numpy scalars would refuse
    assert best["epoch"] == 1 and not any(k in best for k in TRAINING_STATE)
    assert best["metrics"]["images"] == 48 and abs(best["metrics"]["fitness"] - 0.5) < 1e-6
    assert "note" not in best["metrics"] and "time" not in best["metrics"]
    final = tr.ema.ema.state_dict()  # the run ended at epoch 2: best.pt kept epoch 1's EMA weights
    assert any(not torch.equal(final[k], v) for k, v in best["model"].items())
    assert torch.load(tmp_path / "run" / "weights" / "last.pt", weights_only=True)["epoch"] == 2
