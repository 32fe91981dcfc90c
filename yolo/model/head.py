"""``[yolo]`` layer: reshape a conv map into per-anchor predictions and decode them into boxes."""

from __future__ import annotations

import torch
from torch import nn

from yolo.model.cfg_parser import YoloSpec


class YoloHead(nn.Module):
    """Holds one head's anchors (pixels of the network input) and stride as buffers.

    ``forward``: ``[B, A*(5+C), H, W] -> [B, A, H, W, 5+C]`` raw (no activation).
    ``decode``: raw ``[B, A, H, W, 5+C] -> [B, A*H*W, 5+C]`` with cx, cy, w, h in input pixels,
    objectness and class probabilities (sigmoid; classes not multiplied by objectness).
    """

    def __init__(self, spec: YoloSpec):
        super().__init__()
        self.num_anchors = len(spec.mask)
        self.num_outputs = spec.classes + 5
        self.scale_x_y = spec.scale_x_y
        anchors = torch.tensor(spec.head_anchors, dtype=torch.float32)  # [A, 2] (w, h) pixels
        self.register_buffer("anchors", anchors, persistent=False)
        self.register_buffer("stride", torch.tensor(float(spec.out_stride)), persistent=False)
        self._grids: dict = {}  # (h, w, device, dtype, inference mode) -> [H, W, 2]: made once per map size

    def grid(self, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """``[H, W, 2]`` (x, y) cell offsets, cached per size, device and dtype (decode runs on every batch)."""
        key = (h, w, device, dtype, torch.is_inference_mode_enabled())
        grid = self._grids.get(key)
        if grid is None:
            ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
            grid = self._grids[key] = torch.stack((xs, ys), dim=-1).to(dtype)  # [H, W, 2] (x, y)
        return grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        x = x.view(b, self.num_anchors, self.num_outputs, h, w)  # [B, A, 5+C, H, W]
        return x.permute(0, 1, 3, 4, 2).contiguous()  # [B, A, H, W, 5+C]

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        b, a, h, w, n = raw.shape
        grid = self.grid(h, w, raw.device, raw.dtype)  # [H, W, 2] (x, y)
        s = self.scale_x_y
        xy = (raw[..., :2].sigmoid() * s - (s - 1) / 2 + grid) * self.stride.to(raw.dtype)  # [B, A, H, W, 2]
        wh = raw[..., 2:4].exp() * self.anchors.to(raw.dtype).view(1, a, 1, 1, 2)  # [B, A, H, W, 2]
        probs = raw[..., 4:].sigmoid()  # [B, A, H, W, 1+C]
        return torch.cat((xy, wh, probs), dim=-1).view(b, a * h * w, n)  # [B, A*H*W, 5+C]
