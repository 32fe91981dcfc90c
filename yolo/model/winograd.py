"""Winograd convolution for inference on CPU: 3x3 stride-1 convs with 4x (F(4x4, 3x3)) or 2.25x (F(2x2, 3x3),
for maps with few tiles) fewer multiplications.

Each 4x4 output tile is computed from a 6x6 input tile as ``Y = A^T [(G g G^T) * (B^T d B)] A`` (Lavin & Gray,
"Fast Algorithms for Convolutional Neural Networks", 2015; the points 0, +-1, +-2, inf). Written as three
matrix products so that MKL/oneDNN do the work:

- input transform: ``V = (B^T kron B^T) @ D``  ``[36, 36] @ [36, T*C]`` (T tiles of the padded input),
- 36 independent products: ``M[k] = V[k] @ U[k]``  ``[T, C] @ [C, C_out]``,
- output transform: ``Y = (A^T kron A^T) @ M``  ``[16, 36] @ [36, T*C_out]``.

The matrix products do 36 multiply-adds per tile and channel pair where a direct 3x3 conv does 16 x 9 = 144,
which is what pays for the transforms on layers with many channels. Accuracy: relative error about 1e-5 in
float32 (the transforms' coefficients reach 8 and 1/24). Buffers are reused across calls and layers through one
:class:`Workspace` (fresh multi-megabyte allocations would page-fault on every call).

The two transforms run as C kernels (:mod:`yolo.model.winograd_native`, built at first use) where a C compiler
is found, with the bias and the block's activation (leaky, mish, swish, logistic) fused into the output
transform; otherwise (or with
``YOLO_NATIVE=0``) as the PyTorch ops above. :func:`native_kernels` says which, after checking the kernels
against the PyTorch path once per process.
"""

from __future__ import annotations

import ctypes
import functools
import threading

import torch
import torch.nn.functional as F
from torch import nn

from yolo.model import gemm_native, winograd_native
from yolo.model.layers import ConvBlock
from yolo.utils.native import Activation, checked_library, forget_loaded

