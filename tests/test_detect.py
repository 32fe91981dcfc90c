"""``Detector`` and ``yolo detect`` end to end on a tiny model with random, input-sensitive weights."""

from __future__ import annotations

import json
import re
import struct
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from tests.helpers import CFG, calibrated_model, photo_rgb, yolo_warnings
from yolo.cli import main
from yolo.detect.predictor import Detector
from yolo.errors import InputError
from yolo.model.checkpoint import save_checkpoint
from yolo.runtime.preprocess import preprocess
from yolo.utils.boxes import cxcywh_to_xyxy
from yolo.utils.draw import draw_detections, line_width
from yolo.utils.files import increment_path

CONF = 0.7  # random weights score many boxes around 0.5-0.7; this keeps a handful per image
SIZE = 256


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    save_checkpoint(calibrated_model(CFG / "yolov3-tiny.cfg"), path)
    return path


@pytest.fixture(scope="module")
def detector(weights):
    return Detector(weights, img_size=SIZE, conf=CONF)


def _bgr(h: int, w: int, shift: int = 0) -> np.ndarray:
    """A crop of the photo, BGR ``[h, w, 3]`` uint8."""
    img = photo_rgb()[shift:, shift // 2:, ::-1]
    return np.ascontiguousarray(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))


def _write_video(path: Path, frames: list[np.ndarray], fourcc: str = "MJPG", fps: float = 10) -> Path:
    """``frames`` (BGR ``[h, w, 3]``, one size) as a video file at ``path``."""
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert vw.isOpened()
    for frame in frames:
        vw.write(frame)
    vw.release()
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    for i, (h, w) in enumerate([(160, 200), (120, 240), (200, 150), (99, 131), (160, 160), (240, 180),
                                (111, 222), (130, 170), (150, 260)]):
        cv2.imwrite(str(d / f"im{i}.png"), _bgr(h, w, shift=i * 23))
    return d


def test_batch_1_and_8_agree(detector, folder):
    paths = sorted(folder.glob("*.png"))
    one, eight = detector(paths, batch_size=1), detector(paths, batch_size=8)
    assert sum(len(d) for d in one) >= 10
    for a, b in zip(one, eight):
        assert a.path == b.path and a.shape == b.shape
        # float32 pixels ~100; batch 1 and batch 8 may take different Winograd tile sizes (rounding ~1e-5 relative)
        torch.testing.assert_close(a.tensor(), b.tensor(), atol=1e-3, rtol=1e-4)


def test_detections_are_in_original_pixels(detector, folder):
    for d in detector(sorted(folder.glob("*.png"))):
        h, w = d.shape
        assert (d.boxes[:, 0::2] >= 0).all() and (d.boxes[:, 0::2] <= w).all()
        assert (d.boxes[:, 1::2] >= 0).all() and (d.boxes[:, 1::2] <= h).all()
        assert (d.scores > CONF).all() and (d.scores[:-1] >= d.scores[1:]).all()


def test_half_agrees_with_float32(weights, folder):
    """bf16 on CPU (slow on this AVX2 machine, so 128x128): decoded rows and final boxes match fp32."""
    paths = sorted(folder.glob("*.png"))
    d32 = Detector(weights, img_size=128, conf=CONF)
    d16 = Detector(weights, img_size=128, conf=CONF - 0.03, half=True)  # scores may differ by < 0.03 (below)
    assert d16.backend.dtype == torch.bfloat16
    x, _ = preprocess([cv2.imread(str(p)) for p in paths], (128, 128))
    p32, p16 = d32.backend(x), d16.backend(x)  # [B, N, 5+C]
    row_iou = torch.diag(box_iou(cxcywh_to_xyxy(p32[..., :4]).view(-1, 4), cxcywh_to_xyxy(p16[..., :4]).view(-1, 4)))
    assert (row_iou >= 0.9).float().mean() >= 0.99
    assert (p32[..., 4:] - p16[..., 4:]).abs().max() < 0.03
    matched = total = 0
    for a, b in zip(d32(paths), d16(paths)):
        total += len(a)
        if len(a) and len(b):
            iou = box_iou(a.boxes, b.boxes) * (a.classes[:, None] == b.classes[None])
            matched += int((iou.max(1).values >= 0.9).sum())
    assert total >= 10 and matched >= 0.99 * total


