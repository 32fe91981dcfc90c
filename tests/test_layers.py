"""Torch layer modules against independent references: darknet max-pool, BN fusing, route, shortcut."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from yolo.model.cfg_counts import conv_param_count
from yolo.model.cfg_parser import parse_cfg_text
from yolo.model.cfg_specs import ConvSpec, MaxPoolSpec, RouteSpec, ShortcutSpec
from yolo.model.layers import ConvBlock, MaxPoolDarknet, Route, Shortcut


def darknet_maxpool_reference(x: np.ndarray, size: int, stride: int, padding: int, pad_value=-np.inf) -> np.ndarray:
    """Brute-force darknet max-pool of ``x [B, C, H, W]``: pad left/top with padding // 2 and right/bottom with
    the rest, then take the maximum of every window by explicit loops."""
    b, c, h, w = x.shape
    left = padding // 2
    right = padding - left
    padded = np.full((b, c, h + padding, w + padding), pad_value, dtype=np.float64)
    padded[:, :, left:left + h, left:left + w] = x
    out_h = (h + padding - size) // stride + 1
    out_w = (w + padding - size) // stride + 1
    assert padded.shape[2] == left + h + right
    out = np.empty((b, c, out_h, out_w), dtype=np.float64)
    for n in range(b):
        for k in range(c):
            for i in range(out_h):
                for j in range(out_w):
                    best = -np.inf
                    for di in range(size):
                        for dj in range(size):
                            best = max(best, padded[n, k, i * stride + di, j * stride + dj])
                    out[n, k, i, j] = best
    return out


def maxpool_spec(size: int, stride: int, padding: int | None = None) -> MaxPoolSpec:
    text = f"[net]\nchannels=2\n[maxpool]\nsize={size}\nstride={stride}\n"
    if padding is not None:
        text += f"padding={padding}\n"
    (spec,) = parse_cfg_text(text).layers
    assert isinstance(spec, MaxPoolSpec)
    return spec


@pytest.mark.parametrize("size,stride", [(2, 1), (2, 2), (3, 2), (5, 1), (13, 1)])
@pytest.mark.parametrize("hw", [(7, 10), (8, 5), (13, 13), (6, 12)])
def test_maxpool_matches_bruteforce_reference(size, stride, hw):
    spec = maxpool_spec(size, stride)
    assert spec.padding == size - 1  # darknet's default
    rng = np.random.default_rng(size * 100 + stride * 10 + hw[0])
    x = rng.normal(size=(2, 2, *hw)).astype(np.float32)  # about half the values negative
    assert (x < 0).any() and (x > 0).any()
    got = MaxPoolDarknet(spec)(torch.from_numpy(x)).numpy()
    want = darknet_maxpool_reference(x, size, stride, spec.padding)
    assert got.shape == want.shape == (2, 2, spec.out_size(hw[0]), spec.out_size(hw[1]))
    assert np.isfinite(got).all()  # every window holds at least one real pixel
    np.testing.assert_array_equal(got, want.astype(np.float32))


@pytest.mark.parametrize("size,stride,padding", [(2, 2, 0), (3, 2, 1), (3, 1, 0), (2, 2, 3), (4, 3, 1)])
@pytest.mark.parametrize("hw", [(7, 10), (8, 5)])
def test_maxpool_explicit_padding(size, stride, padding, hw):
    spec = maxpool_spec(size, stride, padding)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(1, 2, *hw)).astype(np.float32)
    got = MaxPoolDarknet(spec)(torch.from_numpy(x)).numpy()
    want = darknet_maxpool_reference(x, size, stride, padding)
    np.testing.assert_array_equal(got, want.astype(np.float32))


def test_maxpool_pads_with_minus_inf_not_zero():
    spec = maxpool_spec(2, 1)
    rng = np.random.default_rng(0)
    x = -rng.uniform(0.5, 2.0, size=(1, 2, 5, 6)).astype(np.float32)  # all negative
    got = MaxPoolDarknet(spec)(torch.from_numpy(x)).numpy()
    want = darknet_maxpool_reference(x, 2, 1, 1)
    zero_padded = darknet_maxpool_reference(x, 2, 1, 1, pad_value=0.0)
    np.testing.assert_array_equal(got, want.astype(np.float32))
    assert got.shape == x.shape  # size 2 stride 1 keeps the size
    assert (got < 0).all()
    # with zeros, the last row and column (whose windows reach into the padding) would become 0
    assert not np.array_equal(want, zero_padded)
    assert (zero_padded[..., -1, :] == 0).all() and (zero_padded[..., :, -1] == 0).all()
    # the pool looks right and down: out[i, j] = max(x[i:i+2, j:j+2]); the corner keeps its own value
    assert got[0, 0, 0, 0] == x[0, 0, :2, :2].max()
    assert got[0, 0, -1, -1] == x[0, 0, -1, -1]


def test_maxpool_keeps_dtype_and_gradient_flows():
    spec = maxpool_spec(2, 1)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    y = MaxPoolDarknet(spec)(x)
    assert y.dtype == torch.float64
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.sum() == y.numel()  # each output routes one gradient


# ============================================================================ ConvBlock.fuse


def conv_spec(text: str) -> ConvSpec:
    spec = parse_cfg_text(text).layers[-1]
    assert isinstance(spec, ConvSpec)
    return spec


CONV_CFGS = {
    "3x3_stride2_leaky": "[net]\nchannels=4\n[convolutional]\nbatch_normalize=1\nfilters=6\nsize=3\nstride=2\npad=1\n"
                          "activation=leaky\n",
    "1x1_linear": "[net]\nchannels=5\n[convolutional]\nbatch_normalize=1\nfilters=3\nsize=1\nactivation=linear\n",
    "grouped_mish": "[net]\nchannels=4\n[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\npad=1\ngroups=2\n"
                    "activation=mish\n",
}


@pytest.mark.parametrize("name", list(CONV_CFGS))
def test_conv_fuse_keeps_output(name):
    spec = conv_spec(CONV_CFGS[name])
    torch.manual_seed(0)
    block = ConvBlock(spec)
    with torch.no_grad():
        block.conv.weight.normal_(0, 0.5)
        block.bn.weight.uniform_(0.5, 2.0)
        block.bn.bias.normal_(0, 0.5)
        block.bn.running_mean.normal_(0, 1.0)
        block.bn.running_var.uniform_(0.2, 3.0)
    block.eval()
    assert sum(p.numel() for p in block.parameters()) == conv_param_count(spec) == conv_param_count(spec, fused=False)
    x = torch.randn(2, spec.in_channels, 9, 11)
    with torch.no_grad():
        before = block(x)
        # the unfused block is conv -> BN(running stats) -> activation, written with plain torch ops
        ref = F.conv2d(x, block.conv.weight, None, spec.stride, spec.padding, groups=spec.groups)
        ref = F.batch_norm(ref, block.bn.running_mean, block.bn.running_var, block.bn.weight, block.bn.bias,
                           training=False, eps=block.bn.eps)
        ref = {"leaky": lambda t: F.leaky_relu(t, 0.1), "linear": lambda t: t, "mish": F.mish}[spec.activation](ref)
        torch.testing.assert_close(before, ref)
        block.fuse()
        after = block(x)
    assert block.bn is None and block.conv.bias is not None
    assert before.abs().max() > 0.1  # non-trivial output
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in block.parameters()) == conv_param_count(spec, fused=True)
    assert conv_param_count(spec, fused=True) == conv_param_count(spec) - spec.filters
    # fusing twice is a no-op
    block.fuse()
    with torch.no_grad():
        torch.testing.assert_close(block(x), after, atol=0, rtol=0)


def test_conv_without_bn_has_bias_and_fuse_is_noop():
    spec = conv_spec("[net]\nchannels=3\n[convolutional]\nfilters=255\nsize=1\nactivation=linear\n")
    block = ConvBlock(spec).eval()
    assert block.bn is None and block.conv.bias is not None
    n = sum(p.numel() for p in block.parameters())
    assert n == conv_param_count(spec) == conv_param_count(spec, fused=True) == 255 * 3 + 255
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        before = block(x)
        conv = block.conv
        block.fuse()
        assert block.conv is conv
        torch.testing.assert_close(block(x), before, atol=0, rtol=0)
        torch.testing.assert_close(before, F.conv2d(x, conv.weight, conv.bias))


def test_conv_output_geometry_matches_spec():
    from yolo.model.cfg_counts import layer_shapes

    spec_text = CONV_CFGS["3x3_stride2_leaky"]
    model_spec = parse_cfg_text(spec_text)
    block = ConvBlock(model_spec.layers[0]).eval()
    with torch.no_grad():
        y = block(torch.randn(1, 4, 13, 10))
    assert tuple(y.shape[1:]) == layer_shapes(model_spec, 13, 10)[0]


# ============================================================================ Route and Shortcut

ROUTE_CFG = """[net]
channels=3
[convolutional]
filters=8
[convolutional]
filters=4
[route]
layers=-1,-2
groups=2
group_id={gid}
[route]
layers=-2,-3
"""


@pytest.mark.parametrize("gid", [0, 1])
def test_route_groups_chunking(gid):
    spec = parse_cfg_text(ROUTE_CFG.format(gid=gid))
    grouped, plain = spec.layers[2], spec.layers[3]
    assert isinstance(grouped, RouteSpec) and grouped.sources == (1, 0) and grouped.out_channels == 6
    x1, x0 = torch.randn(2, 4, 5, 7), torch.randn(2, 8, 5, 7)
    got = Route(grouped)([x1, x0])
    # channel group gid of each source: 4 channels -> 2 per group, 8 channels -> 4 per group
    want = torch.cat([x1[:, 2 * gid:2 * gid + 2], x0[:, 4 * gid:4 * gid + 4]], dim=1)
    assert got.shape[1] == grouped.out_channels
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    # groups=1: plain concatenation in the order of `layers`
    got = Route(plain)([x1, x0])
    assert plain.sources == (1, 0) and got.shape[1] == plain.out_channels == 12
    torch.testing.assert_close(got, torch.cat([x1, x0], dim=1), atol=0, rtol=0)


def test_route_single_source_and_split():
    spec = parse_cfg_text("[net]\n[convolutional]\nfilters=6\n[route]\nlayers=-1\n[route]\nlayers=-2\ngroups=3\n"
                          "group_id=2\n")
    x = torch.randn(1, 6, 3, 3)
    torch.testing.assert_close(Route(spec.layers[1])([x]), x, atol=0, rtol=0)
    got = Route(spec.layers[2])([x])
    assert got.shape[1] == spec.layers[2].out_channels == 2
    torch.testing.assert_close(got, x[:, 4:6], atol=0, rtol=0)


@pytest.mark.parametrize("activation", ["linear", "leaky", "relu", "logistic", "mish", "swish"])
def test_shortcut_sum_and_activation(activation):
    spec = parse_cfg_text(f"[net]\n[convolutional]\nfilters=4\n[convolutional]\nfilters=4\n[shortcut]\nfrom=-2\n"
                          f"activation={activation}\n").layers[2]
    assert isinstance(spec, ShortcutSpec) and spec.activation == activation
    x, other = torch.randn(2, 4, 5, 6), torch.randn(2, 4, 5, 6)
    x_copy, other_copy = x.clone(), other.clone()
    got = Shortcut(spec.activation)(x, other)
    s = x_copy + other_copy
    want = {
        "linear": s,
        "leaky": torch.where(s > 0, s, 0.1 * s),
        "relu": s.clamp(min=0),
        "logistic": 1 / (1 + torch.exp(-s)),
        "mish": s * torch.tanh(torch.log1p(torch.exp(s))),
        "swish": s / (1 + torch.exp(-s)),
    }[activation]
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    # in-place activations must not clobber the inputs (they may be kept for later routes)
    torch.testing.assert_close(x, x_copy, atol=0, rtol=0)
    torch.testing.assert_close(other, other_copy, atol=0, rtol=0)
