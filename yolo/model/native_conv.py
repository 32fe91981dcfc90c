"""The convs that Winograd does not take (1x1, strided, few input channels) as implicit matrix products in C
(:mod:`yolo.model.gemm_native`) for float32 inference on CPU, with the block's activation fused; and the
activations that stay outside oneDNN's convs (mish, swish, logistic) as one in-place C pass
(:class:`NativeActivation`; PyTorch's mish is 7x slower than its leaky ReLU); and darknet's max-pool
(:class:`NativeMaxPool`).

On a 2-core AVX2 EPYC, against oneDNN's direct conv plus its separate leaky ReLU (yolov3 at 416, batch 1):
the 1x1 convs with 128 to 1024 inputs take 0.46-0.96x the time, the stride-2 3x3 convs with 128 or more
inputs 0.66-0.99x; with fewer input channels oneDNN stays faster, so those are left to it
(:func:`use_native_convs`' ``min_channels``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yolo.model import gemm_native
from yolo.model.layers import MaxPoolDarknet
from yolo.model.winograd import activation_name, apply_activation, fusable_activation
from yolo.utils.native import Activation


def eligible(conv: nn.Conv2d) -> bool:
    """An ungrouped, undilated conv with zero padding, square kernel stride and padding (what the kernel
    computes)."""
    return (conv.groups == 1 and conv.dilation == (1, 1) and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple) and conv.padding[0] == conv.padding[1]
            and conv.stride[0] == conv.stride[1])


class NativeConv2d(nn.Module):
    """Inference-only drop-in for an eligible ``nn.Conv2d``: ``[B, C_in, H, W] -> [B, C_out, Ho, Wo]``
    channels-last (+ bias, then the activation ``act``: a leaky ReLU's slope, "mish", "swish", "logistic" or
    None).

    Holds only the packed weight ``[1, ceil(C_out/16), kh*kw*C_in, 16]`` (non-persistent: the model's state
    dict keeps its conv's names and is never changed by this module). A float32 CPU input runs the C kernel;
    any other input (or no kernel) runs ``F.conv2d`` with the weight unpacked again.
    """

    def __init__(self, conv: nn.Conv2d, act: Activation = None):
        super().__init__()
        if not eligible(conv):
            raise ValueError(f"no native kernel for {conv}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride, self.padding = conv.kernel_size, conv.stride[0], conv.padding[0]
        self.act = act
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.register_buffer("packed", gemm_native.pack_conv_weight(conv.weight), persistent=False)
        self.register_buffer("bias", bias.to(conv.weight.device, torch.float32), persistent=False)

    def extra_repr(self) -> str:
        act = "" if self.act is None else f", {activation_name(self.act)} fused"
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, implicit GEMM{act}")

    def weight(self) -> torch.Tensor:
        """The conv's weight ``[C_out, C_in, kh, kw]``, unpacked."""
        kh, kw = self.kernel_size
        k = gemm_native.unpack(self.packed, self.out_channels)[0]  # [kh*kw*C_in, C_out]
        return k.reshape(kh, kw, self.in_channels, self.out_channels).permute(3, 2, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, H, W]`` (any memory format) -> ``[B, C_out, Ho, Wo]`` channels-last."""
        lib = gemm_native.checked_library() if x.dtype == torch.float32 and x.device.type == "cpu" else None
        if lib is None:
            y = F.conv2d(x, self.weight().to(x.dtype), self.bias.to(x.dtype), self.stride, self.padding)
            return apply_activation(y, self.act)
        b, _, h, w = x.shape
        (kh, kw), s, p = self.kernel_size, self.stride, self.padding
        out = torch.empty(b, (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1, self.out_channels)
        gemm_native.conv(lib, x.permute(0, 2, 3, 1).contiguous(), self.packed, self.bias, out, (kh, kw), s, p,
                         self.act, torch.get_num_threads())
        return out.permute(0, 3, 1, 2)  # [B, C_out, Ho, Wo] channels-last


def _cpu_float32(conv: nn.Conv2d) -> bool:
    """The kernels run float32 on CPU: a model on a GPU or in another dtype keeps its convs."""
    return conv.weight.device.type == "cpu" and conv.weight.dtype == torch.float32


def use_native_convs(model: nn.Module, min_channels: int = 128) -> int:
    """Swap the eligible ``nn.Conv2d`` with at least ``min_channels`` inputs in every ``.conv`` attribute of
    ``model``'s modules (the Winograd convs are left as they are) for :class:`NativeConv2d`; a conv block's
    activation moves into it (:func:`fusable_activation`). Nothing is swapped when the kernel is not built (no
    compiler, ``YOLO_NATIVE=0``). Returns how many were swapped. Inference only."""
    if gemm_native.checked_library() is None:
        return 0
    count = 0
    for module in list(model.modules()):  # a snapshot: the loop replaces children
        conv = getattr(module, "conv", None)
        if type(conv) is nn.Conv2d and eligible(conv) and conv.in_channels >= min_channels and _cpu_float32(conv):
            act = fusable_activation(module)
            module.conv = NativeConv2d(conv, act=act)
            if act is not None:
                module.act = nn.Identity()
            count += 1
    return count


class NativeActivation(nn.Module):
    """A conv block's mish / swish / logistic after a conv that stays with oneDNN, as one in-place C pass over
    a float32 CPU map (PyTorch's module otherwise): ``[B, C, H, W] -> [B, C, H, W]``, the same tensor."""

    def __init__(self, act: str):
        super().__init__()
        self.act = act

    def extra_repr(self) -> str:
        return self.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dense = x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
        lib = gemm_native.checked_library() if x.dtype == torch.float32 and x.device.type == "cpu" and dense else None
        if lib is None:
            return apply_activation(x, self.act)
        gemm_native.activate(lib, x, self.act, torch.get_num_threads())
        return x


def use_native_activations(model: nn.Module) -> int:
    """Swap the mish / swish / logistic of the conv blocks whose conv is still an ``nn.Conv2d`` (oneDNN; BN
    folded) for :class:`NativeActivation` (the conv's output is fresh, so in place is safe). Nothing is swapped
    when the kernel is not built. Returns how many were swapped. Inference only."""
    if gemm_native.checked_library() is None:
        return 0
    count = 0
    for module in list(model.modules()):
        act = fusable_activation(module)
        if isinstance(act, str) and type(getattr(module, "conv", None)) is nn.Conv2d and _cpu_float32(module.conv):
            module.act = NativeActivation(act)
            count += 1
    return count


class NativeMaxPool(nn.Module):
    """Darknet's ``[maxpool]`` (:class:`MaxPoolDarknet`'s geometry and its ``val > max`` rule) as one C pass
    over a float32 CPU map, without the padded copy: ``[B, C, H, W] -> [B, C, H', W']`` channels-last (2.2x
    faster on yolov3-tiny's first pool, 2.8x on SPP's 13x13 window); PyTorch's pool otherwise."""

    def __init__(self, pool: MaxPoolDarknet):
        super().__init__()
        self.pool = pool

    def extra_repr(self) -> str:
        return f"size={self.pool.size}, stride={self.pool.stride}, padding={self.pool.padding}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lib = gemm_native.checked_library() if x.dtype == torch.float32 and x.device.type == "cpu" else None
        if lib is None:
            return self.pool(x)
        b, c, h, w = x.shape
        size, stride, padding = self.pool.size, self.pool.stride, self.pool.padding
        out = torch.empty(b, (h + padding - size) // stride + 1, (w + padding - size) // stride + 1, c)
        gemm_native.maxpool(lib, x.permute(0, 2, 3, 1).contiguous(), out, size, stride, padding // 2,
                            torch.get_num_threads())
        return out.permute(0, 3, 1, 2)  # [B, C, H', W'] channels-last


def use_native_pools(model: nn.Module) -> int:
    """Swap every :class:`MaxPoolDarknet` child of ``model``'s modules for :class:`NativeMaxPool` (nothing when
    the kernel is not built). Returns how many were swapped. Inference only."""
    if gemm_native.checked_library() is None:
        return 0
    count = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is MaxPoolDarknet:
                setattr(module, name, NativeMaxPool(child))
                count += 1
    return count
