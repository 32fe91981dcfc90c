"""`yolo export`: ONNX (checked with onnxruntime) and TorchScript files compute what PyTorch computes.

Oracles: onnxruntime and torch.jit.load run the files directly (not through our loader); the reference is
``model.decode(model(x))`` of the unfused PyTorch model; NMS graphs are checked against torchvision's
``batched_nms`` applied to PyTorch's decoded output by code written here.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
import torchvision

from tests.helpers import CFG, calibrated_model, photo_batch, photo_rgb
from yolo.cli import main
from yolo.errors import InputError
from yolo.model.checkpoint import save_checkpoint

TOL = 1e-4
# the foreign files below are made with torch.jit / the legacy ONNX exporter, which warn they are deprecated
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, path of its .pt): yolov3-tiny with random but input-sensitive weights."""
    model = calibrated_model(CFG / "yolov3-tiny.cfg")
    model.names = [f"class{i}" for i in range(model.num_classes)]
    path = tmp_path_factory.mktemp("export") / "tiny.pt"
    save_checkpoint(model, path)
    return model, path


def _reference(model, x):
    with torch.no_grad():
        return model.decode(model(x))  # [B, N, 5+C]


def _assert_close(out, ref, h, w, tol=TOL):
    """Boxes relative to the input size (or to the value where it is larger), probabilities absolutely."""
    out, ref = torch.as_tensor(out).float(), ref.float()
    assert out.shape == ref.shape
    scale = torch.maximum(torch.tensor([w, h, w, h]), ref[..., :4].abs())
    box = ((out[..., :4] - ref[..., :4]).abs() / scale).max().item()
    prob = (out[..., 4:] - ref[..., 4:]).abs().max().item()
    assert box <= tol and prob <= tol, (box, prob)


def _export(tiny, tmp_path, *args):
    model, pt = tiny
    out = tmp_path / ("m.onnx" if "onnx" in args else "m.torchscript")
    assert main(["export", "--weights", str(pt), "--out", str(out), *args]) == 0
    return out


def test_onnx_fixed(tiny, tmp_path, capsys):
    import onnx
    import onnxruntime as ort

    from yolo import load_exported

    out = _export(tiny, tmp_path, "--format", "onnx", "--img-size", "96", "128", "--batch-size", "2")
    assert "verified, max difference" in capsys.readouterr().out
    x = photo_batch(96, 128, n=2)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"images": x.numpy()})
    _assert_close(y, _reference(tiny[0], x), 96, 128)

    meta = {p.key: json.loads(p.value) for p in onnx.load(str(out)).metadata_props}
    assert meta["names"] == tiny[0].names and meta["strides"] == [32, 16] and meta["stride"] == 32
    assert meta["input_size"] == [96, 128] and meta["batch_size"] == 2 and meta["dynamic"] is False
    assert meta["cfg_name"] == "yolov3-tiny.cfg" and meta["opset"] == 17 and meta["nms"] is False

    backend = load_exported(out)
    assert (backend.names, backend.stride, backend.fixed_shape, backend.fixed_batch) == (tiny[0].names, 32,
                                                                                         (96, 128), 2)
    assert backend.dtype == torch.float32 and not backend.has_nms
    x3 = photo_batch(96, 128, n=3)  # a fixed batch of 2 still takes 3 images (chunked and padded)
    _assert_close(backend(x3), _reference(tiny[0], x3), 96, 128)
    with pytest.raises(InputError, match="exported for 96x128 input, got 128x128"):
        backend(photo_batch(128, 128))


def test_onnx_dynamic(tiny, tmp_path):
    import onnxruntime as ort

    out = _export(tiny, tmp_path, "--format", "onnx", "--img-size", "96", "--dynamic")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for b, h, w in ((2, 64, 96), (3, 128, 96)):
        x = photo_batch(h, w, n=b)
        (y,) = session.run(None, {"images": x.numpy()})
        _assert_close(y, _reference(tiny[0], x), h, w)


