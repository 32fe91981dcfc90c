"""Legacy whole-model pickles (issue 19): their weights are read without running any of their code.

The old toolkit is played by a stand-in package written here: a ``models`` module (the cfg-era
ultralytics/yolov3 and eriklindernoren module path) whose ``Darknet`` builds that toolkit's own module tree.
Only a child process imports it, to pickle a whole model as those toolkits did; this process reads the file
without it, and a reader that imported it would leave a marker file behind. The oracle is the child's own
``state_dict()`` of the same model, saved as plain tensors. Crafted pickles that would run code must be
refused, checked by a side effect (a file) that must not appear.
"""

from __future__ import annotations

import copyreg
import os
import pickle
import re
import subprocess
import sys

import pytest
import torch

from tests.helpers import CFG, ROOT
from yolo.cli import main

TINY = CFG / "yolov3-tiny.cfg"
FORMATS = ("zip", "legacy")  # torch.save since 1.6, and the older format cfg-era checkpoints were written in

FAKE_MODELS = '''
"""Stand-in for the old toolkit's models.py: its classes under its module path, built from a cfg."""
import os
import pathlib

import numpy as np
import torch
from torch import nn

from yolo.model.cfg_parser import parse_cfg
from yolo.model.cfg_specs import ConvSpec, MaxPoolSpec, YoloSpec

if os.environ.get("FAKE_TOOLKIT_IMPORTED"):  # proof that something imported this module
    pathlib.Path(os.environ["FAKE_TOOLKIT_IMPORTED"]).write_text("imported")


class EmptyLayer(nn.Module):
    pass


class YOLOLayer(nn.Module):
    def __init__(self, anchors, nc, erik):
        super().__init__()
        a = torch.tensor(anchors, dtype=torch.float32).view(-1, 2)
        if erik:  # eriklindernoren: anchors are buffers; loss modules are children
            self.register_buffer("anchors", a)
            self.register_buffer("anchor_grid", a.clone().view(1, -1, 1, 1, 2))
            self.mse_loss, self.bce_loss = nn.MSELoss(), nn.BCELoss()
        else:  # ultralytics: plain attributes
            self.anchors = a
        self.na, self.nc = len(a), nc


def _block(s, erik):
    i, seq = s.index, nn.Sequential()
    if isinstance(s, ConvSpec):
        conv = nn.Conv2d(s.in_channels, s.filters, s.size, s.stride, s.padding, bias=not s.batch_normalize)
        seq.add_module(f"conv_{i}" if erik else "Conv2d", conv)
        if s.batch_normalize:
            seq.add_module(f"batch_norm_{i}" if erik else "BatchNorm2d",
                           nn.BatchNorm2d(s.filters, momentum=0.1 if erik else 0.03, eps=1e-5 if erik else 1e-4))
        if s.activation == "leaky":
            seq.add_module(f"leaky_{i}" if erik else "activation", nn.LeakyReLU(0.1))
    elif isinstance(s, MaxPoolSpec):
        if s.size == 2 and s.stride == 1:
            seq.add_module(f"_debug_padding_{i}" if erik else "ZeroPad2d", nn.ZeroPad2d((0, 1, 0, 1)))
        seq.add_module(f"maxpool_{i}" if erik else "MaxPool2d", nn.MaxPool2d(s.size, s.stride, (s.size - 1) // 2))
    elif isinstance(s, YoloSpec):
        layer = YOLOLayer(s.head_anchors, s.classes, erik)
        if not erik:
            return layer
        seq.add_module(f"yolo_{i}", layer)
    elif s.kind == "upsample":
        seq.add_module(f"upsample_{i}", nn.Upsample(scale_factor=2, mode="nearest"))
    else:
        seq.add_module(f"{s.kind}_{i}", EmptyLayer())
    return seq


class Darknet(nn.Module):
    def __init__(self, cfg, toolkit):
        super().__init__()
        erik = toolkit == "eriklindernoren"
        spec = parse_cfg(cfg)
        self.module_defs = [{"type": s.kind, **({"anchors": np.array(s.anchors, dtype=np.float32)}
                                                 if isinstance(s, YoloSpec) else {})} for s in spec.layers]
        self.module_list = nn.ModuleList(_block(s, erik) for s in spec.layers)
        if erik:
            self.yolo_layers = [b[0] for b in self.module_list if isinstance(b[0], YOLOLayer)]  # shared objects
            self.header_info = np.array([0, 2, 0, 0, 0], dtype=np.int32)
        else:
            self.yolo_layers = [s.index for s in spec.layers if isinstance(s, YoloSpec)]
            self.version = np.array([0, 2, 5], dtype=np.int32)
            self.seen = np.array([0], dtype=np.int64)
'''