def _exif_jpeg(img: np.ndarray, orientation: int) -> bytes:
    """A JPEG with an APP1 Exif segment holding one IFD0 entry: Orientation (0x0112, SHORT) = ``orientation``."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    data = buf.tobytes()
    assert ok and data[:2] == b"\xff\xd8"
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8)  # big-endian TIFF header, IFD0 at offset 8
    tiff += struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return data[:2] + app1 + data[2:]


def test_exif_orientation_is_applied(detector, tmp_path):
    img = _bgr(120, 200)
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_exif_jpeg(img, 6))  # 6: rotate 90 degrees clockwise to display
    raw = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert raw.shape[:2] == (120, 200)
    (d,) = detector(path)
    assert d.shape == (200, 120)
    (expected,) = detector(cv2.rotate(raw, cv2.ROTATE_90_CLOCKWISE))
    torch.testing.assert_close(d.tensor(), expected.tensor())


def test_gray_rgba_and_16_bit_png(detector, tmp_path):
    base = _bgr(150, 190)
    gray = cv2.cvtColor(base, cv2.COLOR_BGR2GRAY)
    cases = {
        "gray.png": (gray, cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)),
        "rgba.png": (np.dstack([base, np.full(base.shape[:2], 200, np.uint8)]), base),
        "deep.png": (base.astype(np.uint16) * 257, base),  # 16-bit: v * 257 is exactly v in 8 bits
    }
    for name, (pixels, as_bgr8) in cases.items():
        cv2.imwrite(str(tmp_path / name), pixels)
        (d,) = detector(tmp_path / name)
        (expected,) = detector(as_bgr8)
        assert d.shape == (150, 190), name
        torch.testing.assert_close(d.tensor(), expected.tensor(), msg=name)
    assert len(expected) > 0
    # any 16-bit picture: its array (as cv2.IMREAD_UNCHANGED gives it) and its file are the same 8-bit pixels
    deep = (base.astype(np.uint16) * 257 + np.random.default_rng(0).integers(0, 257, base.shape)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep2.png"), deep)
    (from_file,), (from_array,) = detector(tmp_path / "deep2.png"), detector(cv2.imread(str(tmp_path / "deep2.png"),
                                                                                        cv2.IMREAD_UNCHANGED))
    assert len(from_file) > 0 and torch.equal(from_file.tensor(), from_array.tensor())
    (f,) = detector(base.astype(np.float32) / 255)  # floats in [0, 1] are the same picture
    torch.testing.assert_close(f.tensor(), detector(base)[0].tensor())
    with pytest.raises(InputError, match=r"float image must hold values in \[0, 1\], this one reaches 2"):
        detector(base.astype(np.float32))  # 0-255 floats: a white picture once clipped, so no detections at all
    with pytest.raises(InputError, match=r"this one goes down to -0.49\d* \(centred or mean/std-normalized pixels"):
        detector(base.astype(np.float32) / 255 - 0.5)  # clipped at 0, it detected on another picture
    nan = base.astype(np.float32) / 255
    nan[0, 0, 0] = np.nan
    with pytest.raises(InputError, match=r"this one holds NaN or infinity$"):
        detector(nan)


def test_txt_json_and_drawn_boxes_agree(detector, folder, tmp_path):
    paths = sorted(folder.glob("*.png"))[:3]
    summary = detector.run(folder / "im[0-2].png", out=tmp_path / "exp", save_txt=True, save_json=True,
                           progress=False)
    run = tmp_path / "exp"
    assert summary["run_dir"] == str(run) and summary["images"] == 3
    results = json.loads((run / "predictions.json").read_text())
    returned = detector(paths)
    assert summary["detections"] == len(results) == sum(len(d) for d in returned) > 0
    for p, det in zip(paths, returned):
        h, w = det.shape
        mine = [r for r in results if r["file_name"] == p.name]
        rows = np.loadtxt(run / "labels" / f"{p.stem}.txt", ndmin=2)
        assert len(mine) == len(rows) == len(det)
        for r, t, box, score, cls in zip(mine, rows, det.boxes.tolist(), det.scores.tolist(), det.classes.tolist()):
            x, y, bw, bh = r["bbox"]
            assert r["category_id"] == int(t[0]) == cls and abs(r["score"] - score) < 1e-4 and abs(t[5] - score) < 1e-4
            np.testing.assert_allclose([x, y, x + bw, y + bh], box, atol=2e-3)
            np.testing.assert_allclose(t[1:5], [(x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h], atol=1e-5)
        _check_drawing(cv2.imread(str(p)), cv2.imread(str(run / p.name)), det.boxes.numpy())


def _check_drawing(original: np.ndarray, drawn: np.ndarray, boxes: np.ndarray) -> None:
    """Each box's four edges are painted; every painted pixel is on an edge or in a label tag at a box's top."""
    changed = (original != drawn).any(-1)
    h, w = changed.shape
    lw = line_width(original.shape)
    near_edge = np.zeros_like(changed)
    tag = np.zeros_like(changed)
    for x1, y1, x2, y2 in np.round(boxes).astype(int):
        xa, xb, ya, yb = max(x1, 0), min(x2, w - 1), max(y1, 0), min(y2, h - 1)  # far-border edges move inside
        for edge in (changed[ya, xa:xb + 1], changed[yb, xa:xb + 1], changed[ya:yb + 1, xa], changed[ya:yb + 1, xb]):
            assert edge.mean() > 0.9
        r = lw // 2 + 1
        for y in (ya, yb):
            near_edge[max(y - r, 0):y + r + 1, max(xa - r, 0):xb + r + 1] = True
        for x in (xa, xb):
            near_edge[max(ya - r, 0):yb + r + 1, max(x - r, 0):x + r + 1] = True
        tag[max(ya - 25, 0):ya + 25, max(xa - 160, 0):xa + 160] = True  # "<name> 0.00" tag: height ~14 px, width
        # < 160 px, moved left at the right border
    assert not (changed & ~near_edge & ~tag).any()


def test_draw_without_labels_paints_only_box_edges():
    img = np.zeros((100, 120, 3), np.uint8)
    dets = np.array([[10.2, 20.7, 60.4, 80.1, 0.9, 3], [70, 5, 119.6, 40, 0.8, 1]])
    out = draw_detections(img, dets, labels=False, color=(0, 255, 0), lw=1)
    ys, xs = np.nonzero(out[:, :, 1])
    expected = np.zeros((100, 120), bool)
    for x1, y1, x2, y2 in [(10, 21, 60, 80), (70, 5, 120, 40)]:  # rounded corners, clipped by the image
        expected[y1, x1:x2 + 1] = expected[min(y2, 99), x1:x2 + 1] = True
        expected[y1:y2 + 1, x1] = expected[y1:min(y2, 99) + 1, min(x2, 119)] = True
    assert (out[:, :, 1] > 0).sum() == expected.sum() and expected[ys, xs].all()
    assert (img == 0).all()  # the input is not modified


def test_video_in_video_out(detector, tmp_path):
    src = _write_video(tmp_path / "clip.avi", [_bgr(128, 160, shift=i * 9) for i in range(10)])
    summary = detector.run(src, out=tmp_path / "exp", save_txt=True, save_json=True, progress=False)
    assert summary["images"] == 10 and summary["videos"] == ["clip.mp4"]
    cap = cv2.VideoCapture(str(tmp_path / "exp" / "clip.mp4"))
    frames = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames += 1
        assert frame.shape == (128, 160, 3)
    assert frames == 10
    assert len(list((tmp_path / "exp" / "labels").glob("clip_*.txt"))) == 10
    results = json.loads((tmp_path / "exp" / "predictions.json").read_text())
    assert len(results) == summary["detections"] > 0
    assert all(r["file_name"] == "clip.avi" and 0 <= r["frame"] < 10 for r in results)


def test_no_output_replaces_another(detector, tmp_path):
    """An image named like a video's frame (``clip_2.png`` beside ``clip.avi``) keeps its own label file and
    annotated image, and a file's suffix keeps its case (``C.JPG``)."""
    src = tmp_path / "src"
    src.mkdir()
    _write_video(src / "clip.avi", [_bgr(128, 160, shift=i * 9) for i in range(4)])
    cv2.imwrite(str(src / "clip_2.png"), _bgr(96, 128, shift=50))  # sorted after clip.avi
    cv2.imwrite(str(src / "C.JPG"), _bgr(96, 128, shift=70))
    summary = detector.run(src, out=tmp_path / "exp", save_txt=True, progress=False, batch_size=1)
    assert summary["images"] == 6
    labels = sorted(p.name for p in (tmp_path / "exp" / "labels").glob("*.txt"))
    assert labels == ["C.txt", "clip_0.txt", "clip_1.txt", "clip_2.txt", "clip_2_2.txt", "clip_3.txt"]
    assert sorted(p.name for p in (tmp_path / "exp").iterdir() if p.is_file()) == ["C.JPG", "clip.mp4",
                                                                                   "clip_2_2.png"]
    alone = detector.run(src / "clip_2.png", out=tmp_path / "alone", save_txt=True, progress=False, batch_size=1)
    assert alone["images"] == 1
    assert (tmp_path / "exp" / "labels" / "clip_2_2.txt").read_text() == \
        (tmp_path / "alone" / "labels" / "clip_2.txt").read_text()


