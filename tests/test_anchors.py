"""k-means anchors: cluster recovery, fitness against independent references, `yolo anchors`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from tests.helpers import CFG
from tests.test_formats import _img, _write
from yolo.cli import main
from yolo.data.anchors import anchor_fitness, evolve_anchors, format_anchors, kmeans_anchors, label_wh
from yolo.data.index import DatasetIndex
from yolo.utils.boxes import wh_iou

CENTRES = np.array([[12.0, 16.0], [60.0, 40.0], [200.0, 300.0]])


def _clusters(n: int = 300, seed: int = 0) -> np.ndarray:
    """``[3n, 2]`` sizes drawn around CENTRES with 5 % multiplicative noise."""
    rng = np.random.default_rng(seed)
    return np.concatenate([c * rng.normal(1, 0.05, (n, 2)) for c in CENTRES])


def test_wh_iou_matches_torchvision_on_centred_boxes():
    wh1 = torch.rand(50, 2, dtype=torch.float64) * 100 + 1
    wh2 = torch.rand(7, 2, dtype=torch.float64) * 100 + 1

    def centred(wh):  # xyxy boxes sharing the centre (0, 0)
        return torch.cat([-wh / 2, wh / 2], 1)

    torch.testing.assert_close(wh_iou(wh1, wh2), box_iou(centred(wh1), centred(wh2)))


def test_kmeans_recovers_three_clusters():
    wh = _clusters()
    for seed in range(3):
        anchors = kmeans_anchors(wh, 3, seed=seed)
        assert anchors.shape == (3, 2)
        np.testing.assert_allclose(anchors, CENTRES, rtol=0.02)  # sorted by area like CENTRES
    np.testing.assert_array_equal(kmeans_anchors(wh, 3, seed=1), kmeans_anchors(wh, 3, seed=1))


def _brute_force_fitness(wh: np.ndarray, anchors: np.ndarray) -> tuple[float, float]:
    """BPR and mean best IoU with plain loops (an independent reference)."""
    hits, ious = 0, []
    for w, h in wh:
        best_ratio, best_iou = 0.0, 0.0
        for aw, ah in anchors:
            best_ratio = max(best_ratio, min(w / aw, aw / w, h / ah, ah / h))
            inter = min(w, aw) * min(h, ah)
            best_iou = max(best_iou, inter / (w * h + aw * ah - inter))
        hits += best_ratio > 0.25
        ious.append(best_iou)
    return hits / len(wh), float(np.mean(ious))


def test_fitness_against_brute_force_and_random_anchors():
    rng = np.random.default_rng(1)
    wh = np.concatenate([_clusters(40), rng.uniform(1, 400, (30, 2))])
    anchors = kmeans_anchors(wh, 4, seed=0)
    fit = anchor_fitness(wh, anchors)
    bpr, miou = _brute_force_fitness(wh, anchors)
    assert fit["bpr"] == bpr and abs(fit["mean_best_iou"] - miou) < 1e-12 and fit["boxes"] == len(wh)
    for seed in range(5):
        random = np.random.default_rng(seed).uniform(1, 400, (4, 2))
        assert fit["mean_best_iou"] > anchor_fitness(wh, random)["mean_best_iou"]
        assert fit["bpr"] >= anchor_fitness(wh, random)["bpr"]
    assert format_anchors([[10.4, 13.6], [116, 90]]) == "anchors = 10,14, 116,90"


def test_evolve_never_loses_fitness():
    rng = np.random.default_rng(2)
    wh = rng.lognormal(3.5, 0.8, (400, 2))
    start = kmeans_anchors(wh, 5, seed=0, iters=2, restarts=1)  # deliberately under-converged
    evolved = evolve_anchors(wh, start, generations=200, seed=0)
    before, after = anchor_fitness(wh, start)["mean_best_iou"], anchor_fitness(wh, evolved)["mean_best_iou"]
    assert after > before and evolved.shape == (5, 2) and (np.diff(evolved.prod(1)) >= 0).all()
    np.testing.assert_array_equal(evolve_anchors(wh, start, generations=0), start[np.argsort(start.prod(1))])


def test_label_wh_letterbox_scaling():
    """A 100x50 (w x h) image letterboxed into 416x416 is scaled by 4.16; into 320x640 (H x W) by 6.4."""
    labels = [np.array([[0, 0.5, 0.5, 0.5, 0.2], [0, 0.5, 0.5, 0.001, 0.5]], np.float32)]
    index = DatasetIndex(images=[Path("a.jpg")], labels=labels, names=["a"], shapes=np.array([[50, 100]]))
    wh, small = label_wh(index, (416, 416))
    np.testing.assert_allclose(wh, [[50 * 4.16, 10 * 4.16]], rtol=1e-6)
    assert small == 1  # 0.1 px * 4.16 wide
    np.testing.assert_allclose(label_wh(index, (320, 640))[0], [[50 * 6.4, 10 * 6.4]], rtol=1e-6)


def test_anchors_cli(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(6):
        _img(tmp_path / f"images/train/{i}.jpg", 104, 104, seed=i)  # letterboxed to 416: x4
        rows = [f"{k % 2} 0.5 0.5 {w / 104:.6f} {h / 104:.6f}" for k in range(10)
                for w, h in [CENTRES[k % 3] / 4 * rng.normal(1, 0.03, 2)]]
        _write(tmp_path / f"labels/train/{i}.txt", "\n".join(rows) + "\n")
    data = _write(tmp_path / "d.yaml", "train: images/train\nnames: [a, b]\n")
    assert main(["anchors", str(data), "--n", "3", "--cfg", str(CFG / "yolov3-tiny.cfg")]) == 0
    out = capsys.readouterr().out.splitlines()
    got = np.array([int(v) for v in out[0].removeprefix("anchors = ").replace(" ", "").split(",")]).reshape(3, 2)
    np.testing.assert_allclose(got, CENTRES, rtol=0.05)
    assert out[1].startswith("new: BPR 1.0000, mean best IoU 0.9")
    assert out[2].startswith(f"cfg {CFG / 'yolov3-tiny.cfg'} (6 anchors against 3: not a fair comparison): BPR")
    from yolo.data.formats import load_data_config
    from yolo.data.split import load_split

    wh, _ = label_wh(load_split(load_data_config(data), "train"), (416, 416))
    bpr, miou = _brute_force_fitness(wh, got)  # of the printed (rounded) anchors, which the cfg gets
    assert out[1].startswith(f"new: BPR {bpr:.4f}, mean best IoU {miou:.4f},"), (out[1], miou)
    assert out[3] == "60 boxes at 416x416 (0 under 2 px left out)"
    assert main(["anchors", str(data), "--n", "3", "--evolve", "50", "--cfg", str(CFG / "yolov3-tiny.cfg")]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("new: BPR 1.0000, mean best IoU 0.9")
    assert main(["anchors", str(data), "--cfg", str(CFG / "yolov3-tiny.cfg")]) == 0  # --n: the cfg's 6 (was 9)
    out = capsys.readouterr().out.splitlines()
    assert out[0].count(",") == 11 and out[2].startswith(f"cfg {CFG / 'yolov3-tiny.cfg'}: BPR")
    assert main(["anchors", str(data), "--n", "61"]) == 2
    assert "only 60 boxes of at least 2 px: too few for 61 anchors" in capsys.readouterr().err


def test_anchors_say_when_some_repeat(tmp_path, capsys):
    """18 boxes of 2 sizes for 9 anchors printed ``83,83`` three times without a word."""
    for i in range(6):
        _img(tmp_path / f"images/train/{i}.jpg", 104, 104, seed=i)
        _write(tmp_path / f"labels/train/{i}.txt", "0 0.5 0.5 0.2 0.2\n0 0.4 0.4 0.5 0.3\n0 0.3 0.3 0.2 0.2\n")
    data = _write(tmp_path / "d.yaml", "train: images/train\nnames: [a]\n")
    assert main(["anchors", str(data), "--n", "9"]) == 0
    out, err = capsys.readouterr()
    anchors = out.splitlines()[0].removeprefix("anchors = ").split(", ")
    repeats = len(anchors) - len(set(anchors))
    assert repeats > 0 and f"warning: {repeats} of the 9 anchors repeat another: the labels have too few distinct " \
                           "box sizes for 9 anchors (give a smaller --n)" in err
    assert main(["anchors", str(data), "--n", "2"]) == 0
    assert "repeat" not in capsys.readouterr().err


def test_anchors_say_what_the_split_dropped(tmp_path, capsys):
    """Found by a user's audit: a row of a class the data does not have and a corrupt image were left out of the
    boxes fitted without a word (train, val and data check say so)."""
    for i in range(3):
        _img(tmp_path / f"images/train/{i}.jpg", 104, 104, seed=i)
        _write(tmp_path / f"labels/train/{i}.txt", "0 0.5 0.5 0.3 0.3\n0 0.4 0.4 0.2 0.1\n")
    _write(tmp_path / "labels/train/2.txt", "7 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.3 0.3\n")
    (tmp_path / "images/train/z.jpg").write_bytes(b"")
    data = _write(tmp_path / "d.yaml", "train: images/train\nnames: [a]\n")
    assert main(["anchors", str(data), "--n", "2"]) == 0
    out, err = capsys.readouterr()
    assert f"warning: train split ({tmp_path / 'images/train'}): 1 label row dropped (1 with a bad class); 1 " \
           "corrupt or missing image dropped; `yolo data check` names them" in err.splitlines(), err
    assert "5 boxes at 416x416" in out