MAKER = '''
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

import models

cfg, out = sys.argv[1], Path(sys.argv[2])
g = torch.Generator().manual_seed(0)
for toolkit in ("ultralytics", "eriklindernoren"):
    net = models.Darknet(cfg, toolkit)
    with torch.no_grad():
        for m in net.modules():
            for t in [*m.parameters(recurse=False), *m.buffers(recurse=False)]:
                if t.is_floating_point():
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    torch.save(net.state_dict(), out / f"{toolkit}-state.pt")  # the oracle: the same tensors, as plain data
    if toolkit == "ultralytics":  # train.py's checkpoint dict
        ckpt = {"epoch": 7, "best_fitness": np.float64(0.31), "training_results": "7/9 0.1 0.2",
                "model": net, "optimizer": opt.state_dict()}
    else:  # torch.save(model, ...) of a whole model
        ckpt = net
    torch.save(ckpt, out / f"{toolkit}-zip.pt")
    torch.save(ckpt, out / f"{toolkit}-legacy.pt", _use_new_zipfile_serialization=False)
'''


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("YOLO_VERBOSE", "FAKE_TOOLKIT_IMPORTED")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    """``(folder, cfg)``: whole-model pickles of both toolkits in both formats, made by a child process."""
    root = tmp_path_factory.mktemp("legacy")
    fake = root / "old_toolkit"
    fake.mkdir()
    (fake / "models.py").write_text(FAKE_MODELS)
    (fake / "make.py").write_text(MAKER)
    cfg = root / "yolov3-tiny-narrow.cfg"  # yolov3-tiny's structure with 1/8 of the hidden filters
    cfg.write_text(re.sub(r"filters=(\d+)", lambda m: m.group(0) if m.group(1) == "255"
                          else f"filters={int(m.group(1)) // 8}", TINY.read_text()))
    r = subprocess.run([sys.executable, "make.py", str(cfg), str(root)], cwd=fake, capture_output=True, text=True,
                       env=_env(PYTHONPATH=f"{fake}{os.pathsep}{ROOT}"), timeout=300)
    assert r.returncode == 0, r.stderr
    return root, cfg


def _ours(key: str) -> str | None:
    """The oracle's key renamed by hand: ``module_list.i.Conv2d.weight`` / ``conv_i`` -> ``conv``, BN -> ``bn``."""
    m = re.fullmatch(r"module_list\.(\d+)\.(Conv2d|conv_\d+|BatchNorm2d|batch_norm_\d+)\.(\w+)", key)
    if m is None:
        return None
    role = "conv" if m.group(2).lower().startswith("conv") else "bn"
    return f"module_list.{m.group(1)}.{role}.{m.group(3)}"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("toolkit", ["ultralytics", "eriklindernoren"])
def test_whole_model_pickle_converts_without_importing_its_classes(legacy, tmp_path, capsys, toolkit, fmt):
    root, cfg = legacy
    src, out = root / f"{toolkit}-{fmt}.pt", tmp_path / "ours.pt"
    assert main(["convert-weights", str(src), "--cfg", str(cfg), "-o", str(out)]) == 0
    summary = capsys.readouterr().out
    assert f"{toolkit} layout" in summary and "read without its code" in summary and "models.Darknet" in summary
    assert "models" not in sys.modules, "the old toolkit's module was imported"
    state = torch.load(out, weights_only=True)["model"]
    oracle = torch.load(root / f"{toolkit}-state.pt", weights_only=True)
    compared = 0
    for key, tensor in oracle.items():
        if _ours(key) is not None:
            assert torch.equal(state[_ours(key)], tensor), key
            compared += 1
    convs = sum(1 for k in oracle if _ours(k) and k.endswith(".weight") and oracle[k].dim() == 4)
    assert convs == 13 and compared == 13 + 2 + 5 * 11  # 13 conv weights, 2 conv biases, 11 BNs of 5 tensors


