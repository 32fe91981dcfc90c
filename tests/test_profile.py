"""``yolo profile``: FLOPs against darknet's published figures and thop, receptive fields by hand, JSON keys."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

from tests.helpers import CFG
from yolo import Darknet
from yolo.cli import main
from yolo.model.cfg_parser import parse_cfg_text
from yolo.model.profile import layer_costs, profile_model


@pytest.mark.parametrize("name,size,gflops", [("yolov3", 416, 65.864), ("yolov3-tiny", 416, 5.565),
                                              ("yolov3-spp", 608, 141.449)])
def test_darknet_bflops(name, size, gflops):
    """The BFLOPs darknet prints for the official networks."""
    result = profile_model(Darknet.from_cfg(CFG / f"{name}.cfg"), size, runs=0)
    assert round(result["gflops"], 3) == gflops
    assert result["gflops_total"] > result["gflops"]


# "Total BFLOPS" AlexeyAB's darknet prints for each cfg at its own [net] width x height (and yolov4 at 416)
ALEXEYAB_BFLOPS = [("yolov4", None, 128.459), ("yolov4", 416, 60.137), ("yolov4-tiny", None, 6.910),
                   ("yolov4-csp", None, 77.003), ("yolov4-csp-swish", None, 120.317), ("yolov4x-mish", None, 221.986),
                   ("yolov7-tiny", None, 5.802), ("yolov7", None, 104.580), ("yolov7x", None, 189.760),
                   ("yolov3-tiny-prn", None, 3.467), ("enet-coco", None, 3.731), ("yolov3", 416, 65.879)]


@pytest.mark.parametrize("name,size,bflops", ALEXEYAB_BFLOPS)
def test_alexeyab_total_bflops(name, size, bflops):
    from tests.test_zoo import spec_of

    spec = spec_of(name)
    size = size or (spec.net.height, spec.net.width)
    with torch.device("meta"):  # counts come from the spec; no weights needed for runs=0
        model = Darknet(spec)
    result = profile_model(model, size, runs=0)
    assert round(result["bflops"], 3) == bflops
    assert result["gflops"] <= result["bflops"] < result["gflops_total"]
    assert result["bflops"] == pytest.approx(sum(layer["bflops"] for layer in result["layers"]), rel=1e-12)


def test_global_avgpool_receptive_field_is_the_whole_input():
    from tests.test_zoo import spec_of

    costs = layer_costs(spec_of("enet-coco"), 416, 416)
    pools = [c for c in costs if c.type == "avgpool"]
    assert pools and all(c.receptive_field is None and c.output_shape[1:] == [1, 1] for c in pools)
    assert all(c.receptive_field is not None for c in costs[:3])


def test_agrees_with_thop():
    """Our darknet-convention count is exactly 2 x thop's multiply-accumulates of the conv layers."""
    thop = pytest.importorskip("thop")
    model = Darknet.from_cfg(CFG / "yolov3-tiny.cfg").eval()
    zero = lambda module, inputs, output: None  # noqa: E731 - count only convs
    macs, params = thop.profile(model, (torch.rand(1, 3, 256, 320),), verbose=False,
                                custom_ops={nn.BatchNorm2d: zero, nn.LeakyReLU: zero, nn.Upsample: zero})
    ours = profile_model(Darknet.from_cfg(CFG / "yolov3-tiny.cfg"), (256, 320), runs=0)
    assert ours["gflops"] * 1e9 == pytest.approx(2 * macs, rel=1e-12)
    assert ours["params"] == params == 8_852_366


HAND = """[net]
width=64
height=64
channels=3
[convolutional]
filters=4
size=3
stride=1
pad=1
activation=leaky
[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky
[shortcut]
from=-2
[convolutional]
filters=8
size=1
stride=1
pad=1
activation=linear
[upsample]
stride=2
[route]
layers=-1,1
[convolutional]
filters=4
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=5
stride=1
"""
# Worked out by hand: rf += (size - 1) * stride_so_far; stride_so_far *= stride; upsample divides the stride;
# shortcut/route take the largest field of their inputs.
HAND_RF = [3, 5, 7, 15, 15, 15, 15, 15, 19, 27]
HAND_STRIDE = [1, 2, 4, 4, 4, 4, 2, 2, 2, 2]


def test_receptive_fields_and_strides_by_hand():
    costs = layer_costs(parse_cfg_text(HAND), 64, 64)
    assert [c.receptive_field for c in costs] == HAND_RF
    assert [c.stride for c in costs] == HAND_STRIDE
    # layer 0: 4 filters x 64x64 outputs x 3 in x 3x3 kernel, 2 FLOPs per multiply-add
    assert costs[0].gflops * 1e9 == pytest.approx(2 * 4 * 64 * 64 * 3 * 9)
    # + bias add + leaky, one each per output
    assert costs[0].gflops_total * 1e9 == pytest.approx(2 * 4 * 64 * 64 * 3 * 9 + 2 * 4 * 64 * 64)
    # layer 1 has BN: + scale and shift + leaky per output (8 x 32 x 32)
    assert (costs[1].gflops_total - costs[1].gflops) * 1e9 == pytest.approx(3 * 8 * 32 * 32)
    assert costs[2].gflops_total * 1e9 == pytest.approx(8 * 16 * 16 * 3)  # max-pool 2x2: 3 comparisons
    assert costs[4].gflops_total * 1e9 == pytest.approx(8 * 16 * 16)  # shortcut add, linear
    assert [c.output_shape for c in costs][6:8] == [[8, 32, 32], [16, 32, 32]]