def test_torchscript_fixed_and_dynamic(tiny, tmp_path):
    from yolo import load_exported

    fixed = _export(tiny, tmp_path, "--format", "torchscript", "--img-size", "96")
    extra = {"config.json": ""}
    module = torch.jit.load(str(fixed), map_location="cpu", _extra_files=extra)
    meta = json.loads(extra["config.json"])
    assert meta["names"] == tiny[0].names and meta["input_size"] == [96, 96] and meta["dynamic"] is False
    x = photo_batch(96, 96)
    with torch.no_grad():
        _assert_close(module(x), _reference(tiny[0], x), 96, 96)
    # an inference graph: its parameters kept requires_grad, so a caller outside no_grad built an autograd graph
    # and module(x).numpy() raised "Can't call numpy() on Tensor that requires grad"
    assert not any(p.requires_grad for p in module.parameters())
    assert module(x).numpy().shape[0] == 1

    dynamic = tmp_path / "d.torchscript"
    assert main(["export", "--weights", str(tiny[1]), "--format", "torchscript", "--img-size", "64", "--dynamic",
                 "--out", str(dynamic)]) == 0
    module = torch.jit.load(str(dynamic), map_location="cpu")
    backend = load_exported(dynamic)
    assert backend.fixed_shape is None and backend.fixed_batch is None
    for b, h, w in ((2, 64, 96), (3, 128, 96)):
        x = photo_batch(h, w, n=b)
        with torch.no_grad():
            _assert_close(module(x), _reference(tiny[0], x), h, w)
        _assert_close(backend(x), _reference(tiny[0], x), h, w)


def _torchvision_nms(pred, conf, iou):
    """Independent reference: best class per box, score = obj * cls, torchvision batched_nms per image/class."""
    rows = []
    for b, p in enumerate(pred):  # p [N, 5+C]
        cls_prob, cls = p[:, 5:].max(1)
        score = p[:, 4] * cls_prob
        m = score > conf
        cx, cy, w, h = p[m, :4].T
        boxes = torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), 1)
        keep = torchvision.ops.batched_nms(boxes, score[m], cls[m], iou)
        for k in keep.tolist():
            rows.append([b, *boxes[k].tolist(), score[m][k].item(), cls[m][k].item()])
    return np.array(rows, dtype=np.float64).reshape(-1, 7)


def test_onnx_nms_matches_torchvision(tiny, tmp_path):
    import onnxruntime as ort

    from yolo import load_exported

    out = _export(tiny, tmp_path, "--format", "onnx", "--img-size", "128", "--dynamic", "--nms",
                  "--conf-thres", "0.3", "--iou-thres", "0.5")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = photo_batch(128, 160, n=2)
    (y,) = session.run(None, {"images": x.numpy()})
    ref = _torchvision_nms(_reference(tiny[0], x), 0.3, 0.5)
    assert y.shape[1] == 7 and len(y) == len(ref) and len(ref) > 10 and set(ref[:, 0]) == {0, 1}
    order = lambda a: a[np.lexsort((-a[:, 5], a[:, 6], a[:, 0]))]  # noqa: E731  by batch, class, score
    y, ref = order(y.astype(np.float64)), order(ref)
    assert np.array_equal(y[:, [0, 6]], ref[:, [0, 6]])
    assert np.abs(y[:, 1:5] - ref[:, 1:5]).max() / 160 <= TOL and np.abs(y[:, 5] - ref[:, 5]).max() <= TOL
    backend = load_exported(out)
    assert backend.has_nms and backend.metadata["conf_thres"] == 0.3
    assert len(backend(x)) == len(ref)


