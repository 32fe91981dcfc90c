"""The C matrix product (yolo.model.gemm_native) and the convs built on it (yolo.model.native_conv), against
torch's matmul and F.conv2d: every tail of the 6x16 micro-tile, K past one block, taps grouped and split,
strides and padding, thread counts; the Winograd products; the fallbacks."""

from __future__ import annotations

import copy
import warnings
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.helpers import ROOT, fake_compiler
from yolo.model import gemm_native, winograd
from yolo.model.cfg_specs import ConvSpec
from yolo.model.darknet import Darknet
from yolo.model.inference import prepare_for_inference
from yolo.model.layers import ConvBlock
from yolo.model.native_conv import NativeConv2d, use_native_convs
from yolo.model.winograd import WinogradConv2d
from yolo.utils import native

HAVE_CC = native.find_compiler() is not None
pytestmark = pytest.mark.skipif(not HAVE_CC, reason="no C compiler: the PyTorch path is tested elsewhere")


@pytest.fixture(scope="module")
def lib():
    lib = gemm_native.checked_library()
    assert lib is not None, "a C compiler was found but the product was not built or disagreed"
    return lib


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize("g,m,k,n", [(1, 1, 1, 1), (1, 5, 7, 15), (2, 6, 256, 16), (3, 7, 257, 17),
                                     (1, 97, 600, 255), (2, 193, 64, 33), (36, 49, 128, 40)])
def test_bmm_equals_torch(lib, g, m, k, n):
    gen = torch.Generator().manual_seed(m * 1000 + n)
    a, b = torch.randn(g, m, k, generator=gen), torch.randn(g, k, n, generator=gen)
    out = torch.full((g, m, n), float("nan"))
    gemm_native.bmm(lib, a, gemm_native.pack(b), out, 2)
    assert _rel(out, torch.bmm(a.double(), b.double()).float()) < 2e-6


def test_bmm_reads_rows_with_a_stride(lib):
    """``a`` may be a column slice of a wider matrix (rows further apart than K)."""
    wide, b = torch.randn(2, 20, 50), torch.randn(2, 30, 9)
    a = wide[:, :, 5:35]
    out = torch.empty(2, 20, 9)
    gemm_native.bmm(lib, a, gemm_native.pack(b), out, 2)
    assert torch.allclose(out, a @ b, rtol=1e-5, atol=1e-5)


def test_pack_round_trip_and_padding():
    b = torch.randn(3, 11, 21)
    packed = gemm_native.pack(b)
    assert packed.shape == (3, 2, 11, 16) and torch.equal(gemm_native.unpack(packed, 21), b)
    assert packed[:, 1, :, 5:].abs().sum() == 0  # the last panel's missing columns are zeros


@pytest.mark.parametrize("b,c,h,w,co,k,s,p", [(2, 5, 7, 9, 21, 3, 2, 1), (1, 3, 11, 10, 8, 3, 1, 1),
                                              (1, 300, 6, 5, 17, 3, 1, 1), (2, 40, 8, 8, 33, 1, 1, 0),
                                              (1, 8, 9, 9, 7, 1, 2, 0), (1, 20, 9, 9, 7, 5, 1, 2),
                                              (1, 64, 13, 13, 255, 1, 1, 0), (3, 32, 12, 12, 64, 3, 2, 1)])
@pytest.mark.parametrize("leaky", [None, 0.1])
def test_conv_equals_conv2d(lib, b, c, h, w, co, k, s, p, leaky):  # (the other activations: below)
    """Implicit GEMM: taps grouped in one block (few channels) or channels split in blocks (300 > 256), every
    stride/padding the darknet cfgs use, the bias and the leaky ReLU fused."""
    gen = torch.Generator().manual_seed(c * 100 + co)
    x, wt, bias = (torch.randn(b, c, h, w, generator=gen), torch.randn(co, c, k, k, generator=gen),
                   torch.randn(co, generator=gen))
    want = F.conv2d(x.double(), wt.double(), bias.double(), s, p)
    want = (want if leaky is None else F.leaky_relu(want, leaky)).float().permute(0, 2, 3, 1)
    out = torch.full(want.shape, float("nan"))
    gemm_native.conv(lib, x.permute(0, 2, 3, 1).contiguous(), gemm_native.pack_conv_weight(wt), bias, out,
                     (k, k), s, p, leaky, 2)
    assert _rel(out, want) < 2e-6


