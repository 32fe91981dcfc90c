"""Dataset readers: every layout, every kind of broken file, exactly what is read, reported and dropped."""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import yolo_warnings
from yolo.data import imageinfo, split
from yolo.data.formats import coco_config, load_data_config
from yolo.data.imageinfo import CorruptImage, image_size
from yolo.data.split import load_split
from yolo.errors import InputError


def _img(path: Path, h: int = 48, w: int = 64, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


BAD_LABELS = (
    "0 0.5 0.5 0.25 0.5\n"        # 1 good
    "1 0.5 0.5 0.25\n"            # 2 four columns
    "1 0.5 0.5 0.25 0.5 0.9\n"    # 3 six columns
    "a 0.5 0.5 0.25 0.5\n"        # 4 non-numeric
    "1 nan 0.5 0.25 0.5\n"        # 5 non-finite
    "1.5 0.5 0.5 0.25 0.5\n"      # 6 class not an integer
    "3 0.5 0.5 0.25 0.5\n"        # 7 class >= nc
    "-1 0.5 0.5 0.25 0.5\n"       # 8 class < 0
    "1 1.5 0.5 0.25 0.5\n"        # 9 centre outside
    "1 0.5 0.5 0 0.5\n"           # 10 zero width
    "1 0.5 0.5 1.5 0.5\n"         # 11 width > 1 (pixels?)
    "0 0.5 0.5 0.25 0.5\n"        # 12 duplicate of 1
    "\n"                          # 13 blank: skipped silently
    "2 0.9 0.1 0.4 0.4\n"         # 14 clipped to x 0.7..1, y 0..0.3
    "2 0.9 0.1 0.4 0.4\n"         # 15 duplicate of 14: one box clipped, not two
)


def _broken_yolo(root: Path) -> Path:
    """images/train with: a good image + bad rows, an empty label, a missing label, a corrupt .jpg, a truncated
    PNG and a truncated JPEG."""
    tr = root / "images" / "train"
    _img(tr / "a.jpg")
    _write(root / "labels/train/a.txt", BAD_LABELS)
    _img(tr / "b.png", 32, 40)
    _write(root / "labels/train/b.txt", "")
    _img(tr / "c.PNG", 20, 30)  # no label file, upper-case extension
    (tr / "d.jpg").write_bytes(b"this is not an image")
    png = _img(root / "tmp.png").read_bytes()
    (tr / "e.png").write_bytes(png[: len(png) // 2])
    jpg = _img(root / "tmp.jpg").read_bytes()
    (tr / "f.jpg").write_bytes(jpg[: len(jpg) - 100])
    for name in "def":
        _write(root / f"labels/train/{name}.txt", "0 0.5 0.5 0.1 0.1\n")
    _write(tr / "notes.md", "not an image")
    return _write(root / "data.yaml", "path: .\ntrain: images/train\nnames: [cat, dog, bird]\n")


def test_broken_yolo_split_exactly(tmp_path):
    index = load_split(load_data_config(_broken_yolo(tmp_path)), "train", cache=False)
    tr, lab = tmp_path / "images/train", tmp_path / "labels/train/a.txt"
    assert index.images == [tr / "a.jpg", tr / "b.png", tr / "c.PNG"]
    np.testing.assert_allclose(index.labels[0], [[0, 0.5, 0.5, 0.25, 0.5], [2, 0.85, 0.15, 0.3, 0.3]], atol=1e-6)
    assert index.labels[1].shape == (0, 5) and index.labels[2].shape == (0, 5)
    assert index.shapes.tolist() == [[48, 64], [32, 40], [20, 30]]
    assert index.names == ["cat", "dog", "bird"] and len(index.crowd) == 3
    r = index.report
    assert (r.images, r.corrupt, r.labels_found, r.labels_missing, r.labels_empty) == (3, 3, 2, 1, 1)
    assert r.bad_rows == {"columns": 2, "non-numeric": 2, "class": 3, "outside": 1, "size": 2}
    assert (r.duplicates, r.clipped, r.instances) == (2, 1, [1, 0, 1])
    lines = {int(p.split(":")[1]) for p in r.problems if p.startswith(f"{lab}:")}
    assert lines == {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15}
    assert f"{lab}:7: class 3 is out of range: 3 classes, ids 0 to 2 (row dropped)" in r.problems
    assert f"{lab}:6: class 1.5 is not an integer (row dropped)" in r.problems
    assert f"{lab}:12: duplicate row (dropped)" in r.problems
    corrupt = "\n".join(p for p in r.problems if "corrupt image" in p)
    assert f"{tr / 'd.jpg'}: corrupt image dropped: OpenCV cannot decode it" in corrupt
    assert f"{tr / 'e.png'}: corrupt image dropped: truncated PNG" in corrupt
    assert f"{tr / 'f.jpg'}: corrupt image dropped: truncated JPEG" in corrupt
    text = r.format(max_problems=3)
    assert "3 images, 2 boxes in 2 of 3 classes" in text and f"... and {r.problem_count - 3} more" in text


def _exif_jpeg(path: Path, orientation: int) -> Path:
    """A JPEG with an EXIF APP1 segment holding only the orientation tag (cv2.imwrite writes no EXIF)."""
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    app1 = b"Exif\x00\x00" + tiff
    data = _img(path, 48, 64).read_bytes()
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:])
    return path


@pytest.mark.parametrize("name", ["x.jpg", "x.png", "x.bmp", "x.tif", "x.webp", "rot6.jpg", "rot3.jpg"])
def test_image_size_matches_opencv(tmp_path, name):
    """The header reader's (h, w) equals the shape cv2.imread decodes (EXIF rotation included)."""
    path = _exif_jpeg(tmp_path / name, int(name[3])) if name.startswith("rot") else _img(tmp_path / name, 37, 53)
    assert image_size(path) == cv2.imread(str(path)).shape[:2]


@pytest.mark.parametrize("name", ["e.png", "e.webp", "e.tif", "big-header.jpg"])
def test_image_size_applies_the_exif_orientation_opencv_applies_beyond_small_jpegs(tmp_path, name):
    """The size came from the stored (unrotated) frame for a PNG's eXIf chunk, a WebP or TIFF with EXIF, and a
    JPEG whose frame header lies past 64 KiB of other segments (an ICC profile): anchors and --rect shapes
    then had width and height swapped against the image the network sees."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: 64 wide x 48 high stored, 48 x 64 shown
    image = Image.fromarray(np.full((48, 64, 3), 128, np.uint8))
    path = tmp_path / name
    if name.endswith(".jpg"):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", exif=exif.tobytes())
        data = buffer.getvalue()
        app1_end = 4 + struct.unpack(">H", data[4:6])[0]
        app2 = b"\xff\xe2" + struct.pack(">H", 60002) + bytes(60000)  # twice: the frame header lies past 64 KiB
        path.write_bytes(data[:app1_end] + app2 + app2 + data[app1_end:])
    else:
        image.save(path, exif=exif.tobytes(), **({"lossless": True} if name.endswith(".webp") else {}))
    decoded = cv2.imread(str(path))
    if decoded is None:  # OpenCV 4.14 fails on a turned TIFF ('original_ptr == real_mat.data'): so must we
        with pytest.raises(CorruptImage, match="OpenCV cannot decode it"):
            image_size(path)
        return
    assert image_size(path) == decoded.shape[:2]
    if name != "e.tif":  # whether OpenCV turns a TIFF depends on its build; the others it always turns
        assert image_size(path) == (64, 48)


def test_image_size_data_after_end_marker(tmp_path):
    """Phones append videos after the JPEG's end marker; such files are fine, truncated ones are not."""
    for name in ("m.jpg", "m.png"):
        path = _img(tmp_path / name, 30, 50)
        path.write_bytes(path.read_bytes() + b"\0\0\0\x18ftypmp42" + bytes(range(256)) * 4)
        assert image_size(path) == cv2.imread(str(path)).shape[:2] == (30, 50)
    jpg = _img(tmp_path / "pad.jpg", 30, 50)
    jpg.write_bytes(jpg.read_bytes() + b"\0" * 100)  # zero padding after the end marker
    assert image_size(jpg) == (30, 50)


def test_image_size_corrupt(tmp_path):
    (tmp_path / "z.jpg").write_bytes(b"")
    with pytest.raises(CorruptImage, match="empty file"):
        image_size(tmp_path / "z.jpg")
    bmp = _img(tmp_path / "t.bmp").read_bytes()
    (tmp_path / "t.bmp").write_bytes(bmp[:-50])
    with pytest.raises(CorruptImage, match="truncated BMP"):
        image_size(tmp_path / "t.bmp")
    with pytest.raises(CorruptImage, match="unreadable"):
        image_size(tmp_path / "missing.png")


def test_list_file_folder_and_list_of_both(tmp_path):
    for i in range(3):
        _img(tmp_path / f"images/train/{i}.jpg", seed=i)
        _write(tmp_path / f"labels/train/{i}.txt", f"{i} 0.5 0.5 0.1 0.2\n")
    _img(tmp_path / "extra/images/x.png")
    _write(tmp_path / "extra/images/x.txt", "1 0.5 0.5 0.1 0.2\n")  # same-folder fallback
    _write(tmp_path / "lists/train.txt", f"../images/train/0.jpg\n\n{tmp_path / 'images/train/1.jpg'}\n"
                                         "../images/train/gone.jpg\n")  # line 4 names no file
    _write(tmp_path / "val.txt", "images/train/2.jpg\n")  # relative to the list file's folder (= path)
    cfg = _write(tmp_path / "d.yaml", "train: lists/train.txt\nval: [val.txt, extra/images]\n"
                                      "test: images/train\nnames: {0: a, 1: b, 2: c}\nnc: 3\n")
    config = load_data_config(cfg)
    assert config.names == ["a", "b", "c"] and config.root == tmp_path
    train, val, test = (load_split(config, s) for s in ("train", "val", "test"))
    assert [p.name for p in train.images] == ["0.jpg", "1.jpg"]
    assert train.report.corrupt == 1  # it was 'corrupt image dropped: unreadable (No such file or directory)'
    assert train.report.problems == [f"{tmp_path / 'lists/train.txt'}:4: listed image not found (dropped): "
                                     f"{tmp_path / 'images/train/gone.jpg'}"]
    assert [lab[0, 0] for lab in train.labels] == [0, 1]
    assert [p.name for p in val.images] == ["2.jpg", "x.png"] and [lab[0, 0] for lab in val.labels] == [2, 1]
    assert len(test) == 3 and test.report.labels_found == 3
    assert (tmp_path / "lists/train.cache").is_file() and (tmp_path / "labels/train.cache").is_file()
    assert len(list(tmp_path.glob("val.*.cache"))) == 1


def test_yaml_problems(tmp_path, capsys):
    _img(tmp_path / "images/a.jpg")
    good = "train: images\nnames: [a, b]\n"
    with yolo_warnings() as said:
        assert load_data_config(_write(tmp_path / "ok.yaml", good + "download: x\n")).nc == 2
    assert said == [f"{tmp_path / 'ok.yaml'}: unknown key(s) download ignored; valid keys: path, train, val, test, "
                    "names, nc, format, synthetic"]
    cases = {"nc: 3\n": "nc is 3 but 2 names are given",
             "val: missing\n": r"bad.yaml: val: .*missing: image folder or list file not found",  # the YAML named
             "format: voc\n": "format must be yolo or coco"}
    for extra, message in cases.items():
        path = _write(tmp_path / "bad.yaml", good + extra)
        with pytest.raises(InputError, match=message):
            load_split(load_data_config(path), "val")
    with pytest.raises(InputError, match="names missing"):
        load_data_config(_write(tmp_path / "n.yaml", "train: images\n"))
    with pytest.raises(InputError, match=r"bad.yaml:3: not valid YAML"):
        load_data_config(_write(tmp_path / "bad.yaml", "train: images\nnames: [a\n"))
    with pytest.raises(InputError, match=r"no 'test' split"), yolo_warnings():  # ok.yaml's unknown key again
        load_split(load_data_config(tmp_path / "ok.yaml"), "test")


def test_empty_split_names_the_folder(tmp_path):
    (tmp_path / "images/empty").mkdir(parents=True)
    _write(tmp_path / "images/empty/readme.txt", "no images here")
    cfg = _write(tmp_path / "d.yaml", "train: images/empty\nnames: [a]\n")
    with pytest.raises(InputError, match=f"{tmp_path / 'images/empty'}: no images found"):
        load_split(load_data_config(cfg), "train")
    _write(tmp_path / "images/empty/bad.jpg", "garbage")
    with pytest.raises(InputError, match="no usable images in the train split"):
        load_split(load_data_config(cfg), "train")


def test_folder_split_takes_every_image_kind_opencv_reads(tmp_path):
    """A dataset folder holds what detect reads from a folder: .jfif (a JPEG as browsers save it) and .ppm
    images with their labels, not only .jpg/.png (they were silently left out)."""
    _img(tmp_path / "images/train/a.jpg").rename(tmp_path / "images/train/a.jfif")
    _img(tmp_path / "images/train/b.ppm", h=40, w=30, seed=1)
    _img(tmp_path / "images/train/c.png", seed=2)
    for name in "abc":
        _write(tmp_path / f"labels/train/{name}.txt", "0 0.5 0.5 0.2 0.2\n")
    _write(tmp_path / "images/train/notes.txt", "not an image")
    split = load_split(load_data_config(_write(tmp_path / "d.yaml", "train: images/train\nnames: [a]\n")), "train")
    assert [Path(p).name for p in split.images] == ["a.jfif", "b.ppm", "c.png"]
    assert split.shapes.tolist() == [[48, 64], [40, 30], [48, 64]] and split.report.corrupt == 0
    assert all(len(labels) == 1 for labels in split.labels)


def test_unreadable_label_drops_its_image(tmp_path):
    config = load_data_config(_small(tmp_path, 3))
    (tmp_path / "labels/train/1.txt").write_text("0 0.5 0.5 0.1 0.1\n", encoding="utf-16")  # PowerShell's >
    (tmp_path / "labels/train/2.txt").write_bytes(b"0 0.5 0.5 0.1 0.1 \xe9\n")  # Latin-1
    index = load_split(config, "train", cache=False)
    assert [p.name for p in index.images] == ["0.jpg"] and index.report.bad_rows == {"unreadable": 2}
    assert index.report.problems == [
        f"{tmp_path / 'labels/train/1.txt'}: label file unreadable (UTF-16 text, as PowerShell's '>' writes it: "
        "save it as UTF-8); its image is dropped",
        f"{tmp_path / 'labels/train/2.txt'}: label file unreadable (not UTF-8 text); its image is dropped"]
    text = index.report.format()  # counted as images dropped, not as rows
    assert "labels 1 found, 0 missing, 0 empty, 2 unreadable (their images dropped);" in text
    assert "rows dropped" not in text
    assert index.report.dropped_warning().endswith(": 2 images dropped for an unreadable label file; the split's "
                                                   "`.report.format()` names them")


def test_a_byte_order_mark_is_no_part_of_a_label_names_cfg_or_json_file(tmp_path):
    """Notepad starts UTF-8 files with a byte order mark: the first label row was dropped as non-numeric (its
    image then trained as background), the first class name began with it, and a cfg or json failed."""
    from yolo.model.cfg_parser import parse_cfg
    from yolo.utils.names import load_names

    bom = "\ufeff"
    _img(tmp_path / "images/train/0.jpg")
    _write(tmp_path / "labels/train/0.txt", bom + "0 0.5 0.5 0.2 0.2\n")
    _write(tmp_path / "names.txt", bom + "cat\ndog\n")
    data = _write(tmp_path / "d.yaml", bom + "train: images/train\nnames: [cat, dog]\n")
    index = load_split(load_data_config(data), "train", cache=False)
    np.testing.assert_allclose(index.labels[0], [[0, 0.5, 0.5, 0.2, 0.2]])
    assert not index.report.bad_rows
    assert load_names(tmp_path / "names.txt") == ["cat", "dog"]
    cfg = _write(tmp_path / "m.cfg", bom + (Path(__file__).parent.parent / "cfg/yolov3-tiny.cfg").read_text())
    assert parse_cfg(cfg).net.width == 416
    ann = _coco(tmp_path / "coco")
    ann.write_text(bom + ann.read_text(), encoding="utf-8")
    assert load_split(coco_config(tmp_path / "coco/val", ann), "val").image_ids == [5, 9]


def test_darknet_data_list_lines_relative_to_its_root_work_from_any_folder(tmp_path, monkeypatch):
    """A .data at the dataset's root with list lines relative to it (``./dk/obj/0.jpg``) worked from the root
    only: from another folder every image was "corrupt or missing", and the error named none of them."""
    for i in range(2):
        _img(tmp_path / f"dk/obj/{i}.jpg", seed=i)
        _write(tmp_path / f"dk/obj/{i}.txt", "0 0.5 0.5 0.2 0.2\n")
    _write(tmp_path / "dk/train.txt", "./dk/obj/0.jpg\n./dk/obj/1.jpg\n")
    _write(tmp_path / "obj.data", "classes = 1\ntrain = dk/train.txt\nvalid = dk/train.txt\n")
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    index = load_split(load_data_config("../obj.data"), "train", cache=False)
    assert [p.name for p in index.images] == ["0.jpg", "1.jpg"] and sum(map(len, index.labels)) == 2
    _write(tmp_path / "dk/bad.txt", "./dk/obj/nope.jpg\n")
    _write(tmp_path / "bad.data", "classes = 1\ntrain = dk/bad.txt\n")
    with pytest.raises(InputError, match=r"no usable images in the train split \(1 corrupt or missing; the first: "
                                         r".*bad.txt:1: listed image not found \(dropped\): .*nope.jpg\)$"):
        load_split(load_data_config("../bad.data"), "train", cache=False)


def test_darknet_data_file(tmp_path, monkeypatch):
    for i in range(2):
        _img(tmp_path / f"d/images/{i}.jpg", seed=i)
        _write(tmp_path / f"d/labels/{i}.txt", "1 0.5 0.5 0.1 0.2\n")
    _write(tmp_path / "d/train.txt", "d/images/0.jpg\n")  # darknet lists are relative to the working directory
    _write(tmp_path / "d/valid.txt", str(tmp_path / "d/images/1.jpg") + "\n")
    _write(tmp_path / "d/obj.names", "cat\ndog\n")
    data = _write(tmp_path / "d/obj.data", "classes = 2\ntrain = d/train.txt\nvalid = valid.txt\n"
                                           "names = d/obj.names\nbackup = backup/\n")
    monkeypatch.chdir(tmp_path)
    config = load_data_config("d/obj.data")
    assert config.names == ["cat", "dog"] and set(config.splits) == {"train", "val"}
    assert config.splits["val"].sources == [Path("d/valid.txt")]  # fell back to the .data file's folder
    assert load_split(config, "train").images == [tmp_path / "d/images/0.jpg"]
    assert load_split(config, "val").labels[0][0, 0] == 1
    _write(data, "classes = 3\ntrain = d/train.txt\nnames = d/obj.names\n")
    with pytest.raises(InputError, match="obj.data:1: classes is 3 but the names file has 2 names"):
        load_data_config(data)


def _coco(root: Path) -> Path:
    """Three images (one without annotations, one listed but absent on disk), categories 1, 3 and 7."""
    _img(root / "val/a.jpg", 48, 64)
    _img(root / "val/b.png", 40, 80)
    data = {
        "images": [{"id": 5, "file_name": "a.jpg", "width": 64, "height": 48},
                   {"id": 9, "file_name": "b.png", "width": 80, "height": 40},
                   {"id": 11, "file_name": "gone.jpg", "width": 10, "height": 10}],
        "categories": [{"id": 7, "name": "bird"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 7, "bbox": [8, 12, 16, 24], "iscrowd": 0},
            {"id": 2, "image_id": 5, "category_id": 1, "bbox": [0, 0, 32, 48], "iscrowd": 1},
            {"id": 3, "image_id": 5, "category_id": 3, "bbox": [56, 36, 10, 16], "iscrowd": 0},  # clipped
            {"id": 4, "image_id": 5, "category_id": 2, "bbox": [1, 1, 2, 2], "iscrowd": 0},  # unknown category
            {"id": 5, "image_id": 5, "category_id": 3, "bbox": [1, 1, 0, 2], "iscrowd": 0},  # zero width
            {"id": 6, "image_id": 99, "category_id": 3, "bbox": [1, 1, 2, 2], "iscrowd": 0},  # unknown image
            {"id": 7, "image_id": 5, "category_id": 3, "bbox": [1, float("nan"), 2, 2], "iscrowd": 0},  # NaN
        ]}
    return _write(root / "annotations/instances_val.json", json.dumps(data))


def _pycocotools_boxes(ann: Path, image_id: int, crowd: int) -> np.ndarray:
    """The oracle for evaluation: the bbox of each annotation pycocotools scores, as written."""
    from pycocotools.coco import COCO

    coco = COCO(str(ann))
    anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id, catIds=coco.getCatIds(), iscrowd=None))
    boxes = np.array([a["bbox"] for a in anns if a["iscrowd"] == crowd], np.float64).reshape(-1, 4)
    return boxes[np.isfinite(boxes).all(1)]  # a NaN box matches nothing: left out, as documented


