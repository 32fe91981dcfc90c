"""``scripts/bench.py`` end to end (smallest grid) and the accuracy of every reduced-precision path against
float32 on the synthetic validation images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch
from torchvision.ops import box_iou

from tests.helpers import CFG, ROOT, calibrated_model
from yolo.data.synthetic import SHAPES_NAMES, write_dataset
from yolo.detect.predictor import Detector
from yolo.model.cfg_edit import set_num_classes
from yolo.runtime.postprocess import postprocess
from yolo.runtime.preprocess import preprocess

COLUMNS = {"model", "size", "batch", "precision", "path", "forward_ms", "forward_images_per_s", "e2e_ms",
           "e2e_images_per_s", "split_ms", "floor_ms", "ratio_floor", "ratio_opencv_forward", "ratio_opencv_e2e",
           "agreement", "gflops_per_image", "compile_s", "forward_nms_images_per_s"}


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "bench.py"), "--models", "yolov3-tiny", "--sizes", "96",
           "--batch", "1,2", "--paths", "eager,optimized", "--precisions", "fp32", "--repeats", "2",
           "--images", "4", "--json", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def test_bench_json_has_every_row_and_column(bench_json):
    result, stdout = bench_json
    rows = result["rows"]
    got = {(r["batch"], r["precision"], r["path"]) for r in rows}
    assert got == {(1, "fp32", "eager"), (2, "fp32", "eager"), (1, "fp32", "optimized"), (2, "fp32", "optimized"),
                   (1, "fp32", "opencv")}
    for r in rows:
        assert "error" not in r, r
        assert COLUMNS <= set(r), COLUMNS - set(r)
    m = result["machine"]
    assert m["cores"] >= 1 and m["torch_threads"] >= 1 and "cpu" in m and isinstance(m["isa"], list)
    assert result["matmul_gflops"]["fp32"] > 0.1
    assert "yolov3-tiny" in stdout and "opencv" in stdout and "machine:" in stdout


def test_bench_values_are_consistent(bench_json):
    """Positive times; every ratio recomputed from the times and the matmul rate of the same JSON."""
    result, _ = bench_json
    rows = result["rows"]
    cv = next(r for r in rows if r["path"] == "opencv")
    rate = result["matmul_gflops"]["fp32"]
    # yolov3-tiny at 96x96, darknet's count: 2 x multiply-adds of its 13 convs (5.56 GFLOPs at 416 scales by area)
    assert cv["gflops_per_image"] == pytest.approx(5.571 * (96 / 416) ** 2, rel=0.01)
    for r in rows:
        assert r["forward_ms"] > 0 and r["e2e_ms"] >= r["forward_ms"] * 0.999
        assert sum(r["split_ms"].values()) == pytest.approx(r["e2e_ms"], rel=0.5)  # medians of parts vs of sums
        assert r["forward_images_per_s"] == pytest.approx(r["batch"] * 1000 / r["forward_ms"])
        assert r["e2e_images_per_s"] == pytest.approx(r["batch"] * 1000 / r["e2e_ms"])
        assert r["e2e_images_per_s"] <= r["forward_nms_images_per_s"] * 1.001
        assert r["floor_ms"] == pytest.approx(r["gflops_per_image"] * r["batch"] / rate * 1000)
        assert r["ratio_floor"] == pytest.approx(r["forward_ms"] / r["floor_ms"])
        assert r["ratio_opencv_forward"] == pytest.approx(r["forward_ms"] / r["batch"] / cv["forward_ms"])
        assert r["ratio_opencv_e2e"] == pytest.approx(r["e2e_ms"] / r["batch"] / cv["e2e_ms"])
    assert cv["ratio_opencv_forward"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def shapes_setup(tmp_path_factory):
    """A 5-class yolov3-tiny (the shapes classes; random weights, BN calibrated on the photo) and the letterboxed
    synthetic validation images ``[8, 3, 160, 160]``."""
    tmp = tmp_path_factory.mktemp("shapes")
    cfg = tmp / "tiny5.cfg"
    cfg.write_text(set_num_classes((CFG / "yolov3-tiny.cfg").read_text(), len(SHAPES_NAMES)))
    root = write_dataset(tmp / "data", 0, 8, (192, 256), seed=0)
    images = [cv2.imread(str(p)) for p in sorted((root / "images" / "val").glob("*.png"))]
    return calibrated_model(cfg), images


def _agreement(model, images, size: int, device: str, conf: float = 0.4) -> tuple[int, int]:
    """fp32 boxes (score > conf) that the reduced-precision run (score > conf - 0.03, so scores rounded across
    the threshold are not misses) finds with the same class at IoU >= 0.9. Compared in network-input pixels,
    before clipping to the image (random weights put some boxes in the padding, clipped to zero area)."""
    d32 = Detector(model, img_size=size, conf=conf, device=device)
    d16 = Detector(model, img_size=size, device=device, half=True)
    assert d16.backend.dtype == (torch.float16 if device.startswith("cuda") else torch.bfloat16)
    x, _ = preprocess(images, (size, size))  # [B, 3, S, S]
    ref = postprocess(d32.backend(x), None, conf)  # per image [K, 6]
    low = postprocess(d16.backend(x), None, conf - 0.03)
    matched = total = 0
    for a, b in zip(ref, low):
        total += len(a)
        if len(a) and len(b):
            iou = box_iou(a[:, :4].double(), b[:, :4].double()) * (a[:, 5, None] == b[None, :, 5])  # [Ka, Kb]
            matched += int((iou.max(1).values >= 0.9).sum())
    return matched, total


def test_bf16_cpu_detections_match_float32(shapes_setup):
    model, images = shapes_setup
    matched, total = _agreement(model, images, 160, "cpu")
    assert total >= 100 and matched >= 0.99 * total, (matched, total)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_cuda_detections_match_float32(shapes_setup):
    model, images = shapes_setup
    matched, total = _agreement(model, images, 416, "cuda")
    assert total >= 100 and matched >= 0.99 * total, (matched, total)


def test_bench_peers_at_a_tiny_size(tmp_path):
    """``--peers-only`` at 64x64: every engine's cell is a time, n/a or 'not installed' (optional peers), and the
    whole-command row's ratio is its two process times'."""
    import importlib.util

    out = tmp_path / "peers.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "bench.py"), "--peers-only", "--models", "yolov3-tiny", "--sizes",
           "64", "--repeats", "1", "--peer-images", "2", "--peer-repeats", "1", "--peer-bf16", "off",
           "--json", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    (row,) = result["peers"]["forward"]
    ms, notes = row["forward_ms"], row["notes"]
    assert ms["ours fp32"] > 0 and ms["opencv fp32"] > 0
    for peer in ("onnxruntime", "openvino"):
        if importlib.util.find_spec(peer) is None:
            assert notes[f"{peer} fp32"].startswith("not installed"), notes
        else:
            assert ms[f"{peer} fp32"] > 0, notes
    for engine in ("ours bf16", "onnxruntime bf16", "openvino bf16"):
        assert engine not in ms and notes[engine].startswith(("n/a", "not installed")), notes
    (whole,) = result["peers"]["whole_command"]
    assert whole["images"] == 2 and whole["precision"] == "fp32"
    assert whole["ratio"] == pytest.approx(whole["ours_s"] / whole["opencv_s"])
    assert whole["cpu_ratio"] == pytest.approx(whole["ours_cpu_s"] / whole["opencv_cpu_s"])
    assert whole["detections"]["ours"] >= 0 and whole["detections"]["opencv"] >= 0
    assert "machine:" in done.stdout and "whole command yolov3-tiny 64 fp32" in done.stdout


REAL = Path(os.environ.get("YOLO_SHARED", ROOT.parent / "shared")) / "real"


@pytest.mark.skipif(not (REAL / "yolov3-tiny.weights").is_file(), reason="needs ../shared/real (official weights)")
def test_opencv_script_of_the_whole_command_detects_what_yolo_detect_detects(tmp_path):
    """The benchmark's reference (``scripts/_opencv_detect.py``, OpenCV DNN end to end) must do the same work as
    ``yolo detect``: on the real photos at 640x480 (and mirrored) with the official yolov3-tiny.weights, the
    same boxes (same class, IoU >= 0.95: OpenCV rounds its boxes to whole pixels) with the same scores.
    conf 0.2: OpenCV's yolo layer zeroes class scores up to its own threshold, 0.2."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted((REAL / "images").iterdir()):
        img = cv2.imread(str(p))
        if img is not None:
            img = cv2.resize(img, (640, 480), interpolation=cv2.INTER_AREA)  # 416/640: whole-pixel letterbox
            cv2.imwrite(str(photos / f"{p.stem}.png"), img)
            cv2.imwrite(str(photos / f"{p.stem}_mirror.png"), cv2.flip(img, 1))
    cfg, weights = CFG / "yolov3-tiny.cfg", REAL / "yolov3-tiny.weights"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    common = ["--img-size", "416", "--conf", "0.2", "--iou", "0.45"]
    for cmd in ([sys.executable, "-m", "yolo", "detect", "--weights", str(weights), "--cfg", str(cfg), "--source",
                 str(photos), "--save-txt", "--nosave", "--no-progress", "--out", str(tmp_path / "ours"), *common],
                [sys.executable, str(ROOT / "scripts" / "_opencv_detect.py"), "--cfg", str(cfg), "--weights",
                 str(weights), "--source", str(photos), "--out", str(tmp_path / "opencv"), *common]):
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]

    def boxes(side: str, name: str) -> torch.Tensor:  # [K, 6] class, x1, y1, x2, y2 (pixels), score
        rows = [list(map(float, line.split())) for line in (tmp_path / side / "labels" / name).read_text().splitlines()]
        t = torch.tensor(rows).reshape(-1, 6)
        xy = torch.stack([(t[:, 1] - t[:, 3] / 2) * 640, (t[:, 2] - t[:, 4] / 2) * 480,
                          (t[:, 1] + t[:, 3] / 2) * 640, (t[:, 2] + t[:, 4] / 2) * 480], 1)
        return torch.cat([t[:, :1], xy, t[:, 5:]], 1)

    total = 0
    for txt in sorted((tmp_path / "ours" / "labels").glob("*.txt")):
        ours, theirs = boxes("ours", txt.name), boxes("opencv", txt.name)
        assert len(ours) == len(theirs), txt.name
        if len(ours):
            iou = box_iou(ours[:, 1:5], theirs[:, 1:5])
            same = (ours[:, None, 0] == theirs[None, :, 0]) & (iou >= 0.95)
            match = same.float().argmax(1)
            assert same.any(1).all(), txt.name
            assert torch.allclose(ours[:, 5], theirs[match, 5], atol=2e-3), txt.name
        total += len(ours)
    assert total >= 5  # the photos hold that many objects at conf 0.2


