"""The darknet model zoo without OpenCV: official .weights sizes and BFLOPS, the layers the zoo adds against
darknet's own formulas, which keys are accepted and which refused.

Expected sizes and BFLOPS are darknet's (the official files' sizes; the "Total BFLOPS" AlexeyAB's darknet prints
for each cfg), not our outputs. Activation references are transcribed from darknet's src/activations.h.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.helpers import CFG
from yolo.errors import InputError
from yolo.model.cfg_counts import darknet_float_count, darknet_layer_flops, layer_shapes
from yolo.model.cfg_parser import parse_cfg_text
from yolo.model.cfg_specs import ACTIVATIONS, AvgPoolSpec, ConvSpec, ScaleChannelsSpec, ShortcutSpec
from yolo.model.darknet import Darknet
from yolo.model.layers import make_activation

ZOO = ["yolov4", "yolov4-tiny", "yolov4-tiny-3l", "yolov4-csp", "yolov4-csp-swish", "yolov4x-mish", "yolov4-p5",
       "yolov4-p6", "yolov7-tiny", "yolov7", "yolov7x", "yolov3-tiny-prn", "enet-coco"]

# The official .weights files (AlexeyAB/darknet releases, WongKinYiu's for yolov7*), in bytes.
OFFICIAL_WEIGHTS_BYTES = {
    "yolov4": 257_717_640, "yolov4-tiny": 24_251_276, "yolov4-csp": 211_944_840, "yolov4x-mish": 399_388_168,
    "yolov7-tiny": 24_967_560, "yolov7": 147_898_248, "yolov7x": 285_638_760, "yolov3-tiny-prn": 19_759_052,
    "enet-coco": 19_233_100,
}

# "Total BFLOPS" darknet prints at the cfg's own width x height (and two other sizes).
DARKNET_BFLOPS = [
    ("yolov4", None, 128.459), ("yolov4", 416, 60.137), ("yolov4-tiny", None, 6.910), ("yolov4-csp", None, 77.003),
    ("yolov4-csp-swish", None, 120.317), ("yolov4x-mish", None, 221.986), ("yolov7-tiny", None, 5.802),
    ("yolov7", None, 104.580), ("yolov7x", None, 189.760), ("yolov3-tiny-prn", None, 3.467),
    ("enet-coco", None, 3.731), ("yolov3", 416, 65.879),
]


def zoo_text(name: str) -> str:
    """The built-in cfg's text, as shipped."""
    return (CFG / f"{name}.cfg").read_text()


def spec_of(name: str):
    return parse_cfg_text(zoo_text(name), str(CFG / f"{name}.cfg"))


@pytest.mark.parametrize("name", sorted(OFFICIAL_WEIGHTS_BYTES))
def test_official_weights_sizes_without_the_files(name):
    """20-byte header (version 0.2+, 64-bit seen) + 4 bytes per float the reader expects and the writer writes."""
    spec = spec_of(name)
    floats = sum(darknet_float_count(s) for s in spec.layers if isinstance(s, ConvSpec))
    assert 20 + 4 * floats == OFFICIAL_WEIGHTS_BYTES[name]


@pytest.mark.parametrize("name,size,bflops", DARKNET_BFLOPS)
def test_darknet_total_bflops(name, size, bflops):
    spec = spec_of(name)
    h, w = (size, size) if size else (spec.net.height, spec.net.width)
    total = sum(darknet_layer_flops(s, shape)[1] for s, shape in zip(spec.layers, layer_shapes(spec, h, w)))
    assert round(total / 1e9, 3) == bflops


def test_yolov3_conv_only_and_alexeyab_counts_differ_by_the_shortcuts():
    """pjreddie's 65.864 (convs only) vs AlexeyAB's 65.879: 23 shortcuts' outputs make the difference."""
    spec = parse_cfg_text((CFG / "yolov3.cfg").read_text())
    flops = [darknet_layer_flops(s, shape) for s, shape in zip(spec.layers, layer_shapes(spec, 416, 416))]
    assert round(sum(f[0] for f in flops) / 1e9, 3) == 65.864
    shortcuts = sum(c * h * w for s, (c, h, w) in zip(spec.layers, layer_shapes(spec, 416, 416))
                    if isinstance(s, ShortcutSpec))
    assert sum(f[1] for f in flops) - sum(f[0] for f in flops) == shortcuts


@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_cfg_builds_and_runs(name):
    spec = spec_of(name)
    if name in ("yolov4-p6", "yolov4x-mish", "yolov7x", "yolov4-p5"):  # a forward costs seconds: shapes only
        assert len(layer_shapes(spec, 128, 128)) == len(spec.layers)
        return
    model = Darknet(spec).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
    assert len(out) == len(spec.heads) and all(torch.isfinite(o).all() for o in out)


def test_zoo_cfgs_keep_their_training_keys_in_the_text():
    spec = spec_of("yolov4x-mish")
    assert "stopbackward=800" in spec.text
    assert spec_of("yolov4-csp").net.extras["ema_alpha"] == 0.9998