def test_run_folders_increment_nosave_and_unreadable(detector, folder, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for p in sorted(folder.glob("*.png"))[:2]:
        (src / p.name).write_bytes(p.read_bytes())
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    (src / "broken.mp4").write_bytes(b"not a video either")  # skipped and counted too, not the end of the run
    (src / "gone.png").symlink_to(tmp_path / "nowhere.png")  # a link to nothing: was left out without a word
    with yolo_warnings() as said:
        first = detector.run(src, out=tmp_path / "runs" / "exp", progress=False)
    assert f"{src / 'gone.png'}: a link to a file that is gone, skipped" in said
    with yolo_warnings():
        second = detector.run(src, out=tmp_path / "runs" / "exp", nosave=True, save_crop=True, progress=False)
    assert first["run_dir"].endswith("exp") and second["run_dir"].endswith("exp2")
    assert first["images"] == 2 and first["unreadable"] == 3
    assert [Path(p).name for p in first["unreadable_files"]] == ["broken.jpg", "broken.mp4", "gone.png"]
    assert sorted(p.name for p in (tmp_path / "runs" / "exp").iterdir()) == ["im0.png", "im1.png"]
    exp2 = tmp_path / "runs" / "exp2"
    assert not list(exp2.glob("*.png")) and not list(exp2.glob("*.jpg"))  # --nosave: no annotated images
    crops = list((exp2 / "crops").rglob("*.jpg"))
    assert len(crops) == second["detections"] > 0
    with yolo_warnings():
        third = detector.run(src, out=tmp_path / "runs" / "exp", nosave=True, progress=False)  # nothing to write
    assert third["run_dir"] is None and third["detections"] == second["detections"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["exp", "exp2"]  # no empty exp3 left


def test_broken_files_give_our_warnings_only(weights, tmp_path):
    """A folder with a truncated JPEG, a broken GIF and a broken MP4 beside a good image, through the real
    command: one warning line naming each (the JPEG is used, the others skipped and counted), and none of
    OpenCV's or FFmpeg's own log lines (``[ERROR:0@...] global loadsave.cpp``, ``moov atom not found``) unless
    --verbose."""
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT

    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "good.png"), _bgr(96, 128))
    jpeg = cv2.imencode(".jpg", _bgr(96, 128, shift=40))[1].tobytes()
    (src / "cut.jpg").write_bytes(jpeg[:len(jpeg) * 2 // 3])
    png = cv2.imencode(".png", _bgr(96, 128, shift=80))[1].tobytes()
    (src / "cut.png").write_bytes(png[:len(png) * 2 // 3])  # libpng printed its own "libpng error: Read Error"
    (src / "broken.gif").write_bytes(b"GIF89a" + bytes(10))
    (src / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(40))
    cmd = [sys.executable, "-m", "yolo", "detect", "--weights", str(weights), "--source", str(src), "--img-size",
           "128", "--nosave", "--no-progress", "--out", str(tmp_path / "run")]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("OPENCV_", "YOLO_VERBOSE"))},
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "2 images" in done.stdout and "3 unreadable files skipped" in done.stdout, done.stdout
    assert done.stdout.splitlines()[-1].startswith("nothing saved (--nosave") and not (tmp_path / "run").exists()
    lines = done.stderr.splitlines()
    assert f"warning: {src / 'cut.jpg'}: truncated JPEG (no end-of-image marker); detecting on the part that " \
           "decodes" in lines, lines
    assert f"warning: {src / 'cut.png'}: truncated PNG (no IEND chunk), skipped" in lines, lines
    assert f"warning: {src / 'broken.gif'}: cannot open this video, skipped" in lines
    assert f"warning: {src / 'broken.mp4'}: cannot open this video, skipped" in lines
    assert not any(line.startswith(("[", "libpng")) for line in lines), lines  # [ERROR:0@...], [mov,mp4,... @ ...]
    verbose = subprocess.run([*cmd[:3], "--verbose", *cmd[3:-1], str(tmp_path / "run_v")], capture_output=True,
                             text=True, timeout=300, env=env)
    assert verbose.returncode == 0 and any(line.startswith("[") for line in verbose.stderr.splitlines())


def test_increment_path_is_safe_under_concurrency(tmp_path):
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(increment_path(tmp_path / "exp"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in got) == sorted(["exp"] + [f"exp{i}" for i in range(2, 9)])
    assert increment_path(tmp_path / "exp", mkdir=False).name == "exp9"
    # a name ending in a digit: run1, run1-2, run1-3 (not run12: that reads as run 12)
    assert [increment_path(tmp_path / "run1").name for _ in range(3)] == ["run1", "run1-2", "run1-3"]


def _cli_error(capsys, *argv) -> str:
    assert main(["detect", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("yolo detect: error: ")
    return err


def test_cli_errors_are_one_line(weights, tmp_path, capsys):
    w = ["--weights", str(weights), "--out", str(tmp_path / "out")]
    assert "source not found" in _cli_error(capsys, *w, "--source", str(tmp_path / "missing.jpg"))
    (tmp_path / "empty").mkdir()
    assert "no images or videos in folder" in _cli_error(capsys, *w, "--source", str(tmp_path / "empty"))
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), _bgr(64, 64))
    assert "--conf must be in [0, 1]" in _cli_error(capsys, *w, "--source", str(img), "--conf", "1.5")
    assert "--iou must be in [0, 1]" in _cli_error(capsys, *w, "--source", str(img), "--iou", "-0.1")
    # a class the model lacks kept nothing, silently (exit 0)
    assert "--classes 80 -1: the model has 80 classes, 0 to 79" in _cli_error(capsys, *w, "--source", str(img),
                                                                            "--classes", "0", "80", "-1")
    assert not (tmp_path / "out").exists()  # nothing was started
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    assert "cannot open video" in _cli_error(capsys, *w, "--source", str(tmp_path / "bad.mp4"))
    assert "not found" in _cli_error(capsys, "--weights", str(tmp_path / "no.pt"), "--source", str(img))
    junk = tmp_path / "m.onnx"
    junk.write_bytes(b"\0")
    assert str(junk) in _cli_error(capsys, "--weights", str(junk), "--source", str(img), "--out", str(tmp_path / "o2"))
    assert not (tmp_path / "o2").exists()  # the run folder of a model that failed to load is removed



def test_api_errors_name_parameters_not_flags(weights, detector, tmp_path):
    """From Python the same mistakes name the keyword the caller wrote (``conf``), not the command's flag."""
    from yolo.export.exporter import export_model
    from yolo.model.convert import convert_weights

    for kwargs, text in (({"conf": 1.5}, "conf must be in [0, 1], got 1.5"), ({"iou": -0.1}, "iou must be in"),
                         ({"max_det": 0}, "max_det must be >= 1"),
                         ({"classes": [0, 80]}, "classes 80: the model has 80 classes")):
        with pytest.raises(InputError, match=r"^" + re.escape(text)) as e:
            Detector(weights, img_size=SIZE, **kwargs)
        assert "--" not in str(e.value)
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), _bgr(64, 64))
    with pytest.raises(InputError, match=r"^batch_size must be >= 1") as e:
        detector.run(img, out=tmp_path / "out", batch_size=0)
    existing = tmp_path / "x.onnx"
    existing.write_bytes(b"")
    with pytest.raises(InputError, match=r"pass force=True to replace it$"):
        export_model(weights, "onnx", out=existing)
    with pytest.raises(InputError, match=r"^nms=True and opset apply to format='onnx' only$"):
        export_model(weights, "torchscript", out=tmp_path / "y.torchscript", nms=True)
    with pytest.raises(InputError, match=r"^bn_eps 2 must be in \(0, 1\)$"):
        convert_weights(weights, tmp_path / "z.pt", bn_eps=2)

def test_cli_list_file_darknet_weights_and_outputs(weights, folder, tmp_path, capsys):
    from yolo.model.checkpoint import load_model

    dw = tmp_path / "tiny.weights"
    load_model(weights).save_darknet_weights(dw)
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in sorted(folder.glob("*.png"))[:2]))
    out = tmp_path / "run"
    argv = ["detect", "--weights", str(dw), "--cfg", str(CFG / "yolov3-tiny.cfg"), "--source", str(listing),
            "--img-size", str(SIZE), "--conf", str(CONF), "--save-json", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "2 images" in stdout and "ms inference" in stdout and str(out) in stdout
    results = json.loads((out / "predictions.json").read_text())
    expected = Detector(weights, img_size=SIZE, conf=CONF)(sorted(folder.glob("*.png"))[:2])
    assert len(results) == sum(len(d) for d in expected)
    ours = sorted((r["file_name"], r["score"]) for r in results)
    theirs = sorted((r["file_name"], r["score"]) for d in expected for r in d.to_json())
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-4)


