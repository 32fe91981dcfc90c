"""The darknet model zoo (cfg/, copied from AlexeyAB/darknet) against OpenCV's darknet importer.

For every zoo cfg: random weights with BN statistics calibrated on a real photo (``tests/helpers.py``), written
as ``.weights`` by our writer and read by ``cv2.dnn.readNetFromDarknet``; both networks see the same photo (not
the calibration one). Compared:

- the RAW output of the layer feeding each ``[yolo]`` (``net.forward(names)`` gives OpenCV's): this proves every
  layer below the heads (activations, grouped convs, partial shortcuts, route groups, pools, scale_channels);
- the decoded rows too (``scale_x_y`` and ``new_coords`` heads alike), in OpenCV's terms.

OpenCV's traps: BN eps 1e-6 (our model uses it here), class scores zeroed under the yolo layer's ``thresh`` and
NMS inside it (its copy of the cfg gets ``thresh=0`` and ``nms_threshold=0``), rows cell by cell with the
anchors inside, and Winograd 3x3 convolutions that lose precision (switched off: ``enableWinograd(False)``).

Tolerance: deep random networks amplify float32 rounding layer by layer (relative error ~1e-7 at the first
conv, ~1e-4 a hundred layers on), so each case runs our model in float64 too and allows ``DRIFT_FACTOR`` times
that float32-vs-float64 drift (at least ``FLOOR``). OpenCV (Winograd off) drifts about as much as we do: the
measured difference to it was 0.9-2x our drift. The controls at the end show that a wrong activation, group or
scale moves the outputs by more than 1e-2.
"""

from __future__ import annotations

import filecmp
import functools
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import CFG, calibrated_model, photo_batch
from yolo.model.cfg_parser import parse_cfg_text
from yolo.model.darknet import Darknet
from yolo.model.layers import ConvBlock
from yolo.utils.native import find_compiler

if not hasattr(cv2.dnn, "readNetFromDarknet"):  # removed in OpenCV 5; the dev extra pins 4.x
    pytest.skip("OpenCV without the darknet importer", allow_module_level=True)

# name: input (height, width) for the test; small for the big networks to keep the suite quick (p6, of stride
# 64, needs 192: at 128 its 2x2 deepest maps give BN statistics so noisy that float32 drifts by 2e-2)
ZOO = {
    "yolov3-tiny-prn": (192, 256), "enet-coco": (128, 160), "yolov4-tiny": (192, 256),
    "yolov4-tiny-3l": (192, 256), "yolov7-tiny": (192, 256),
    "yolov4": (128, 160), "yolov4-csp": (128, 160), "yolov4-csp-swish": (128, 160), "yolov7": (128, 160),
    "yolov4-p5": (96, 128), "yolov4x-mish": (96, 128), "yolov7x": (96, 128), "yolov4-p6": (192, 192),
}
SLOW = {"yolov4-p5", "yolov4x-mish", "yolov7x", "yolov4-p6"}  # the biggest: `-m "not slow"` skips them
DRIFT_FACTOR = 4.0
CONTROLS = {"yolov4-tiny", "yolov7-tiny", "yolov3-tiny-prn", "enet-coco", "yolov4-csp"}  # keep their weights
OFFICIAL_WEIGHTS_BYTES = {
    "yolov4": 257_717_640, "yolov4-tiny": 24_251_276, "yolov4-csp": 211_944_840, "yolov4x-mish": 399_388_168,
    "yolov7-tiny": 24_967_560, "yolov7": 147_898_248, "yolov7x": 285_638_760, "yolov3-tiny-prn": 19_759_052,
    "enet-coco": 19_233_100,
}
FLOOR = 2e-5


def _zoo_params():
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in ZOO]


def opencv_cfg_text(text: str) -> str:
    """OpenCV's copy: every ``[yolo]`` keeps all class scores (``thresh=0``) and runs no NMS."""
    return re.sub(r"(?m)^\[yolo\]\s*$", "[yolo]\nthresh=0\nnms_threshold=0", text)


def pre_head_maps(model: Darknet, x: torch.Tensor) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    """The output of the layer feeding each head ``[B, A*(5+C), H, W]`` (as darknet's cfg defines it: after the
    logistic of a new_coords head's conv) and the raw head maps."""
    got: dict[int, torch.Tensor] = {}
    hooks = [model.module_list[i - 1].register_forward_hook(lambda m, a, out, k=k: got.__setitem__(k, out))
             for k, i in enumerate(model.head_indices)]
    try:
        with torch.no_grad():
            raw = model(x)
    finally:
        for h in hooks:
            h.remove()
    # A new_coords head's conv is built linear (the head applies the cfg's logistic): compare after it.
    heads = [model.module_list[i] for i in model.head_indices]
    maps = [got[k].sigmoid() if heads[k].new_coords else got[k] for k in range(len(hooks))]
    return [m.numpy().copy() for m in maps], raw


