"""Exponential moving average of a model's weights (used for validation and saved as the deployable model)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") and isinstance(model, nn.Module) and \
        type(model).__name__ in ("DistributedDataParallel", "DataParallel") else model


class ModelEMA:
    """``ema = d * ema + (1 - d) * model`` after every optimizer step, ``d = decay * (1 - exp(-updates / tau))``.

    The ramp lets the average follow the fast early changes; floating buffers (BN statistics) are averaged too,
    integer buffers copied.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0):
        self.ema = copy.deepcopy(unwrap(model)).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        source = unwrap(model).state_dict()
        for name, value in self.ema.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(source[name].detach(), alpha=1 - d)
            else:
                value.copy_(source[name])

    def state_dict(self) -> dict:
        return {"updates": self.updates, "decay": self.decay, "tau": self.tau,
                "model": {k: v.detach().cpu() for k, v in self.ema.state_dict().items()}}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.ema.load_state_dict(state["model"])
