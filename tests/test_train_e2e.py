"""The whole chain on the built-in synthetic data, as a user runs it from another folder:
``yolo train --cfg cfg/train/shapes.yaml`` -> ``best.pt`` -> ``yolo val`` and ``yolo detect`` on it."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import torch

from tests.helpers import ROOT
from yolo.cli import main
from yolo.model.checkpoint import load_model


def test_train_val_detect_on_synthetic_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("YOLO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # the run YAML's relative cfg/ and data/ paths must still resolve
    data = tmp_path / "tiny.yaml"
    data.write_text("synthetic: {kind: shapes, train: 16, val: 8, size: 128, seed: 0}\n"
                    "names: [circle, rectangle, triangle, star, cross]\n")
    args = ["train", "--cfg", str(ROOT / "cfg" / "train" / "shapes.yaml"), "--set", f"data={data}", "epochs=2",
            "img_size=96", "batch_size=8", "workers=0"]
    assert main(args) == 0
    run = tmp_path / "runs" / "train" / "exp"
    for picture in ("labels.png", "results.png", "val_batch0_labels.jpg", "val_batch0_pred.jpg"):
        assert (run / picture).is_file(), picture
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [int(float(r["epoch"])) for r in rows] == [0, 1]  # 0-based, as the checkpoints count
    done = f"train: done; epoch 2/2: mAP50 {float(rows[1]['map50']):.3f}, mAP50-95 {float(rows[1]['map']):.3f}"
    said = capsys.readouterr().err
    assert done in said  # the run's result, said at its end, and each epoch's as it ends (results.csv's values)
    for r in rows:
        e = int(float(r["epoch"]))
        assert (f"\nepoch {e + 1}/2: box {float(r['train/box']):.4f} obj {float(r['train/obj']):.4f} cls "
                f"{float(r['train/cls']):.4f} loss {float(r['train/loss']):.4f}; mAP50 {float(r['map50']):.3f} "
                f"mAP50-95 {float(r['map']):.3f} P {float(r['precision']):.3f} R {float(r['recall']):.3f}") in said
    model = load_model(run / "weights" / "best.pt")
    assert model.names == ["circle", "rectangle", "triangle", "star", "cross"] and model.num_classes == 5

    with monkeypatch.context() as m:  # a second run never overwrites the first; this one without matplotlib
        m.setitem(sys.modules, "matplotlib", None)  # (a trimmed environment): its charts are skipped, said once
        assert main(args + ["--no-progress"]) == 0
        said = capsys.readouterr().err
        assert "it/s" not in said and "\r" not in said and "\nepoch 2/2: box " in said  # a log: epoch lines only
        assert said.count("warning: matplotlib is not installed: no labels.png or results.png (pip install "
                          "matplotlib); the run goes on\n") == 1, said
        second = tmp_path / "runs" / "train" / "exp2"
        assert (second / "weights" / "last.pt").is_file() and (second / "val_batch0_pred.jpg").is_file()
        assert not (second / "labels.png").exists() and not (second / "results.png").exists()
        assert main(["val", "--weights", str(second / "weights" / "last.pt"), "--data", str(data), "--img-size",
                     "96", "--batch-size", "8", "--no-progress"]) == 0  # the metrics, no curves: it was exit 1
        out, err = capsys.readouterr()
        assert "it/s" not in err and "\r" not in err
        assert "mAP50" in out and "matplotlib is not installed: no curves or confusion matrix" in err, (out, err)
        assert "results in" not in out and not (tmp_path / "runs" / "val").exists()  # no empty folder left

    capsys.readouterr()
    assert main(["val", "--weights", str(run / "weights" / "best.pt"), "--data", str(data), "--img-size", "96",
                 "--batch-size", "8", "--json", "--no-plots"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0 <= metrics["map"] <= metrics["map50"] <= 1 and len(metrics["stats"]) == 12
    # training's validation scores as yolo val does: best.pt's epoch row says what yolo val says of best.pt
    best = rows[torch.load(run / "weights" / "best.pt", weights_only=True)["epoch"]]
    for key in ("map50", "map", "precision", "recall"):
        assert float(best[key]) == pytest.approx(metrics[key], rel=1e-4, abs=1e-6), (key, best, metrics)

    images = next((tmp_path / "cache").glob("shapes-*")) / "images" / "val"
    assert main(["detect", "--weights", str(run / "weights" / "best.pt"), "--source", str(images), "--img-size",
                 "96", "--conf", "0.01", "--save-txt", "--no-progress"]) == 0
    assert len(list((tmp_path / "runs" / "detect" / "exp").glob("*.png"))) == 8