def test_nms_graph_keeps_classes_apart_for_boxes_past_the_top_left_edge(tiny):
    """A class-1 box reaching far past the top-left edge beside a class-0 box: torchvision's class offsets
    assume coordinates >= 0, and the graph suppressed the class-1 box, which yolo detect keeps."""
    import onnxruntime as ort

    from yolo.export.exporter import NmsModel, _onnx_bytes

    class Fixed(torch.nn.Module):  # decoded predictions [1, 2, 5+2]: cx, cy, w, h, objectness, 2 class probs
        def __init__(self):
            super().__init__()
            self.register_buffer("pred", torch.tensor([[[64.0, 64, 128, 128, 1, 0.9, 0],
                                                        [-55.0, -55, 130, 130, 1, 0, 0.8]]]))

        def forward(self, images):
            return self.pred.expand(images.shape[0], -1, -1) + images.mean() * 0

    wrapper = NmsModel(tiny[0], 0.25, 0.5)
    wrapper.decoded = Fixed()
    x = torch.rand(1, 3, 128, 128)
    assert wrapper(x)[:, 6].tolist() == [0.0, 1.0]
    graph = _onnx_bytes(wrapper, x, {"nms": True, "dynamic": False}, 17)
    (y,) = ort.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})
    assert y[:, 6].tolist() == [0.0, 1.0]
    assert np.allclose(y[:, 1:5], [[0, 0, 128, 128], [-120, -120, 10, 10]])


def test_detect_and_val_refuse_an_nms_export_in_one_line(tiny, tmp_path, capsys):
    """An ``--nms`` graph outputs final detections: ``yolo detect`` (which crashed with an IndexError, exit 1, and
    left an empty run folder) and ``yolo val`` say so in one line, exit 2, and make no run folder."""
    import cv2

    out = _export(tiny, tmp_path, "--format", "onnx", "--img-size", "64", "--nms")
    cv2.imwrite(str(tmp_path / "a.png"), np.full((48, 64, 3), 128, np.uint8))
    capsys.readouterr()
    for argv in (["detect", "--source", str(tmp_path / "a.png"), "--out", str(tmp_path / "run")],
                 ["val", "--data", "shapes-mini.yaml", "--img-size", "64", "--out", str(tmp_path / "val")]):
        assert main([argv[0], "--weights", str(out), *argv[1:]]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(out) in err and "without --nms" in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "val").exists()


def test_half_onnx(tiny, tmp_path):
    import onnxruntime as ort

    out = _export(tiny, tmp_path, "--format", "onnx", "--img-size", "96", "--half")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = photo_batch(96, 96)
    (y,) = session.run(None, {"images": x.half().numpy()})
    assert y.dtype == np.float16
    _assert_close(y, _reference(tiny[0], x), 96, 96, tol=5e-2)


def test_half_on_an_exported_model_says_it_does_not_apply(tiny, tmp_path, capsys):
    """``yolo detect --half`` on a float32 export ran in float32 and warned that bfloat16 is slow on this CPU:
    now one warning says --half does not apply (the boxes are the float32 ones); an export made with --half
    gets no warning."""
    import cv2

    fp32 = _export(tiny, tmp_path, "--format", "onnx", "--img-size", "64")
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(photo_rgb(), cv2.COLOR_RGB2BGR))
    base = ["detect", "--source", str(tmp_path / "a.png"), "--nosave", "--save-txt", "--conf", "0.01",
            "--no-progress"]
    capsys.readouterr()
    assert main([*base, "--weights", str(fp32), "--out", str(tmp_path / "f")]) == 0
    assert main([*base, "--weights", str(fp32), "--half", "--out", str(tmp_path / "h")]) == 0
    err = capsys.readouterr().err
    assert (f"warning: {fp32}: --half does not apply to an exported model, which runs in the precision it was "
            "exported in (float32); export it with --half for float16") in err and "bfloat16" not in err, err
    labels = (tmp_path / "f" / "labels" / "a.txt").read_text()
    assert labels and (tmp_path / "h" / "labels" / "a.txt").read_text() == labels
    fp16 = tmp_path / "h16.onnx"
    assert main(["export", "--weights", str(tiny[1]), "-o", str(fp16), "--format", "onnx", "--img-size", "64",
                 "--half"]) == 0  # -o as in convert-weights
    capsys.readouterr()
    assert main([*base, "--weights", str(fp16), "--half", "--out", str(tmp_path / "h16")]) == 0
    err = capsys.readouterr().err
    assert "does not apply" not in err and "bfloat16" not in err, err


