"""``[yolo]`` layer: reshape a conv map into per-anchor predictions and decode them into boxes."""

from __future__ import annotations

import torch
from torch import nn

from yolo.model.cfg_specs import YoloSpec


class YoloHead(nn.Module):
    """Holds one head's anchors (pixels of the network input) and stride as buffers.

    ``forward``: ``[B, A*(5+C), H, W] -> [B, A, H, W, 5+C]`` raw: logits, no activation.
    ``decode``: raw ``[B, A, H, W, 5+C] -> [B, A*H*W, 5+C]`` with cx, cy, w, h in input pixels,
    objectness and class probabilities (sigmoid; classes not multiplied by objectness). With s = ``scale_x_y``
    and p = sigmoid(raw):

    - darknet's classic head: ``cx = (s * p_x - (s - 1) / 2 + col) * stride``, ``w = exp(raw_w) * anchor_w``;
    - ``new_coords=1`` (scaled-YOLOv4 / YOLOv7): the same ``cx``, ``w = (2 * p_w)^2 * anchor_w``. Darknet's
      cfg puts a logistic on the conv before such a head; ``Darknet`` builds that conv linear and the head
      applies the sigmoid, so raw maps stay logits for every head (the loss works on logits: finite under AMP)
      and the decoded output is exactly darknet's.
    """

    def __init__(self, spec: YoloSpec):
        super().__init__()
        self.num_anchors = len(spec.mask)
        self.num_outputs = spec.classes + 5
        self.scale_x_y = spec.scale_x_y
        self.new_coords = spec.new_coords
        anchors = torch.tensor(spec.head_anchors, dtype=torch.float32)  # [A, 2] (w, h) pixels
        self.register_buffer("anchors", anchors, persistent=False)
        self.register_buffer("stride", torch.tensor(float(spec.out_stride)), persistent=False)
        self._grids: dict = {}  # (h, w, device, dtype, inference mode) -> [H, W, 2]: made once per map size

    def grid(self, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """``[H, W, 2]`` (x, y) cell offsets, cached per size, device and dtype (decode runs on every batch)."""
        tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
        key = (h, w, device, dtype, torch.is_inference_mode_enabled())
        grid = None if tracing else self._grids.get(key)  # an export must record the ops, not a constant
        if grid is None:
            ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
            grid = torch.stack((xs, ys), dim=-1).to(dtype)  # [H, W, 2] (x, y)
            if not tracing:
                self._grids[key] = grid
        return grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        x = x.view(b, self.num_anchors, self.num_outputs, h, w)  # [B, A, 5+C, H, W]
        return x.permute(0, 1, 3, 4, 2).contiguous()  # [B, A, H, W, 5+C]

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        b, a, h, w, n = raw.shape
        grid = self.grid(h, w, raw.device, raw.dtype)  # [H, W, 2] (x, y)
        anchors = self.anchors.to(raw.dtype).view(1, a, 1, 1, 2)
        xy, wh = decode_boxes(raw[..., :4], grid, anchors, self.stride.to(raw.dtype), self.scale_x_y,
                              self.new_coords)  # [B, A, H, W, 2] each
        probs = raw[..., 4:].sigmoid()  # [B, A, H, W, 1+C]
        return torch.cat((xy, wh, probs), dim=-1).view(b, a * h * w, n)  # [B, A*H*W, 5+C]


def decode_boxes(raw: torch.Tensor, grid: torch.Tensor, anchors: torch.Tensor, stride, scale_x_y: float = 1.0,
                 new_coords: bool = False, max_log_wh: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Box logits ``raw [..., 4]`` of cells ``grid [..., 2]`` (col, row) with ``anchors [..., 2]`` -> centres
    ``[..., 2]`` and sizes ``[..., 2]``, in the units of ``anchors`` times ``stride`` / ``stride``: pass anchors in
    pixels and ``stride`` in pixels for input pixels, or both in grid units with ``stride=1``.

    ``max_log_wh`` clamps the classic head's ``raw_w`` before ``exp`` (the loss does; decoding does not)."""
    s = scale_x_y
    p_xy = raw[..., :2].sigmoid()
    xy = (p_xy * s - (s - 1) / 2 + grid) * stride
    if new_coords:
        wh = (2 * raw[..., 2:4].sigmoid()) ** 2 * anchors
    else:
        t = raw[..., 2:4] if max_log_wh is None else raw[..., 2:4].clamp(max=max_log_wh)
        wh = t.exp() * anchors
    return xy, wh
