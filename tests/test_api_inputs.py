"""What a Python user naturally passes, wrong or unexpected, gets a one-line ``InputError`` naming the keyword
(never a TypeError / AttributeError / numpy traceback from inside), or is accepted where the meaning is clear
(a class name, a single class, a data YAML's path, a checkpoint's path)."""

from __future__ import annotations

import copy
import re

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import CFG, yolo_warnings
from yolo.data.anchors import kmeans_anchors
from yolo.data.split import load_split
from yolo.detect.predictor import Detector
from yolo.errors import InputError
from yolo.model.cfg_parser import parse_cfg
from yolo.model.checkpoint import save_checkpoint
from yolo.model.darknet import Darknet
from yolo.model.profile import profile_model
from yolo.train.config import load_run_config
from yolo.val.evaluator import Evaluator

SIZE = 64


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Darknet(parse_cfg(CFG / "yolov3-tiny.cfg"))


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "a.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return path


@pytest.mark.parametrize("kwargs,message", [
    ({"conf": "0.5"}, r"^conf must be a number in \[0, 1\], got '0.5'$"),
    ({"conf": None}, r"^conf must be a number in \[0, 1\], got None$"),
    ({"iou": float("nan")}, r"^iou must be in \[0, 1\], got nan$"),
    ({"max_det": 1.5}, r"^max_det must be an integer >= 1, got 1.5$"),
    ({"classes": [1.5]}, r"^classes must be class indices or names, got 1.5$"),
    ({"classes": 3.0}, r"^classes must be class indices or names, got 3.0$"),
    ({"classes": ["unicorn"]}, r"^classes: the model has no class named 'unicorn' \(it has person, bicycle, "),
])
def test_detector_arguments_of_the_wrong_kind(model, kwargs, message):
    with pytest.raises(InputError, match=message):
        Detector(model, img_size=SIZE, **kwargs)


def test_classes_by_index_name_or_alone_and_coco_names_for_an_80_class_model(model):
    det = Detector(model, img_size=SIZE, classes=["person", 2, "dog"])
    assert det.classes == [0, 2, 16] and det.names[16] == "dog"  # a cfg-built model: COCO's names, not '16'
    assert Detector(model, img_size=SIZE, classes=0).classes == [0]
    assert Detector(model, img_size=SIZE, classes="car").classes == [2]


def test_detector_calls_with_inputs_of_the_wrong_kind(model, image):
    det = Detector(model, img_size=SIZE)
    for bad, name in ((5, "int"), (None, "NoneType"), ({"a": 1}, "dict")):
        with pytest.raises(InputError, match=r"^expected an image array \(numpy, BGR as cv2.imread gives\), a path, "
                                             rf"or a list of them, got {name}$"):
            det(bad)
    with pytest.raises(InputError, match=r"^batch_size must be an integer >= 1, got 2.5$"):
        det(image, batch_size=2.5)
    with pytest.raises(InputError, match=r"^batch_size must be >= 1, got 0$"):  # as run() words it
        det(image, batch_size=0)
    assert len(det([image, str(image)], batch_size=1)) == 2


def test_exported_backend_errors_name_keywords_and_devices(model, tmp_path):
    from yolo.export.exporter import export_model
    from yolo.runtime.exported import load_exported

    onnx = tmp_path / "m.onnx"
    export_model(model, "onnx", out=onnx, img_size=SIZE)
    backend = load_exported(onnx)
    with pytest.raises(InputError, match=r"exported for 64x64 input, got 96x96: use that img_size or export with "
                                         r"dynamic=True$"):
        backend(torch.rand(1, 3, 96, 96))
    with pytest.raises(InputError, match=r"got ndarray \(a numpy array: torch.from_numpy\(x\)\)$"):
        backend(np.random.rand(1, 3, SIZE, SIZE).astype(np.float32))
    with pytest.raises(InputError, match=r"got a torch.uint8 tensor \(pixels 0-255: x.float\(\) / 255\)$"):
        backend(torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8))
    with pytest.raises(InputError, match=r"holds \[255, 255\] \(0-255 pixels: x / 255\)$"):
        backend(torch.full((1, 3, SIZE, SIZE), 255.0))  # ran, and gave garbage
    with pytest.raises(InputError, match=r"^unknown device 'bogus': expected cpu, cuda or cuda:N$"):
        load_exported(onnx, device="bogus")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match=r"^device 'cuda' requested but CUDA is not available"):
            load_exported(onnx, device="cuda")


