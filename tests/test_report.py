"""The dataset report, the labels picture and `yolo data check` (exit codes, JSON, one-line errors)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from tests.helpers import ROOT, yolo_warnings
from tests.test_formats import _broken_yolo, _img, _write
from yolo.cli import main
from yolo.data.formats import load_data_config
from yolo.data.index import DatasetIndex
from yolo.data.report import DatasetReport, plot_labels
from yolo.data.split import load_split


def test_format_caps_problems_and_counts():
    r = DatasetReport(split="val", source="x", names=["a", "b", "c"], images=5)
    for i in range(15):
        r.bad_row("class", f"class {i} bad", "l.txt", i + 1)
    r.count_instances([np.array([[0, .5, .5, .1, .1], [0, .5, .5, .2, .2]], np.float32), np.zeros((0, 5))])
    assert r.instances == [2, 0, 0] and r.bad_rows == {"class": 15} and r.problem_count == 15
    lines = r.format(max_problems=4).splitlines()
    assert lines[0].startswith("val (x): 5 images, 2 boxes in 1 of 3 classes")  # not "in 3 classes": 2 are empty
    assert "rows dropped: 15 (15 with a bad class)" in lines[1] and "classes without boxes: b, c" in lines[2]
    assert lines[3:7] == [f"  l.txt:{i}: class {i - 1} bad (row dropped)" for i in range(1, 5)]
    assert lines[7] == "  ... and 11 more" and len(lines) == 8
    assert DatasetReport.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_plot_labels_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    labels = [np.column_stack([rng.integers(0, 3, 20), rng.uniform(0.2, 0.8, (20, 4))]).astype(np.float32)
              for _ in range(4)]
    index = DatasetIndex(images=[Path(f"{i}.jpg") for i in range(4)], labels=labels, names=["a", "b", "c"])
    out = plot_labels(index, tmp_path / "sub/labels.png")
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] > img.shape[0] > 100 and img.std() > 5  # drawn, not blank


def test_labels_picture_without_matplotlib_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    """--plot asks for the picture: without matplotlib (a trimmed environment) it is exit 2 naming the file,
    not an unexpected ModuleNotFoundError."""
    _img(tmp_path / "images/a.jpg")
    data = _write(tmp_path / "d.yaml", "train: images\nval: images\nnames: [a]\n")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["data", "check", str(data), "--plot", str(tmp_path / "l.png")]) == 2
    out, err = capsys.readouterr()
    assert err == (f"yolo data check: error: {tmp_path / 'l_train.png'}: matplotlib is not installed: no labels "
                   "picture (pip install matplotlib); check without --plot\n") and out == ""  # before any split


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "yolo", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_data_check_cli(tmp_path, capsys):
    data = _broken_yolo(tmp_path)
    _img(tmp_path / "images/val/v.jpg")
    _write(data, data.read_text() + "val: images/val\n")
    plot = tmp_path / "labels.png"
    assert main(["data", "check", str(data), "--plot", str(plot), "--problems", "2"]) == 0
    out = capsys.readouterr().out
    assert "train (" in out and "val (" in out and "3 corrupt or missing images dropped" in out and "... and" in out
    assert (tmp_path / "labels_train.png").is_file() and (tmp_path / "labels_val.png").is_file()
    assert main(["data", "check", str(data), "--split", "train", "--plot", str(plot), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report) == ["train"] and report["train"]["corrupt"] == 3 and plot.is_file()
    assert main(["data", "check", str(data), "--split", "train", "--plot", str(plot)]) == 2
    assert "exists; use --force" in capsys.readouterr().err
    assert main(["data", "check", str(data), "--split", "test"]) == 2
    assert "no 'test' split" in capsys.readouterr().err


def test_data_check_unusable_input_one_line(tmp_path, capsys):
    _img(tmp_path / "images/a.jpg")
    cases = {  # file: (text, what the error names)
        "missing.yaml": (None, "missing.yaml: data file not found"),
        "nc.yaml": ("train: images\nnames: [a, b]\nnc: 3\n", "nc.yaml: nc is 3 but 2 names are given"),
        "empty.yaml": ("train: nothing_here\nnames: [a]\n", f"empty.yaml: train: {tmp_path}/nothing_here: image folder "
                                                             "or list file not found"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        assert main(["data", "check", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"yolo data check: error: {tmp_path}/{message}"), err
    r = _cli("data", "check", str(tmp_path / "nc.yaml"), "--split", "nope")  # argparse: usage error, exit 2
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_data_check_coco_json_on_the_command_line(tmp_path, capsys):
    from tests.test_formats import _coco

    ann = _coco(tmp_path)
    assert main(["data", "check", str(ann), "--images", str(tmp_path / "val"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["val"]
    assert report["crowd"] == 1 and report["names"] == ["person", "car", "bird"]
    index = load_split(load_data_config(ann), "val")  # images found at ../val of the json's folder
    assert len(index) == 2


def test_readme_datasets_example_runs(tmp_path, monkeypatch):
    import re

    from tests.helpers import ROOT

    page = (ROOT / "docs" / "data.md").read_text()  # the Datasets section moved there from README.md
    body = page.split("## Datasets\n", 1)[1].split("\n## ", 1)[0]
    for i in range(6):
        _img(tmp_path / f"images/val/{i}.jpg", 48, 64, seed=i)
        _write(tmp_path / f"labels/val/{i}.txt", f"0 0.5 0.5 0.{i + 1} 0.3\n1 0.4 0.4 0.2 0.{i + 2}\n")
    data = _write(tmp_path / "d.yaml", "val: images/val\nnames: [a, b]\n")
    (code,) = re.findall(r"```python\n(.*?)```", body, flags=re.S)
    assert '"data/coco.yaml"' in code
    monkeypatch.chdir(tmp_path)
    exec(code.replace('"data/coco.yaml"', repr(str(data))), {})
    assert (tmp_path / "labels.png").is_file()


def test_data_check_names_every_image_without_a_label_file(tmp_path, capsys):
    """Issue 19: a missing label file (background by rule) is named, so it can be told from a deliberate
    background image (an empty label file, which is not a problem)."""
    for i in range(6):
        _img(tmp_path / f"images/{i}.jpg", 40, 48, seed=i)
    for i in (0, 2, 4):
        _write(tmp_path / f"labels/{i}.txt", "0 0.5 0.5 0.2 0.2\n")
    _write(tmp_path / "labels/5.txt", "")  # a deliberate background image
    data = _write(tmp_path / "d.yaml", "path: .\ntrain: images\nnames: [a]\n")
    missing = [str(tmp_path / f"images/{i}.jpg") for i in (1, 3)]
    assert main(["data", "check", str(data), "--no-cache", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["train"]
    assert report["no_label_files"] == missing and report["labels_missing"] == 2 and report["labels_empty"] == 1
    assert report["problems"] == [f"{m}: no label file (counted as background)" for m in missing]
    assert report["images"] == 6 and report["instances"] == [3]
    assert main(["data", "check", str(data), "--problems", "1"]) == 0  # cached report: the same names
    out = capsys.readouterr().out
    assert "labels 4 found, 2 missing, 1 empty" in out
    assert "images without a label file: 2 (counted as background" in out
    assert f"  {missing[0]}: no label file (counted as background)" in out and "... and 1 more" in out
    assert str(tmp_path / "images/5.jpg") not in out


def test_train_says_how_many_backgrounds_each_split_holds(tmp_path, capsys):
    """Images without boxes (no label file, an empty one) trained as background with no count at ``yolo train``
    (ultralytics says "N backgrounds" at every scan): the run's first lines now say it for each split."""
    from yolo.train.config import RunConfig
    from yolo.train.run import train

    for split, n in (("train", 6), ("val", 3)):
        for i in range(n):
            _img(tmp_path / f"images/{split}/{i}.jpg", 40, 48, seed=i)
        for i in range(n - 3):
            _write(tmp_path / f"labels/{split}/{i}.txt", "0 0.5 0.5 0.2 0.2\n0 0.3 0.3 0.1 0.1\n")
    _write(tmp_path / "labels/train/3.txt", "")  # a deliberate background image; 4.jpg and 5.jpg have no file
    _write(tmp_path / "labels/train/4.txt", "7 0.5 0.5 0.2 0.2\n")  # its only row dropped (class 7 of 1)
    data = _write(tmp_path / "d.yaml", "path: .\ntrain: images/train\nval: images/val\nnames: [a]\n")
    cfg = RunConfig(data=str(data), epochs=1, batch_size=2, nbs=2, img_size=64, workers=0, device="cpu",
                    out=str(tmp_path / "runs/exp"))
    with yolo_warnings():
        train(cfg, progress=False, plots=False)
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("data: ")]
    assert said == ["data: train 6 images, 6 boxes, 3 backgrounds (1 without a label file); "
                    "val 3 images, 0 boxes, 3 backgrounds (3 without a label file)"]


