"""``yolo val --weights --data``: a model run over a dataset split, evaluated in original pixels.

Oracles: pycocotools on the ``--save-json`` output (predictions and ground truth), and the label files read
back independently in the test.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import CFG, calibrated_model, yolo_warnings
from yolo.cli import main
from yolo.data.synthetic import SHAPES_NAMES, write_dataset
from yolo.errors import InputError
from yolo.model.cfg_edit import set_num_classes
from yolo.model.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A small synthetic dataset with non-square images, its data YAML, and a 5-class yolov3-tiny checkpoint."""
    root = tmp_path_factory.mktemp("val")
    write_dataset(root / "shapes", n_train=1, n_val=8, size=(96, 160), seed=3, workers=1)
    data = root / "shapes.yaml"
    data.write_text(f"path: shapes\ntrain: images/train\nval: images/val\nnames: {list(SHAPES_NAMES)}\n")
    cfg = root / "tiny5.cfg"
    cfg.write_text(set_num_classes((CFG / "yolov3-tiny.cfg").read_text(), len(SHAPES_NAMES)))
    model = calibrated_model(cfg, seed=1, size=(96, 160))
    model.names = list(SHAPES_NAMES)
    pt = root / "tiny5.pt"
    save_checkpoint(model, pt)
    return root, data, pt


def _val(*args) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["val", *map(str, args)])
    return code, out.getvalue()


def _pycocotools(gt: dict, results: list) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        e = COCOeval(coco, coco.loadRes(results), "bbox")
        e.evaluate(), e.accumulate(), e.summarize()
    return e.stats


def test_val_figures_equal_pycocotools_on_its_json(shapes, tmp_path):
    root, data, pt = shapes
    code, text = _val("--weights", pt, "--data", data, "--img-size", 128, "--batch-size", 3, "--save-json",
                      "--json", "--no-plots", "--out", tmp_path / "run")
    assert code == 0
    printed = json.loads(text[text.index("{"):])
    preds = json.loads((tmp_path / "run" / "predictions.json").read_text())
    gt = json.loads((tmp_path / "run" / "annotations.json").read_text())
    assert len(preds) > 50 and len(gt["images"]) == 8
    oracle = _pycocotools(gt, preds)
    ours = np.array(list(printed["stats"].values()))
    np.testing.assert_allclose(ours, oracle, atol=1e-6)
    assert oracle[8] > 0  # AR@100: some random boxes do hit objects, so the comparison is not all zeros
    # per class, the images holding it (the table's column was blank): counted from the saved annotations
    holding = {c["id"]: len({a["image_id"] for a in gt["annotations"] if a["category_id"] == c["id"]
                             and not a.get("iscrowd")}) for c in gt["categories"]}
    assert [row["images"] for row in printed["per_class"]] == [holding[c["id"]] for c in gt["categories"]]
    assert sum(holding.values()) > len(gt["images"])  # several classes per image: not the image count
    code, text = _val("--weights", pt, "--data", data, "--img-size", 128, "--no-plots", "--out", tmp_path / "r2")
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.split()[:1] == ["circle"]}
    assert code == 0 and rows["circle"][1] == str(printed["per_class"][SHAPES_NAMES.index("circle")]["images"])

    # the metrics-from-files mode gives the same figures
    code, text = _val("--predictions", tmp_path / "run" / "predictions.json",
                      "--annotations", tmp_path / "run" / "annotations.json", "--json")
    assert code == 0
    from_files = json.loads(text)
    np.testing.assert_allclose([from_files[k] for k in printed["stats"]], oracle, atol=1e-6)


def test_ground_truth_and_predictions_are_in_original_pixels(shapes, tmp_path):
    root, data, pt = shapes
    assert _val("--weights", pt, "--data", data, "--img-size", 128, "--save-json", "--no-plots",
                "--out", tmp_path / "run")[0] == 0
    gt = json.loads((tmp_path / "run" / "annotations.json").read_text())
    preds = json.loads((tmp_path / "run" / "predictions.json").read_text())
    by_image = {im["id"]: im["file_name"] for im in gt["images"]}
    for ann in gt["annotations"]:  # each gt box is its label row times the image size, read independently
        name = by_image[ann["image_id"]]
        h, w = cv2.imread(str(root / "shapes" / "images" / "val" / name)).shape[:2]
        rows = np.loadtxt(root / "shapes" / "labels" / "val" / name.replace(".png", ".txt"), ndmin=2)
        x, y, bw, bh = ann["bbox"]
        expected = [[(r[1] - r[3] / 2) * w, (r[2] - r[4] / 2) * h, r[3] * w, r[4] * h] for r in rows
                    if int(r[0]) == ann["category_id"]]
        assert min(np.abs(np.array(expected) - [x, y, bw, bh]).max(1)) < 1e-3
    for p in preds:  # predictions clipped to the original 160 x 96 image, not the 128 x 128 letterbox
        x, y, bw, bh = p["bbox"]
        assert -1e-6 <= x and x + bw <= 160 + 1e-4 and -1e-6 <= y and y + bh <= 96 + 1e-4
    assert max(p["bbox"][0] + p["bbox"][2] for p in preds) > 128  # beyond the letterboxed width