def test_torch_backend_refuses_what_it_would_run_into_garbage(model):
    """0-255 pixels as uint8 or float, and mean/std-normalized input, used to run and return nonsense boxes."""
    from yolo.runtime.backends import TorchBackend

    backend = TorchBackend(copy.deepcopy(model))
    with pytest.raises(InputError, match=r"got a torch.uint8 tensor \(pixels 0-255: x.float\(\) / 255\)$"):
        backend(torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8))
    with pytest.raises(InputError, match=r"^expected pixels in \[0, 1\], this input holds \[200, 200\] \(0-255 pixels"):
        backend(torch.full((2, 3, SIZE, SIZE), 200.0))
    with pytest.raises(InputError, match=r"^expected pixels in \[0, 1\], this input holds \[-2\.1, 2\.6\] \(mean/std "
                                         r"normalization: the models take plain x / 255\)$"):
        backend(torch.tensor([-2.1, 2.6]).repeat(1, 3, SIZE, SIZE // 2))  # ImageNet-normalized
    with pytest.raises(InputError, match=r"^expected input \[B, 3, H, W\], got \[3, 64, 64\]$"):
        backend(torch.rand(3, SIZE, SIZE))
    one_nan = torch.rand(1, 3, SIZE, SIZE)
    one_nan[0, 1, 5, 7] = float("nan")  # made every output NaN: nothing detected, no word
    with pytest.raises(InputError, match=r"^expected pixels in \[0, 1\], this input holds NaN$"):
        backend(one_nan)
    assert backend(torch.rand(2, 3, SIZE, SIZE)).shape[0] == 2
    assert backend(torch.ones(1, 3, SIZE, SIZE)).shape[0] == 1  # the edges of [0, 1] are pixels too


def test_a_missing_image_or_a_video_passed_as_an_image_is_one_line(model, tmp_path, capfd):
    """``det("nope.png")`` let OpenCV log its own line first; ``det("clip.avi")`` said "cannot read image"."""
    det = Detector(copy.deepcopy(model), img_size=SIZE)
    capfd.readouterr()
    with pytest.raises(InputError, match=r"nope.png: image not found$"):
        det(tmp_path / "nope.png")
    assert capfd.readouterr().err == ""
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for k in range(3):
        writer.write(np.full((48, 64, 3), 40 * k, np.uint8))
    writer.release()
    with pytest.raises(InputError, match=r"clip.avi: a video, not an image: Detector.run detects on its frames$"):
        det(clip)
    assert det.run(clip, out=tmp_path / "run", nosave=True, progress=False)["images"] == 3


def test_a_callers_autocast_leaves_the_backend_at_its_own_precision(model):
    """Under an application's ``torch.autocast`` the Winograd convs' float32 buffers met bfloat16 products:
    ``RuntimeError: Expected out tensor to have dtype float``. ``half=True`` is how to ask for bf16."""
    from yolo.runtime.backends import TorchBackend

    backend = TorchBackend(copy.deepcopy(model))
    assert backend.winograd > 0
    x = torch.rand(1, 3, SIZE, SIZE)
    want = backend(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = backend(x)
    assert got.dtype == torch.float32 and torch.equal(got, want)


def test_text_files_not_in_utf8_are_one_line_errors_naming_file_and_line(model, image, tmp_path, capsys):
    """A Latin-1 names file raised a bare UnicodeDecodeError naming no file (``yolo detect`` exit 1,
    "unexpected"); every text file the toolkit reads says where and what it expected."""
    from yolo.cli import main
    from yolo.data.formats import load_data_config

    names = tmp_path / "latin.names"
    names.write_bytes(b"person\ncaf\xe9\n" + b"x\n" * 78)
    with pytest.raises(InputError, match=rf"^{names}:2: not UTF-8 text \(byte 0xe9\); expected one class name per "
                                         r"line$"):
        Detector(copy.deepcopy(model), names=names)
    pt = tmp_path / "m.pt"
    save_checkpoint(model, pt)
    assert main(["detect", "--weights", str(pt), "--source", str(image), "--names", str(names), "--nosave"]) == 2
    assert capsys.readouterr().err == (f"yolo detect: error: {names}:2: not UTF-8 text (byte 0xe9); expected one "
                                       "class name per line\n")
    for name, text, expected, load in (
            ("d.yaml", b"train: images\nnames: [caf\xe9]\n", "a data YAML", load_data_config),
            ("d.data", b"classes = 1\ntrain = caf\xe9.txt\n", "a darknet .data file", load_data_config),
            ("run.yaml", b"model: yolov3-tiny.cfg\ndata: caf\xe9.yaml\n", "a run config (YAML)", load_run_config)):
        path = tmp_path / name
        path.write_bytes(text)
        with pytest.raises(InputError, match=rf"^{path}:2: not UTF-8 text \(byte 0xe9\); expected "
                                             rf"{re.escape(expected)}$"):
            load(path)


def test_profile_model_takes_paths_and_checks_its_numbers(model, tmp_path):
    pt = tmp_path / "m.pt"
    save_checkpoint(model, pt)
    ours = profile_model(model, img_size=SIZE, runs=0)
    for source in (pt, str(pt), "yolov3-tiny.cfg"):
        r = profile_model(source, img_size=SIZE, runs=0)
        assert (r["params"], r["gflops"]) == (ours["params"], ours["gflops"])
    for kwargs, message in (({"batch_size": 0}, r"^batch_size must be >= 1, got 0$"),
                            ({"img_size": 0}, r"^img_size must be positive, got 0x0$"),
                            ({"img_size": (64, 20000)}, r"^img_size must be at most 16384, got 64x20000$"),
                            ({"img_size": 1.5}, r"^img_size must be an int or \(height, width\) of ints, got 1.5$"),
                            ({"runs": -1}, r"^runs must be an integer >= 0, got -1$")):
        with pytest.raises(InputError, match=message):
            profile_model(model, **{"img_size": SIZE, "runs": 0, **kwargs})
    with pytest.raises(InputError, match=r"^model must be a Darknet, or the path of a checkpoint or cfg, got int$"):
        profile_model(3)


def test_profile_model_rounds_sizes_and_reads_weights_with_their_cfg(model, tmp_path, capsys):
    """profile_model refused a size Detector rounds, and its message for a .weights without a cfg beside it
    said "pass cfg", a parameter it did not have."""
    with yolo_warnings() as said:
        assert profile_model(model, img_size=100, runs=0)["input_size"] == [128, 128]
        assert profile_model(model, runs=0)["input_size"] == [416, 416]
    assert said == ["image size 100x100 is not a multiple of 32; using 128x128"]
    weights = tmp_path / "w.weights"
    model.save_darknet_weights(weights)
    with pytest.raises(InputError, match=r"needs its cfg: pass cfg \(or put w.cfg beside it\)$"):
        profile_model(weights, runs=0)
    r = profile_model(weights, cfg=CFG / "yolov3-tiny.cfg", img_size=SIZE, runs=0)
    assert r["params"] == profile_model(model, img_size=SIZE, runs=0)["params"]


def test_a_folder_or_a_cfg_given_as_weights_says_so(model, tmp_path, capsys):
    """``Detector("images")`` and ``load_model("yolov3-tiny.cfg")`` (a built-in's name) said "weights file not
    found"; a folder is a folder, a cfg is not weights."""
    from yolo.cli import main
    from yolo.model.checkpoint import load_model

    with pytest.raises(InputError, match=rf"^{tmp_path}: is a folder, not a weights file \(.pt or .weights\)$"):
        Detector(tmp_path)
    with pytest.raises(InputError, match=r"^yolov3-tiny.cfg: a cfg, not weights \(.pt or .weights\): an untrained "
                                         r"model is Darknet.from_cfg\('yolov3-tiny.cfg'\)$"):
        load_model("yolov3-tiny.cfg")
    assert main(["detect", "--weights", "yolov3-tiny.cfg", "--source", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("yolo detect: error: yolov3-tiny.cfg: a cfg, not weights (.pt or .weights): "
                                       "give the weights with --weights and the cfg with --cfg\n")
    with pytest.raises(InputError, match=r"^nothing.pt: weights file not found$"):
        load_model("nothing.pt")
    mine = tmp_path / "my.cfg"  # a cfg file on disk too (it said "not a checkpoint ...: it is a text file")
    mine.write_bytes((CFG / "yolov3-tiny.cfg").read_bytes())
    with pytest.raises(InputError, match=rf"^{mine}: a cfg, not weights \(.pt or .weights\): an untrained model is "
                                         rf"Darknet.from_cfg\('{mine}'\)$"):
        load_model(mine)
    assert main(["detect", "--weights", str(mine), "--source", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"yolo detect: error: {mine}: a cfg, not weights (.pt or .weights): give the "
                                       "weights with --weights and the cfg with --cfg\n")


def test_darknet_takes_a_cfg_path_as_eriklindernoren_s_does(tmp_path):
    """``Darknet("yolov3-tiny.cfg")`` (PyTorch-YOLOv3's ``Darknet(config_path)``) raised AttributeError: 'str'
    object has no attribute 'layers'."""
    for cfg in ("yolov3-tiny.cfg", CFG / "yolov3-tiny.cfg", str(CFG / "yolov3-tiny.cfg")):
        model = Darknet(cfg)
        assert model.spec == parse_cfg(CFG / "yolov3-tiny.cfg")
        assert model.module_list[0].conv.weight.shape == (16, 3, 3, 3)
    with pytest.raises(InputError, match=r"^Darknet takes a .cfg path or a ModelSpec \(yolo.parse_cfg\), not dict$"):
        Darknet({})
    with pytest.raises(InputError, match=r"nothing.cfg"):
        Darknet("nothing.cfg")
    with pytest.raises(InputError, match=rf"^{tmp_path}: is a folder, not a cfg file$"):  # was "not found"
        Darknet(tmp_path)
    with pytest.raises(InputError, match=r"^expected a floating-point input \(RGB in \[0, 1\]\), got uint8: divide "
                                         r"a uint8 batch by 255 \(x.float\(\) / 255\)$"):  # was conv2d's RuntimeError
        Darknet("yolov3-tiny.cfg")(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_a_model_with_nan_weights_is_said_at_load(model, tmp_path):
    """Found by a user's audit: a checkpoint whose weights are NaN (a training that diverged) detected nothing,
    exit 0, without a word. Loading it warns, naming the first such tensor; a sound model says nothing."""
    from yolo.model.checkpoint import load_model

    save_checkpoint(model, tmp_path / "ok.pt")
    with yolo_warnings() as said:
        load_model(tmp_path / "ok.pt")
    assert said == []
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.module_list[2].conv.weight[0, 0, 0, 0] = float("nan")
        broken.module_list[4].bn.running_var.fill_(float("inf"))
    save_checkpoint(broken, tmp_path / "nan.pt")
    with yolo_warnings() as said:
        load_model(tmp_path / "nan.pt")
    assert said == [f"{tmp_path / 'nan.pt'}: module_list.2.conv.weight holds NaN or infinite weights (a training that "
                    "diverged?): its detections will be empty or wrong"]
    broken.module_list[2].conv.weight.data.nan_to_num_(0.0)
    broken.save_darknet_weights(tmp_path / "inf.weights")  # the BN statistics, through a .weights file too
    with yolo_warnings() as said:
        load_model(tmp_path / "inf.weights", cfg=CFG / "yolov3-tiny.cfg")
    assert len(said) == 1 and said[0].startswith(f"{tmp_path / 'inf.weights'}: module_list.4.")


def test_each_format_is_written_under_its_own_name(model, tmp_path):
    """Found by a user's audit: ``model.save_darknet_weights("victim.pt")`` replaced a checkpoint with darknet
    bytes (then read as "a darknet .weights file needs its cfg ... victim.pt.cfg"), and ``save_checkpoint(m,
    "my.weights")`` put a zip where darknet's files go. Both are refused, and nothing is written."""
    for name in ("victim.pt", "v.pth", "v.CKPT"):
        with pytest.raises(InputError, match=rf"^{tmp_path / name}: a .{name.split('.')[1]} name is for a checkpoint: "
                                             r"write it with yolo.save_checkpoint\(model, path\), or name the "
                                             r"darknet file .weights$"):
            model.save_darknet_weights(tmp_path / name)
    with pytest.raises(InputError, match=r"^.*my.weights: a .weights name is for darknet's format: write it with "
                                         r"model.save_darknet_weights\(path\), or name the checkpoint .pt$"):
        save_checkpoint(model, tmp_path / "my.weights")
    assert list(tmp_path.iterdir()) == []
    model.save_darknet_weights(tmp_path / "darknet53.conv.74", cutoff=5)  # a backbone's darknet name is fine
    save_checkpoint(model, tmp_path / "m.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["darknet53.conv.74", "m.pt"]


def test_anchors_run_config_and_evaluator_inputs():
    wh = np.random.default_rng(0).uniform(4, 64, (50, 2))
    with pytest.raises(InputError, match=r"^n must be >= 1, got 0$"):
        kmeans_anchors(wh, n=0)
    with pytest.raises(InputError, match=r"^wh must be box sizes \[N, 2\] \(w, h\), got an array of shape \[5, 3\]$"):
        kmeans_anchors(np.ones((5, 3)), n=2)
    for overrides in ("epochs=1", {"epochs": 1}, [3]):
        with pytest.raises(InputError, match=r"^overrides must be a list of 'key=value' strings, got "):
            load_run_config(None, overrides)
    assert load_run_config(None, ("epochs=2",)).epochs == 2  # any sequence of strings
    with pytest.raises(InputError, match=r"^pred must be \[N, 6\], got shape \[3, 5\]$"):
        Evaluator(num_classes=2).update(torch.zeros(3, 5), torch.zeros(0, 4), torch.zeros(0))


def test_load_split_takes_a_data_yaml_path(tmp_path):
    for i in range(2):
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "labels").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / f"images/{i}.png"), np.zeros((32, 32, 3), np.uint8))
        (tmp_path / f"labels/{i}.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    data = tmp_path / "d.yaml"
    data.write_text("train: images\nnames: [thing]\n")
    for config in (data, str(data)):
        index = load_split(config, "train", cache=False)
        assert len(index) == 2 and index.names == ["thing"]


def test_a_fixed_size_export_runs_at_its_size_without_a_warning_unless_another_is_asked(model, image, tmp_path,
                                                                                         capsys):
    from yolo.cli import main
    from yolo.export.exporter import export_model

    onnx = tmp_path / "m.onnx"
    export_model(model, "onnx", out=onnx, img_size=SIZE)
    capsys.readouterr()
    with yolo_warnings() as said:
        assert Detector(onnx).img_size == (SIZE, SIZE)
    assert said == []
    with yolo_warnings() as said:
        assert Detector(onnx, img_size=96).img_size == (SIZE, SIZE)
    assert said == ["this exported model takes 64x64 inputs; using that size"]
    assert main(["detect", "--weights", str(onnx), "--source", str(image), "--nosave", "--no-progress"]) == 0
    assert "warning" not in capsys.readouterr().err
    log = tmp_path / "train.log"  # a mistyped --out: an error, not a folder train.log2
    log.write_text("x")
    assert main(["detect", "--weights", str(onnx), "--source", str(image), "--out", str(log)]) == 2
    assert f"{log}: is a file, not a folder" in capsys.readouterr().err and not (tmp_path / "train.log2").exists()
