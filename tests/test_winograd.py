"""Winograd 3x3 convolution against torch's direct convolution (``F.conv2d``), in float64 (where the algorithm
is exact up to rounding) and float32 (the accuracy inference gets), for both tile sizes, odd and non-square
maps, batches, with and without bias; and the whole detector with it on and off."""

from __future__ import annotations

import threading
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.helpers import CFG, calibrated_model, photo_batch
from yolo.model import winograd
from yolo.model.winograd import WinogradConv2d, eligible, use_winograd

SHAPES = [(1, 8, 16, 13, 13), (2, 16, 8, 26, 20), (1, 4, 12, 7, 5), (3, 8, 8, 4, 4), (1, 5, 3, 1, 1), (1, 8, 8, 2, 9)]


def _conv(c_in: int, c_out: int, bias: bool, dtype: torch.dtype, seed: int = 0) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias).to(dtype)


def _winograd(conv: nn.Conv2d, m: int, x: torch.Tensor) -> torch.Tensor:
    """Run ``conv`` through WinogradConv2d with tile size ``m`` forced."""
    module = WinogradConv2d(conv)
    with mock.patch.object(winograd, "tile_size", lambda b, h, w: m), torch.inference_mode():
        out = module(x)
    assert module.tiles == (m,)
    return out


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("b,c_in,c_out,h,w", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_float64_equals_direct_conv(m, b, c_in, c_out, h, w, bias):
    conv = _conv(c_in, c_out, bias, torch.float64)
    x = torch.randn(b, c_in, h, w, dtype=torch.float64)
    out = _winograd(conv, m, x)
    ref = F.conv2d(x, conv.weight, conv.bias, padding=1)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, rtol=0, atol=1e-10 * ref.abs().max().item())


@pytest.mark.parametrize("m", [2, 4])
def test_float32_accuracy_and_channels_last(m):
    conv = _conv(128, 64, True, torch.float32)
    x = torch.randn(2, 128, 26, 26).contiguous(memory_format=torch.channels_last)
    out = _winograd(conv, m, x)
    ref = F.conv2d(x, conv.weight, conv.bias, padding=1)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert ((out - ref).abs().max() / ref.abs().max()).item() < 1e-5


def test_tile_size_chosen_per_input_shape():
    """Batch 1 at 13x13 has 16 tiles of 4x4 (F(2x2)), batch 8 has 128 (F(4x4)); a layer that saw one shape first
    gives, for the other, exactly what a fresh layer gives (the choice is per call, not fixed by the first)."""
    conv = _conv(8, 8, True, torch.float32)
    small, large = torch.randn(1, 8, 13, 13), torch.randn(8, 8, 13, 13)
    assert (winograd.tile_size(1, 13, 13), winograd.tile_size(8, 13, 13), winograd.tile_size(1, 52, 52)) == (2, 4, 4)
    first_small, first_large = WinogradConv2d(conv), WinogradConv2d(conv)
    with torch.inference_mode():
        fresh_small, fresh_large = WinogradConv2d(conv)(small), WinogradConv2d(conv)(large)
        assert first_small(small) is not None and first_small.tiles == (2,) and first_small.weight is not None
        assert first_large(large) is not None and first_large.tiles == (4,)
        assert torch.equal(first_small(large), fresh_large) and torch.equal(first_large(small), fresh_small)
    assert first_small.tiles == (4, 2) and first_small.weight is None  # both U made: the weight is dropped
    assert first_small.transformed_weight(2).shape == (16, 8, 8) and first_small.transformed_weight(4).shape == (36, 8, 8)
    ref = F.conv2d(large, conv.weight, conv.bias, padding=1)
    assert (fresh_large - ref).abs().max() < 1e-5 * ref.abs().max()


def test_only_eligible_convs_are_swapped():
    assert eligible(nn.Conv2d(4, 4, 3, 1, 1))
    for conv in (nn.Conv2d(4, 4, 3, 2, 1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, 1, 1, groups=2),
                 nn.Conv2d(4, 4, 3, 1, 2, dilation=2), nn.Conv2d(4, 4, 3, 1, 0)):
        assert not eligible(conv)
        with pytest.raises(ValueError):
            WinogradConv2d(conv)


def test_backend_with_and_without_winograd_agree():
    """yolov3-tiny has 3x3 convs with 128..512 inputs at 20x16 and 10x8 (for a 320x256 image): F(4,3) and F(2,3)."""
    from yolo.detect.predictor import Detector
    from yolo.runtime.backends import TorchBackend

    model = calibrated_model(CFG / "yolov3-tiny.cfg", seed=1)
    fast, exact = TorchBackend(model), TorchBackend(calibrated_model(CFG / "yolov3-tiny.cfg", seed=1), winograd=False)
    assert fast.winograd == sum(isinstance(m, WinogradConv2d) for m in fast.model.modules()) > 0
    assert exact.winograd == 0
    x = photo_batch(256, 320, n=2)
    a, b = fast(x), exact(x)
    assert {m.tiles for m in fast.model.modules() if isinstance(m, WinogradConv2d)} == {(2,), (4,)}
    assert ((a - b).abs().amax((0, 1)) / b.abs().amax((0, 1)) < 1e-4).all()
    images = [(img.permute(1, 2, 0).numpy()[..., ::-1] * 255).round().astype("uint8") for img in x]
    det_a = Detector(fast, img_size=(256, 320), conf=0.1)(images)
    det_b = Detector(exact, img_size=(256, 320), conf=0.1)(images)
    assert sum(len(d) for d in det_b) > 0
    for da, db in zip(det_a, det_b):
        assert torch.equal(da.classes, db.classes)
        assert torch.allclose(da.boxes, db.boxes, atol=1e-2)


def test_use_winograd_swaps_conv_attributes():
    holder = nn.Module()
    holder.conv = nn.Conv2d(16, 16, 3, 1, 1)
    holder.small = nn.Module()
    holder.small.conv = nn.Conv2d(8, 16, 3, 1, 1)
    assert use_winograd(holder, min_channels=16) == 1
    assert isinstance(holder.conv, WinogradConv2d) and isinstance(holder.small.conv, nn.Conv2d)


def test_threads_share_a_model():
    """The workspace is per thread: two threads running one module at once each get their own result."""
    conv = _conv(16, 16, True, torch.float32, seed=3)
    module = WinogradConv2d(conv)
    xs = [torch.randn(1, 16, 40, 40), torch.randn(1, 16, 40, 40)]
    refs = [F.conv2d(x, conv.weight, conv.bias, padding=1) for x in xs]
    outs: list = [None, None]

    def work(i: int) -> None:
        with torch.inference_mode():
            for _ in range(20):
                outs[i] = module(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for out, ref in zip(outs, refs):
        assert (out - ref).abs().max() < 1e-4 * ref.abs().max()


def test_copy_and_pickle():
    """A swapped model can still be deep-copied and pickled (the workspace starts empty again)."""
    import copy
    import pickle

    conv = _conv(8, 8, True, torch.float32)
    x = torch.randn(1, 8, 12, 12)
    module = WinogradConv2d(conv)
    ref = F.conv2d(x, conv.weight, conv.bias, padding=1)
    with torch.inference_mode():
        for clone in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
            assert (clone(x) - ref).abs().max() < 1e-4 * ref.abs().max()
