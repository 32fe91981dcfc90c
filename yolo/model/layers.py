"""The torch modules darknet layers turn into: conv blocks, activations, darknet's pools, route, shortcut,
scale_channels. Formulas follow AlexeyAB's darknet (src/activations.h, src/*_layer.c)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yolo.model.cfg_specs import ConvSpec, MaxPoolSpec, RouteSpec


class DarknetSELU(nn.Module):
    """Darknet's selu, with its rounded constants: ``1.0507 x`` for x >= 0, else ``1.0507 * 1.6732 (e^x - 1)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, 1.0507 * x, (1.0507 * 1.6732) * torch.expm1(x))


class DarknetGELU(nn.Module):
    """Darknet's gelu (tanh form, its constants): ``0.5 x (1 + tanh(0.797885 x + 0.035677 x^3))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1 + torch.tanh(0.797885 * x + 0.035677 * x * x * x))


class Loggy(nn.Module):
    """Darknet's loggy: ``2 / (1 + e^-x) - 1``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * torch.sigmoid(x) - 1


# mish: x * tanh(softplus(x)), softplus linear above 20 (torch's Mish and darknet's MISH_THRESHOLD agree);
# swish: x * sigmoid(x); relu6 is darknet's GPU formula (its CPU activate() has no relu6 case and returns 0).
ACTIVATION_MODULES = {
    "leaky": lambda: nn.LeakyReLU(0.1, inplace=True),
    "linear": nn.Identity,
    "relu": lambda: nn.ReLU(inplace=True),
    "mish": nn.Mish,
    "swish": nn.SiLU,
    "logistic": nn.Sigmoid,
    "relu6": nn.ReLU6,
    "elu": nn.ELU,
    "selu": DarknetSELU,
    "gelu": DarknetGELU,
    "tanh": nn.Tanh,
    "hardtan": nn.Hardtanh,
    "relie": lambda: nn.LeakyReLU(0.01, inplace=True),
    "loggy": Loggy,
}


def make_activation(name: str) -> nn.Module:
    """Darknet activation names (``cfg_specs.ACTIVATIONS``) -> modules (leaky uses darknet's slope 0.1)."""
    return ACTIVATION_MODULES[name]()


def uninitialized_conv(*args, device: torch.device | str = "cpu", dtype: torch.dtype | None = None, **kwargs
                       ) -> nn.Conv2d:
    """``nn.Conv2d(*args, **kwargs)`` with uninitialized weight and bias, for tensors that are overwritten next:
    built on the meta device, then given empty tensors (random init costs start-up time; ``nn.utils.skip_init``
    would import torch's Python reference ops, seconds more)."""
    conv = nn.Conv2d(*args, device="meta", **kwargs)
    conv.weight = nn.Parameter(torch.empty(conv.weight.shape, device=device, dtype=dtype))
    if conv.bias is not None:
        conv.bias = nn.Parameter(torch.empty(conv.bias.shape, device=device, dtype=dtype))
    return conv


class ConvBlock(nn.Module):
    """``[convolutional]``: conv (bias-free when followed by BN) + optional BN + activation.

    ``[B, C_in, H, W] -> [B, filters, H', W']``. Parameter names: ``conv.weight``, ``conv.bias`` (no BN),
    ``bn.weight/bias/running_mean/running_var``.
    """

    def __init__(self, spec: ConvSpec, bn_eps: float = 1e-5, bn_momentum: float = 0.03, init: bool = True):
        super().__init__()
        # init=False: the conv's tensors are left uninitialized (a checkpoint overwrites them next; random init
        # costs start-up time)
        make = nn.Conv2d if init else uninitialized_conv
        self.conv = make(spec.in_channels, spec.filters, spec.size, spec.stride, spec.padding,
                         groups=spec.groups, bias=not spec.batch_normalize)
        self.bn = nn.BatchNorm2d(spec.filters, eps=bn_eps, momentum=bn_momentum) if spec.batch_normalize else None
        self.act = make_activation(spec.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold BN into the conv (inference only): ``w' = w * g / sqrt(v + eps)``, ``b' = beta - m * g / sqrt(v + eps)``."""
        if self.bn is None:
            return
        bn, conv = self.bn, self.conv
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # [filters]
        fused = uninitialized_conv(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                   groups=conv.groups, bias=True, device=conv.weight.device, dtype=conv.weight.dtype)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        self.conv, self.bn = fused, None


class MaxPoolDarknet(nn.Module):
    """``[maxpool]`` with darknet's geometry: ``out = (n + padding - size) // stride + 1``.

    Darknet pads ``padding // 2`` on the left/top and the rest on the right/bottom, with -inf, so the
    size-2 stride-1 pool of yolov3-tiny keeps the map size and looks right and down.
    """

    def __init__(self, spec: MaxPoolSpec):
        super().__init__()
        self.size, self.stride, self.padding = spec.size, spec.stride, spec.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, C, H', W']
        h, w = x.shape[-2:]
        left = self.padding // 2
        out_h = (h + self.padding - self.size) // self.stride + 1
        out_w = (w + self.padding - self.size) // self.stride + 1
        right = (out_w - 1) * self.stride + self.size - w - left
        bottom = (out_h - 1) * self.stride + self.size - h - left
        if left or right > 0 or bottom > 0:
            x = F.pad(x, (left, max(right, 0), left, max(bottom, 0)), value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


class Route(nn.Module):
    """``[route]``: concatenate source maps along channels, optionally keeping one channel group of each."""

    def __init__(self, spec: RouteSpec):
        super().__init__()
        self.groups, self.group_id = spec.groups, spec.group_id

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:  # each [B, C_i, H, W] -> [B, sum C_i / groups, H, W]
        if self.groups > 1:
            xs = [x.chunk(self.groups, dim=1)[self.group_id] for x in xs]
        return xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)


class Shortcut(nn.Module):
    """``[shortcut]``: residual sum of the previous layer and an earlier one, then an activation.

    When the channel counts differ (yolov3-tiny-prn), darknet adds over the channels both have and the output
    keeps the previous layer's channels: ``out[:k] = x[:k] + other[:k]`` with ``k = min(C_x, C_other)``,
    ``out[k:] = x[k:]``.
    """

    def __init__(self, activation: str):
        super().__init__()
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:  # [B,C,H,W], [B,C',H,W] -> [B,C,H,W]
        c, c_other = x.shape[1], other.shape[1]
        if c_other == c:
            return self.act(x + other)
        if c_other > c:
            return self.act(x + other[:, :c])
        return self.act(torch.cat((x[:, :c_other] + other, x[:, c_other:]), dim=1))


class GlobalAvgPool(nn.Module):
    """``[avgpool]``: darknet's global mean over each channel, ``[B, C, H, W] -> [B, C, 1, 1]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


class ScaleChannels(nn.Module):
    """``[scale_channels]``: ``out[b, c, y, x] = scale[b, c] * other[b, c, y, x]``, then an activation."""

    def __init__(self, activation: str):
        super().__init__()
        self.act = make_activation(activation)

    def forward(self, scale: torch.Tensor, other: torch.Tensor) -> torch.Tensor:  # [B, C, 1, 1], [B, C, H, W]
        return self.act(scale * other)