def test_api_errors(weights):
    assert Detector(weights, img_size=100).img_size == (128, 128)  # rounded up, as yolo detect does
    with pytest.raises(InputError, match="img_size must be positive"):
        Detector(weights, img_size=-32)
    with pytest.raises(InputError, match="^conf must be in"):  # the keyword, not the flag (--conf in the CLI)
        Detector(weights, conf=2)
    with pytest.raises(InputError, match="the model has 80 classes"):
        Detector(weights, classes=[80])
    with pytest.raises(InputError, match="not found"):
        Detector(weights)("/nonexistent/x.jpg")
    with pytest.raises(InputError, match="img_size must be an int or"):
        Detector(weights, img_size=416.0)
    assert Detector(weights, img_size=np.int64(96)).img_size == (96, 96)
    for bad, message in ((object(), "weights must be a file path .* got object"), (12, "got int"),
                         (torch.nn.Conv2d(3, 3, 1), "needs the attributes .* Conv2d lacks names, fixed_shape")):
        with pytest.raises(InputError, match=message):
            Detector(bad)


def test_api_inputs_go_where_they_belong(detector, folder, tmp_path):
    """run() takes a list of paths (as detector() does) and refuses an array with a hint; detector() refuses a
    folder or a pattern with a hint; empty arrays are an InputError, not a ZeroDivisionError."""
    paths = sorted(folder.glob("*.png"))
    listed = detector.run([str(paths[3]), paths[0], folder / "im1.png"], out=tmp_path / "r", save_json=True,
                          progress=False)
    assert listed["images"] == 3
    names = [d["file_name"] for d in json.loads(Path(listed["json"]).read_text())]
    assert list(dict.fromkeys(names)) == ["im3.png", "im0.png", "im1.png"]  # the list's order
    expected = detector([paths[3], paths[0], paths[1]])
    assert len(names) == sum(len(d) for d in expected) > 0
    for source, message in (([], "an empty list"), ([paths[0], 3], "must hold paths .* got int"),
                            (cv2.imread(str(paths[0])), "got ndarray; an image array goes to detector"),
                            (2.5, "got float")):
        with pytest.raises(InputError, match=message):
            detector.run(source, out=tmp_path / "r", progress=False)
    for item in (folder, str(folder / "*.png")):
        with pytest.raises(InputError, match="folder or pattern holds many files: pass them to Detector.run"):
            detector(item)
    with pytest.raises(InputError, match="expected an image array .* got Tensor"):
        detector(torch.zeros(3, 8, 8))
    for shape in ((0, 0, 3), (0, 10, 3), (10, 0)):
        with pytest.raises(InputError, match="empty image"):
            detector(np.zeros(shape, np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # refused runs leave no folder


def test_backend_matches_the_plain_model_and_leaves_it_alone(weights, folder):
    """Folded BN + channels-last + float32 decode = the unfused model's own forward and decode."""
    from yolo.model.checkpoint import load_model

    model = load_model(weights)
    det = Detector(model, img_size=SIZE, conf=CONF)
    assert model.module_list[0].bn is not None  # the caller's model is not fused in place
    x, _ = preprocess([cv2.imread(str(p)) for p in sorted(folder.glob("*.png"))[:2]], (SIZE, SIZE))
    with torch.no_grad():
        expected = model.decode(model(x))
    torch.testing.assert_close(det.backend(x), expected, atol=1e-3, rtol=1e-4)


def test_static_batch_backends_get_exact_chunks():
    """An exported model with a fixed batch size sees only batches of that size; padding rows are dropped."""
    from yolo.runtime.backends import run_backend as _run_backend

    class Fixed:
        fixed_batch = 3

        def __call__(self, x):  # [3, 3, H, W] -> [3, 1, 3]: per-image channel means
            assert len(x) == 3
            return x.mean((2, 3))[:, None, :]

    x = torch.rand(7, 3, 8, 8)
    torch.testing.assert_close(_run_backend(Fixed(), x), x.mean((2, 3))[:, None, :])


def test_exported_torchscript_gives_the_same_detections(weights, folder, tmp_path):
    """Where the export module is present (the export branch): a static batch-1 TorchScript file behind the
    same Detector gives the .pt's detections, also when fed batches of 8."""
    try:
        from yolo.export.exporter import export_model
    except ImportError:
        pytest.skip("yolo.export not available in this checkout")
    path = tmp_path / "tiny.torchscript"
    export_model(weights, "torchscript", out=path, img_size=SIZE, batch_size=1)
    paths = sorted(folder.glob("*.png"))[:4]
    expected = Detector(weights, img_size=SIZE, conf=CONF)(paths)
    got = Detector(path, img_size=SIZE, conf=CONF)(paths, batch_size=8)
    assert sum(len(d) for d in expected) > 0
    for a, b in zip(expected, got):
        torch.testing.assert_close(a.tensor(), b.tensor(), atol=1e-3, rtol=1e-4)
    backend = Detector(path, img_size=SIZE).backend
    with pytest.raises(InputError, match="expected a float tensor .* got a torch.uint8 tensor"):
        backend(torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8))  # 0-255 pixels would give garbage, not an error


def test_awkward_names_lists_and_run_folders(weights, tmp_path, capsys, monkeypatch):
    """Same-named files of two folders stay apart in predictions.json as in the labels; list files with a byte
    order mark, a folder, no entries or non-UTF-8 bytes; run folders named '.' or under a file."""
    w = ["--weights", str(weights), "--img-size", str(SIZE), "--conf", str(CONF), "--no-progress"]
    for sub, shift in (("a", 0), ("b", 60)):
        (tmp_path / "nest" / sub).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "nest" / sub / "x.png"), _bgr(150, 190, shift=shift))
    out = tmp_path / "glob"
    assert main(["detect", *w, "--source", str(tmp_path / "nest" / "*" / "x.png"), "--out", str(out),
                 "--save-txt", "--save-json", "--nosave"]) == 0
    items = json.loads((out / "predictions.json").read_text())
    for name, sub in (("x", "a"), ("x_2", "b")):  # each JSON name joins its labels file and its source
        mine = [i for i in items if i["file_name"] == f"{name}.png"]
        assert len(mine) == len((out / "labels" / f"{name}.txt").read_text().splitlines()) > 0
        assert {i["path"] for i in mine} == {str(tmp_path / "nest" / sub / "x.png")}
    capsys.readouterr()

    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "bom.txt").write_bytes(b"\xef\xbb\xbf../nest/a/x.png\n../nest/b\n")  # Windows Notepad's BOM; a folder
    assert main(["detect", *w, "--source", str(lists / "bom.txt"), "--out", str(tmp_path / "bom"), "--save-txt",
                 "--nosave"]) == 0
    assert "2 images" in capsys.readouterr().out
    (lists / "empty.txt").write_text("\n# nothing yet\n")
    assert "lists no image or video" in _cli_error(capsys, *w, "--source", str(lists / "empty.txt"), "--out",
                                                   str(tmp_path / "e"))
    (lists / "latin1.txt").write_bytes(b"caf\xe9.png\n")
    assert "not UTF-8 text (byte 3" in _cli_error(capsys, *w, "--source", str(lists / "latin1.txt"), "--out",
                                                  str(tmp_path / "e"))
    assert not (tmp_path / "e").exists()
    img = str(tmp_path / "nest" / "a" / "x.png")
    monkeypatch.chdir(tmp_path / "nest")
    for name in (".", "..", ""):  # '.' crashed (ValueError), '..' made a folder named '..2'
        assert "needs a name" in _cli_error(capsys, *w, "--source", img, "--out", name)
    assert sorted(p.name for p in (tmp_path / "nest").iterdir()) == ["a", "b"]
    assert f"{tmp_path / 'nest' / 'a' / 'x.png'} is a file, not a folder" in _cli_error(
        capsys, *w, "--source", img, "--out", str(tmp_path / "nest" / "a" / "x.png" / "run"))


