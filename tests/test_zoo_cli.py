"""`yolo detect`, `yolo val` and `yolo export` end to end on zoo models (yolov7-tiny: new_coords heads;
yolov4-tiny: scale_x_y heads), and letterbox or stretch as the model's cfg says (``[net] letter_box``).

Oracles: onnxruntime runs the exported files directly; the stretch pipeline is rebuilt here with
``cv2.resize`` and torchvision's NMS, and boxes are mapped back by hand.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms

from tests.helpers import CFG, calibrated_model, photo_batch
from yolo.cli import main
from yolo.model.cfg_edit import set_letter_box, set_num_classes
from yolo.model.checkpoint import load_model, save_checkpoint
from yolo.utils.boxes import cxcywh_to_xyxy
from yolo.utils.nms import diou_nms

NAMES = ["circle", "rectangle", "triangle", "star", "cross"]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


def _zoo_checkpoint(tmp_path, name: str, letterbox: bool | None = None):
    """(model, .pt path): the zoo cfg with the shapes' 5 classes, random input-sensitive weights."""
    text = set_num_classes((CFG / f"{name}.cfg").read_text(), len(NAMES))
    if letterbox is not None:
        text = set_letter_box(text, letterbox)
    cfg = tmp_path / f"{name}-5.cfg"
    cfg.write_text(text)
    model = calibrated_model(cfg, seed=2, size=(96, 128))
    model.names = list(NAMES)
    path = tmp_path / f"{name}.pt"
    save_checkpoint(model, path)
    return model, path