LAYER_KEYS = {"index", "type", "output_shape", "params", "gflops", "gflops_total", "receptive_field", "stride",
              "bflops", "latency_ms"}
TOP_KEYS = {"params": int, "params_fused": int, "params_trainable": int, "gflops": float, "gflops_total": float,
            "bflops": float,
            "input_size": list, "batch_size": int, "latency_ms": float, "latency": dict,
            "images_per_second": float, "peak_memory_mb": float, "memory_kind": str, "device": str, "dtype": str,
            "layers": list, "optimized": bool, "machine": str}


def test_json_output_has_documented_keys(capsys):
    assert main(["profile", "--cfg", str(CFG / "yolov3-tiny.cfg"), "--img-size", "64", "96", "--batch-size", "2",
                 "--runs", "3", "--warmup", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key, kind in TOP_KEYS.items():
        assert isinstance(out[key], kind), key
    assert out["input_size"] == [64, 96] and out["batch_size"] == 2 and out["params_fused"] == 8_849_182
    assert out["images_per_second"] == pytest.approx(2 * 1000 / out["latency_ms"])
    assert out["latency"]["min"] <= out["latency_ms"] <= out["latency"]["max"]
    assert len(out["layers"]) == 24
    for layer in out["layers"]:
        assert set(layer) == LAYER_KEYS and layer["latency_ms"] >= 0
    assert out["layers"][23]["output_shape"] == [255, 4, 6]
    assert out["optimized"] is False


def test_timings_say_the_machine_they_ran_on(capsys):
    """Found by a user's audit: the latency changed 2.6x with the thread count and nothing said the CPU, its
    threads or the versions (ultralytics prints its device and torch version)."""
    import platform

    torch_threads = torch.get_num_threads()
    assert main(["profile", "--cfg", str(CFG / "yolov3-tiny.cfg"), "--img-size", "64", "--runs", "1", "--warmup",
                 "0"]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("machine ")]
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    isa = torch.backends.cpu.get_cpu_capability()
    assert line.startswith(f"machine {cpu} ({os.cpu_count()} cores, torch threads {torch_threads}, {isa}")
    assert line.endswith(f"torch {torch.__version__}")


def test_optimized_times_the_detection_model(capsys, monkeypatch):
    """--optimized times a copy prepared as detection prepares it (Winograd convs swapped in), counts unchanged."""
    import yolo.model.inference as inference

    swapped = []
    real = inference.use_winograd
    monkeypatch.setattr(inference, "use_winograd", lambda model: swapped.append(real(model)) or swapped[-1])
    args = ["profile", "--cfg", str(CFG / "yolov3-tiny.cfg"), "--img-size", "128", "--runs", "2", "--warmup", "1", "--json"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(args + ["--optimized"]) == 0
    fast = json.loads(capsys.readouterr().out)
    assert swapped and swapped[0] > 0
    assert fast["optimized"] is True and fast["latency_ms"] > 0 and len(fast["layers"]) == len(plain["layers"])
    assert (fast["params"], fast["gflops"]) == (plain["params"], plain["gflops"])


def test_fused_parameter_count_matches_torch():
    model = Darknet.from_cfg(CFG / "yolov3-tiny.cfg")
    counted = profile_model(model, 64, runs=0)["params_fused"]
    assert counted == sum(p.numel() for p in model.fuse().parameters())


def test_size_rounding_and_bad_arguments(capsys):
    assert main(["profile", "--cfg", str(CFG / "yolov3-tiny.cfg"), "--img-size", "100", "--runs", "0"]) == 0
    captured = capsys.readouterr()
    assert "not a multiple of 32; using 128x128" in captured.err and "input 128x128" in captured.out
    assert f"model {CFG / 'yolov3-tiny.cfg'}\n" in captured.out  # the file read (a local one shadows a built-in)
    assert main(["profile", "--cfg", str(CFG / "yolov3-tiny.cfg"), "--img-size", "1", "2", "3"]) == 2
    assert main(["profile"]) == 2
    assert main(["profile", "--cfg", str(CFG / "yolov3-tiny.cfg"), "--device", "tpu", "--runs", "1"]) == 2
    capsys.readouterr()
    for flag, value, least in (("--runs", "-3", 0), ("--warmup", "-1", 0), ("--batch-size", "0", 1)):
        assert main(["profile", "--cfg", "yolov3-tiny.cfg", flag, value]) == 2
        assert capsys.readouterr().err == f"yolo profile: error: {flag} must be >= {least}, got {value}\n"


def test_half_on_cpu_runs_bf16_and_warns_without_bf16_hardware(monkeypatch, capsys):
    import yolo.utils.device as device

    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: False)
    assert main(["profile", "--cfg", str(CFG / "yolov3-tiny.cfg"), "--img-size", "64", "--runs", "1", "--warmup", "0",
                 "--half", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["dtype"] == "bfloat16"
    assert "no bf16 hardware" in captured.err
