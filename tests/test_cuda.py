"""The CUDA paths, against the CPU: ``yolo detect --device cuda`` (float32 and ``--half``), ``yolo val``,
``yolo export --device cuda`` (ONNX and TorchScript, float32 and float16), ``yolo profile`` and a training
epoch with AMP (float16 autocast and its gradient scaler).

Skipped where CUDA is missing. ``YOLO_TEST_CUDA_DEVICE=cpu`` runs them on the CPU instead (``--half`` is
then bfloat16): a dry run of the tests themselves on a machine without a GPU; the comparisons are then of the
CPU with itself.

The detection tests use the real yolov3-tiny COCO weights and photos of ``../shared/real`` (a random network is
too sensitive to TF32 and float16 rounding for box-level agreement to mean anything) and skip without them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import pytest
import torch

from tests.helpers import CFG, photo_rgb
from tests.test_reduced_precision import CONF, MARGIN, REAL, SIZE, WEIGHTS, _matched
from yolo.cli import main
from yolo.detect.predictor import Detector

DEVICE = os.environ.get("YOLO_TEST_CUDA_DEVICE", "cuda")
TINY = CFG / "yolov3-tiny.cfg"

pytestmark = pytest.mark.skipif(torch.device(DEVICE).type == "cuda" and not torch.cuda.is_available(),
                                reason="needs CUDA (YOLO_TEST_CUDA_DEVICE=cpu dry-runs these tests on the CPU)")
real = pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"needs the real weights at {WEIGHTS}")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """The real photos (and Grace Hopper), each also mirrored, as PNG files in one folder."""
    folder = tmp_path_factory.mktemp("photos")
    images = [(p.stem, cv2.imread(str(p))) for p in sorted((REAL / "images").iterdir())] if REAL.is_dir() else []
    images = [(name, img) for name, img in images if img is not None] + [("hopper", photo_rgb()[:, :, ::-1])]
    for name, img in images:
        cv2.imwrite(str(folder / f"{name}.png"), img)
        cv2.imwrite(str(folder / f"{name}_mirror.png"), cv2.flip(img, 1))
    return folder


def _detect(photos: Path, device: str, half: bool = False, weights: Path = WEIGHTS, conf: float = CONF) -> list:
    """Per photo (sorted by name) ``[K, 6]`` x1, y1, x2, y2, score, class on the CPU."""
    cfg = TINY if Path(weights).suffix == ".weights" else None
    detector = Detector(str(weights), cfg=cfg, img_size=SIZE, conf=conf, device=device, half=half)
    images = [cv2.imread(str(p)) for p in sorted(photos.glob("*.png"))]
    return [d.tensor().cpu().float() for d in detector(images, batch_size=4)]


@pytest.fixture(scope="module")
def cpu_float32(photos) -> list:
    return _detect(photos, "cpu")


@real
@pytest.mark.parametrize("half", [False, True], ids=["float32", "half"])
def test_detections_on_the_device_match_the_cpu(photos, cpu_float32, half):
    """float32 on the device (TF32 convolutions allowed by PyTorch's defaults) and ``--half`` (float16 on CUDA)
    find at least 99% of the CPU's float32 boxes again (same class, IoU >= 0.9)."""
    got = _detect(photos, DEVICE, half=half, conf=CONF - MARGIN)
    matched, total = _matched(cpu_float32, got)
    assert total >= 30 and matched >= 0.99 * total, (matched, total)


@real
def test_yolo_detect_command_on_the_device(photos, cpu_float32, tmp_path):
    """``yolo detect --device D --half --save-txt`` writes one txt per photo whose lines are the API's boxes."""
    out = tmp_path / "run"
    code = main(["detect", "--weights", str(WEIGHTS), "--cfg", str(TINY), "--source", str(photos), "--img-size",
                 str(SIZE), "--conf", str(CONF), "--device", DEVICE, "--half", "--save-txt", "--nosave",
                 "--no-progress", "--out", str(out)])
    assert code == 0
    lines = sum(len(p.read_text().splitlines()) for p in (out / "labels").glob("*.txt"))
    expected = sum(len(d) for d in cpu_float32)
    assert abs(lines - expected) <= max(1, 0.02 * expected), (lines, expected)


@real
@pytest.mark.parametrize("fmt,half", [("onnx", False), ("onnx", True), ("torchscript", False), ("torchscript", True)])
def test_export_on_the_device_runs_and_keeps_the_detections(photos, cpu_float32, tmp_path, fmt, half):
    """``yolo export --device D`` (verified against PyTorch before it is written), then detection with the file
    on that device keeps 99% of the CPU's float32 boxes."""
    out = tmp_path / f"tiny.{fmt}"
    argv = ["export", "--weights", str(WEIGHTS), "--cfg", str(TINY), "--format", fmt, "--img-size", str(SIZE),
            "--device", DEVICE, "--out", str(out)]
    assert main(argv + (["--half"] if half else [])) == 0
    assert out.is_file()
    matched, total = _matched(cpu_float32, _detect(photos, DEVICE, weights=out, conf=CONF - MARGIN))
    assert total >= 30 and matched >= 0.99 * total, (matched, total)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One epoch of the real ``yolo train`` on the device (amp auto: float16 autocast and a gradient scaler on
    CUDA) with a yolov3-tiny of 1/16 the filters on the built-in shapes-mini data -> the run folder."""
    from tests.test_train import mini_cfg

    root = tmp_path_factory.mktemp("train")
    out = root / "run"
    code = main(["train", "--set", "data=shapes-mini.yaml", f"model={mini_cfg(root)}", "epochs=1", "img_size=64",
                 "batch_size=8", "workers=0", f"device={DEVICE}", f"out={out}"])
    assert code == 0
    return out


def test_training_on_the_device_with_amp_saves_a_checkpoint_the_cpu_loads(trained):
    from yolo.model.checkpoint import load_model

    rows = (trained / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 2
    row = dict(zip(rows[0].split(","), rows[1].split(",")))
    assert all(torch.isfinite(torch.tensor(float(row[k]))) for k in ("train/box", "train/obj", "train/cls"))
    last = torch.load(trained / "weights" / "last.pt", map_location="cpu", weights_only=True)
    if torch.device(DEVICE).type == "cuda":
        assert last["scaler"]["scale"] > 0  # the float16 gradient scaler ran and was saved
    model = load_model(trained / "weights" / "best.pt")  # onto the CPU
    assert next(model.parameters()).device.type == "cpu"


def test_val_on_the_device_matches_the_cpu(trained):
    """``yolo val`` of the trained model: mAP@0.5 on the device within 0.01 of the CPU's."""
    from yolo.val.run import validate_dataset

    weights = trained / "weights" / "best.pt"
    cpu = validate_dataset(weights, "shapes-mini.yaml", img_size=64, batch_size=4, device="cpu", progress=False)
    dev = validate_dataset(weights, "shapes-mini.yaml", img_size=64, batch_size=4, device=DEVICE, progress=False)
    assert abs(dev.metrics["map50"] - cpu.metrics["map50"]) <= 0.01, (dev.metrics, cpu.metrics)


def test_profile_on_the_device(capsys):
    """``yolo profile --device D --half --json``: counts equal the CPU's, a latency and the dtype of the run."""
    assert main(["profile", "--cfg", str(TINY), "--img-size", "160", "--runs", "3", "--warmup", "1", "--json"]) == 0
    cpu = json.loads(capsys.readouterr().out)
    assert main(["profile", "--cfg", str(TINY), "--img-size", "160", "--runs", "3", "--warmup", "1", "--device",
                 DEVICE, "--half", "--json"]) == 0
    dev = json.loads(capsys.readouterr().out)
    assert dev["params"] == cpu["params"] and dev["gflops"] == cpu["gflops"]
    assert dev["dtype"] == ("float16" if torch.device(DEVICE).type == "cuda" else "bfloat16")
    assert dev["latency"]["median"] > 0