# ----------------------------------------------------------------------------- layers


def darknet_activation(name: str, x: np.ndarray) -> np.ndarray:
    """Darknet's src/activations.h, transcribed (float64)."""
    softplus = np.where(x > 20, x, np.where(x < -20, np.exp(x), np.log1p(np.exp(np.minimum(x, 20)))))
    sig = 1 / (1 + np.exp(-x))
    return {
        "leaky": np.where(x > 0, x, 0.1 * x), "linear": x, "relu": x * (x > 0), "logistic": sig,
        "swish": x * sig, "mish": x * np.tanh(softplus), "relu6": np.clip(x, 0, 6),
        "elu": (x >= 0) * x + (x < 0) * (np.exp(x) - 1),
        "selu": (x >= 0) * 1.0507 * x + (x < 0) * 1.0507 * 1.6732 * (np.exp(x) - 1),
        "gelu": 0.5 * x * (1 + np.tanh(0.797885 * x + 0.035677 * x ** 3)),
        "tanh": 2 / (1 + np.exp(-2 * x)) - 1, "hardtan": np.clip(x, -1, 1),
        "relie": np.where(x > 0, x, 0.01 * x), "loggy": 2 / (1 + np.exp(-x)) - 1,
    }[name]


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_follow_darknets_formulas(name):
    x = np.concatenate([np.linspace(-30, 30, 2001), [-20.5, -19.5, 19.5, 20.5, 0.0]])
    ours = make_activation(name)(torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(ours, darknet_activation(name, x), rtol=1e-6, atol=1e-6)


def _cfg(*sections: str, channels: int = 3) -> str:
    return f"[net]\nwidth=32\nheight=32\nchannels={channels}\n" + "".join(sections)


CONV = "[convolutional]\nfilters={f}\nsize=1\nstride=1\nactivation=linear\n"


@pytest.mark.parametrize("first,second", [(4, 8), (8, 4), (6, 6)])
def test_shortcut_adds_the_channels_both_have(first, second):
    """darknet's shortcut_multilayer_cpu: out = prev; out[i] += from[i] while i < from's outputs (CHW order)."""
    text = _cfg(CONV.format(f=first), CONV.format(f=second), "[shortcut]\nfrom=-2\nactivation=leaky\n")
    model = Darknet(parse_cfg_text(text)).eval()
    assert isinstance(model.spec.layers[2], ShortcutSpec) and model.spec.layers[2].out_channels == second
    a, b = torch.randn(2, first, 5, 7), torch.randn(2, second, 5, 7)
    out = model.module_list[2](b.clone(), a.clone()).numpy()
    ref = b.numpy().reshape(2, -1).copy()  # darknet's flat loop over one image's C*H*W outputs
    add = a.numpy().reshape(2, -1)
    n = min(ref.shape[1], add.shape[1])
    ref[:, :n] += add[:, :n]
    np.testing.assert_allclose(out, darknet_activation("leaky", ref).reshape(out.shape), rtol=1e-6, atol=1e-6)


def test_avgpool_and_scale_channels():
    """[avgpool]: global mean -> [C, 1, 1]; [scale_channels] from=-k: out[c, y, x] = prev[c] * layer_k[c, y, x]."""
    text = _cfg(CONV.format(f=4), "[avgpool]\n", CONV.format(f=4).replace("linear", "logistic"),
                "[scale_channels]\nfrom=-3\n")
    spec = parse_cfg_text(text)
    assert isinstance(spec.layers[1], AvgPoolSpec) and isinstance(spec.layers[3], ScaleChannelsSpec)
    assert layer_shapes(spec, 64, 96) == [(4, 64, 96), (4, 1, 1), (4, 1, 1), (4, 64, 96)]
    model = Darknet(spec).eval()
    x = torch.randn(1, 4, 3, 5)
    pooled = model.module_list[1](x)
    np.testing.assert_allclose(pooled.numpy()[0, :, 0, 0], x.numpy()[0].reshape(4, -1).mean(axis=1), atol=1e-6)
    s = torch.rand(1, 4, 1, 1)
    out = model.module_list[3](s, x)
    np.testing.assert_allclose(out.numpy(), s.numpy() * x.numpy(), rtol=1e-6)


def test_scale_channels_needs_a_global_map_of_as_many_channels():
    text = _cfg(CONV.format(f=4), "[avgpool]\n", CONV.format(f=8), "[scale_channels]\nfrom=-3\n")
    with pytest.raises(InputError, match=r"cfg>:\d+: .*8"):
        parse_cfg_text(text)
    text = _cfg(CONV.format(f=4), CONV.format(f=4), "[scale_channels]\nfrom=-2\n")
    with pytest.raises(InputError, match="1x1"):
        parse_cfg_text(text)


def test_dropout_is_identity_in_eval_only():
    model = Darknet(parse_cfg_text(_cfg(CONV.format(f=4), "[dropout]\nprobability=.5\n")))
    x = torch.randn(1, 4, 8, 8)
    assert torch.equal(model.module_list[1].eval()(x), x)
    assert not torch.equal(model.module_list[1].train()(x), x)


def test_grouped_and_depthwise_convs_have_darknets_weight_count():
    """A conv of groups g holds filters * (in / g) * size^2 weights (+ BN or bias) in .weights."""
    text = _cfg("[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=swish\n",
                "[convolutional]\nbatch_normalize=1\nfilters=8\ngroups=8\nsize=5\nstride=2\npad=1\nactivation=swish\n",
                "[convolutional]\nfilters=16\ngroups=4\nsize=3\nstride=1\npad=1\nactivation=linear\n")
    spec = parse_cfg_text(text)
    assert [darknet_float_count(s) for s in spec.layers] == [8 * 3 * 9 + 32, 8 * 1 * 25 + 32, 16 * 2 * 9 + 16]
    model = Darknet(spec)
    assert [m.conv.groups for m in model.module_list] == [1, 8, 4]
    assert model.module_list[2].conv.bias is not None and model.module_list[0].conv.bias is None


def test_square_stride_x_stride_y():
    spec = parse_cfg_text(_cfg("[convolutional]\nfilters=4\nsize=3\nstride_x=2\nstride_y=2\npad=1\n"))
    assert spec.layers[0].stride == 2 and layer_shapes(spec, 32, 32)[0] == (4, 16, 16)


# ----------------------------------------------------------------------------- accepted / refused keys

ACCEPTED = [  # keys that only steer darknet's training (or its GPU streams), or darknet's no-op values
    ("[net]\nema_alpha=0.9998\n", ""), ("", "stopbackward=1\n"), ("", "learning_rate=0.5\n"),
    ("", "train_only_bn=1\n"), ("", "dont_update=1000\n"), ("", "stream=1\n"), ("", "dilation=1\n"),
    ("", "antialiasing=0\n"), ("", "dontload=0\n"),
]


@pytest.mark.parametrize("net,key", ACCEPTED)
def test_training_keys_are_accepted(net, key):
    text = (net or "[net]\n") + "width=32\nheight=32\n[convolutional]\nfilters=4\nsize=3\npad=1\n" + key
    assert key.strip() in parse_cfg_text(text).text


REFUSED = [  # (section text with the key on its last line, the key's name)
    ("[convolutional]\nfilters=4\nsize=3\npad=1\ndilation=2\n", "dilation"),
    ("[convolutional]\nfilters=4\nsize=3\npad=1\nshare_index=0\n", "share_index"),
    ("[convolutional]\nfilters=4\nsize=3\npad=1\ndontload=1\n", "dontload"),
    ("[convolutional]\nfilters=4\nsize=3\npad=1\nantialiasing=1\n", "antialiasing"),
    ("[convolutional]\nfilters=4\nsize=3\npad=1\nstride_x=2\n", "stride_x"),
    ("[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=hard_mish\n", "hard_mish"),
    ("[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=normalize_channels\n", "normalize_channels"),
    ("[convolutional]\nfilters=4\nsize=1\n[shortcut]\nfrom=-2\nweights_type=per_feature\n", "weights_type"),
    ("[convolutional]\nfilters=4\nsize=1\n[shortcut]\nfrom=-1,-2\n", "from"),
    ("[maxpool]\nsize=2\nstride=1\nmaxpool_depth=1\n", "maxpool_depth"),
    ("[convolutional]\nfilters=4\nsize=1\nstride=2\n[upsample]\nstride=2\nscale=0.5\n", "scale"),
]


@pytest.mark.parametrize("section,key", REFUSED)
def test_forward_changing_keys_are_refused_naming_the_key(section, key):
    text = "[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=4\nsize=1\n" + section
    line = len(text.splitlines())
    with pytest.raises(InputError) as info:
        parse_cfg_text(text, "zoo.cfg")
    assert str(info.value).startswith(f"zoo.cfg:{line}: ") and key in str(info.value)


@pytest.mark.parametrize("section", ["sam", "reorg3d", "local_avgpool", "implicit", "reorg"])
def test_darknet_layers_not_built_here_are_refused_by_name(section):
    text = f"[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=4\nsize=1\n[{section}]\nfrom=-1\n"
    with pytest.raises(InputError, match=rf"zoo.cfg:7: darknet's \[{section}\] layer .*not implemented"):
        parse_cfg_text(text, "zoo.cfg")


def test_mish_is_finite_and_exact_far_out():
    """Softplus threshold 20: mish(x) = x above it; tiny negatives stay finite."""
    x = torch.tensor([-1e4, -100.0, 25.0, 1e4], dtype=torch.float32)
    out = make_activation("mish")(x)
    assert torch.isfinite(out).all() and out[2].item() == 25.0 and out[3].item() == 1e4
    assert math.isclose(out[1].item(), 0.0, abs_tol=1e-30)
