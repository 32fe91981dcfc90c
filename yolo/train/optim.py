"""Optimizer with parameter groups (no weight decay on BN and biases), warmup and learning-rate schedules.

The learning rate is a pure function of (epoch, iteration), set before every step, so a resumed run needs no
scheduler object: the checkpoint's epoch says where the schedule stands.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from yolo.train.config import RunConfig

# param group order; "bias" warms up from warmup_bias_lr, the others from 0
GROUPS = ("decay", "no_decay", "bias")


def param_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Weights of conv/linear layers (decayed), normalization weights (not decayed), biases (not decayed)."""
    groups: dict[str, list[nn.Parameter]] = {g: [] for g in GROUPS}
    norm_types = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if name == "bias":
                groups["bias"].append(p)
            elif isinstance(module, norm_types):
                groups["no_decay"].append(p)
            else:
                groups["decay"].append(p)
    return groups


def accumulate_steps(cfg: RunConfig) -> int:
    """Batches whose gradients add up before one optimizer step (about ``nbs`` images per step)."""
    return max(round(cfg.nbs / cfg.batch_size), 1)


def build_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov) or AdamW; weight decay scaled to the images per step (as darknet's ``decay``)."""
    decay = cfg.weight_decay * cfg.batch_size * accumulate_steps(cfg) / cfg.nbs
    groups = param_groups(model)
    specs = [{"params": groups[g], "weight_decay": decay if g == "decay" else 0.0, "name": g} for g in GROUPS]
    specs = [s for s in specs if s["params"]]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(specs, lr=cfg.lr0, betas=(cfg.momentum, 0.999))
    return torch.optim.SGD(specs, lr=cfg.lr0, momentum=cfg.momentum, nesterov=cfg.nesterov)


def lr_factor(cfg: RunConfig, epoch: int) -> float:
    """Schedule multiplier of ``lr0`` at ``epoch`` (0-based): 1 at epoch 0, ``lrf`` at epoch ``epochs`` (one
    past the last: the last epoch runs a step above it, as ultralytics' schedules do)."""
    e, n = epoch, max(cfg.epochs, 1)
    if cfg.schedule == "cosine":
        return ((1 - math.cos(e * math.pi / n)) / 2) * (cfg.lrf - 1) + 1
    if cfg.schedule == "linear":
        return (1 - e / n) * (1.0 - cfg.lrf) + cfg.lrf
    return cfg.step_gamma ** sum(e >= m * n for m in cfg.step_milestones)


def set_lr(optimizer: torch.optim.Optimizer, cfg: RunConfig, epoch: int, step: int, warmup_steps: int) -> float:
    """Set every group's lr (and momentum) for global ``step`` in ``epoch``; returns the weights' lr.

    During warmup (``step < warmup_steps``) the lr rises linearly from 0 (biases: from ``warmup_bias_lr``) and the
    momentum from ``warmup_momentum``; afterwards ``lr0 * lr_factor(epoch)``.
    """
    target = cfg.lr0 * lr_factor(cfg, epoch)
    warm = step < warmup_steps
    for group in optimizer.param_groups:
        start = cfg.warmup_bias_lr if group.get("name") == "bias" else 0.0
        group["lr"] = float(np.interp(step, [0, warmup_steps], [start, target])) if warm else target
        momentum = float(np.interp(step, [0, warmup_steps], [cfg.warmup_momentum, cfg.momentum])) if warm \
            else cfg.momentum
        if "betas" in group:
            group["betas"] = (momentum, group["betas"][1])
        elif "momentum" in group:
            group["momentum"] = momentum
    return optimizer.param_groups[0]["lr"]