def decoded_opencv_terms(model: Darknet, raw: list[torch.Tensor], height: int, width: int) -> np.ndarray:
    """Our decoded rows in OpenCV's order (cell by cell, anchors inside) and terms:
    ``[cx/W, cy/H, log(w/W), log(h/H), objectness, objectness * class probability...]``."""
    pred = model.decode(raw)[0]  # [N, 5+C], head by head, anchor, y, x
    rows, start = [], 0
    for r in raw:
        a, h, w, n = r.shape[1:]
        rows.append(pred[start:start + a * h * w].reshape(a, h, w, n).permute(1, 2, 0, 3).reshape(-1, n))
        start += a * h * w
    p = torch.cat(rows).double().numpy()
    size = np.array([width, height])
    return np.concatenate([p[:, :2] / size, np.log(p[:, 2:4] / size), p[:, 4:5], p[:, 5:] * p[:, 4:5]], axis=1)


def opencv_terms(theirs: np.ndarray) -> np.ndarray:
    """OpenCV's rows ``[cx, cy, w, h (fractions of the input), objectness, scores]`` in the same terms."""
    t = theirs.astype(np.float64)
    return np.concatenate([t[:, :2], np.log(t[:, 2:4]), t[:, 4:]], axis=1)


@dataclass
class Case:
    name: str
    height: int
    width: int
    ours: list[np.ndarray]  # float32 pre-head maps
    ours64: list[np.ndarray]  # the same network in float64
    theirs: list[np.ndarray]  # OpenCV's
    decoded: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # ours, ours in float64, OpenCV's (OpenCV terms)
    weights_bytes: int
    round_trip: bool  # our .weights read back and written again are byte-identical
    state: dict  # the calibrated float32 weights, for the controls
    input: torch.Tensor

    def drift(self) -> float:
        return max(float(np.abs(a.astype(np.float64) - b).max()) for a, b in zip(self.ours, self.ours64))

    def diff(self) -> float:
        return max(float(np.abs(a - b).max()) for a, b in zip(self.ours, self.theirs))


def _opencv_pre_head_names(net, head_indices: list[int]) -> list[str]:
    """OpenCV names a [yolo] at layer i ``yolo_i`` after a ``permute_i``; the name before that is the output of
    layer i-1 (its conv, or the activation after it)."""
    names = list(net.getLayerNames())
    return [names[names.index(f"permute_{i}") - 1] for i in head_indices]


@functools.lru_cache(maxsize=None)
def zoo_case(name: str) -> Case:
    height, width = ZOO[name]
    text = (CFG / f"{name}.cfg").read_text()
    x = torch.flip(photo_batch(height, width, n=1), dims=[3]).contiguous()
    # BN statistics from the photo AND the test input: deep layers see only a few pixels (2x2 at stride 64 for
    # a 128x128 input), too few for statistics that hold on another image; calibrated on both, every layer
    # stays in range on the input compared (otherwise tiny variances blow activations up to 1e6).
    calib = torch.cat([photo_batch(height, width, n=1), x])
    with tempfile.TemporaryDirectory() as tmp:
        ours_cfg = Path(tmp, f"{name}.ours.cfg")
        ours_cfg.write_text(text)
        model = calibrated_model(ours_cfg, seed=1, bn_eps=1e-6, calib=calib)
        weights = Path(tmp, f"{name}.weights")
        model.save_darknet_weights(weights)
        size = weights.stat().st_size
        cv_cfg = Path(tmp, f"{name}.opencv.cfg")
        cv_cfg.write_text(opencv_cfg_text(text))
        net = cv2.dnn.readNetFromDarknet(str(cv_cfg), str(weights))
        net.enableWinograd(False)
        model.load_darknet_weights(weights)  # file -> tensors -> file must give the same bytes
        again = Path(tmp, f"{name}.again.weights")
        model.save_darknet_weights(again)
        round_trip = filecmp.cmp(weights, again, shallow=False)
    state = {k: v.clone() for k, v in model.state_dict().items()} if name in CONTROLS else {}

    ours, raw = pre_head_maps(model, x)
    dec = decoded_opencv_terms(model, raw, height, width)
    model.double()
    ours64, raw64 = pre_head_maps(model, x.double())
    dec64 = decoded_opencv_terms(model, raw64, height, width)

    net.setInput(x.numpy())
    pre_names, out_names = _opencv_pre_head_names(net, model.head_indices), list(net.getUnconnectedOutLayersNames())
    outs = [a.copy() for a in net.forward(pre_names + out_names)]  # one forward for both
    theirs = outs[:len(pre_names)]
    decoded = (dec, dec64, opencv_terms(np.concatenate(outs[len(pre_names):])))
    return Case(name, height, width, ours, ours64, theirs, decoded, size, round_trip, state, x)


def tolerance(drift: float) -> float:
    return max(DRIFT_FACTOR * drift, FLOOR)