def test_video_sides_of_any_size(weights, tmp_path, capsys):
    """A video 1 pixel wide gets its annotated copy (padded to the even sides the encoder needs; it refused
    and ended the run); odd sides are padded, not cut: every source pixel is in the output."""
    from yolo.detect.writers import VideoOut

    src = tmp_path / "src"
    src.mkdir()
    _write_video(src / "thin.avi", [np.full((9, 1, 3), 100, np.uint8)] * 3)
    cv2.imwrite(str(src / "z.png"), _bgr(120, 160))
    assert main(["detect", "--weights", str(weights), "--img-size", str(SIZE), "--source", str(src), "--no-progress",
                 "--out", str(tmp_path / "r"), "--save-txt"]) == 0
    assert "4 images" in capsys.readouterr().out
    cap = cv2.VideoCapture(str(tmp_path / "r" / "thin.mp4"))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    assert len(frames) == 3 and frames[0].shape == (10, 2, 3)
    assert (tmp_path / "r" / "z.png").is_file() and len(list((tmp_path / "r" / "labels").glob("*.txt"))) == 4

    import yolo.detect.writers as writers

    def refuse(*args):
        raise OSError("OpenCV cannot write a 1x9 video")

    with pytest.MonkeyPatch.context() as mp:  # a video OpenCV will not write: a warning; labels and the run go on
        mp.setattr(writers, "VideoOut", refuse)
        assert main(["detect", "--weights", str(weights), "--img-size", str(SIZE), "--source", str(src),
                     "--no-progress", "--out", str(tmp_path / "r2"), "--save-txt"]) == 0
    out, err = capsys.readouterr()
    assert "4 images" in out and err.count("no annotated video (OpenCV cannot write a 1x9 video)") == 1
    assert (tmp_path / "r2" / "z.png").is_file() and len(list((tmp_path / "r2" / "labels").glob("*.txt"))) == 4

    frame = _bgr(21, 33)
    video = VideoOut(tmp_path / "odd.mp4", 10.0, (33, 21))
    for _ in range(3):
        video.write(frame)
    video.close()
    ok, back = cv2.VideoCapture(str(tmp_path / "odd.mp4")).read()
    assert ok and back.shape == (22, 34, 3)
    assert np.abs(back[:21, :33].astype(int) - frame).mean() < 12  # the picture, to MPEG-4's loss
    assert back[21:].max() < 40 and back[:, 33:].max() < 40  # the padding: black