def test_coco_image_id_given_twice_is_an_error(tmp_path):
    """Two images with one id: the first was silently gone and its annotations landed on the other."""
    ann = _coco(tmp_path)
    data = json.loads(ann.read_text())
    data["images"][1]["id"] = 5
    ann.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"image id 5 is given to images\[0\] \('a.jpg'\) and images\[1\] "
                                         r"\('b.png'\): image ids must be unique"):
        load_split(coco_config(tmp_path / "val", ann), "val")
    data["images"][1] = dict(data["images"][0])  # the same entry twice is the same image: fine
    ann.write_text(json.dumps(data))
    assert [p.name for p in load_split(coco_config(tmp_path / "val", ann), "val").images] == ["a.jpg"]


def test_coco_image_of_zero_width_is_an_error(tmp_path):
    """Width 0 in the json: its boxes are normalized by it (an unexpected ZeroDivisionError)."""
    ann = _coco(tmp_path)
    data = json.loads(ann.read_text())
    data["images"][1]["width"] = 0
    ann.write_text(json.dumps(data))
    image_id = data["images"][1]["id"]
    with pytest.raises(InputError, match=rf"instances_val.json: images\[1\] \(id {image_id}\) has width 0 and "
                                         rf"height {data['images'][1]['height']}: both must be positive"):
        load_split(coco_config(tmp_path / "val", ann), "val")