@pytest.mark.parametrize("name", _zoo_params())
def test_pre_head_outputs_match_opencv(name):
    case = zoo_case(name)
    assert [a.shape for a in case.ours] == [b.shape for b in case.theirs]
    assert min(float(a.std()) for a in case.ours) > 0.05, "outputs nearly constant: the test would prove little"
    assert case.round_trip
    if name in OFFICIAL_WEIGHTS_BYTES:
        assert case.weights_bytes == OFFICIAL_WEIGHTS_BYTES[name]
    drift, diff = case.drift(), case.diff()
    print(f"{name} {case.height}x{case.width}: max |ours - OpenCV| {diff:.2e}, float64 drift {drift:.2e}, "
          f"tolerance {tolerance(drift):.2e}")
    assert diff <= tolerance(drift)


@pytest.mark.parametrize("name", _zoo_params())
def test_decoded_rows_match_opencv(name):
    """Boxes (with scale_x_y), objectness and class scores as OpenCV's yolo layer reports them."""
    ours, ours64, theirs = zoo_case(name).decoded
    assert ours.shape == theirs.shape
    # objectness x class probability can be tiny; compare where OpenCV works with numbers above its noise
    drift = float(np.abs(ours - ours64).max())
    diff = float(np.abs(ours - theirs).max())
    print(f"{name} decoded: max diff {diff:.2e}, float64 drift {drift:.2e}")
    assert diff <= tolerance(drift)


# ----------------------------------------------------------------------------- controls


def _mutated_diff(name: str, old: str, new: str, count: int = 1) -> float:
    """Largest pre-head difference to OpenCV when our copy of the cfg has ``old`` replaced by ``new``."""
    case = zoo_case(name)
    text = (CFG / f"{name}.cfg").read_text()
    assert text.count(old) >= count
    model = Darknet(parse_cfg_text(text.replace(old, new, count)), bn_eps=1e-6)
    model.load_state_dict(case.state)
    ours, _ = pre_head_maps(model.eval(), case.input)
    return max(float(np.abs(a - b).max()) for a, b in zip(ours, case.theirs))


@pytest.mark.parametrize("name,old,new", [
    ("yolov4-tiny", "group_id=1", "group_id=0"),  # the other half of the channels
    ("yolov7-tiny", "activation=leaky", "activation=relu"),  # a wrong activation on the first conv
    ("yolov3-tiny-prn", "activation=leaky\n\n[convolutional]", "activation=linear\n\n[convolutional]"),
    ("enet-coco", "activation=swish", "activation=mish"),
    ("yolov4-tiny", "[maxpool]\nsize=2", "[maxpool]\nsize=3"),  # same output size, wrong windows
    ("yolov4-csp", "size=5\n", "size=3\n"),  # the SPP's first max-pool, 100 layers deep
])
def test_a_wrong_layer_shows_far_above_the_tolerance(name, old, new):
    case = zoo_case(name)
    wrong = _mutated_diff(name, old, new)
    print(f"{name}: {old!r} -> {new!r} moves the outputs by {wrong:.2e}; tolerance {tolerance(case.drift()):.2e}")
    assert wrong > max(1e-2, 10 * tolerance(case.drift()))


def test_a_wrong_scale_x_y_shows_in_the_decoded_rows():
    case = zoo_case("yolov4-tiny")
    text = (CFG / "yolov4-tiny.cfg").read_text()
    assert "scale_x_y = 1.05" in text
    model = Darknet(parse_cfg_text(text.replace("scale_x_y = 1.05", "scale_x_y = 1.0")), bn_eps=1e-6)
    model.load_state_dict(case.state)
    _, raw = pre_head_maps(model.eval(), case.input)
    wrong = decoded_opencv_terms(model, raw, case.height, case.width)
    ours, _, theirs = case.decoded
    assert np.abs(wrong - theirs).max() > 1e-3 > 100 * np.abs(ours - theirs)[:, :2].max()


@pytest.mark.parametrize("name", ["yolov4-tiny", "yolov7-tiny", "enet-coco", "yolov4-csp"])
def test_inference_path_matches_opencv(name):
    """What detect runs (BN folded, channels-last, Winograd 3x3 convs, the native convs and activations: leaky,
    mish in yolov4-csp, swish and logistic in enet-coco) on grouped/depthwise/pooled zoo layers, against OpenCV's
    darknet importer."""
    import copy

    from yolo.model.inference import prepare_for_inference

    case = zoo_case(name)
    model = Darknet(parse_cfg_text((CFG / f"{name}.cfg").read_text()), bn_eps=1e-6)
    model.load_state_dict(case.state)
    fast, memory_format, winograd = prepare_for_inference(copy.deepcopy(model), torch.device("cpu"), torch.float32)
    assert winograd > 0
    fused = {getattr(m.conv, "act", None) for m in fast.modules() if isinstance(m, ConvBlock)}
    expected = {"yolov4-csp": "mish", "enet-coco": "swish"}.get(name, 0.1)
    assert expected in fused or find_compiler() is None  # the activation ran inside the C kernels
    ours, _ = pre_head_maps(fast, case.input.contiguous(memory_format=memory_format))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, case.theirs))
    print(f"{name} inference path: max |ours - OpenCV| {diff:.2e}")
    assert diff <= max(tolerance(case.drift()), 1e-4)