# (B^T, G, A^T) for F(4x4, 3x3) (points 0, +-1, +-2, inf) and F(2x2, 3x3) (points 0, +-1, inf).
_MATRICES = {
    4: (((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
         (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1)),
        ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
         (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1)),
        ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))),
    2: (((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
        ((1, 0, 0), (1 / 2, 1 / 2, 1 / 2), (1 / 2, -1 / 2, 1 / 2), (0, 0, 1)),
        ((1, 1, 1, 0), (0, 1, -1, -1))),
}
_PREPARE_LOCK = threading.Lock()  # the first calls of threads sharing a model must transform the weights once
TILE_SIZES = (4, 2)
MIN_TILES_F4 = 32  # fewer 4x4 tiles than this (batch 1 at 13x13: 16; 26x26: 49): F(2x2, 3x3), whose weights are 2.25x smaller


def transform_weight(weight: torch.Tensor, m: int = 4, packed: bool = False) -> torch.Tensor:
    """``[C_out, C_in, 3, 3]`` -> ``U [(m+2)^2, C_in, C_out]`` = ``G g G^T`` per channel pair, as one matrix
    product ``(G kron G) [(m+2)^2, 9] @ g [9, C_in*C_out]`` written straight into ``U`` (no strided copies:
    this runs at the first image, so it is start-up time). ``packed``: ``U`` in the native product's panels
    ``[(m+2)^2, ceil(C_out/16), C_in, 16]`` (:func:`yolo.model.gemm_native.pack`), made by the same one product
    from the weight reordered (the weight is 4x smaller than ``U``: reordering it is what costs nothing). In
    float32 (at least): each coefficient is a sum of 9 products, within about 1e-7 relative of the float64
    result."""
    dtype = torch.promote_types(weight.dtype, torch.float32)
    g = torch.tensor(_MATRICES[m][1], dtype=torch.float64)
    gg = torch.kron(g, g).to(weight.device, dtype)  # [(m+2)^2, 9]: G g G^T of a row-major flattened 3x3 kernel
    c_out, c_in = weight.shape[:2]
    a2, w = (m + 2) ** 2, weight.detach().to(dtype)
    if packed:
        panels = -(-c_out // gemm_native.NR)
        wp = torch.zeros(panels * gemm_native.NR, c_in, 9, dtype=dtype, device=weight.device)
        wp[:c_out] = w.reshape(c_out, c_in, 9)
        wt = wp.view(panels, gemm_native.NR, c_in, 9).permute(3, 0, 2, 1).reshape(9, -1)  # [9, P*C_in*16]
        u = torch.empty(a2, panels, c_in, gemm_native.NR, dtype=dtype, device=weight.device)
        torch.mm(gg, wt, out=u.view(a2, -1))
        return u
    wt = w.transpose(0, 1).contiguous().view(c_in * c_out, 9)  # [C_in*C_out, 9]
    u = torch.empty(a2, c_in, c_out, dtype=dtype, device=weight.device)
    torch.mm(gg, wt.T, out=u.view(a2, c_in * c_out))  # [(m+2)^2, C_in*C_out]
    return u.to(weight.dtype)


@functools.cache
def _kron_transforms(m: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``B^T kron B^T`` ``[(m+2)^2, (m+2)^2]`` and ``A^T kron A^T`` ``[m^2, (m+2)^2]`` (made once per tile size,
    dtype and device; never written to)."""
    bt, _, at = (torch.tensor(a, dtype=torch.float64) for a in _MATRICES[m])
    return torch.kron(bt, bt).to(device, dtype), torch.kron(at, at).to(device, dtype)


def native_kernels() -> ctypes.CDLL | None:
    """The C transform kernels (a ``ctypes.CDLL``) when built and found equal to the PyTorch path on a small
    awkward case (odd sizes, channels not a multiple of 8, both tile sizes), else None. Checked once per
    process; :func:`forget_native` checks again (tests)."""
    return checked_library(winograd_native.NAME, winograd_native.library, _native_agrees,
                           "native Winograd kernels disagree with the PyTorch path on this machine; not using them")


def forget_native() -> None:
    """Forget every native library's check (and the loaded libraries: the Winograd transforms and the matrix
    product), so the next call loads and checks them again."""
    forget_loaded()


def _native_agrees(lib) -> bool:
    """Both kernels, both tile sizes, against the PyTorch path on ``[2, 7, 9, 13]`` -> 5 channels (leaky 0.1)."""
    gen = torch.Generator().manual_seed(0)
    for m in TILE_SIZES:
        x = torch.randn(2, 7, 9, 13, generator=gen)  # [B, H, W, C]: partial tiles, a channel tail
        a, nh, nw = m + 2, -(-7 // m), -(-9 // m)
        tiles = 2 * nh * nw
        want_v = _input_torch(x.permute(0, 3, 1, 2), m, Workspace(), nh, nw).view(a * a, tiles, 13)
        v = torch.empty(a * a, tiles, 13)
        winograd_native.input_transform(lib, x, v, m, 2)
        prod, bias = torch.randn(a * a, tiles, 5, generator=gen), torch.randn(5, generator=gen)
        want_y = _output_torch(prod, bias, m, 2, 7, 9, nh, nw, Workspace(), 0.1)
        y = torch.empty(2, 7, 9, 5)
        winograd_native.output_transform(lib, prod, y, bias, m, 0.1, 2)
        if not (torch.allclose(v, want_v, rtol=1e-5, atol=1e-4) and torch.allclose(y, want_y, rtol=1e-5, atol=1e-4)):
            return False
    return True


def _input_torch(x: torch.Tensor, m: int, ws: Workspace, nh: int, nw: int) -> torch.Tensor:
    """PyTorch path: ``[B, C, H, W]`` -> ``V [a^2, T*C]`` (``a = m + 2``), in the workspace."""
    b, c, h, w = x.shape
    a, tiles = m + 2, b * nh * nw
    b2, _ = _kron_transforms(m, x.dtype, x.device)
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, m * nw + 1 - w, 1, m * nh + 1 - h))  # [B, m*nh+2, m*nw+2, C]
    d = ws.get("d", a * a * tiles * c, x).view(a, a, b, nh, nw, c)
    d.copy_(xp.unfold(1, a, m).unfold(2, a, m).permute(4, 5, 0, 1, 2, 3))  # a x a tiles at stride m
    v = ws.get("v", a * a * tiles * c, x).view(a * a, tiles * c)
    torch.mm(b2, d.view(a * a, -1), out=v)  # [a^2, T*C]
    return v


def _output_torch(prod: torch.Tensor, bias: torch.Tensor, m: int, b: int, h: int, w: int, nh: int, nw: int,
                  ws: Workspace, act: Activation) -> torch.Tensor:
    """PyTorch path: ``M [a^2, T, C_out]`` -> ``[B, H, W, C_out]`` contiguous (+ bias, then the activation)."""
    co, tiles = prod.shape[-1], prod.shape[1]
    _, a2 = _kron_transforms(m, prod.dtype, prod.device)
    y = ws.get("y", m * m * tiles * co, prod).view(m * m, tiles * co)
    torch.mm(a2, prod.reshape((m + 2) ** 2, -1), out=y)  # [m^2, T*C_out]
    y = y.view(m, m, b, nh, nw, co).permute(2, 3, 0, 4, 1, 5)  # [B, nh, m, nw, m, C_out]
    if h == m * nh and w == m * nw:
        out = torch.empty(b, h, w, co, dtype=prod.dtype, device=prod.device)
        torch.add(y, bias, out=out.view(b, nh, m, nw, m, co))
    else:
        full = ws.get("full", tiles * m * m * co, prod).view(b, nh, m, nw, m, co)
        torch.add(y, bias, out=full)
        out = full.view(b, m * nh, m * nw, co)[:, :h, :w].contiguous()
    return apply_activation(out, act)


def apply_activation(y: torch.Tensor, act: Activation) -> torch.Tensor:
    """PyTorch's version of the kernels' fused activation: ``act`` a leaky ReLU's slope (in place), "mish",
    "swish", "logistic", or None (``y`` as it is)."""
    if act is None:
        return y
    if isinstance(act, str):
        return {"mish": F.mish, "swish": F.silu, "logistic": torch.sigmoid}[act](y)
    return F.leaky_relu_(y, act)


class Workspace:
    """Grow-only scratch buffers shared by the Winograd convs of one model (they run one after another); one
    set per thread, so two threads may run the same model."""

    def __init__(self):
        self._local = threading.local()

    def __deepcopy__(self, memo) -> Workspace:
        return Workspace()  # scratch contents never need copying (and thread-locals cannot be)

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self._local = threading.local()

    def get(self, name: str, numel: int, like: torch.Tensor) -> torch.Tensor:
        """A flat buffer of at least ``numel`` elements of ``like``'s dtype and device (contents undefined)."""
        buffers = self._local.__dict__.setdefault("buffers", {})
        buf = buffers.get(name)
        if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(numel, dtype=like.dtype, device=like.device)
            buffers[name] = buf
        return buf[:numel]


def eligible(conv: nn.Conv2d) -> bool:
    """A 3x3, stride-1, padding-1, undilated, ungrouped conv (what this module computes)."""
    return (conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


def tile_size(b: int, h: int, w: int) -> int:
    """The tile size for a ``[b, C, h, w]`` input: 4 (F(4x4, 3x3)), or 2 when there are fewer than
    ``MIN_TILES_F4`` 4x4 tiles (the product is then bound by reading the weights, and F(2x2)'s are 2.25x smaller)."""
    return 4 if b * -(-h // 4) * -(-w // 4) >= MIN_TILES_F4 else 2


class WinogradConv2d(nn.Module):
    """Inference-only drop-in for an eligible ``nn.Conv2d``: ``[B, C_in, H, W] -> [B, C_out, H, W]``.

    The tile size is chosen per call from the input's shape (:func:`tile_size`), so that the same layer runs
    batch 1 at 13x13 with F(2x2, 3x3) and batch 8 with F(4x4, 3x3) whatever came first; each tile size's
    transformed weights ``U`` are made at its first use and kept (the original weight is dropped once both
    exist). ``act``: the block's activation after the bias, fused (a leaky ReLU's slope, ReLU 0.0, "mish",
    "swish", "logistic"; None: none). Returns a
    channels-last tensor; no gradients (run it under ``inference_mode``).
    """

    def __init__(self, conv: nn.Conv2d, workspace: Workspace | None = None, act: Activation = None):
        super().__init__()
        if not eligible(conv):
            raise ValueError(f"Winograd needs a 3x3 stride-1 padding-1 conv, got {conv}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.act = act  # the activation after the bias (None: none)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        # Not persistent: a model's state dict keeps its convs' names and is never changed by this module.
        # The conv's own tensors, not copies (it is replaced by this module; copying cost start-up time).
        self.register_buffer("weight", conv.weight.detach(), persistent=False)  # [C_out, C_in, 3, 3]
        self.register_buffer("bias", bias.to(conv.weight.device, conv.weight.dtype), persistent=False)
        for m in TILE_SIZES:  # U of each tile size, made at its first use
            self.register_buffer(f"u{m}", None, persistent=False)
        self.packed = dict.fromkeys(TILE_SIZES, False)  # tile size -> U packed for the native product
        self.workspace = workspace or Workspace()

    @property
    def tiles(self) -> tuple[int, ...]:
        """The tile sizes prepared so far (by the inputs seen)."""
        return tuple(m for m in TILE_SIZES if getattr(self, f"u{m}") is not None)

    def transformed_weight(self, m: int) -> torch.Tensor | None:
        """``U [(m+2)^2, C_in, C_out]`` of tile size ``m`` (unpacked when stored packed), None before its first
        use."""
        u = getattr(self, f"u{m}")
        return gemm_native.unpack(u, self.out_channels) if u is not None and self.packed[m] else u

    def extra_repr(self) -> str:
        tiles = ", ".join(f"F({m}x{m}, 3x3)" for m in self.tiles) or "tile size chosen per input shape"
        act = "" if self.act is None else f", {activation_name(self.act)} fused"
        return f"{self.in_channels}, {self.out_channels}, kernel_size=(3, 3), {tiles}{act}"

    def _prepare(self, m: int, packed: bool) -> None:
        """Make ``U`` of tile size ``m``, packed for the native product or not (and convert one made the
        other way: an input of another dtype than the first)."""
        with _PREPARE_LOCK:
            u = getattr(self, f"u{m}")
            if u is not None and self.packed[m] == packed:  # another thread got here first
                return
            if u is None:  # [(m+2)^2, C_in, C_out], or packed [(m+2)^2, ceil(C_out/16), C_in, 16]
                u = transform_weight(self.weight, m, packed)
            elif self.packed[m]:
                u = gemm_native.unpack(u, self.out_channels).contiguous()
            else:
                u = gemm_native.pack(u)
            setattr(self, f"u{m}", u)
            self.packed[m] = packed
            if len(self.tiles) == len(TILE_SIZES):
                self.weight = None  # every U made: the weight is no longer needed

    def _native(self, x: torch.Tensor, u: torch.Tensor, m: int, tiles: int, lib, gemm, threads: int) -> torch.Tensor:
        """``x [B, H, W, C_in]`` contiguous -> ``[B, H, W, C_out]``: the C transforms and product, all tiles in one
        pass (passes of fewer tiles, whose ``V`` and ``M`` would stay in cache, were slower: ``U`` is then read
        once per pass)."""
        b, h, w, c = x.shape
        a, co = m + 2, self.out_channels
        v = self.workspace.get("v", a * a * tiles * c, x).view(a * a, tiles, c)
        prod = self.workspace.get("m", a * a * tiles * co, x).view(a * a, tiles, co)
        winograd_native.input_transform(lib, x, v, m, threads)  # [a^2, T, C_in]
        gemm_native.bmm(gemm, v, u, prod, threads)  # [a^2, T, C_out]: the 36 (or 16) products
        out = torch.empty(b, h, w, co, dtype=x.dtype, device=x.device)
        winograd_native.output_transform(lib, prod, out, self.bias, m, self.act, threads)
        return out

    def _whole(self, x: torch.Tensor, u: torch.Tensor, m: int, nh: int, nw: int, lib, threads: int) -> torch.Tensor:
        """``[B, C_in, H, W]`` -> ``[B, H, W, C_out]`` with ``torch.bmm`` (the transforms in C when ``lib``)."""
        b, c, h, w = x.shape
        a, co, tiles, ws = m + 2, self.out_channels, b * nh * nw, self.workspace
        if lib is not None:
            v = ws.get("v", a * a * tiles * c, x).view(a * a, tiles, c)
            winograd_native.input_transform(lib, x.permute(0, 2, 3, 1).contiguous(), v, m, threads)
        else:
            v = _input_torch(x, m, ws, nh, nw).view(a * a, tiles, c)
        prod = ws.get("m", a * a * tiles * co, x).view(a * a, tiles, co)
        torch.bmm(v, u, out=prod)  # [a^2, T, C_out]: the 36 (or 16) products
        if lib is not None:
            out = torch.empty(b, h, w, co, dtype=x.dtype, device=x.device)
            winograd_native.output_transform(lib, prod, out, self.bias, m, self.act, threads)
            return out
        return _output_torch(prod, self.bias, m, b, h, w, nh, nw, ws, self.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, H, W]`` (any memory format) -> ``[B, C_out, H, W]`` channels-last."""
        b, _, h, w = x.shape
        m = tile_size(b, h, w)
        native = x.dtype == self.bias.dtype == torch.float32 and x.device.type == "cpu"
        lib = native_kernels() if native else None
        gemm = gemm_native.checked_library() if lib is not None else None  # the C path: both or neither
        if getattr(self, f"u{m}") is None or self.packed[m] != (gemm is not None):
            self._prepare(m, gemm is not None)
        u = getattr(self, f"u{m}")
        nh, nw = -(-h // m), -(-w // m)
        tiles = b * nh * nw
        threads = torch.get_num_threads()
        if gemm is not None:
            out = self._native(x.permute(0, 2, 3, 1).contiguous(), u, m, tiles, lib, gemm, threads)
        else:
            out = self._whole(x, u, m, nh, nw, lib, threads)
        return out.permute(0, 3, 1, 2)  # [B, C_out, H, W] channels-last


def fusable_activation(module: nn.Module) -> Activation:
    """The activation of a :class:`ConvBlock` that can run inside its conv (the block has no BN left between
    them: folded): a leaky ReLU's slope (ReLU: 0.0), "mish", "swish" (SiLU) or "logistic"; None otherwise."""
    if not isinstance(module, ConvBlock) or module.bn is not None:
        return None
    act = module.act
    if type(act) is nn.LeakyReLU:
        return float(act.negative_slope)
    if type(act) is nn.ReLU:
        return 0.0
    return {nn.Mish: "mish", nn.SiLU: "swish", nn.Sigmoid: "logistic"}.get(type(act))


def activation_name(act: Activation) -> str:
    """``0.1`` -> ``leaky_relu(0.1)``; a name as it is."""
    return act if isinstance(act, str) else f"leaky_relu({act:g})"


def use_winograd(model: nn.Module, min_channels: int = 64) -> int:
    """Swap the eligible 3x3 convs with at least ``min_channels`` inputs (fewer channels: the transforms cost
    more than they save) in every ``.conv`` attribute of ``model``'s modules for :class:`WinogradConv2d`,
    sharing one workspace; a conv block's activation (leaky, ReLU, mish, swish, logistic) moves into the swapped
    conv (its ``act`` becomes ``nn.Identity``). Returns how many were swapped. Inference only."""
    workspace, count = Workspace(), 0
    for module in list(model.modules()):  # a snapshot: the loop replaces children
        conv = getattr(module, "conv", None)
        if isinstance(conv, nn.Conv2d) and eligible(conv) and conv.in_channels >= min_channels:
            act = fusable_activation(module)
            module.conv = WinogradConv2d(conv, workspace, act=act)
            if act is not None:
                module.act = nn.Identity()
            count += 1
    return count