def test_reader_does_not_import_the_toolkit_even_where_it_could(legacy, tmp_path):
    """With the old toolkit importable (on PYTHONPATH), the CLI still never imports it: no marker file."""
    root, cfg = legacy
    marker, out = tmp_path / "imported", tmp_path / "ours.pt"
    r = subprocess.run([sys.executable, "-m", "yolo", "convert-weights", str(root / "ultralytics-legacy.pt"), "--cfg",
                        str(cfg), "-o", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env=_env(PYTHONPATH=f"{root / 'old_toolkit'}{os.pathsep}{ROOT}",
                                FAKE_TOOLKIT_IMPORTED=str(marker)))
    assert r.returncode == 0, r.stderr
    assert out.is_file() and not marker.exists()
    # the stand-in package is real: importing it does leave the marker
    subprocess.run([sys.executable, "-c", "import models"], cwd=root / "old_toolkit", timeout=300, check=True,
                   env=_env(PYTHONPATH=str(ROOT), FAKE_TOOLKIT_IMPORTED=str(marker)))
    assert marker.exists()


def test_other_entries_are_kept_as_plain_data(legacy):
    from yolo.utils.checkpoint import load_checkpoint_data

    root, _ = legacy
    obj, stand_ins = load_checkpoint_data(root / "ultralytics-legacy.pt")
    assert obj["epoch"] == 7 and obj["best_fitness"] == 0.31 and obj["training_results"] == "7/9 0.1 0.2"
    assert set(obj["optimizer"]) == {"state", "param_groups"} and obj["optimizer"]["param_groups"][0]["lr"] == 0.01
    assert all(isinstance(v, torch.Tensor) for v in obj["model"].values())
    assert "models.Darknet" in stand_ins and "torch.nn.modules.conv.Conv2d" in stand_ins


# ----------------------------------------------------------------------------- pickles that would run code


def _touch(path):
    """A function in an importable module that is not refused by name: a plain unpickler would call it."""
    open(path, "w").close()


class Reduce:
    """Pickles as ``func(*args)``: whatever ``__reduce__`` a crafted file chooses."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker) -> dict:
    from torch import _utils
    from torch._tensor import _rebuild_from_type_v2

    m = str(marker)
    return {
        "builtins.open": Reduce(open, m, "w"),
        "os.system": Reduce(os.system, f"touch {m}"),
        "builtins.eval": Reduce(eval, f"open({m!r}, 'w')"),
        "builtins.exec": Reduce(exec, f"open({m!r}, 'w')"),
        "subprocess.call": Reduce(subprocess.call, ["touch", m]),
        "a function of a harmless-looking module": Reduce(_touch, m),
        "copyreg._reconstructor of a real class": Reduce(copyreg._reconstructor, Reduce, object, None),
        "tensor rebuild calling a function": Reduce(_rebuild_from_type_v2, _touch, torch.Tensor, (m,), None),
        "tensor rebuild with a payload inside": Reduce(_utils._rebuild_parameter, Reduce(os.system, f"touch {m}"),
                                                       False, None),
        "inside a whole model": {"model": torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1)),
                                 "x": [{"y": Reduce(_touch, m)}]},
        "torch.load of another file": Reduce(torch.load, m),
    }


PAYLOADS = list(_payloads("m"))


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("name", PAYLOADS)
def test_crafted_pickles_that_would_run_code_are_refused(tmp_path, monkeypatch, capsys, name, protocol):
    marker, src = tmp_path / "pwned", tmp_path / "evil.pt"
    payload = _payloads(marker)[name]
    torch.save({"epoch": 1, "payload": payload}, src, pickle_protocol=protocol)
    if name not in ("copyreg._reconstructor of a real class", "torch.load of another file"):
        try:  # the attack is real: an unrestricted load runs it
            torch.load(src, weights_only=False)
        except Exception:
            pass
        assert marker.exists(), name
        marker.unlink()
    monkeypatch.chdir(tmp_path)
    assert main(["convert-weights", str(src), "--cfg", str(TINY), "-o", str(tmp_path / "o.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{src}: refused" in err and "could run code" in err, err
    assert not marker.exists() and not (tmp_path / "o.pt").exists()


def test_a_protocol_0_pickle_that_calls_os_system_is_refused(tmp_path):
    from yolo.errors import InputError
    from yolo.utils.checkpoint import load_checkpoint_data

    marker, src = tmp_path / "pwned", tmp_path / "evil.pt"
    src.write_bytes(f"(S'touch {marker}'\nios\nsystem\n.".encode())  # INST os.system, as no torch writer makes it
    with open(src, "rb") as f:
        pickle.load(f)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(InputError, match="refused"):
        load_checkpoint_data(src)
    assert not marker.exists()


@pytest.mark.parametrize("name, refused", [
    ("os.system", "posix.system"), ("builtins.eval", "builtins.eval"),
    ("a function of a harmless-looking module", "tests.test_legacy_pickle._touch")])
def test_verbose_names_the_refused_global(tmp_path, capsys, name, refused):
    marker, src = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save(_payloads(marker)[name], src)
    assert main(["convert-weights", str(src), "--cfg", str(TINY), "-o", str(tmp_path / "o.pt")]) == 2
    assert refused not in capsys.readouterr().err
    assert main(["--verbose", "convert-weights", str(src), "--cfg", str(TINY), "-o", str(tmp_path / "o.pt")]) == 2
    err = capsys.readouterr().err
    assert f"RefusedGlobal: refused global {refused}" in err and err.rstrip().endswith("names the global)"), err
    assert not marker.exists()
    from yolo.errors import InputError
    from yolo.utils.checkpoint import load_checkpoint_data

    with pytest.raises(InputError, match=r"\(the exception it comes from names the global\)$") as e:
        load_checkpoint_data(src)  # from Python: no --verbose to point at
    assert str(e.value.__cause__).startswith(f"refused global {refused}")