@pytest.mark.parametrize("threads", [1, 3, 5])
def test_results_do_not_depend_on_the_thread_count(lib, threads):
    """Each output element is summed by one worker in one order: bit-identical for any thread count."""
    x, wt, bias = torch.randn(2, 7, 7, 130), torch.randn(70, 130, 3, 3), torch.randn(70)
    packed = gemm_native.pack_conv_weight(wt)
    one, many = torch.empty(2, 4, 4, 70), torch.empty(2, 4, 4, 70)
    gemm_native.conv(lib, x, packed, bias, one, (3, 3), 2, 1, 0.1, 1)
    gemm_native.conv(lib, x, packed, bias, many, (3, 3), 2, 1, 0.1, threads)
    assert torch.equal(one, many)


def test_bad_shapes_raise(lib):
    x, packed = torch.randn(1, 5, 5, 8), gemm_native.pack_conv_weight(torch.randn(4, 8, 3, 3))
    with pytest.raises(ValueError, match="conv: x"):
        gemm_native.conv(lib, x, packed[:, :, :40], None, torch.empty(1, 5, 5, 4), (3, 3), 1, 1, None, 2)
    with pytest.raises(ValueError, match="bmm"):
        gemm_native.bmm(lib, torch.randn(2, 3, 4), gemm_native.pack(torch.randn(2, 5, 6)), torch.empty(2, 3, 6), 2)


def _block(c_in: int, c_out: int, k: int, s: int, groups: int = 1) -> ConvBlock:
    """A BN-free (as if folded) darknet conv block with a leaky ReLU."""
    return ConvBlock(ConvSpec(index=0, line=1, in_channels=c_in, filters=c_out, size=k, stride=s, padding=k // 2,
                              groups=groups, batch_normalize=False, activation="leaky"))


def test_native_conv_module_equals_conv_and_leaky(lib):
    conv = nn.Conv2d(128, 40, 3, 2, 1)
    module = NativeConv2d(conv, act=0.1)
    assert torch.equal(module.weight(), conv.weight.detach())
    x = torch.randn(2, 128, 15, 11)
    with torch.inference_mode():
        want = F.leaky_relu(conv(x), 0.1)
        for fmt in (torch.contiguous_format, torch.channels_last):
            got = module(x.contiguous(memory_format=fmt))
            assert got.is_contiguous(memory_format=torch.channels_last)
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
        # another dtype (or no kernel): F.conv2d with the weight unpacked again
        assert torch.allclose(module(x.double()), F.leaky_relu(conv.double()(x.double()), 0.1), atol=1e-10)
        with mock.patch.object(gemm_native, "checked_library", lambda: None):
            assert torch.allclose(module(x), want, rtol=1e-5, atol=1e-5)


def test_use_native_convs_swaps_wide_convs_and_moves_the_activation(lib):
    model = nn.Sequential(_block(128, 64, 1, 1), _block(64, 128, 3, 2), _block(128, 256, 3, 2),
                          _block(256, 128, 3, 1, groups=2))
    x = torch.randn(1, 128, 9, 9)
    with torch.inference_mode():
        want = model[3](model[2](model[1](model[0](x))))
    assert use_native_convs(model) == 2  # the 64-input conv and the grouped conv stay with oneDNN
    assert isinstance(model[0].conv, NativeConv2d) and isinstance(model[0].act, nn.Identity)
    assert type(model[1].conv) is nn.Conv2d and isinstance(model[1].act, nn.LeakyReLU)
    assert type(model[3].conv) is nn.Conv2d
    with torch.inference_mode():
        assert torch.allclose(model(x), want, rtol=1e-5, atol=1e-5)
    with mock.patch.object(gemm_native, "checked_library", lambda: None):
        assert use_native_convs(nn.Sequential(_block(128, 64, 1, 1))) == 0  # no kernel: nothing swapped