SMALL_CFG = "[net]\nwidth=64\nheight=64\nchannels=3\n" + "".join(
    f"[convolutional]\nbatch_normalize=1\nfilters={f}\nsize=3\nstride=2\npad=1\nactivation=leaky\n"
    for f in (8, 16, 16, 16, 16)) + ("[convolutional]\nsize=1\nstride=1\npad=1\nfilters=30\nactivation=linear\n"
                                     "[yolo]\nmask=0,1,2\nanchors=10,14, 23,27, 37,58\nclasses=5\nnum=3\n")


def test_bench_train_amp_trains_both_ways_and_reads_their_results(tmp_path):
    """``--train-amp-only``: two real ``yolo train`` runs (float32, then AMP; forced here, as this CPU may lack
    bf16 hardware) of a five-conv model on the smallest data; each row says how it trained, its images/s is the
    training images x epochs over its results.csv step time, and the speed-up and mAP difference are the two
    rows'. Without ``--train-amp-force``, on a CPU with no AVX512_BF16/AMX, the part says n/a and trains nothing."""
    from yolo.utils.device import cpu_has_fast_bf16

    (tmp_path / "small.cfg").write_text(SMALL_CFG)
    out = tmp_path / "amp.json"
    sets = ["data=shapes-mini.yaml", f"model={tmp_path / 'small.cfg'}", "img_size=64", "workers=0"]
    base = [sys.executable, str(ROOT / "scripts" / "bench.py"), "--train-amp-only", "--train-amp-epochs", "1",
            "--train-amp-set", *sets, "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if not cpu_has_fast_bf16():
        done = subprocess.run(base, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(out.read_text())["train_amp"]["skipped"].startswith("n/a (no AVX512_BF16/AMX")
        out.unlink()
    done = subprocess.run([*base, "--train-amp-force"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())["train_amp"]
    assert result["epochs"] == 1 and result["overrides"] == sets
    for side, said in (("fp32", "amp off (as set)"), ("amp", "amp on (as set)")):
        row = result[side]
        assert said in row["run_line"], row["run_line"]
        assert row["epochs"] == 1 and 0 <= row["map50"] <= 1
        assert row["images_per_s"] == pytest.approx(32 / row["train_s"])  # shapes-mini: 32 training images
    assert result["speedup"] == pytest.approx(result["amp"]["images_per_s"] / result["fp32"]["images_per_s"])
    assert result["map50_delta"] == pytest.approx(result["amp"]["map50"] - result["fp32"]["map50"])
    assert "AMP speed-up" in done.stdout and "target >= 1.5x" in done.stdout
