"""``yolo convert-weights`` and checkpoint matching: other toolkits' state dicts, our .pt, errors, safety.

Foreign checkpoints are built faithfully: the builders below construct each toolkit's own module tree
(an ``nn.ModuleList`` of ``nn.Sequential`` blocks under ``module_list``, with that toolkit's submodule
names) from our parsed cfg, fill it with random values and save its real ``state_dict()``, so
``num_batches_tracked``, YOLO-layer buffers, wrapper prefixes and FLOPs-counter buffers appear exactly as
they do in the wild. The oracles are those source tensors (compared bit for bit) and, for small models,
the foreign network's own forward pass.
"""

from __future__ import annotations

import copy
import pickle
import re

import pytest
import torch
from torch import nn

from tests.helpers import CFG, photo_batch
from yolo import Darknet, DarknetHeader, load_model
from yolo.cli import main
from yolo.errors import InputError
from yolo.model.cfg_counts import darknet_float_count
from yolo.model.cfg_parser import parse_cfg, parse_cfg_text
from yolo.model.cfg_specs import ConvSpec, MaxPoolSpec, YoloSpec
from yolo.model.checkpoint import save_checkpoint

TINY = CFG / "yolov3-tiny.cfg"
TOOLKITS = ("ultralytics", "eriklindernoren")

# A small sequential network: foreign modules can run it themselves, so it checks outputs end to end.
SMALL_CFG = """
[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[convolutional]
filters=21
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1,2
anchors=10,14, 23,27, 37,58
classes=2
num=3
"""


# ----------------------------------------------------------------------------- foreign toolkits


class ForeignNet(nn.Module):
    """Both toolkits' ``Darknet`` keep the layers in ``self.module_list``."""

    def __init__(self, module_list: nn.ModuleList):
        super().__init__()
        self.module_list = module_list


class EmptyLayer(nn.Module):
    """Route / shortcut placeholders (no state), as both toolkits have."""


class ErikYOLOLayer(nn.Module):
    """eriklindernoren's YOLOLayer: anchors and anchor_grid are (persistent) buffers."""

    def __init__(self, anchors):
        super().__init__()
        a = torch.tensor(anchors, dtype=torch.float32).view(-1, 2)
        self.register_buffer("anchors", a)
        self.register_buffer("anchor_grid", a.clone().view(1, -1, 1, 1, 2))


class UltralyticsYOLOLayer(nn.Module):
    """cfg-era ultralytics' YOLOLayer: anchors are plain attributes, nothing in the state dict."""

    def __init__(self, anchors):
        super().__init__()
        self.anchors = torch.tensor(anchors)