def _pycocotools_rows(ann: Path, image_id: int, crowd: int) -> np.ndarray:
    """The oracle: pycocotools reads the json; boxes normalized and clipped here, independently."""
    from pycocotools.coco import COCO

    coco = COCO(str(ann))
    cats = sorted(coco.getCatIds())
    info = coco.loadImgs(image_id)[0]
    rows = []
    for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None)):
        x, y, w, h = a["bbox"]
        if a["iscrowd"] != crowd or a["category_id"] not in cats or not w > 0 or not np.isfinite(a["bbox"]).all():
            continue
        x1, y1 = max(x, 0) / info["width"], max(y, 0) / info["height"]
        x2, y2 = min(x + w, info["width"]) / info["width"], min(y + h, info["height"]) / info["height"]
        rows.append([cats.index(a["category_id"]), (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
    return np.array(rows, np.float32).reshape(-1, 5)


def test_coco_json(tmp_path, capsys):
    ann = _coco(tmp_path)
    cfg = _write(tmp_path / "coco.yaml", "format: coco\nval: {images: val, annotations: "
                                         "annotations/instances_val.json}\n")
    for config in (load_data_config(cfg), coco_config(tmp_path / "val", ann), load_data_config(ann)):
        index = load_split(config, "val")
        assert index.names == ["person", "car", "bird"] and index.category_ids == [1, 3, 7]
        assert index.image_ids == [5, 9] and [p.name for p in index.images] == ["a.jpg", "b.png"]
        assert index.shapes.tolist() == [[48, 64], [40, 80]]
        for i, image_id in enumerate(index.image_ids):
            np.testing.assert_allclose(index.labels[i], _pycocotools_rows(ann, image_id, 0), atol=1e-6)
            np.testing.assert_allclose(index.crowd[i], _pycocotools_rows(ann, image_id, 1), atol=1e-6)
            for rows, crowd in ((index.coco_gt[i], 0), (index.coco_crowd[i], 1)):  # as written, for evaluation
                np.testing.assert_array_equal(rows[:, 1:5], _pycocotools_boxes(ann, image_id, crowd))
        r = index.report
        assert (r.images, r.corrupt, r.crowd, r.clipped) == (2, 1, 1, 1)
        # found counts the empty entries, as for label files (it counted only those with boxes: 1 and 1 here,
        # where the same data as YOLO txt gave 2 and 1)
        assert (r.labels_found, r.labels_empty, r.instances) == (2, 1, [0, 1, 1])
        assert r.bad_rows == {"class": 1, "size": 1, "image": 1, "non-numeric": 1}
        assert f"{ann}: annotation id 7: non-finite value in bbox [1, nan, 2, 2] (row dropped)" in r.problems
        assert f"{ann}: annotation id 4: unknown category_id 2 (row dropped)" in r.problems
        assert f"{ann}: annotation id 5: box size 0 x 0.0416667 not in (0, 1] (row dropped)" in r.problems
        assert any(p.startswith(str(tmp_path / "val/gone.jpg")) and "not found" in p for p in r.problems)
    with pytest.raises(InputError, match="json has 3 categories but the data config names 2"):
        load_split(load_data_config(_write(tmp_path / "c2.yaml", cfg.read_text() + "names: [a, b]\n")), "val")
    _write(ann, "{not json")
    with pytest.raises(InputError, match="not a readable COCO json"):
        load_data_config(cfg)


def test_synthetic_hook(tmp_path, monkeypatch):
    """``synthetic:`` calls yolo.data.synthetic.ensure_synthetic(spec, names) and reads what it made."""
    calls = []

    def ensure_synthetic(spec, names):
        calls.append((spec, names))
        root = tmp_path / "made"
        for s in ("train", "val"):
            _img(root / f"images/{s}/0.png")
            _write(root / f"labels/{s}/0.txt", "1 0.5 0.5 0.2 0.2\n")
        return root

    monkeypatch.setitem(sys.modules, "yolo.data.synthetic", types.SimpleNamespace(ensure_synthetic=ensure_synthetic))
    cfg = _write(tmp_path / "shapes.yaml", "synthetic: {images: 1, seed: 3}\nnames: [circle, square]\n")
    config = load_data_config(cfg)
    assert calls == [({"images": 1, "seed": 3}, ["circle", "square"])] and config.root == tmp_path / "made"
    assert load_split(config, "val").labels[0][0, 0] == 1


def _small(tmp_path: Path, n: int = 4) -> Path:
    for i in range(n):
        _img(tmp_path / f"images/train/{i}.jpg", seed=i)
        _write(tmp_path / f"labels/train/{i}.txt", f"0 0.5 0.5 0.{i + 1} 0.2\n")
    return _write(tmp_path / "d.yaml", "train: images/train\nnames: [a]\n")


def test_cache_hit_stale_corrupt(tmp_path, monkeypatch):
    config = load_data_config(_small(tmp_path))
    first = load_split(config, "train")
    cache = tmp_path / "labels/train.cache"
    assert cache.is_file() and first.report.notes == []

    def no_reading(path):
        raise AssertionError(f"image {path} read despite a valid cache")

    monkeypatch.setattr(split, "image_size", no_reading)
    hit = load_split(config, "train")
    assert hit.images == first.images and hit.shapes.tolist() == first.shapes.tolist()
    assert all((a == b).all() for a, b in zip(hit.labels, first.labels))
    assert hit.report.instances == [4] and "read from the cache" in hit.report.notes[0]
    monkeypatch.undo()

    lab = tmp_path / "labels/train/2.txt"
    lab.write_text("0 0.5 0.5 0.9 0.9\n")
    os.utime(lab, ns=(1, 1))  # a new mtime even where the clock is coarse
    stale = load_split(config, "train")
    assert stale.labels[2][0, 3] == pytest.approx(0.9) and "stale; rebuilt" in stale.report.notes[0]
    cache.write_bytes(b"PK\x03\x04garbage")
    rebuilt = load_split(config, "train")
    assert "unreadable" in rebuilt.report.notes[0] and len(rebuilt) == 4
    assert "read from the cache" in load_split(config, "train").report.notes[0]



def test_coco_cache_sees_images_changed_in_place(tmp_path):
    """A COCO split's cache key covers the json and the image folder; an image replaced in place (the folder's
    time unchanged) or one that appears under a name the json lists made a cache hit serve the old index."""
    ann = _coco(tmp_path)
    config = coco_config(tmp_path / "val", ann)
    first = load_split(config, "val")
    assert [p.name for p in first.images] == ["a.jpg", "b.png"] and first.report.corrupt == 1
    assert "read from the cache" in load_split(config, "val").report.notes[0]
    folder = tmp_path / "val"
    before = os.stat(folder)

    def keep_folder_time():
        os.utime(folder, ns=(before.st_atime_ns, before.st_mtime_ns))

    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # damaged where it lies
    keep_folder_time()
    damaged = load_split(config, "val")
    assert "stale; rebuilt" in damaged.report.notes[0]
    assert [p.name for p in damaged.images] == ["a.jpg"] and damaged.report.corrupt == 2
    _img(folder / "b.png", 40, 80)  # mended in place
    _img(folder / "gone.jpg", 10, 10)  # and the missing one supplied
    keep_folder_time()
    mended = load_split(config, "val")
    assert [p.name for p in mended.images] == ["a.jpg", "b.png", "gone.jpg"] and mended.report.corrupt == 0
    assert "read from the cache" in load_split(config, "val").report.notes[0]


def test_cache_serves_the_data_however_it_is_named(tmp_path, monkeypatch):
    """``d.yaml`` from its folder, then its absolute path from elsewhere: the second load is a cache hit (the
    key held the paths as written, so switching rebuilt the cache every time) and its image paths are valid
    from the new working folder."""
    path = _small(tmp_path / "data")
    _coco(tmp_path / "data")  # a COCO split too: its cache held image paths relative to the first working folder
    coco = _write(tmp_path / "data" / "coco.yaml", "format: coco\nval: {images: val, annotations: "
                                                   "annotations/instances_val.json}\n")
    (tmp_path / "elsewhere").mkdir()
    for yaml_file, split_name in ((path, "train"), (coco, "val")):
        monkeypatch.chdir(tmp_path / "data")
        first = load_split(load_data_config(yaml_file.name), split_name)
        assert first.report.notes == [] and all(Path(p).is_absolute() for p in first.images)
        monkeypatch.chdir(tmp_path / "elsewhere")
        hit = load_split(load_data_config(str(yaml_file)), split_name)
        assert "read from the cache" in hit.report.notes[0], hit.report.notes
        assert hit.images == first.images and all(Path(p).is_file() for p in hit.images)


def test_cache_falls_back_to_user_dir(tmp_path, monkeypatch):
    from yolo.data import cache as cache_mod

    monkeypatch.delenv("YOLO_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # the toolkit's cache follows it
    real = cache_mod.atomic_write

    def refuse_dataset_dir(path, **kwargs):
        if str(path).startswith(str(tmp_path / "labels")):
            raise PermissionError("read-only")
        return real(path, **kwargs)

    monkeypatch.setattr(cache_mod, "atomic_write", refuse_dataset_dir)
    config = load_data_config(_small(tmp_path))
    load_split(config, "train")
    assert not (tmp_path / "labels/train.cache").exists()
    (user_copy,) = (tmp_path / "xdg/yolo-toolkit/labels").glob("*-train.cache")
    monkeypatch.setattr(split, "image_size", lambda p: (_ for _ in ()).throw(AssertionError("read")))
    # the note names the file read (it named the dataset-side path, which does not exist)
    assert load_split(config, "train").report.notes == [f"labels read from the cache {user_copy}"]
    # an old cache the read-only dataset carries beside its labels hid the good copy: every run rebuilt
    (tmp_path / "labels/train.cache").write_bytes(b"a cache of an older version")
    assert load_split(config, "train").report.notes == [f"labels read from the cache {user_copy}"]


def test_cache_dir_follows_yolo_cache_dir_then_xdg(tmp_path, monkeypatch):
    """One cache root for everything (kernels, shapes data, label caches): $YOLO_CACHE_DIR with ~ expanded (it
    made a folder named '~' in the working folder), else $XDG_CACHE_HOME/yolo-toolkit (it was ignored)."""
    from yolo.data.cache import user_cache_path
    from yolo.utils.files import cache_dir
    from yolo.utils.native import native_dir

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("YOLO_NATIVE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("YOLO_CACHE_DIR", "~/yc")
    assert cache_dir() == tmp_path / "home/yc" and native_dir() == tmp_path / "home/yc/native"
    assert user_cache_path(tmp_path / "labels/train.cache").parent == tmp_path / "home/yc/labels"
    monkeypatch.delenv("YOLO_CACHE_DIR")
    assert cache_dir() == tmp_path / "xdg/yolo-toolkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home/.cache/yolo-toolkit"


def test_cache_ignored_when_off(tmp_path, monkeypatch):
    config = load_data_config(_small(tmp_path))
    load_split(config, "train")
    calls = []
    monkeypatch.setattr(split, "image_size", lambda p: calls.append(p) or imageinfo.image_size(p))
    assert len(load_split(config, "train", cache=False)) == 4 and len(calls) == 4


def test_coco_yaml_names_match_coco_names():
    from tests.helpers import ROOT
    from yolo.utils.names import load_names

    config = load_data_config(ROOT / "data/coco.yaml")
    assert config.names == load_names(ROOT / "data/coco.names") and config.nc == 80
    # a built-in YAML's relative path is taken from the working folder (its own folder is inside the install)
    assert config.root == Path.cwd() / "datasets/coco" and config.splits["val"].sources[0].name == "val2017.txt"


def _reference_rows(text: str, nc: int) -> tuple[list[list[float]], int]:
    """An independent reading of the README's row rules: kept rows (clipped) and the number dropped."""
    kept, seen, dropped = [], [], 0
    for line in text.split("\n"):
        cols = line.split()
        if not cols:
            continue
        try:
            v = [float(c) for c in cols]
        except ValueError:
            v = None
        ok = (v is not None and len(v) == 5 and all(abs(x) < float("inf") for x in v) and v[0] == round(v[0])
              and 0 <= v[0] < nc and -1e-3 <= v[1] <= 1.001 and -1e-3 <= v[2] <= 1.001
              and 0 < v[3] <= 1.001 and 0 < v[4] <= 1.001)
        if ok:
            x1, x2 = max(0.0, v[1] - v[3] / 2), min(1.0, v[1] + v[3] / 2)
            y1, y2 = max(0.0, v[2] - v[4] / 2), min(1.0, v[2] + v[4] / 2)
            ok = x2 - x1 > 1e-6 and y2 - y1 > 1e-6 and v not in seen
        if not ok:
            dropped += 1
            continue
        seen.append(v)
        kept.append([v[0], (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
    return kept, dropped


_COORD = ["0", "1", "0.5", "0.25", "1.0005", "-0.0005", "1.2", "-0.1", "0", "nan", "inf", "1e-9", "0.9999", "x"]


@pytest.mark.parametrize("seed", range(3))
def test_label_rows_match_an_independent_reading(tmp_path, seed):
    """Hypothesis writes label files from valid and broken pieces; the reader keeps what the reference keeps."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from yolo.data.formats_yolo import parse_label_file
    from yolo.data.report import DatasetReport

    cell = st.one_of(st.sampled_from(_COORD), st.floats(-0.2, 1.2).map(lambda f: f"{f:.4f}"))
    row = st.lists(cell, min_size=4, max_size=6).map(" ".join)
    cls = st.sampled_from(["0", "1", "2", "3", "-1", "1.5", "1.0", "b"])
    line = st.one_of(st.tuples(cls, row).map(" ".join), st.just(""), st.just("1 0.5 0.5 0.2 0.2"))

    @settings(max_examples=40, deadline=None, database=None, derandomize=True)
    @given(st.lists(line, max_size=12))
    def check(lines):
        text = "\n".join(lines + lines[: seed + 1])  # repeat a few lines: duplicates
        path = tmp_path / "l.txt"
        path.write_text(text)
        report = DatasetReport(names=["a", "b", "c"])
        got = parse_label_file(path, 3, report)
        kept, dropped = _reference_rows(text, 3)
        np.testing.assert_allclose(got, np.array(kept, np.float32).reshape(-1, 5), atol=1e-6)
        assert sum(report.bad_rows.values()) + report.duplicates == dropped == report.problem_count

    check()


def test_cache_with_pickled_objects_is_not_loaded(tmp_path):
    """A cache holding pickled objects (which could run code) is refused and rebuilt, never unpickled."""
    config = load_data_config(_small(tmp_path))
    load_split(config, "train")
    cache = tmp_path / "labels/train.cache"
    with np.load(cache) as z:
        arrays = dict(z)
    arrays["report"] = np.array([{"evil": "object"}], dtype=object)
    with open(cache, "wb") as f:
        np.savez(f, **arrays)
    index = load_split(config, "train")
    assert "unreadable (ValueError); rebuilt" in index.report.notes[0] and len(index) == 4