def test_repeated_images_and_splits_sharing_images_are_named(tmp_path, capsys):
    """A list file naming an image twice (kept: darknet oversamples that way, but counted and named), and a val
    split holding train images (through another spelling and a symlink): `yolo data check` and the trainer's
    data both say so; a clean split says nothing."""
    for i in range(4):
        _img(tmp_path / f"images/{i}.jpg", seed=i)
        _write(tmp_path / f"labels/{i}.txt", f"0 0.5 0.5 0.{i + 1} 0.2\n")
    (tmp_path / "link").mkdir()
    (tmp_path / "link/3.jpg").symlink_to(tmp_path / "images/3.jpg")
    _write(tmp_path / "link/3.txt", "0 0.5 0.5 0.4 0.2\n")
    _write(tmp_path / "train.txt", "images/0.jpg\nimages/1.jpg\nimages/0.jpg\nimages/3.jpg\n")
    _write(tmp_path / "val.txt", "./images/../images/1.jpg\nimages/2.jpg\nlink/3.jpg\n")
    data = _write(tmp_path / "d.yaml", "train: train.txt\nval: val.txt\nnames: [a]\n")
    train, val = (load_split(load_data_config(data), s) for s in ("train", "val"))
    assert len(train) == 4 and train.report.repeated == 1  # kept: each listing is a sample
    assert train.report.problems == [f"{tmp_path / 'images/0.jpg'}: listed again in this split (kept: one more "
                                     "sample of it)"]
    assert val.report.repeated == 0
    assert main(["data", "check", str(data), "--no-cache"]) == 0
    out, err = capsys.readouterr()
    assert "images listed more than once: 1 extra listing" in out
    assert "warning: val: 2 of its 3 images are also in the train split (1.jpg, 3.jpg): its metrics will read high" \
        in err.splitlines()
    assert main(["data", "check", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train"]["repeated"] == 1 and "shared" not in report["train"]
    assert report["val"]["shared"] == {"train": [str(tmp_path / "images/1.jpg"), str(tmp_path / "link/3.jpg")]}

    from yolo.train.config import RunConfig
    from yolo.train.defaults import default_data
    from yolo.utils.dist import DistEnv

    with yolo_warnings() as said:
        default_data(RunConfig(data=str(data), batch_size=2, img_size=64, workers=0), DistEnv())
    assert [s for s in said if "also in the train split" in s] == [
        "val: 2 of its 3 images are also in the train split (1.jpg, 3.jpg): its metrics will read high"]
    _write(tmp_path / "val.txt", "images/2.jpg\n")
    with yolo_warnings() as said:
        default_data(RunConfig(data=str(data), batch_size=2, img_size=64, workers=0), DistEnv())
    assert said == []
    assert main(["data", "check", str(data)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_an_image_listed_twice_is_read_once(tmp_path, capsys):
    """Found by a user's audit: a list file naming an image twice counted its label file's dropped rows, its
    problems and its label file twice ("rows dropped: 2" for a file with one bad row). Each listing is still one
    sample; a dropped image stays dropped at every listing."""
    _img(tmp_path / "images/a.png", seed=0)
    _write(tmp_path / "labels/a.txt", "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2 9\n")
    (tmp_path / "images/bad.png").write_bytes(b"not a png")
    _write(tmp_path / "list.txt", "images/a.png\nimages/a.png\nimages/bad.png\nimages/bad.png\n")
    data = _write(tmp_path / "d.yaml", "train: list.txt\nnames: [a]\n")
    index = load_split(load_data_config(data), "train")
    report = index.report
    assert [p.name for p in index.images] == ["a.png", "a.png"] and [len(lab) for lab in index.labels] == [1, 1]
    assert report.bad_rows == {"columns": 1} and report.labels_found == 1 and report.corrupt == 1
    assert report.repeated == 2 and report.problem_count == 4, report.problems
    assert report.problems[1:] == [f"{tmp_path / 'images/a.png'}: listed again in this split (kept: one more "
                                   "sample of it)", report.problems[2],
                                   f"{tmp_path / 'images/bad.png'}: listed again in this split (dropped, as its "
                                   "first listing)"]
    assert main(["data", "check", str(data), "--no-cache"]) == 0
    assert "rows dropped: 1 (1 without 5 columns)" in capsys.readouterr().out


def test_images_reading_one_label_file_are_named(tmp_path, capsys):
    """Found by a user's audit: a.png and a.jpg both read labels/a.txt (as darknet and ultralytics read them), so
    one of them trained and scored on the other's boxes without a word. The file is read once; the second image
    is counted and named, and train, val and anchors say it in their warning line."""
    _img(tmp_path / "images/a.png", seed=0)
    _img(tmp_path / "images/a.jpg", seed=1)
    _img(tmp_path / "images/b.png", seed=2)
    _img(tmp_path / "images/b.jpg", seed=3)  # b: no label file at all: two backgrounds, nothing shared
    _write(tmp_path / "labels/a.txt", "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2 9\n")
    data = _write(tmp_path / "d.yaml", "path: .\ntrain: images\nnames: [a]\n")
    report = load_split(load_data_config(data), "train").report
    assert report.shared_labels == 1 and report.labels_found == 1 and report.bad_rows == {"columns": 1}
    assert report.labels_missing == 2 and sum(report.instances) == 2  # each a image has the row: one box each
    (line,) = [p for p in report.problems if "label file" in p and "labels/a.txt" in p]
    first, second = sorted([str(tmp_path / "images/a.jpg"), str(tmp_path / "images/a.png")])
    assert line == (f"{second}: reads the label file {tmp_path / 'labels/a.txt'} of {first} too (same name, other "
                    "extension): both get its boxes")
    assert main(["data", "check", str(data), "--no-cache"]) == 0
    assert "images reading another image's label file: 1 (same name, other extension" in capsys.readouterr().out
    assert "1 image reading another image's label file (same name, other extension)" in report.dropped_warning()


def test_train_and_val_say_what_the_split_dropped(tmp_path, capsys):
    """Label rows outside the data's classes (a names list shorter than the labels) were dropped without a word
    by yolo train and yolo val (only yolo data check said so): both now print one warning line per split."""
    from yolo.model.cfg_edit import set_num_classes
    from yolo.model.cfg_parser import parse_cfg_text
    from yolo.model.checkpoint import save_checkpoint
    from yolo.model.darknet import Darknet
    from yolo.train.config import RunConfig
    from yolo.train.defaults import default_data
    from yolo.utils.dist import DistEnv

    for split in ("train", "val"):
        for i in range(2):
            _img(tmp_path / f"images/{split}/{i}.jpg", seed=i)
            _write(tmp_path / f"labels/{split}/{i}.txt", "0 0.5 0.5 0.2 0.2\n4 0.3 0.3 0.1 0.1\n")  # class 4 of 2
    data = _write(tmp_path / "d.yaml", "train: images/train\nval: images/val\nnames: [a, b]\n")
    with yolo_warnings() as said:
        default_data(RunConfig(data=str(data), batch_size=2, img_size=64, workers=0), DistEnv())
    assert said == [f"{split} split ({tmp_path / 'images' / split}): 2 label rows dropped (2 with a bad class); the "
                    "split's `.report.format()` names them" for split in ("train", "val")]  # called from Python
    model = Darknet(parse_cfg_text(set_num_classes((ROOT / "cfg/yolov3-tiny.cfg").read_text(), 2), "two.cfg"))
    model.names = ["a", "b"]
    save_checkpoint(model, tmp_path / "two.pt")
    assert main(["val", "--weights", str(tmp_path / "two.pt"), "--data", str(data), "--img-size", "64",
                 "--out", str(tmp_path / "v"), "--no-plots"]) == 0
    assert f"warning: val split ({tmp_path / 'images' / 'val'}): 2 label rows dropped (2 with a bad class); " \
           "`yolo data check` names them" in capsys.readouterr().err


def test_a_split_without_labels_is_said_by_train_and_val(tmp_path, capsys):
    """Label files that are not where the images say (the usual layout mistake) trained and scored on background
    without a word, and ``yolo val`` printed 0.000 for P, R and mAP where nothing is defined."""
    from yolo.model.cfg_edit import set_num_classes
    from yolo.model.cfg_parser import parse_cfg_text
    from yolo.model.checkpoint import save_checkpoint
    from yolo.model.darknet import Darknet

    for i in range(4):
        _img(tmp_path / f"images/val/{i}.jpg", seed=i)
        _write(tmp_path / f"labels/{i}.txt", "0 0.5 0.5 0.2 0.2\n")  # labels/ without the split's folder
    data = _write(tmp_path / "d.yaml", "train: images/val\nval: images/val\nnames: [a, b]\n")
    model = Darknet(parse_cfg_text(set_num_classes((ROOT / "cfg/yolov3-tiny.cfg").read_text(), 2), "two.cfg"))
    model.names = ["a", "b"]
    save_checkpoint(model, tmp_path / "two.pt")
    capsys.readouterr()
    assert main(["val", "--weights", str(tmp_path / "two.pt"), "--data", str(data), "--img-size", "64",
                 "--no-plots"]) == 0
    out, err = capsys.readouterr()
    assert (f"warning: val split ({tmp_path / 'images' / 'val'}): no boxes at all: 4 of 4 images have no label "
            "file (each image's labels are read from its path with images/ -> labels/ and .txt, or beside it); "
            "`yolo data check` names them") in err.splitlines()
    assert [line.split()[3:] for line in out.splitlines() if line.split()[:1] == ["all"]] == [["-"] * 4]
    report = DatasetReport(split="train", source="x", names=["a"], images=10, labels_found=3, labels_missing=7,
                           instances=[5])
    assert report.dropped_warning().startswith("train split (x): only 5 boxes: 7 of 10 images have no label file")
    report = DatasetReport(split="val", source="x", names=["a"], images=3, labels_found=3, labels_empty=3,
                           instances=[0])
    assert report.dropped_warning().startswith("val split (x): no boxes at all: every label file is empty;")
    assert DatasetReport(split="val", source="x", names=["a"], images=10, labels_found=6, labels_missing=4,
                         instances=[9]).dropped_warning() is None  # some background images: as intended
    assert DatasetReport(split="val", source="x", names=["a"], images=10, labels_found=10, duplicates=2,
                         instances=[9]).dropped_warning() == ("val split (x): 2 duplicate rows dropped; the split's "
                                                              "`.report.format()` names them")


def test_a_cached_split_is_named_as_it_is_asked_for_now(tmp_path, monkeypatch):
    """The label cache kept the split's description of whoever made it: from another folder the header named
    ``ds/images/val``, a path that does not exist from there."""
    for i in range(2):
        _img(tmp_path / f"ds/images/val/{i}.jpg", seed=i)
        _write(tmp_path / f"ds/labels/val/{i}.txt", "0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path)
    first = load_split(load_data_config(_write(tmp_path / "ds/d.yaml", "path: .\nval: images/val\nnames: [a]\n")),
                       "val")
    assert first.report.source.endswith(str(Path("ds") / "images" / "val"))
    monkeypatch.chdir(tmp_path / "other")
    again = load_split(load_data_config("../ds/d.yaml"), "val")
    assert any("cache" in n for n in again.report.notes)  # read from the label cache
    assert again.report.source == again.source == str(Path("..") / "ds" / "images" / "val")