def _maxpool(s: MaxPoolSpec, pad_name: str, pool_name: str) -> nn.Sequential:
    seq = nn.Sequential()
    if s.size == 2 and s.stride == 1:  # yolov3-tiny's 'same' pool, as both toolkits wrote it
        seq.add_module(pad_name, nn.ZeroPad2d((0, 1, 0, 1)))
    seq.add_module(pool_name, nn.MaxPool2d(s.size, s.stride, padding=(s.size - 1) // 2))
    return seq


def build_ultralytics(spec, conv_bias_with_bn: bool = False, bn_eps: float = 1e-4) -> ForeignNet:
    """ultralytics/yolov3 (cfg era) ``create_modules``: 'Conv2d', 'BatchNorm2d', 'activation'."""
    layers = nn.ModuleList()
    for s in spec.layers:
        seq = nn.Sequential()
        if isinstance(s, ConvSpec):
            seq.add_module("Conv2d", nn.Conv2d(s.in_channels, s.filters, s.size, s.stride, s.padding,
                                               groups=s.groups, bias=conv_bias_with_bn or not s.batch_normalize))
            if s.batch_normalize:
                seq.add_module("BatchNorm2d", nn.BatchNorm2d(s.filters, momentum=0.03, eps=bn_eps))
            if s.activation == "leaky":
                seq.add_module("activation", nn.LeakyReLU(0.1, inplace=True))
        elif isinstance(s, MaxPoolSpec):
            seq = _maxpool(s, "ZeroPad2d", "MaxPool2d")
        elif isinstance(s, YoloSpec):
            seq = UltralyticsYOLOLayer(s.head_anchors)
        elif s.kind == "upsample":
            seq = nn.Upsample(scale_factor=2, mode="nearest")
        else:
            seq = EmptyLayer()
        layers.append(seq)
    return ForeignNet(layers)


def build_erik(spec, conv_bias_with_bn: bool = False, bn_eps: float = 1e-5) -> ForeignNet:
    """eriklindernoren/PyTorch-YOLOv3 ``create_modules``: f'conv_{i}', f'batch_norm_{i}', f'leaky_{i}'."""
    layers = nn.ModuleList()
    for s in spec.layers:
        i = s.index
        seq = nn.Sequential()
        if isinstance(s, ConvSpec):
            seq.add_module(f"conv_{i}", nn.Conv2d(s.in_channels, s.filters, s.size, s.stride, s.padding,
                                                  groups=s.groups, bias=conv_bias_with_bn or not s.batch_normalize))
            if s.batch_normalize:
                seq.add_module(f"batch_norm_{i}", nn.BatchNorm2d(s.filters, momentum=0.1, eps=bn_eps))
            if s.activation == "leaky":
                seq.add_module(f"leaky_{i}", nn.LeakyReLU(0.1))
        elif isinstance(s, MaxPoolSpec):
            seq = _maxpool(s, f"_debug_padding_{i}", f"maxpool_{i}")
        elif isinstance(s, YoloSpec):
            seq.add_module(f"yolo_{i}", ErikYOLOLayer(s.head_anchors))
        elif s.kind == "upsample":
            seq.add_module(f"upsample_{i}", nn.Upsample(scale_factor=2, mode="nearest"))
        else:
            seq.add_module(f"{s.kind}_{i}", EmptyLayer())
        layers.append(seq)
    return ForeignNet(layers)


BUILDERS = {"ultralytics": build_ultralytics, "eriklindernoren": build_erik}


def conv_bn(net: ForeignNet, toolkit: str, i: int) -> tuple[nn.Conv2d, nn.BatchNorm2d | None]:
    """The source conv and BN of layer ``i``, found by the toolkit's own names (not by our matcher)."""
    block = net.module_list[i]
    if toolkit == "ultralytics":
        return block.Conv2d, getattr(block, "BatchNorm2d", None)
    return getattr(block, f"conv_{i}"), getattr(block, f"batch_norm_{i}", None)


@torch.no_grad()
def fill_random(net: ForeignNet, seed: int, bias_std: float = 0.5) -> ForeignNet:
    """Random values everywhere, BN running statistics and num_batches_tracked included."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * bias_std)
        elif isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.num_batches_tracked.fill_(int(torch.randint(1, 10**6, (1,), generator=g)))
    return net.eval()


class Holder(nn.Module):
    """A wrapper holding the network under ``attr``: 'module' (DDP/DataParallel) or '_orig_mod' (torch.compile)."""

    def __init__(self, attr: str, inner: nn.Module):
        super().__init__()
        self.add_module(attr, inner)


def add_thop_buffers(net: nn.Module) -> nn.Module:
    """What ``thop.profile`` leaves on every module (older thop never removed them)."""
    for m in net.modules():
        m.register_buffer("total_ops", torch.zeros(1, dtype=torch.float64))
        m.register_buffer("total_params", torch.zeros(1, dtype=torch.float64))
    return net


WRAPPERS = {
    "plain": lambda net: net,
    "ddp": lambda net: Holder("module", net),
    "compile": lambda net: Holder("_orig_mod", net),
    "thop": lambda net: add_thop_buffers(copy.deepcopy(net)),
    "ddp+compile+thop": lambda net: add_thop_buffers(Holder("module", Holder("_orig_mod", copy.deepcopy(net)))),
}


def save_foreign(net: nn.Module, toolkit: str, path) -> dict:
    """Save as the toolkit does: ultralytics a training dict, eriklindernoren the raw state dict."""
    sd = net.state_dict()
    if toolkit == "ultralytics":
        torch.save({"epoch": -1, "best_fitness": None, "training_results": None, "model": sd, "optimizer": None}, path)
    else:
        torch.save(sd, path)
    return sd


@pytest.fixture(scope="module")
def tiny_spec():
    return parse_cfg(TINY)


@pytest.fixture(scope="module")
def foreign_tiny(tiny_spec):
    """{toolkit: random-filled foreign yolov3-tiny} (different seeds, so the two toolkits never agree by chance)."""
    return {tk: fill_random(BUILDERS[tk](tiny_spec), seed=10 + k) for k, tk in enumerate(TOOLKITS)}


@pytest.fixture(scope="module")
def narrow_cfg(tmp_path_factory):
    """yolov3-tiny's exact layer structure with 1/8 of the hidden filters (fast where tensor sizes do not matter)."""
    text = re.sub(r"filters=(\d+)", lambda m: m.group(0) if m.group(1) == "255" else f"filters={int(m.group(1)) // 8}",
                  TINY.read_text())
    path = tmp_path_factory.mktemp("cfg") / "yolov3-tiny-narrow.cfg"
    path.write_text(text)
    assert [type(s) for s in parse_cfg(path).layers] == [type(s) for s in parse_cfg(TINY).layers]
    return path


@pytest.fixture(scope="module")
def narrow_tiny(narrow_cfg):
    """``(cfg path, spec, {toolkit: random-filled foreign net})`` for the narrow yolov3-tiny."""
    spec = parse_cfg(narrow_cfg)
    return narrow_cfg, spec, {tk: fill_random(BUILDERS[tk](spec), seed=20 + k) for k, tk in enumerate(TOOLKITS)}


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main(["convert-weights", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert err.startswith("yolo convert-weights: error: "), err
    assert err.count("\n") == 1 and err.endswith("\n"), f"expected one line, got {err!r}"
    for frag in fragments:
        assert frag in err, f"{frag!r} not in {err!r}"


def assert_matches_source(model: Darknet, net: ForeignNet, toolkit: str, spec, check_nbt: bool,
                          weights_file: bool = False) -> int:
    """Every conv weight/bias and BN tensor of ``model`` equals the foreign source bit for bit; read from a
    ``.weights`` file (``weights_file``), a BN's variance holds the source's eps over darknet's 1e-5 on top."""
    checked = 0
    for s in spec.layers:
        if not isinstance(s, ConvSpec):
            continue
        conv, bn = conv_bn(net, toolkit, s.index)
        block = model.module_list[s.index]
        assert torch.equal(block.conv.weight, conv.weight), f"layer {s.index} conv weight"
        if s.batch_normalize:
            assert block.conv.bias is None
            for name in ("weight", "bias", "running_mean", "running_var"):
                want = getattr(bn, name)
                if name == "running_var" and weights_file:
                    want = (want.double() + (bn.eps - 1e-5)).clamp(min=0).float()
                assert torch.equal(getattr(block.bn, name), want), f"layer {s.index} BN {name}"
            if check_nbt:
                assert torch.equal(block.bn.num_batches_tracked, bn.num_batches_tracked)
        else:
            assert block.bn is None
            assert torch.equal(block.conv.bias, conv.bias), f"layer {s.index} conv bias"
        checked += 1
    return checked


@torch.no_grad()
def load_directly(net: ForeignNet, toolkit: str, spec) -> Darknet:
    """Our Darknet with the foreign tensors copied in by hand, layer by layer in cfg order (the source's BN eps)."""
    eps = next((m.eps for m in net.modules() if isinstance(m, nn.BatchNorm2d)), 1e-5)
    model = Darknet(spec, bn_eps=eps)
    for s in spec.layers:
        if isinstance(s, ConvSpec):
            conv, bn = conv_bn(net, toolkit, s.index)
            block = model.module_list[s.index]
            block.conv.weight.copy_(conv.weight)
            if bn is None:
                block.conv.bias.copy_(conv.bias)
            else:
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(block.bn, name).copy_(getattr(bn, name))
    return model.eval()


# ----------------------------------------------------------------------------- foreign -> ours


@pytest.mark.parametrize("wrapper", list(WRAPPERS))
@pytest.mark.parametrize("toolkit", TOOLKITS)
def test_foreign_checkpoint_converts_bit_exact(tmp_path, capsys, foreign_tiny, tiny_spec, narrow_tiny, toolkit,
                                               wrapper):
    # plain: the real yolov3-tiny; wrappers only change keys, so they run on the narrow copy
    cfg, spec, net = (TINY, tiny_spec, foreign_tiny[toolkit]) if wrapper == "plain" else \
        (narrow_tiny[0], narrow_tiny[1], narrow_tiny[2][toolkit])
    src = tmp_path / ("last.pt" if toolkit == "ultralytics" else "yolov3_ckpt_9.pth")
    sd = save_foreign(WRAPPERS[wrapper](net), toolkit, src)
    prefix = {"plain": "", "ddp": "module.", "compile": "_orig_mod.", "thop": ""}.get(wrapper, "module._orig_mod.")
    assert f"{prefix}module_list.0.{'Conv2d' if toolkit == 'ultralytics' else 'conv_0'}.weight" in sd
    assert any(k.endswith("num_batches_tracked") for k in sd)
    if "thop" in wrapper:
        assert f"{prefix}module_list.0.total_ops" in sd and "total_params" in sd

    rc, out, err = cli(capsys, src, "--cfg", cfg, "-o", tmp_path / "ours.pt")
    assert (rc, err) == (0, "")
    assert "13 conv layers matched" in out
    n_ignored = sum(1 for k in sd if k.endswith(("total_ops", "total_params", "anchors", "anchor_grid")))
    if n_ignored:
        assert f"{n_ignored} non-weight entries ignored" in out
    else:
        assert "ignored" not in out
    model = load_model(tmp_path / "ours.pt")
    assert assert_matches_source(model, net, toolkit, spec, check_nbt=True) == 13
    ck = torch.load(tmp_path / "ours.pt", weights_only=True)
    assert ck["format"] == "yolo-toolkit" and ck["cfg"] == cfg.read_text()
    assert set(ck["model"]) == set(Darknet(spec).state_dict())  # our names only: nothing foreign leaked in

    rc, out, err = cli(capsys, src, "--cfg", cfg, "-o", tmp_path / "ours.weights")
    assert (rc, err) == (0, "")
    model_w = load_model(tmp_path / "ours.weights", cfg=cfg)
    assert assert_matches_source(model_w, net, toolkit, spec, check_nbt=False, weights_file=True) == 13
    n_floats = sum(t.numel() for k, t in model.state_dict().items() if not k.endswith("num_batches_tracked"))
    assert (tmp_path / "ours.weights").stat().st_size == 20 + 4 * n_floats


@pytest.mark.parametrize("toolkit", TOOLKITS)
def test_converted_model_outputs_equal_direct_load(tmp_path, capsys, foreign_tiny, tiny_spec, toolkit):
    net = foreign_tiny[toolkit]
    src = tmp_path / "src.pt"
    save_foreign(net, toolkit, src)
    assert cli(capsys, src, "--cfg", TINY, "-o", tmp_path / "ours.pt")[0] == 0
    converted, direct = load_model(tmp_path / "ours.pt"), load_directly(net, toolkit, tiny_spec)
    x = photo_batch(96, 128, n=2)
    with torch.no_grad():
        got, want = converted(x), direct(x)
    assert len(got) == len(want) == 2
    for g, w in zip(got, want):
        assert g.shape == w.shape and torch.isfinite(w).all()
        assert torch.equal(g, w)
    # the comparison has teeth: the outputs depend on the pixels (the two crops give different maps)
    assert (want[0][0] - want[0][1]).abs().max() > 0.1 and (want[1][0] - want[1][1]).abs().max() > 0.1


@pytest.mark.parametrize("toolkit", TOOLKITS)
def test_small_model_matches_foreign_forward(tmp_path, capsys, toolkit):
    """Independent oracle: the foreign modules' own forward pass (conv, BN, leaky, pool) on real pixels."""
    spec = parse_cfg_text(SMALL_CFG, "small.cfg")
    (tmp_path / "small.cfg").write_text(SMALL_CFG)
    net = fill_random(BUILDERS[toolkit](spec), seed=3)
    save_foreign(net, toolkit, tmp_path / "src.pt")
    assert cli(capsys, tmp_path / "src.pt", "--cfg", tmp_path / "small.cfg", "-o", tmp_path / "ours.pt")[0] == 0
    x = photo_batch(64, 96, n=2)
    with torch.no_grad():
        got = load_model(tmp_path / "ours.pt")(x)[0]  # [B, 3, H, W, 7]
        y = x
        for block in net.module_list[:4]:
            y = block(y)
        want = y.view(2, 3, 7, 32, 48).permute(0, 1, 3, 4, 2)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_a_foreign_bn_eps_survives_the_weights_file(tmp_path, capsys):
    """ultralytics' BN eps (1e-4) has no field in a .weights file: written as it was, darknet's 1e-5 changed the
    network. The difference is folded into the variances; oracle: the foreign modules' own forward (torch's BN
    at eps 1e-4), against the .weights read back as darknet reads it. Small variances make eps matter. A
    checkpoint without class names gets a .names of what detect shows."""
    spec = parse_cfg_text(SMALL_CFG, "small.cfg")
    (tmp_path / "small.cfg").write_text(SMALL_CFG)
    net = fill_random(BUILDERS["ultralytics"](spec, bn_eps=1e-4), seed=5)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(2e-5, 5e-4, generator=torch.Generator().manual_seed(1))
    save_foreign(net, "ultralytics", tmp_path / "src.pt")
    rc, out, err = cli(capsys, tmp_path / "src.pt", "--cfg", tmp_path / "small.cfg", "-o", tmp_path / "u.weights")
    assert (rc, err) == (0, ""), err
    assert "BN eps 0.0001 folded into the variances (darknet computes with 1e-05)" in out
    assert (tmp_path / "u.names").read_text() == "class0\nclass1\n"  # 2 classes, named as detect names them
    x = photo_batch(64, 96, n=2)
    with torch.no_grad():
        got = load_model(tmp_path / "u.weights", cfg=tmp_path / "u.cfg")(x)[0]  # [B, 3, H, W, 7], eps 1e-5
        y = x
        for block in net.module_list[:4]:
            y = block(y)
        want = y.view(2, 3, 7, 32, 48).permute(0, 1, 3, 4, 2)
    assert (got - want).abs().max() <= 1e-6 * want.abs().max()  # float32 rounding of outputs up to ~1e4
    assert "BN eps" not in cli(capsys, tmp_path / "u.weights", "--cfg", tmp_path / "u.cfg", "-o",
                                tmp_path / "back.pt")[1]  # read back as darknet's own: nothing to fold


@pytest.mark.parametrize("toolkit", TOOLKITS)
def test_conv_bias_before_bn_is_folded(tmp_path, capsys, toolkit):
    spec = parse_cfg_text(SMALL_CFG, "small.cfg")
    (tmp_path / "small.cfg").write_text(SMALL_CFG)
    net = fill_random(BUILDERS[toolkit](spec, conv_bias_with_bn=True), seed=4, bias_std=1.0)
    sd = save_foreign(net, toolkit, tmp_path / "src.pt")
    assert sum(k.endswith(".bias") for k in sd) == 5  # 2 BN layers with a conv bias too, plus the output conv
    rc, out, err = cli(capsys, tmp_path / "src.pt", "--cfg", tmp_path / "small.cfg", "-o", tmp_path / "ours.pt")
    assert (rc, err) == (0, "")
    assert "conv biases before BN folded into running_mean at layers [0, 2]" in out

    model = load_model(tmp_path / "ours.pt")
    for i in (0, 2):
        conv, bn = conv_bn(net, toolkit, i)
        block = model.module_list[i]
        assert block.conv.bias is None
        assert torch.equal(block.bn.running_mean, bn.running_mean - conv.bias)
        assert torch.equal(block.bn.running_var, bn.running_var) and torch.equal(block.bn.weight, bn.weight)

    x = photo_batch(64, 96, n=2)
    with torch.no_grad():
        got = model(x)[0]
        y = x
        for block in net.module_list[:4]:
            y = block(y)
        want = y.view(2, 3, 7, 32, 48).permute(0, 1, 3, 4, 2)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        # dropping the bias instead of folding it would be visibly wrong
        for i in (0, 2):
            conv_bn(net, toolkit, i)[0].bias.zero_()
        y = x
        for block in net.module_list[:4]:
            y = block(y)
        assert (y.view(2, 3, 7, 32, 48).permute(0, 1, 3, 4, 2) - got).abs().max() > 0.1


def test_half_precision_source_converts_exactly(tmp_path, capsys, foreign_tiny, tiny_spec):
    """ultralytics saved FP16 EMA models; every fp16 value is exact in float32."""
    half = copy.deepcopy(foreign_tiny["ultralytics"]).half()
    save_foreign(half, "ultralytics", tmp_path / "fp16.pt")
    assert cli(capsys, tmp_path / "fp16.pt", "--cfg", TINY, "-o", tmp_path / "ours.pt")[0] == 0
    model = load_model(tmp_path / "ours.pt")
    assert model.module_list[0].conv.weight.dtype == torch.float32
    assert assert_matches_source(model, half.float(), "ultralytics", tiny_spec, check_nbt=True) == 13


# ----------------------------------------------------------------------------- our own .pt


def _our_checkpoint(path, cfg, names=None) -> dict:
    torch.manual_seed(0)
    model = Darknet.from_cfg(cfg)
    model.header = DarknetHeader(0, 2, 5, 32013312)
    model.cutoff = 15
    model.names = names or [f"thing{i}" for i in range(80)]
    save_checkpoint(model, path)
    return torch.load(path, weights_only=True)


def test_pt_to_pt_keeps_names_header_and_tensors(tmp_path, capsys, narrow_cfg):
    a = _our_checkpoint(tmp_path / "a.pt", narrow_cfg)
    rc, out, err = cli(capsys, tmp_path / "a.pt", "-o", tmp_path / "b.pt")
    assert (rc, err) == (0, "") and "13 conv layers matched" in out
    b = torch.load(tmp_path / "b.pt", weights_only=True)
    assert b["names"] == a["names"] == [f"thing{i}" for i in range(80)]
    assert b["darknet"] == a["darknet"] == {"major": 0, "minor": 2, "revision": 5, "seen": 32013312, "cutoff": 15}
    assert (b["format"], b["format_version"], b["cfg"]) == (a["format"], a["format_version"], a["cfg"])
    assert list(b["model"]) == list(a["model"])
    for k, t in a["model"].items():
        assert torch.equal(b["model"][k], t), k


def test_pt_to_pt_keeps_cfg_name(tmp_path, capsys, narrow_cfg):
    a = _our_checkpoint(tmp_path / "a.pt", narrow_cfg)
    assert a["cfg_name"] == "yolov3-tiny-narrow.cfg"
    assert cli(capsys, tmp_path / "a.pt", "-o", tmp_path / "b.pt")[0] == 0
    assert torch.load(tmp_path / "b.pt", weights_only=True)["cfg_name"] == "yolov3-tiny-narrow.cfg"


def test_names_option(tmp_path, capsys, narrow_cfg):
    _our_checkpoint(tmp_path / "a.pt", narrow_cfg)
    good = tmp_path / "good.names"
    good.write_text("".join(f"cls{i}\n" for i in range(80)))
    assert cli(capsys, tmp_path / "a.pt", "-o", tmp_path / "b.pt", "--names", good)[0] == 0
    assert torch.load(tmp_path / "b.pt", weights_only=True)["names"] == [f"cls{i}" for i in range(80)]

    bad = tmp_path / "three.names"
    bad.write_text("cat\ndog\nbird\n")
    rc, out, err = cli(capsys, tmp_path / "a.pt", "-o", tmp_path / "c.pt", "--names", bad)
    assert rc == 2 and out == ""
    assert_one_line_error(err, str(bad), "3 class names for a model with 80 classes")
    assert not (tmp_path / "c.pt").exists()


# ----------------------------------------------------------------------------- mismatches


@pytest.fixture
def erik_tiny_file(tmp_path, foreign_tiny):
    path = tmp_path / "erik.pth"
    save_foreign(foreign_tiny["eriklindernoren"], "eriklindernoren", path)
    return path


def test_wrong_cfg_names_first_mismatching_layer(tmp_path, capsys, erik_tiny_file):
    text = TINY.read_text()
    wide = tmp_path / "wide.cfg"
    wide.write_text(text.replace("filters=16", "filters=32", 1))
    rc, out, err = cli(capsys, erik_tiny_file, "--cfg", wide, "-o", tmp_path / "o.pt")
    assert rc == 2 and out == ""
    assert_one_line_error(err, str(erik_tiny_file), "layer 0 ", "[16, 3, 3, 3]", "[32, 3, 3, 3]")
    assert not (tmp_path / "o.pt").exists()

    # two heads with 2 classes: layers 15 and 22 both disagree; the first one is named
    two = tmp_path / "two.cfg"
    two.write_text(text.replace("filters=255", "filters=21").replace("classes=80", "classes=2"))
    rc, _, err = cli(capsys, erik_tiny_file, "--cfg", two, "-o", tmp_path / "o.weights")
    assert rc == 2
    assert_one_line_error(err, "layer 15 ", "[255, 512, 1, 1]", "[21, 512, 1, 1]")
    assert "layer 22" not in err


def test_checkpoint_with_extra_layers(tmp_path, capsys, foreign_tiny):
    net = copy.deepcopy(foreign_tiny["ultralytics"])
    extra = nn.Sequential()
    extra.add_module("Conv2d", nn.Conv2d(255, 8, 1, bias=True))
    net.module_list.append(extra)
    save_foreign(net, "ultralytics", tmp_path / "extra.pt")
    rc, out, err = cli(capsys, tmp_path / "extra.pt", "--cfg", TINY, "-o", tmp_path / "o.pt")
    assert rc == 2 and out == ""
    assert_one_line_error(err, "layer 24", "only 24 layers")
    assert not (tmp_path / "o.pt").exists()


def test_checkpoint_without_module_list(tmp_path, capsys):
    torch.save({"backbone.conv1.weight": torch.zeros(16, 3, 3, 3), "head.bias": torch.zeros(255)}, tmp_path / "x.pt")
    rc, out, err = cli(capsys, tmp_path / "x.pt", "--cfg", TINY, "-o", tmp_path / "o.pt")
    assert rc == 2 and out == ""
    assert_one_line_error(err, str(tmp_path / "x.pt"), "no darknet layer weights found")

    torch.save({"epoch": 3, "model": None}, tmp_path / "y.pt")
    rc, _, err = cli(capsys, tmp_path / "y.pt", "--cfg", TINY, "-o", tmp_path / "o.pt")
    assert rc == 2
    assert_one_line_error(err, "no state dict of tensors found", "epoch, model")
    assert not (tmp_path / "o.pt").exists()


def test_foreign_checkpoint_needs_cfg(tmp_path, capsys, erik_tiny_file):
    rc, _, err = cli(capsys, erik_tiny_file, "-o", tmp_path / "o.pt")
    assert rc == 2
    assert_one_line_error(err, "pass --cfg")


# ----------------------------------------------------------------------------- security


class Evil:
    """Unpickling this would call ``open(marker, 'w')``: creating a file stands in for running any code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_whole_module_pickle_converts_bit_exact(tmp_path, capsys, foreign_tiny, tiny_spec):
    """A pickled whole model (classes of this test module) is read through inert stand-ins, weights intact
    (tests/test_legacy_pickle.py does it with the old toolkit's own module path, in a child process)."""
    net = foreign_tiny["ultralytics"]
    torch.save(net, tmp_path / "whole.pt")
    torch.save({"epoch": 1, "model": net}, tmp_path / "ckpt.pt")
    for name in ("whole.pt", "ckpt.pt"):
        rc, out, err = cli(capsys, tmp_path / name, "--cfg", TINY, "-o", tmp_path / f"{name}.out.pt")
        assert (rc, err) == (0, "") and "stand-ins (tests.test_convert.EmptyLayer" in out, err
        model = load_model(tmp_path / f"{name}.out.pt")
        assert assert_matches_source(model, net, "ultralytics", tiny_spec, check_nbt=True) == 13


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_code_running_pickle_is_refused(tmp_path, capsys, writer):
    marker = tmp_path / "pwned"
    payload = {"model": {"module_list.0.conv.weight": torch.zeros(1)}, "x": Evil(marker)}
    src = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save(payload, src)
    else:
        with open(src, "wb") as f:
            pickle.dump(Evil(marker), f, protocol=2)
    assert not marker.exists()
    # sanity of the attack itself: a plain unpickler would create the marker
    if writer == "pickle.dump":
        with open(src, "rb") as f:
            pickle.load(f).close()
        assert marker.exists()
        marker.unlink()
    rc, out, err = cli(capsys, src, "--cfg", TINY, "-o", tmp_path / "o.pt")
    assert rc == 2 and out == ""
    assert_one_line_error(err, str(src), "refused")
    assert not marker.exists()
    assert not (tmp_path / "o.pt").exists()


# ----------------------------------------------------------------------------- output handling


def test_refuses_to_overwrite_without_force(tmp_path, capsys, narrow_cfg):
    _our_checkpoint(tmp_path / "a.pt", narrow_cfg)
    out_path = tmp_path / "b.weights"
    out_path.write_bytes(b"precious")
    rc, out, err = cli(capsys, tmp_path / "a.pt", "-o", out_path)
    assert rc == 2 and out == ""
    assert_one_line_error(err, str(out_path), "output exists", "--force")
    assert out_path.read_bytes() == b"precious"

    rc, out, err = cli(capsys, tmp_path / "a.pt", "-o", out_path, "--force")
    assert (rc, err) == (0, "")
    ref = load_model(tmp_path / "a.pt")
    got = load_model(out_path, cfg=narrow_cfg, cutoff=15)
    for k, t in ref.state_dict().items():
        if k.startswith(tuple(f"module_list.{i}." for i in range(15))) and "num_batches" not in k:
            assert torch.equal(got.state_dict()[k], t), k
    # the checkpoint's cutoff (15) limited the .weights file to layers 0..14
    floats = sum(darknet_float_count(s) for s in ref.spec.layers[:15] if isinstance(s, ConvSpec))
    assert out_path.stat().st_size == 20 + 4 * floats


def test_weights_output_brings_its_cfg_and_names_and_opencv_reads_them(tmp_path, capsys, narrow_cfg):
    """A model retrained on 5 classes (heads rebuilt: the cfg in its .pt is no longer any file on disk) -> .weights
    with the .cfg and .names it needs; OpenCV's darknet importer reads that pair and computes what we compute."""
    import cv2
    import numpy as np

    from yolo.model.cfg_edit import set_num_classes

    text = set_num_classes(narrow_cfg.read_text(), 5, str(narrow_cfg))
    torch.manual_seed(3)
    model = Darknet(parse_cfg_text(text, "retrained.cfg"))
    model.names = ["cat", "dog", "car", "bus", "cup"]
    model.eval()
    save_checkpoint(model, tmp_path / "best.pt")
    rc, out, err = cli(capsys, tmp_path / "best.pt", "-o", tmp_path / "out" / "model.weights")
    assert (rc, err) == (0, "") and "with model.cfg, model.names" in out
    assert (tmp_path / "out" / "model.cfg").read_text() == text
    assert (tmp_path / "out" / "model.names").read_text() == "cat\ndog\ncar\nbus\ncup\n"

    x = photo_batch(160, 160)
    with torch.no_grad():
        ours = model.decode(model(x))[0]
    net = cv2.dnn.readNetFromDarknet(str(tmp_path / "out" / "model.cfg"), str(tmp_path / "out" / "model.weights"))
    net.setInput(x.numpy())
    theirs = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))
    assert theirs.shape == (ours.shape[0], 10)  # 5 classes + box + objectness
    assert np.allclose(np.sort(theirs[:, 4]), np.sort(ours[:, 4].numpy()), atol=1e-4)  # objectness, any row order

    # the same content again: kept; other content: refused without --force and nothing written
    (tmp_path / "out" / "model.weights").unlink()
    rc, _, err = cli(capsys, tmp_path / "best.pt", "-o", tmp_path / "out" / "model.weights")
    assert (rc, err) == (0, "")
    (tmp_path / "out" / "model.cfg").write_text("# the user's own\n" + text)
    rc, out, err = cli(capsys, tmp_path / "best.pt", "-o", tmp_path / "out" / "model2.weights")
    assert rc == 0 and (tmp_path / "out" / "model2.cfg").read_text() == text
    (tmp_path / "out" / "model2.weights").unlink()
    (tmp_path / "out" / "model2.names").write_text("x\n")
    rc, out, err = cli(capsys, tmp_path / "best.pt", "-o", tmp_path / "out" / "model2.weights")
    assert rc == 2 and out == ""
    assert_one_line_error(err, str(tmp_path / "out" / "model2.names"), "other content", "--force")
    assert not (tmp_path / "out" / "model2.weights").exists()
    from yolo import convert_weights

    with pytest.raises(InputError, match=r"model2.names: exists with other content .*; pass force=True to replace "
                                         r"it, or another out$"):  # from Python: the Python names
        convert_weights(tmp_path / "best.pt", tmp_path / "out" / "model2.weights")
    assert (tmp_path / "out" / "model2.names").read_text() == "x\n"
    rc, _, err = cli(capsys, tmp_path / "best.pt", "-o", tmp_path / "out" / "model2.weights", "--force")
    assert (rc, err) == (0, "") and (tmp_path / "out" / "model2.names").read_text().startswith("cat\n")
    # a backbone file (--cutoff) goes with whatever cfg is trained next: no companions
    rc, out, err = cli(capsys, tmp_path / "best.pt", "-o", tmp_path / "bb.conv.9", "--cutoff", "9")
    assert (rc, err) == (0, "") and "with" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bb.conv.9", "best.pt", "out"]


def test_default_output_and_force_for_pt(tmp_path, capsys, narrow_cfg):
    _our_checkpoint(tmp_path / "a.pt", narrow_cfg)
    rc, out, _ = cli(capsys, tmp_path / "a.pt")
    assert rc == 0 and (tmp_path / "a.weights").is_file() and f"-> {tmp_path / 'a.weights'}" in out
    rc, _, err = cli(capsys, tmp_path / "a.pt")
    assert rc == 2
    assert_one_line_error(err, "output exists")


def test_output_equal_to_input_is_refused(tmp_path, capsys, narrow_cfg):
    _our_checkpoint(tmp_path / "a.pt", narrow_cfg)
    before = (tmp_path / "a.pt").read_bytes()
    (tmp_path / "sub").mkdir()
    for spelled in (tmp_path / "a.pt", tmp_path / "sub" / ".." / "a.pt"):
        rc, out, err = cli(capsys, tmp_path / "a.pt", "-o", spelled, "--force")
        assert rc == 2 and out == ""
        assert_one_line_error(err, "overwrite the input")
    assert (tmp_path / "a.pt").read_bytes() == before


@pytest.mark.parametrize("name", ["model.onnx", "model", "model.weights.txt"])
def test_unknown_output_extension_is_refused(tmp_path, capsys, narrow_cfg, name):
    _our_checkpoint(tmp_path / "a.pt", narrow_cfg)
    rc, out, err = cli(capsys, tmp_path / "a.pt", "-o", tmp_path / name)
    assert rc == 2 and out == ""
    assert_one_line_error(err, "output must end in .weights", str(tmp_path / name))
    assert not (tmp_path / name).exists()
    assert re.fullmatch(r"a\.pt", " ".join(p.name for p in tmp_path.iterdir()))


def test_bn_statistics_against_a_cfg_without_bn_are_an_error(tmp_path, capsys):
    """A wrong cfg must not silently drop the checkpoint's BN (the model would compute another function)."""
    cfg = tmp_path / "nobn.cfg"
    cfg.write_text("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky\n")
    state = {"module_list.0.Conv2d.weight": torch.rand(4, 3, 3, 3), "module_list.0.Conv2d.bias": torch.rand(4),
             **{f"module_list.0.BatchNorm2d.{n}": torch.rand(4) for n in ("weight", "bias", "running_mean", "running_var")}}
    torch.save({"model": state}, tmp_path / "u.pt")
    code, _, err = cli(capsys, tmp_path / "u.pt", "--cfg", cfg, "-o", tmp_path / "out.pt")
    assert code == 2 and "layer 0" in err and "BN statistics" in err
    assert not (tmp_path / "out.pt").exists()


def test_bn_eps_follows_the_source_toolkit_and_can_be_overridden(tmp_path, capsys, foreign_tiny):
    """ultralytics/yolov3 trained with BN eps 1e-4 (not stored in its state dict): the checkpoint keeps it."""
    save_foreign(foreign_tiny["ultralytics"], "ultralytics", tmp_path / "u.pt")
    code, out, _ = cli(capsys, tmp_path / "u.pt", "--cfg", TINY, "-o", tmp_path / "a.pt")
    assert code == 0 and "ultralytics layout, BN eps 0.0001" in out
    assert torch.load(tmp_path / "a.pt", weights_only=True)["bn_eps"] == 1e-4
    assert load_model(tmp_path / "a.pt").module_list[0].bn.eps == 1e-4
    assert cli(capsys, tmp_path / "u.pt", "--cfg", TINY, "-o", tmp_path / "b.pt", "--bn-eps", "1e-3")[0] == 0
    assert load_model(tmp_path / "b.pt").module_list[0].bn.eps == 1e-3
    code, _, err = cli(capsys, tmp_path / "u.pt", "--cfg", TINY, "-o", tmp_path / "c.pt", "--bn-eps", "2")
    assert code == 2 and "--bn-eps" in err


@pytest.mark.parametrize("prepare", ["fuse", "inference"])
def test_saving_a_model_prepared_for_inference_is_refused(tmp_path, prepare):
    """A BN-folded or Winograd-swapped model no longer has the tensors its cfg describes: the file would not
    load back, so nothing is written and the error names the layer (before: a .pt that load_model refused)."""
    from yolo.model.inference import prepare_for_inference

    model = Darknet.from_cfg(CFG / "yolov3-tiny.cfg")
    plain = tmp_path / "plain.pt"
    save_checkpoint(model, plain)
    assert torch.equal(load_model(plain).module_list[0].conv.weight, model.module_list[0].conv.weight)
    if prepare == "fuse":
        model.eval().fuse()
    else:
        prepare_for_inference(model, torch.device("cpu"), torch.float32)
    out = tmp_path / "prepared.pt"
    with pytest.raises(ValueError, match=r"layer 0: the model has no bn\.weight .*save the checkpoint before"):
        save_checkpoint(model, out)
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))


def test_our_checkpoint_without_its_cfg_text_is_one_line(tmp_path, capsys, narrow_cfg):
    """A .pt of ours whose cfg text is gone (edited, or written by a broken tool): one line asking for --cfg
    (it was 'unexpected KeyError: cfg', exit 1, in detect, convert-weights and export); with --cfg it loads.
    A format version newer than this toolkit's is one line too."""
    ckpt = _our_checkpoint(tmp_path / "a.pt", narrow_cfg)
    del ckpt["cfg"]
    torch.save(ckpt, tmp_path / "nocfg.pt")
    rc, out, err = cli(capsys, tmp_path / "nocfg.pt", "-o", tmp_path / "b.weights")
    assert rc == 2 and out == ""
    assert_one_line_error(err, str(tmp_path / "nocfg.pt"), "no cfg text inside", "pass --cfg")
    rc, _, err = cli(capsys, tmp_path / "nocfg.pt", "--cfg", narrow_cfg, "-o", tmp_path / "b.weights")
    assert (rc, err) == (0, "")
    ckpt = torch.load(tmp_path / "a.pt", weights_only=True)
    ckpt["format_version"] = 99
    torch.save(ckpt, tmp_path / "new.pt")
    rc, _, err = cli(capsys, tmp_path / "new.pt", "-o", tmp_path / "c.weights")
    assert rc == 2 and "checkpoint format version 99 is newer than this toolkit understands" in err
    ckpt["format_version"], ckpt["names"] = 1, 80  # an edited file: was "unexpected TypeError", exit 1
    torch.save(ckpt, tmp_path / "int.pt")
    rc, _, err = cli(capsys, tmp_path / "int.pt", "-o", tmp_path / "d.weights")
    assert_one_line_error(err, str(tmp_path / "int.pt"),
                          "the checkpoint's names must be a list of class names, got int")
    assert rc == 2


def test_a_ctrl_c_while_writing_never_leaves_weights_without_their_cfg(tmp_path, monkeypatch):
    """Found by a user's audit (from the code): the .weights was written before its .cfg and .names, so a Ctrl-C
    between them left a .weights whose cfg was missing. The interrupt now comes once all three are written."""
    import os
    import signal

    model = Darknet.from_cfg(CFG / "yolov3-tiny.cfg")
    save_checkpoint(model, tmp_path / "m.pt")
    real = Darknet.save_darknet_weights

    def interrupted(self, *args, **kwargs):  # Ctrl-C as the .weights is being written
        os.kill(os.getpid(), signal.SIGINT)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Darknet, "save_darknet_weights", interrupted)
    from yolo.model.convert import convert_weights

    with pytest.raises(KeyboardInterrupt):
        convert_weights(tmp_path / "m.pt", tmp_path / "m.weights")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.cfg", "m.names", "m.pt", "m.weights"]
    assert load_model(tmp_path / "m.weights").spec.text == model.spec.text