def test_winograd_products_equal_the_torch_products(lib):
    """The packed U and the native product give what torch.bmm gives; a layer that first ran float32 (U packed)
    and is then made float64 (the torch path) unpacks its U and stays exact."""
    conv = nn.Conv2d(72, 40, 3, 1, 1)
    x = torch.randn(2, 72, 13, 17)
    with torch.inference_mode():
        native_layer = WinogradConv2d(conv)
        got = native_layer(x)
        assert all(native_layer.packed[m] for m in native_layer.tiles)
        with mock.patch.object(gemm_native, "checked_library", lambda: None):
            torch_layer = WinogradConv2d(conv)
            want = torch_layer(x)
        assert not any(torch_layer.packed.values())
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
        assert torch.allclose(got, conv(x), rtol=1e-4, atol=1e-4)
        as_double = native_layer.double()(x.double())  # float64: the torch path, U unpacked again
        assert not native_layer.packed[winograd.tile_size(2, 13, 17)]
        assert torch.allclose(as_double, conv.double()(x.double()), rtol=1e-5, atol=1e-5)  # U made in float32


def test_prepared_model_equals_the_unprepared_one(lib):
    """yolov3-tiny prepared with the native convs and products: each head within 1e-5 of the plain model."""
    torch.manual_seed(0)
    model = Darknet.from_cfg(ROOT / "cfg" / "yolov3-tiny.cfg").eval()
    plain = copy.deepcopy(model)
    prepared, memory_format, count = prepare_for_inference(model, torch.device("cpu"), torch.float32)
    kinds = {type(m).__name__ for m in prepared.modules()}
    assert count > 0 and {"WinogradConv2d", "NativeConv2d"} <= kinds
    x = torch.rand(2, 3, 224, 192)
    with torch.inference_mode():
        for got, want in zip(prepared(x.contiguous(memory_format=memory_format)), plain(x)):
            assert _rel(got, want) < 1e-5


def test_disagreeing_kernel_is_not_used():
    native.forget_loaded()
    try:
        with mock.patch.object(gemm_native, "_agrees", lambda lib: False), warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            assert gemm_native.checked_library() is None
        assert any("disagrees" in str(x.message) for x in w)
    finally:
        native.forget_loaded()
    assert gemm_native.checked_library() is not None



def test_threads_variant_without_openmp(fresh_native, monkeypatch, tmp_path):
    """A compiler that refuses -fopenmp (Apple's clang): POSIX threads split the units, each worker with its
    own packed-rows buffer; results bit-identical to one thread."""
    monkeypatch.setenv("CC", str(fake_compiler(tmp_path, refuse_openmp=True)))
    lib = gemm_native.checked_library()
    assert lib is not None
    (path,) = fresh_native.glob("gemm-*.so")
    assert b"GOMP_parallel" not in path.read_bytes()
    x, wt, bias = torch.randn(2, 9, 9, 40), torch.randn(300, 40, 3, 3), torch.randn(300)
    packed = gemm_native.pack_conv_weight(wt)
    outs = []
    for threads in (1, 4):
        outs.append(torch.empty(2, 9, 9, 300))
        gemm_native.conv(lib, x, packed, bias, outs[-1], (3, 3), 1, 1, None, threads)
    assert torch.equal(outs[0], outs[1])
    want = F.conv2d(x.permute(0, 3, 1, 2), wt, bias, 1, 1).permute(0, 2, 3, 1)
    assert torch.allclose(outs[0], want, rtol=1e-4, atol=1e-4)


def test_failed_build_falls_back_to_onednn(fresh_native, monkeypatch, tmp_path):
    """No kernel (here a compiler that fails): nothing swapped, one warning, the prepared model still exact."""
    monkeypatch.setenv("CC", str(fake_compiler(tmp_path, refuse_openmp=False)))
    with pytest.warns(RuntimeWarning, match=r"native kernels 'gemm' not built .*exited 3"):
        assert gemm_native.checked_library() is None
    assert not list(fresh_native.glob("*.so"))
    model = nn.Sequential(_block(128, 64, 1, 1))
    assert use_native_convs(model) == 0 and type(model[0].conv) is nn.Conv2d


ACTS = {"mish": F.mish, "swish": F.silu, "logistic": torch.sigmoid}


@pytest.mark.parametrize("act", sorted(ACTS))
def test_activations_equal_torch_over_the_whole_float_range(lib, act):
    """The kernels' e^x (range reduction and a polynomial) and the activations on it: PyTorch's own functions
    over [-100, 100] (past the clamps), at 0 and at extremes, within 1e-5 relative / 1e-6 absolute."""
    v = torch.cat((torch.linspace(-100, 100, 20001), torch.tensor([0.0, -0.0, 1e-30, -1e-30, 3e38, -3e38]),
                   torch.randn(1003, generator=torch.Generator().manual_seed(1)) * 5))
    got = v.clone()
    gemm_native.activate(lib, got, act, 3)
    want = ACTS[act](v.double()).float()
    assert torch.isfinite(got).all()
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), (got - want).abs().max()