def test_val_errors_are_one_line(shapes, tmp_path, capsys):
    root, data, pt = shapes
    tiny80 = tmp_path / "tiny80.pt"
    save_checkpoint(calibrated_model(CFG / "yolov3-tiny.cfg", size=(64, 64)), tiny80)
    assert main(["val", "--weights", str(tiny80), "--data", str(data), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "80 classes, the data 5" in err and "\n" not in err
    assert not (tmp_path / "r").exists()  # no empty run folder left behind
    assert main(["val", "--weights", str(pt)]) == 2
    assert main(["val", "--weights", str(pt), "--data", str(data), "--conf", "1.5"]) == 2


def test_fixed_size_export_is_validated_at_its_size(shapes, tmp_path, capsys):
    """As ``yolo detect`` does: another --img-size is a warning and the export's size is used, giving what the
    .pt gives at that size (it stopped at the first batch with exit 2); --rect cannot feed it, one line."""
    from yolo.export import export_model
    from yolo.val.run import validate_dataset

    root, data, pt = shapes
    onnx = tmp_path / "tiny5.onnx"
    export_model(str(pt), "onnx", onnx, img_size=96)
    with yolo_warnings() as said:
        got = validate_dataset(onnx, data, img_size=160, batch_size=4, progress=False)
    assert said == ["this exported model takes 96x96 inputs; using that size"]
    want = validate_dataset(pt, data, img_size=96, batch_size=4, progress=False)
    assert got.metrics["map50"] == pytest.approx(want.metrics["map50"], abs=1e-3)
    assert got.metrics["map"] == pytest.approx(want.metrics["map"], abs=1e-3)
    assert main(["val", "--weights", str(onnx), "--data", str(data), "--rect", "--no-plots"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(onnx) in err and "export with --dynamic" in err


def _coco_val(root: Path, folder: Path, scale_areas: bool = True, edit=None) -> tuple[dict, Path]:
    """The shapes val split as a COCO json (ids 1000 + 7k, categories 10 + 3c, areas scaled at random unless
    not ``scale_areas``, ``edit(annotations, images)`` applied) under ``folder`` and its data YAML."""
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for k, path in enumerate(sorted((root / "shapes" / "images" / "val").glob("*.png"))):
        h, w = cv2.imread(str(path)).shape[:2]
        images.append({"id": 1000 + 7 * k, "file_name": path.name, "width": w, "height": h})
        for row in np.loadtxt(path.parent.parent.parent / "labels" / "val" / f"{path.stem}.txt", ndmin=2):
            c, cx, cy, bw, bh = row
            box = [float((cx - bw / 2) * w), float((cy - bh / 2) * h), float(bw * w), float(bh * h)]
            scale = rng.choice([0.05, 0.5, 4.0, 40.0]) if scale_areas else 1.0
            annotations.append({"id": len(annotations) + 1, "image_id": images[-1]["id"],
                                "category_id": 10 + 3 * int(c), "bbox": box, "iscrowd": 0,
                                "area": float(box[2] * box[3] * scale)})
    if edit is not None:
        edit(annotations, images)
    gt = {"images": images, "annotations": annotations,
          "categories": [{"id": 10 + 3 * c, "name": n} for c, n in enumerate(SHAPES_NAMES)]}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "instances_val.json").write_text(json.dumps(gt))
    data = folder / "coco.yaml"
    data.write_text(f"format: coco\nval: {{images: {root / 'shapes' / 'images' / 'val'}, annotations: "
                    f"{folder / 'instances_val.json'}}}\nnames: {list(SHAPES_NAMES)}\n")
    return gt, data


def test_saved_annotations_name_nested_images_apart_with_their_sizes(shapes, tmp_path):
    """annotations.json gave each image its base name only (``a/0.png`` and ``b/0.png`` were both ``0.png``)
    and no width or height, which most COCO readers need."""
    import shutil

    root, _, pt = shapes
    source = sorted((root / "shapes" / "images" / "val").glob("*.png"))[:2]
    for folder, image in zip("ab", source):
        for kind, src in (("images", image), ("labels", image.parent.parent.parent / "labels" / "val" /
                                                f"{image.stem}.txt")):
            (tmp_path / kind / "val" / folder).mkdir(parents=True)
            shutil.copy(src, tmp_path / kind / "val" / folder / f"0{src.suffix}")
    data = tmp_path / "nested.yaml"
    data.write_text(f"path: {tmp_path}\nval: images/val\nnames: {list(SHAPES_NAMES)}\n")
    assert _val("--weights", pt, "--data", data, "--img-size", 128, "--save-json", "--no-plots", "--out",
                tmp_path / "run")[0] == 0
    images = json.loads((tmp_path / "run" / "annotations.json").read_text())["images"]
    h, w = cv2.imread(str(source[0])).shape[:2]
    assert sorted((i["file_name"], i["height"], i["width"]) for i in images) == [("a/0.png", h, w),
                                                                                   ("b/0.png", h, w)]


def test_coco_boxes_past_the_image_edge_are_scored_as_written(shapes, tmp_path):
    """Training clips a COCO box that sticks out of its image and drops one wider than the image; validation
    scored those training rows, so ``yolo val`` on a COCO json differed from pycocotools on it (0.3813 against
    0.3670 in a user's run). It now scores the json's annotations as written. The ground truth here is the
    model's own best detections (so that many match), a third of them stretched past an image edge."""
    root, _, pt = shapes
    _, data = _coco_val(root, tmp_path / "first", scale_areas=False)
    assert _val("--weights", pt, "--data", data, "--img-size", 128, "--save-json", "--json", "--no-plots",
                "--out", tmp_path / "first" / "run")[0] == 0
    preds = json.loads((tmp_path / "first" / "run" / "predictions.json").read_text())
    best: dict = {}
    for r in sorted(preds, key=lambda r: -r["score"]):
        best.setdefault(r["image_id"], []).append(r)

    def from_detections(annotations, images):
        annotations.clear()
        for im in images:
            w = im["width"]
            for k, r in enumerate(best.get(im["id"], [])[:3]):
                x, y, bw, bh = r["bbox"]
                if k == 1:  # past the left edge: clipped for training
                    x, bw = -0.5 * bw, x + 1.5 * bw
                elif k == 2 and im["id"] % 2:  # wider than the image: dropped for training
                    x, bw = -0.1 * w, 1.2 * w
                annotations.append({"id": len(annotations) + 1, "image_id": im["id"], "category_id":
                                    r["category_id"], "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})

    gt, data = _coco_val(root, tmp_path / "coco", edit=from_detections)
    code, text = _val("--weights", pt, "--data", data, "--img-size", 128, "--save-json", "--json", "--no-plots",
                      "--out", tmp_path / "run")
    assert code == 0
    printed = json.loads(text)
    oracle = _pycocotools(gt, json.loads((tmp_path / "run" / "predictions.json").read_text()))
    assert oracle[1] > 0.3  # AP50: the detections match much of this ground truth
    np.testing.assert_allclose(list(printed["stats"].values()), oracle, rtol=1e-9, atol=1e-9)
    assert sum(row["instances"] for row in printed["per_class"]) == len(gt["annotations"])
    from yolo import load_split

    index = load_split(data, "val", cache=False)  # training still sees them clipped, and not the wide ones
    assert index.report.clipped >= 4 and sum(len(lab) for lab in index.labels) <= len(gt["annotations"]) - 2


def test_coco_split_is_scored_by_its_own_areas(shapes, tmp_path):
    """A COCO json's ``area`` (the segmentation's, not the box's) decides small / medium / large, as in
    pycocotools on that json: the figures by size were computed from box w*h, and annotations.json replaced the
    areas (so --predictions/--annotations reproduced the wrong figures too)."""
    root, _, pt = shapes
    gt, data = _coco_val(root, root / "coco")
    annotations = gt["annotations"]
    code, text = _val("--weights", pt, "--data", data, "--img-size", 128, "--save-json", "--json", "--no-plots",
                      "--out", tmp_path / "run")
    assert code == 0
    printed = json.loads(text)  # --json: stdout is the JSON object alone (the "wrote ..." lines go to stderr)
    preds = json.loads((tmp_path / "run" / "predictions.json").read_text())
    oracle = _pycocotools(gt, preds)
    assert len(preds) > 50 and oracle[3] != oracle[5]  # small and large differ: the areas matter here
    np.testing.assert_allclose(list(printed["stats"].values()), oracle, atol=1e-6)
    saved = json.loads((tmp_path / "run" / "annotations.json").read_text())
    assert sorted(a["area"] for a in saved["annotations"]) == pytest.approx(sorted(a["area"] for a in annotations))
    code, text = _val("--predictions", tmp_path / "run" / "predictions.json",
                      "--annotations", tmp_path / "run" / "annotations.json", "--json")
    assert code == 0 and np.allclose([json.loads(text)[k] for k in printed["stats"]], oracle, atol=1e-6)


STRIDE64 = "[net]\nwidth=128\nheight=128\nchannels=3\n" + "".join(
    f"[convolutional]\nbatch_normalize=1\nfilters={f}\nsize=3\nstride=2\npad=1\nactivation=leaky\n"
    for f in (8, 8, 16, 16, 16, 16)) + ("[convolutional]\nsize=1\nstride=1\npad=1\nfilters=30\nactivation=linear\n"
                                       "[yolo]\nmask=0,1,2\nanchors=40,40, 80,90, 150,120\nclasses=5\nnum=3\n")


def test_a_stride_64_model_runs_at_the_default_and_at_any_size(shapes, tmp_path, capsys):
    """yolov4-p6's stride is 64: ``yolo detect`` without --img-size crashed (exit 1, 416 is not a multiple of
    64), ``Detector(img_size=160)`` refused what the command line rounds, and ``yolo val`` rounded to 32."""
    from yolo.detect import Detector
    from yolo.model.cfg_parser import parse_cfg_text
    from yolo.model.darknet import Darknet

    root, data, _ = shapes
    model = Darknet(parse_cfg_text(STRIDE64, "p64.cfg"))
    model.names = list(SHAPES_NAMES)
    assert model.max_stride == 64
    pt = tmp_path / "p64.pt"
    save_checkpoint(model, pt)
    image = sorted((root / "shapes" / "images" / "val").iterdir())[0]
    capsys.readouterr()
    assert main(["detect", "--weights", str(pt), "--source", str(image), "--nosave", "--save-txt", "--out",
                 str(tmp_path / "d"), "--no-progress"]) == 0
    assert "warning" not in capsys.readouterr().err  # 416 was not asked for: 448, without a word
    with yolo_warnings() as said:
        assert Detector(pt).img_size == (448, 448)
        assert Detector(pt, img_size=(100, 160)).img_size == (128, 192)
    assert said == ["image size 100x160 is not a multiple of 64; using 128x192"]
    with pytest.raises(InputError, match=r"^img_size must be positive, got 0x0$"):
        Detector(pt, img_size=0)
    code, out = _val("--weights", pt, "--data", data, "--img-size", 160, "--no-plots", "--out", tmp_path / "v")
    assert code == 0 and "all" in out
    assert "warning: image size 160x160 is not a multiple of 64; using 192x192" in capsys.readouterr().err


def test_export_and_profile_take_the_default_size_of_a_stride_64_model_without_a_word(tmp_path, capsys):
    """``yolo export`` and ``yolo profile`` warned "416 is not a multiple of 64" when no size was asked for;
    the default is now 416 rounded up to the stride (448) without a word, as for detect and val."""
    from yolo.model.cfg_parser import parse_cfg_text
    from yolo.model.darknet import Darknet

    pt = tmp_path / "p64.pt"
    save_checkpoint(Darknet(parse_cfg_text(STRIDE64, "p64.cfg")), pt)
    capsys.readouterr()
    assert main(["export", "--weights", str(pt), "--format", "torchscript", "-o", str(tmp_path / "p.torchscript")]) == 0
    out, err = capsys.readouterr()
    assert "at 448x448" in out + err and "warning" not in err
    assert main(["profile", "--weights", str(pt)]) == 0
    out, err = capsys.readouterr()
    assert " 8x224x224 " in out and "warning" not in err  # the first conv has stride 2: 448 / 2
    assert main(["profile", "--weights", str(pt), "--img-size", "416"]) == 0  # asked for: rounded with a warning
    assert "warning: image size 416x416 is not a multiple of 64; using 448x448" in capsys.readouterr().err