@pytest.fixture()
def shapes(tmp_path, monkeypatch):
    """A tiny synthetic dataset (data YAML path, its val images folder)."""
    monkeypatch.setenv("YOLO_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "tiny.yaml"
    data.write_text("synthetic: {kind: shapes, train: 2, val: 3, size: [96, 128], seed: 0}\n"
                    f"names: [{', '.join(NAMES)}]\n")
    from yolo.data.formats import load_data_config
    from yolo.data.split import load_split

    index = load_split(load_data_config(data), "val")
    return data, index.images[0].parent


def test_yolov7_tiny_detect_val_export(tmp_path, shapes, capsys):
    data, images = shapes
    model, pt = _zoo_checkpoint(tmp_path, "yolov7-tiny")
    assert model.letterbox and all(h.new_coords and h.scale_x_y == 2.0 for h in model.heads)

    assert main(["detect", "--weights", str(pt), "--source", str(images), "--img-size", "96", "128", "--conf",
                 "0.01", "--save-txt", "--out", str(tmp_path / "det"), "--no-progress"]) == 0
    labels = sorted((tmp_path / "det" / "labels").glob("*.txt"))
    assert len(labels) == 3 and sum(len(p.read_text().splitlines()) for p in labels) > 0

    capsys.readouterr()
    assert main(["val", "--weights", str(pt), "--data", str(data), "--img-size", "128", "--json", "--no-plots"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0 <= metrics["map"] <= metrics["map50"] <= 1 and len(metrics["stats"]) == 12

    ort = pytest.importorskip("onnxruntime")
    x = photo_batch(96, 128)
    with torch.no_grad():
        ref = model.decode(model(x))[0].numpy()  # [N, 5+C]
    for extra in ([], ["--nms", "--conf-thres", "0.3"]):
        out = tmp_path / f"v7{len(extra)}.onnx"
        assert main(["export", "--weights", str(pt), "--format", "onnx", "--img-size", "96", "128", "--out",
                     str(out), *extra]) == 0
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = session.run(None, {"images": x.numpy()})[0]
        if not extra:
            scale = np.maximum([128, 96, 128, 96], np.abs(ref[:, :4]))
            assert (np.abs(got[0, :, :4] - ref[:, :4]) / scale).max() <= 1e-4
            assert np.abs(got[0, :, 4:] - ref[:, 4:]).max() <= 1e-4
        else:  # NMS by torchvision on PyTorch's decoded rows, written here
            pred = torch.from_numpy(ref)
            prob, cls = pred[:, 5:].max(1)
            score = pred[:, 4] * prob
            keep = score > 0.3
            boxes, score, cls = cxcywh_to_xyxy(pred[keep, :4]), score[keep], cls[keep]
            # issue 19: a box under 1 pixel wide or high once clipped to the 128x96 input is dropped before NMS
            clipped = torch.stack((boxes[:, 0::2].clamp(0, 128), boxes[:, 1::2].clamp(0, 96)), 1)  # [K, 2, 2]
            sized = ((clipped[:, 0, 1] - clipped[:, 0, 0]) >= 1) & ((clipped[:, 1, 1] - clipped[:, 1, 0]) >= 1)
            boxes, score, cls = boxes[sized], score[sized], cls[sized]
            kept = batched_nms(boxes, score, cls, 0.45)
            assert len(kept) > 0 and got.shape == (len(kept), 7)
            want = torch.cat((boxes[kept], score[kept, None], cls[kept, None].float()), 1).numpy()  # [K, 6]
            for row in got:  # rows of (nearly) equal score may come in either order: match each to its twin
                dist = np.abs(want[:, :4] - row[1:5]).max(1) + 1e3 * (want[:, 5] != row[6])
                k = dist.argmin()
                assert dist[k] < 1e-2 and abs(want[k, 4] - row[5]) < 1e-4, (row, want[k])
    capsys.readouterr()


def _stretch_reference(model, img: np.ndarray, size: tuple[int, int], conf: float) -> torch.Tensor:
    """AlexeyAB's pipeline for a model without letter_box: stretch to the input size, detect, divide the boxes by
    the per-axis scale -> ``[K, 6]`` x1, y1, x2, y2 (original pixels), score, class."""
    h0, w0 = img.shape[:2]
    H, W = size
    x = torch.from_numpy(cv2.resize(img, (W, H), interpolation=cv2.INTER_LINEAR)[..., ::-1].copy())
    x = x.permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        pred = model.decode(model(x))[0]
    prob, cls = pred[:, 5:].max(1)
    score = pred[:, 4] * prob
    keep = score > conf
    boxes, score, cls = cxcywh_to_xyxy(pred[keep, :4]), score[keep], cls[keep]
    kept = diou_nms(boxes, score, 0.45, 0.6, cls)  # yolov4-tiny.cfg: nms_kind=greedynms, darknet's DIoU at 0.6
    boxes = boxes[kept] / torch.tensor([W / w0, H / h0, W / w0, H / h0])
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w0)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h0)
    return torch.cat((boxes, score[kept, None], cls[kept, None].float()), 1)


def test_letter_box_0_model_is_stretched_everywhere(tmp_path, shapes, capsys):
    from yolo.detect import Detector

    data, images = shapes
    model, pt = _zoo_checkpoint(tmp_path, "yolov4-tiny", letterbox=False)
    loaded = load_model(pt)
    assert loaded.letterbox is False and [h.scale_x_y for h in loaded.heads] == [1.05, 1.05]
    img = cv2.imread(str(sorted(images.glob("*.png"))[0]))  # 128 x 96 (w x h)
    img = np.ascontiguousarray(img[:, :112])  # 112 x 96: another aspect ratio than the input's
    size = (96, 128)
    ref = _stretch_reference(model, img, size, 0.05)
    assert len(ref) > 0
    got = Detector(pt, img_size=size, conf=0.05)([img])[0]
    assert got.tensor().shape == ref.shape
    assert torch.allclose(got.tensor(), ref, atol=1e-3)
    # --letterbox overrides it: other boxes
    boxed = Detector(pt, img_size=size, conf=0.05, letterbox=True)([img])[0]
    assert boxed.tensor().shape != ref.shape or not torch.allclose(boxed.tensor(), ref, atol=1e-2)

    # the export remembers it, and a detector on the .onnx stretches too
    pytest.importorskip("onnxruntime")
    out = tmp_path / "v4.onnx"
    assert main(["export", "--weights", str(pt), "--format", "onnx", "--img-size", "96", "128", "--out",
                 str(out)]) == 0
    onnx_det = Detector(out, img_size=size, conf=0.05)
    assert onnx_det.letterbox is False and onnx_det.backend.metadata["letterbox"] is False
    assert torch.allclose(onnx_det([img])[0].tensor(), ref, atol=1e-3)

    # yolo val and yolo detect accept --stretch / --letterbox (mutually exclusive)
    capsys.readouterr()
    for flag in ("--stretch", "--letterbox"):
        assert main(["val", "--weights", str(pt), "--data", str(data), "--img-size", "128", "--json", "--no-plots",
                     flag]) == 0
        assert 0 <= json.loads(capsys.readouterr().out)["map50"] <= 1
    with pytest.raises(SystemExit) as info:  # argparse: not allowed with argument --letterbox
        main(["detect", "--weights", str(pt), "--source", str(images), "--letterbox", "--stretch"])
    assert info.value.code == 2