def test_refuses_overwrite_and_bad_options(tiny, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"keep me")
    base = ["export", "--weights", str(tiny[1]), "--img-size", "64", "--out", str(out)]
    assert main([*base, "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err and "--force" in err and out.read_bytes() == b"keep me"
    for bad in (["--format", "onnx", "--opset", "99"], ["--format", "torchscript", "--nms"]):
        assert main([*base, "--force", *bad]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    assert out.read_bytes() == b"keep me"


def test_failed_verification_writes_nothing(tiny, tmp_path, capsys):
    assert main(["export", "--weights", str(tiny[1]), "--format", "onnx", "--img-size", "64",
                 "--out", str(tmp_path / "m.onnx"), "--tolerance", "1e-12"]) == 1  # the real difference (~1e-6) fails
    err = capsys.readouterr().err
    assert "verification failed, nothing written" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary file
    assert main(["export", "--weights", str(tiny[1]), "--format", "onnx", "--img-size", "64",
                 "--out", str(tmp_path / "m.onnx"), "--tolerance", "0"]) == 2
    assert "--tolerance must be > 0" in capsys.readouterr().err


def test_tolerance_follows_the_float32_models_own_error(tiny, tmp_path, monkeypatch, capsys):
    """Where the default bound is below the float32 model's own rounding (random zoo weights: yolov7-tiny's
    float32 output is 1.6e-4 from its float64 output), the bound becomes 3x that rounding, measured here
    against the model computed in float64 by this test."""
    import yolo.export.exporter
    from yolo.export.verify import verification_batch

    model, pt = tiny
    monkeypatch.setattr(yolo.export.exporter, "TOLERANCE", 1e-12)  # below any float32 rounding
    result = yolo.export.exporter.export_model(pt, "onnx", tmp_path / "m.onnx", img_size=64)
    x = verification_batch((64, 64), 1)[0]
    with torch.no_grad():
        exact = model.double().decode(model.double()(x.double()))
        model.float()
        rounded = model.decode(model(x)).double()
    scale = torch.maximum(torch.tensor([64.0] * 4, dtype=torch.float64), exact[..., :4].abs())
    own = max(((rounded[..., :4] - exact[..., :4]).abs() / scale).max().item(),
              (rounded[..., 4:] - exact[..., 4:]).abs().max().item())
    assert 0 < own < 1e-5
    assert result.tolerance == pytest.approx(3 * own, rel=1e-6) and result.max_diff <= result.tolerance
    assert "tolerance raised to 3 x" in result.note


def test_nms_ties_are_named_when_they_fail_verification():
    """Equal scores leave NMS's order open: boxes A, B, C of one class, 10 px wide, 3 px apart, all scored 0.5
    (IoU 0.54 with each neighbour): A, B, C in that order keeps A and C, B first keeps B alone. Both are right,
    and no matching of detections can tell; random yolov7-tiny weights make thousands of such ties, and the
    export failed with "max difference inf". The failure now says what it is."""
    import math

    from yolo.export.verify import detections_max_diff

    def rows(*xs, score=0.5):
        return torch.tensor([[0, x, 0, x + 10, 10, score, 3] for x in xs], dtype=torch.float64)  # [K, 7]

    diff, note = detections_max_diff(rows(0, 6), rows(3), (64, 64), 0.25, 0.45, 1e-4)
    assert diff == math.inf and note == ("1 detection found on one side only (PyTorch 2, export 1); 2 of PyTorch's "
                                         "share their exact score with another of the same class, and NMS breaks "
                                         "such ties in any order: random weights make them; verify a trained "
                                         "model, or export without nms=True")
    diff, note = detections_max_diff(torch.cat((rows(0, score=0.9), rows(30))), rows(30), (64, 64), 0.25, 0.45,
                                     1e-4)
    assert diff == math.inf and note == "1 detection found on one side only (PyTorch 2, export 1)"  # no tie


def test_non_finite_outputs_never_verify_as_zero():
    """A box overflowed to inf on both sides is left out and the finite values still count; inf or NaN on one
    side only (or different ones) is an infinite difference, never the 0 that NaN comparisons used to give."""
    from yolo.export.verify import decoded_max_diff

    ref = torch.tensor([[[10.0, 10.0, 4.0, 4.0, 0.5, 0.2], [20.0, 20.0, float("inf"), 4.0, 0.5, 0.3]]])
    out = ref.clone()
    out[0, 0, 4] = 0.5 + 3e-3  # one finite difference: objectness 3e-3
    diff, note = decoded_max_diff(ref, out, (64, 64))
    assert diff == pytest.approx(3e-3, abs=1e-6) and note == "1 non-finite values alike on both sides left out"
    for bad in (float("nan"), float("-inf"), 1e30):
        other = out.clone()
        other[0, 1, 2] = bad
        assert decoded_max_diff(ref, other, (64, 64))[0] == float("inf")
    nan_both = ref.clone()
    nan_both[0, 1, 2] = float("nan")
    assert decoded_max_diff(nan_both, nan_both.clone(), (64, 64)) == (0.0, "1 non-finite values alike on both "
                                                                          "sides left out")
    nan_both[0, 0, 0] = float("nan")  # NaN on one side only
    assert decoded_max_diff(nan_both, ref, (64, 64))[0] == float("inf")


def test_missing_extra(tiny, tmp_path, monkeypatch, capsys):
    from yolo import load_exported

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    assert main(["export", "--weights", str(tiny[1]), "--format", "onnx", "--img-size", "64",
                 "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "onnxruntime" in err and "yolo-toolkit[export]" in err
    assert not (tmp_path / "m.onnx").exists()
    (tmp_path / "x.onnx").write_bytes(b"")
    with pytest.raises(InputError, match=r"yolo-toolkit\[export\]"):
        load_exported(tmp_path / "x.onnx")


def test_corrupt_and_foreign_files(tmp_path, capsys):
    from yolo import load_exported

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    assert main(["export", "--weights", str(bad), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"yolo export: error: {bad}: ")

    foreign = tmp_path / "conv.onnx"  # a valid ONNX file that `yolo export` did not write
    torch.onnx.export(torch.nn.Conv2d(3, 4, 3), (torch.rand(1, 3, 32, 32),), str(foreign), dynamo=False)
    with pytest.raises(InputError, match="no yolo-toolkit export metadata") as e:
        load_exported(foreign)
    assert str(foreign) in str(e.value)
    ts = tmp_path / "conv.torchscript"
    torch.jit.save(torch.jit.trace(torch.nn.Conv2d(3, 4, 3), torch.rand(1, 3, 32, 32)), str(ts))
    with pytest.raises(InputError, match="no yolo-toolkit export metadata"):
        load_exported(ts)
    (tmp_path / "junk.torchscript").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(InputError, match="not a readable TorchScript file"):
        load_exported(tmp_path / "junk.torchscript")


def test_python_api(tiny, tmp_path):
    from yolo import ExportResult, export_model

    result = export_model(tiny[0], "torchscript", tmp_path / "api.torchscript", img_size=(64, 96))
    assert isinstance(result, ExportResult) and result.path.is_file() and result.max_diff <= TOL
    assert result.metadata["input_size"] == [64, 96] and result.metadata["names"] == tiny[0].names
    extra = {"config.json": ""}
    torch.jit.load(str(result.path), map_location="cpu", _extra_files=extra)
    assert result.metadata == json.loads(extra["config.json"])  # the file's config.json (its "device" was missing)
    assert result.metadata["device"] == "cpu"
    assert tiny[0].module_list[0].bn is not None  # the caller's model was not fused


def test_export_edges_a_deployer_meets(tiny, tmp_path, capsys):
    """Found by a user's audit: ``--nms --half`` crashed in the NMS kernel (no float16) with a TorchScript
    traceback; an output path that is a folder, or a folder that cannot be written, failed as "unexpected"
    after the whole export; a failed export left the folders it made for ``-o``; and exporting a foreign
    .torchscript suggested ``--trust``, which export does not have."""
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    _, pt = tiny
    base = ["export", "--weights", str(pt), "--format", "onnx", "--img-size", "64"]
    out = tmp_path / "nms_half.onnx"
    assert main([*base, "--nms", "--half", "--out", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    rows = session.run(None, {"images": photo_batch(64, 64).half().numpy()})[0]
    assert rows.dtype == np.float32 and rows.shape[1] == 7  # the NMS runs in float32, as ONNX's takes
    capsys.readouterr()

    folder = tmp_path / "taken.onnx"
    folder.mkdir()
    for extra in ([], ["--force"]):
        assert main([*base, "--out", str(folder), *extra]) == 2
        assert capsys.readouterr().err.strip() == f"yolo export: error: {folder}: is a folder; give the path of the " \
                                                  "file to write"
    assert main([*base, "--out", "/proc/m.onnx"]) == 2  # a folder nobody (root included) can create files in
    assert capsys.readouterr().err.startswith("yolo export: error: /proc/m.onnx: cannot write here (")

    deep = tmp_path / "new" / "a" / "b" / "m.onnx"
    assert main([*base, "--out", str(deep), "--tolerance", "1e-30"]) == 1  # verification fails: nothing written
    assert "verification failed, nothing written" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()

    foreign = tmp_path / "foreign.torchscript"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(foreign))
    assert main(["export", "--weights", str(foreign), "--format", "onnx", "--out", str(tmp_path / "f.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith(f"{foreign}: already an exported model; export from the .pt or .weights it came "
                                "from") and "--trust" not in err


def test_export_arguments_that_did_nothing_or_said_the_wrong_thing(tiny, tmp_path, capsys):
    """``--conf-thres`` / ``--iou-thres`` without ``--nms`` were ignored without a word (``--opset`` for
    TorchScript is refused); ``img_size=[256]`` said "(256,) must be positive multiples of 32"; an NMS export
    whose image gave no detection printed "max difference 0" as if something had been compared."""
    pytest.importorskip("onnxruntime")
    from yolo.export import export_model

    model, pt = tiny
    base = ["export", "--weights", str(pt), "--format", "onnx", "--img-size", "64"]
    assert main([*base, "--conf-thres", "0.5", "--out", str(tmp_path / "a.onnx")]) == 2
    assert capsys.readouterr().err.strip() == ("yolo export: error: --conf-thres and --iou-thres set the NMS inside "
                                               "the graph: they go with --nms")
    with pytest.raises(InputError, match=r"^conf_thres and iou_thres set the NMS inside the graph: they go with "
                                         r"nms=True$"):
        export_model(model, "torchscript", tmp_path / "a.torchscript", img_size=64, iou_thres=0.5)
    with pytest.raises(InputError, match=r"^img_size must be an int or \(height, width\) of ints, got \[256\]$"):
        export_model(model, "onnx", tmp_path / "a.onnx", img_size=[256])
    result = export_model(model, "onnx", tmp_path / "n.onnx", img_size=64, nms=True, conf_thres=0.999)
    assert "0 detections on either side: the NMS was not exercised on this image (a lower conf_thres would)" \
        in str(result)