def test_file_names_that_are_not_utf8(weights, tmp_path):
    """A file name whose bytes are not UTF-8 crashed OpenCV (segmentation fault, the whole run lost): the image
    is read through Python's bytes and detected as under a plain name; a video of such a name is skipped and
    counted. A child process, so that a crash is a failed test, not a lost test worker."""
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT

    src = tmp_path / "src"
    src.mkdir()
    png = cv2.imencode(".png", _bgr(150, 190))[1].tobytes()
    (src / "plain.png").write_bytes(png)
    with open(os.path.join(os.fsencode(src), b"caf\xe9.png"), "wb") as f:
        f.write(png)
    with open(os.path.join(os.fsencode(src), b"clip\xff.mp4"), "wb") as f:
        f.write(b"\x00\x00\x00\x18ftypmp42" + bytes(40))
    cmd = [sys.executable, "-m", "yolo", "detect", "--weights", str(weights), "--img-size", str(SIZE), "--conf",
           str(CONF), "--source", str(src), "--no-progress", "--save-txt", "--save-json", "--out", str(tmp_path / "r")]
    done = subprocess.run(cmd, capture_output=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"2 images" in done.stdout and b"1 unreadable file skipped" in done.stdout
    labels = {p.name: p.read_text() for p in (tmp_path / "r" / "labels").iterdir()}
    assert set(labels) == {"caf\ufffd.txt", "plain.txt"} and labels["caf\ufffd.txt"] == labels["plain.txt"] != ""
    items = json.loads((tmp_path / "r" / "predictions.json").read_text(encoding="utf-8"))
    assert {i["path"] for i in items} == {str(src / "plain.png"), str(src / "caf") + "\\xe9.png"}
    assert {i["file_name"] for i in items} == {"plain.png", "caf\ufffd.png"}


def test_a_video_without_frames_is_an_unreadable_file(weights, tmp_path, capsys):
    """A video that opens but holds no frame was a success (exit 0, an empty run folder) and was missing from
    the unreadable count; a source of nothing else is now an error, as one of corrupt files is."""
    empty = tmp_path / "empty.avi"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48)).release()
    out = tmp_path / "run"
    assert main(["detect", "--weights", str(weights), "--source", str(empty), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"yolo detect: error: {empty}: no readable image or video frame (1 unreadable file)"
    assert f"warning: {empty}: no frame could be read, skipped" in err and not out.exists()
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    empty.rename(mixed / "empty.avi")
    cv2.imwrite(str(mixed / "a.png"), _bgr(64, 80))
    summary = Detector(weights, img_size=SIZE).run(mixed, out=tmp_path / "r2", nosave=True, progress=False)
    assert (summary["images"], summary["unreadable"], summary["unreadable_files"]) == (1, 1, [str(mixed / "empty.avi")])


def test_a_truncated_video_says_how_many_frames_it_lost(tmp_path, capsys):
    """Half an AVI ran its 10 readable frames of 20 without a word (and the progress bar stayed at 10/20)."""
    from yolo.detect.sources import Source

    clip = _write_video(tmp_path / "clip.avi", [_bgr(48, 64, shift=k) for k in range(20)])
    whole = clip.read_bytes()
    with yolo_warnings() as said:
        assert [f.index for f in Source(str(clip))] == list(range(20))
    assert said == []
    clip.write_bytes(whole[:len(whole) // 2])
    with yolo_warnings() as said:
        frames = [f.index for f in Source(str(clip))]
    assert 0 < len(frames) < 20
    assert said == [f"{clip}: read {len(frames)} of the 20 frames its header declares (a truncated file?)"]


def test_frame_labels_never_meet_an_image_named_like_a_frame(weights, tmp_path):
    """An image ``clip_5.png`` listed before ``clip.avi`` took ``labels/clip_5.txt``, and frame 5's labels went to
    ``clip_5_2.txt``, where no ``<stem>_<frame>`` reader looks: now the video's stem moves aside instead."""
    clip = _write_video(tmp_path / "clip.avi", [_bgr(48, 64, shift=k) for k in range(8)])
    image = tmp_path / "clip_5.png"
    cv2.imwrite(str(image), _bgr(60, 70))
    listing = tmp_path / "list.txt"
    listing.write_text(f"{image}\n{clip}\n")
    run = Detector(weights, img_size=SIZE).run(listing, out=tmp_path / "run", save_txt=True, save_json=True,
                                               progress=False)["run_dir"]
    labels = sorted(p.name for p in (Path(run) / "labels").iterdir())
    assert labels == ["clip_2_0.txt", "clip_2_1.txt", "clip_2_2.txt", "clip_2_3.txt", "clip_2_4.txt", "clip_2_5.txt",
                      "clip_2_6.txt", "clip_2_7.txt", "clip_5.txt"]
    assert (Path(run) / "clip_2.mp4").is_file() and (Path(run) / "clip_5.png").is_file()


def test_ctrl_c_while_a_frame_is_written_waits_for_its_labels_and_json(detector, tmp_path, monkeypatch):
    """A Ctrl-C right after the video encoder returned left the annotated video one frame ahead of the labels
    and the JSON (3 runs in 20 in a user's test): the frame's outputs are now written whole, then it stops."""
    import json
    import signal

    from yolo.detect.sources import Frame
    from yolo.detect.writers import RunWriter, VideoOut

    image = _bgr(96, 128)
    (det,) = detector(image)
    encode = VideoOut.write

    def encode_then_ctrl_c(self, frame):
        encode(self, frame)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(VideoOut, "write", encode_then_ctrl_c)
    writer = RunWriter(tmp_path, detector.names, save_img=True, save_txt=True, save_json=True, save_crop=False)
    with pytest.raises(KeyboardInterrupt):
        writer.write(Frame("clip.avi", image, 0, 10.0), det)
    writer.close()
    assert (tmp_path / "labels" / "clip_0.txt").read_text() == det.to_txt()
    assert len(json.loads((tmp_path / "predictions.json").read_text())) == len(det) > 0
    assert (tmp_path / "clip.mp4").is_file()


def test_a_clip_under_an_image_name_is_read_as_a_video(weights, tmp_path, capsys):
    """An MP4 saved as clip.jpg (or with no suffix) was 'cannot read this image, skipped' though OpenCV opens
    it: a file that does not decode as an image is tried as a video; a corrupt picture stays unreadable."""
    src = tmp_path / "src"
    src.mkdir()
    _write_video(tmp_path / "clip.mp4", [_bgr(64, 96, shift=k * 20) for k in range(3)], "mp4v", 5)
    (src / "clip.jpg").write_bytes((tmp_path / "clip.mp4").read_bytes())
    (tmp_path / "noext").write_bytes((tmp_path / "clip.mp4").read_bytes())
    (src / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a picture at all")
    cv2.imwrite(str(src / "z.png"), _bgr(64, 96))
    w = ["--weights", str(weights), "--img-size", str(SIZE), "--no-progress", "--save-txt"]
    assert main(["detect", *w, "--source", str(src), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "4 images" in out and "1 unreadable file skipped" in out and "bad.jpg" in out
    labels = sorted(p.name for p in (tmp_path / "r" / "labels").iterdir())
    assert labels == ["clip_0.txt", "clip_1.txt", "clip_2.txt", "z.txt"] and (tmp_path / "r" / "clip.mp4").is_file()
    assert main(["detect", *w, "--source", str(tmp_path / "noext"), "--out", str(tmp_path / "r2")]) == 0
    assert "3 images" in capsys.readouterr().out


def test_a_cfg_asking_for_diou_nms_gets_it_in_detect_and_its_exports(tmp_path):
    """``nms_kind=greedynms`` / ``diounms`` (25 of the zoo's 33 heads: yolov4, scaled-YOLOv4, YOLOv7) was read
    and ignored: every model ran IoU NMS, where darknet runs DIoU-NMS (tests/test_nms.py holds that to
    darknet's loops). Detector now runs what the cfg asks for, and an export carries it."""
    from yolo import load_exported
    from yolo.export import export_model
    from yolo.model.cfg_parser import parse_cfg_text
    from yolo.model.darknet import Darknet
    from yolo.runtime.postprocess import postprocess

    text = (CFG / "yolov3-tiny.cfg").read_text()
    assert Darknet(parse_cfg_text(text, "t.cfg")).diou_beta is None
    assert Darknet(parse_cfg_text(text.replace("[yolo]\n", "[yolo]\nnms_kind=diounms\nbeta_nms=0.8\n"),
                                  "t.cfg")).diou_beta == 0.8
    cfg = tmp_path / "greedy.cfg"
    cfg.write_text(text.replace("[yolo]\n", "[yolo]\nnms_kind=greedynms\nbeta_nms=0.8\n"))  # greedynms: 0.6
    model = calibrated_model(cfg, seed=4, size=(160, 160))
    assert model.diou_beta == 0.6
    image = cv2.cvtColor(photo_rgb(), cv2.COLOR_RGB2BGR)
    detector = Detector(model, img_size=160, conf=0.4, iou=0.3)
    got = detector(image)[0].tensor()
    x, infos = preprocess([image], (160, 160))
    with torch.no_grad():
        pred = model.decode(model(x.float()))
    want = postprocess(pred, infos, 0.4, 0.3, diou_beta=0.6)[0]
    iou_only = postprocess(pred, infos, 0.4, 0.3)[0]
    assert 0 < len(iou_only) < len(want) < 300  # DIoU-NMS keeps more on this image...
    assert len(got) == len(want) and torch.allclose(got, want, atol=1e-2)  # ...and detect runs the cfg's
    ts = tmp_path / "g.torchscript"
    export_model(model, "torchscript", ts, img_size=160)
    assert load_exported(ts).diou_beta == 0.6 and Detector(ts).diou_beta == 0.6


def test_stream_gives_each_frames_detections_as_it_goes(detector, folder, tmp_path):
    """Python had no per-frame results for a video (``Detector()`` takes a GIF's first frame; ``run`` writes
    files): ``Detector.stream`` yields one Detections per frame, in order, equal to detecting each frame alone,
    skips an unreadable file with a warning, and can be left part-way (a camera never ends)."""
    import itertools

    src = tmp_path / "mixed"
    src.mkdir()
    images = sorted(folder.glob("*.png"))[:3]
    for p in images:
        (src / p.name).write_bytes(p.read_bytes())
    frames = [_bgr(96, 128, shift=k * 7) for k in range(5)]
    _write_video(src / "zclip.avi", frames)
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    with yolo_warnings() as said:
        got = list(detector.stream(src, batch_size=3))
    assert said == [f"{src / 'broken.jpg'}: cannot read this image, skipped"]
    assert [(Path(d.path).name, d.frame) for d in got] == \
        [(p.name, 0) for p in images] + [("zclip.avi", k) for k in range(5)]
    decoded = []
    cap = cv2.VideoCapture(str(src / "zclip.avi"))
    while (read := cap.read())[0]:
        decoded.append(read[1])
    alone = detector([*(str(p) for p in images), *decoded], batch_size=1)
    assert len(alone) == len(got)
    for a, b in zip(alone, got):
        assert torch.allclose(a.tensor(), b.tensor(), atol=1e-3) and a.shape == b.shape
    first = list(itertools.islice(detector.stream(src / "zclip.avi"), 2))  # left part-way: closed, no error
    assert [d.frame for d in first] == [0, 1]
    with pytest.raises(InputError, match="source not found"):  # said when asked, not at the first frame
        detector.stream(tmp_path / "missing")