@pytest.mark.parametrize("act", sorted(ACTS))
def test_conv_fuses_mish_swish_logistic(lib, act):
    gen = torch.Generator().manual_seed(7)
    x, wt, bias = torch.randn(2, 130, 9, 7, generator=gen), torch.randn(40, 130, 3, 3, generator=gen) * 0.1, \
        torch.randn(40, generator=gen)
    want = ACTS[act](F.conv2d(x.double(), wt.double(), bias.double(), 2, 1)).float().permute(0, 2, 3, 1)
    out = torch.empty(want.shape)
    gemm_native.conv(lib, x.permute(0, 2, 3, 1).contiguous(), gemm_native.pack_conv_weight(wt), bias, out,
                     (3, 3), 2, 1, act, 2)
    assert torch.allclose(out, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["mish", "swish", "logistic"])
def test_native_activation_after_onednn_convs(lib, activation):
    """A conv that stays with oneDNN (few inputs) keeps its block's activation as one in-place C pass; the
    model gives what PyTorch's modules give, and another dtype runs PyTorch's function."""
    from yolo.model.native_conv import NativeActivation, use_native_activations

    block = ConvBlock(ConvSpec(index=0, line=1, in_channels=16, filters=24, size=3, stride=1, padding=1,
                               batch_normalize=False, activation=activation))
    x = torch.randn(2, 16, 11, 13)
    with torch.inference_mode():
        want = block(x)
        assert use_native_activations(block) == 1 and isinstance(block.act, NativeActivation)
        for fmt in (torch.contiguous_format, torch.channels_last):
            assert torch.allclose(block(x.contiguous(memory_format=fmt)), want, rtol=1e-5, atol=1e-6)
        assert torch.allclose(block.double()(x.double()), want.double(), rtol=1e-5, atol=1e-6)
    leaky = _block(16, 24, 3, 1)
    assert use_native_activations(leaky) == 0 and isinstance(leaky.act, nn.LeakyReLU)  # PyTorch's is fast


def test_only_float32_cpu_models_are_swapped(lib):
    """A model in another dtype (or on a GPU) keeps its convs and activations: the kernels are float32 CPU."""
    from yolo.model.native_conv import use_native_activations

    model = nn.Sequential(_block(128, 64, 1, 1), ConvBlock(ConvSpec(
        index=1, line=1, in_channels=64, filters=8, size=3, stride=1, padding=1, activation="mish"))).double()
    assert use_native_convs(model) == 0 and use_native_activations(model) == 0
    assert type(model[0].conv) is nn.Conv2d and type(model[1].act) is nn.Mish


@pytest.mark.parametrize("c,h,w,size,stride,pad", [(16, 20, 20, 2, 2, 1), (13, 9, 11, 2, 2, 1), (13, 9, 11, 2, 2, 0),
                                                   (20, 13, 13, 2, 1, 1), (9, 13, 13, 5, 1, 4), (9, 13, 13, 13, 1, 12),
                                                   (3, 7, 8, 3, 2, 1)])
def test_native_maxpool_equals_darknet_pool(lib, c, h, w, size, stride, pad):
    """Darknet's geometry (left pad = padding // 2, the rest right/bottom, -inf): bit-equal to MaxPoolDarknet
    on odd sizes, stride 1 and 2, SPP's big windows; channels-last out; float64 falls back to it."""
    from yolo.model.cfg_specs import MaxPoolSpec
    from yolo.model.layers import MaxPoolDarknet
    from yolo.model.native_conv import NativeMaxPool, use_native_pools

    spec = MaxPoolSpec(index=0, line=1, size=size, stride=stride, padding=pad)
    model = nn.Sequential(MaxPoolDarknet(spec))
    x = torch.randn(2, c, h, w)
    with torch.inference_mode():
        want = model(x)
        assert use_native_pools(model) == 1 and isinstance(model[0], NativeMaxPool)
        for fmt in (torch.contiguous_format, torch.channels_last):
            got = model(x.contiguous(memory_format=fmt))
            assert torch.equal(got, want) and got.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(model(x.double()), want.double())
