"""Match any YOLOv3 state dict to a cfg's structure and rename it to ours.

Handles our own ``module_list.{i}.conv.weight`` / ``.bn.*`` keys, the cfg-era ultralytics/yolov3 keys
(``module_list.{i}.Conv2d.weight``, ``.BatchNorm2d.*``), eriklindernoren/PyTorch-YOLOv3 keys
(``module_list.{i}.conv_{i}.weight``, ``.batch_norm_{i}.*``), and any of these under DDP (``module.``)
or ``torch.compile`` (``_orig_mod.``) prefixes. Tensors are matched per cfg layer index by role
(a 4-D weight is the conv, the one with ``running_mean`` is the BN), not by name; entries that are not
weights (FLOPs-counter buffers, anchors, grids) are ignored and counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from yolo.errors import InputError
from yolo.model.cfg_specs import ConvSpec, ModelSpec

PREFIXES = ("module.", "_orig_mod.")
_LAYER_KEY = re.compile(r"^module_list\.(\d+)\.(?:(.+)\.)?([A-Za-z_]+)$")  # layer, submodule, tensor name
BN_NAMES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
STATE_KEYS = ("model", "state_dict", "model_state_dict", "ema")


@dataclass
class MatchReport:
    conv_layers: int = 0
    ignored: list[str] = field(default_factory=list)
    folded_conv_bias: list[int] = field(default_factory=list)
    toolkit: str = "unknown"  # "ours", "ultralytics", "eriklindernoren" (from the BN submodule names)
    bn_eps: float | None = None
    stand_ins: list[str] = field(default_factory=list)  # classes of a pickled whole model, read as inert stand-ins

    def summary(self) -> str:
        text = f"{self.conv_layers} conv layers matched ({self.toolkit} layout"
        text += f", BN eps {self.bn_eps:g})" if self.bn_eps is not None else ")"
        if self.ignored:
            shown = ", ".join(self.ignored[:4]) + (", ..." if len(self.ignored) > 4 else "")
            text += f"; {len(self.ignored)} non-weight entries ignored ({shown})"
        if self.folded_conv_bias:
            text += f"; conv biases before BN folded into running_mean at layers {self.folded_conv_bias}"
        if self.stand_ins:
            names = [n for n in self.stand_ins if not n.startswith("torch.")] or self.stand_ins
            shown = ", ".join(names[:3]) + (", ..." if len(self.stand_ins) > 3 else "")
            text += (f"; a pickled whole model, read without its code: {len(self.stand_ins)} classes as inert "
                     f"stand-ins ({shown})")
        return text


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def extract_state_dict(obj, source: str) -> dict[str, torch.Tensor]:
    """Find the state dict inside a loaded checkpoint: the object itself, or under model/state_dict/ema."""
    if _is_state_dict(obj):
        return obj
    if isinstance(obj, dict):
        for key in STATE_KEYS:
            if _is_state_dict(obj.get(key)):
                return obj[key]
        keys = ", ".join(map(str, list(obj)[:8]))
        raise InputError(f"no state dict of tensors found in the checkpoint (top-level keys: {keys})", source)
    raise InputError(f"expected a dict checkpoint, found {type(obj).__name__}", source)


def strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def _group_by_layer(state: dict[str, torch.Tensor], report: MatchReport) -> dict[int, dict[str, dict[str, torch.Tensor]]]:
    """``{layer: {submodule: {tensor name: tensor}}}`` for keys under ``module_list``; others are ignored."""
    groups: dict[int, dict[str, dict[str, torch.Tensor]]] = {}
    for key, tensor in state.items():
        m = _LAYER_KEY.match(strip_prefixes(key))
        if not m or m.group(3) in ("total_ops", "total_params"):
            report.ignored.append(key)
            continue
        layer, sub, name = int(m.group(1)), m.group(2) or "", m.group(3)
        groups.setdefault(layer, {}).setdefault(sub, {})[name] = tensor
    return groups


def _toolkit(groups: dict[int, dict[str, dict]]) -> str:
    subs = {sub for layer in groups.values() for sub in layer}
    if "BatchNorm2d" in subs or "Conv2d" in subs:
        return "ultralytics"
    if any(re.fullmatch(r"(conv|batch_norm)_\d+", sub) for sub in subs):
        return "eriklindernoren"
    return "ours" if "conv" in subs else "unknown"


def _roles(subs: dict[str, dict[str, torch.Tensor]]) -> tuple[dict | None, dict | None]:
    """Pick the conv submodule (has a 4-D weight) and the BN submodule (has running_mean)."""
    conv = next((t for t in subs.values() if "weight" in t and t["weight"].dim() == 4), None)
    bn = next((t for t in subs.values() if "running_mean" in t), None)
    return conv, bn


def _check(shape_found, shape_need, layer: int, what: str, source: str) -> None:
    if tuple(shape_found) != tuple(shape_need):
        raise InputError(f"layer {layer} (convolutional) {what}: checkpoint has {list(shape_found)}, "
                         f"cfg expects {list(shape_need)}", source)


def _match_conv(s: ConvSpec, subs, source: str, report: MatchReport) -> dict[str, torch.Tensor]:
    conv, bn = _roles(subs)
    if conv is None:
        raise InputError(f"layer {s.index} (convolutional, {s.filters} filters): the checkpoint has no conv "
                         "weight for it; wrong cfg?", source)
    _check(conv["weight"].shape, (s.filters, s.in_channels // s.groups, s.size, s.size), s.index, "weight", source)
    out = {f"module_list.{s.index}.conv.weight": conv["weight"]}
    if not s.batch_normalize:
        if bn is not None:
            raise InputError(f"layer {s.index} (convolutional): the checkpoint has BN statistics here but the cfg "
                             "has no batch_normalize; wrong cfg?", source)
        if "bias" not in conv:
            raise InputError(f"layer {s.index} (convolutional): the cfg has no BN here, so the conv needs a bias, "
                             "and the checkpoint has none", source)
        _check(conv["bias"].shape, (s.filters,), s.index, "bias", source)
        out[f"module_list.{s.index}.conv.bias"] = conv["bias"]
        return out
    if bn is None:
        raise InputError(f"layer {s.index} (convolutional): the cfg has batch_normalize=1 but the checkpoint "
                         "has no BN statistics for it", source)
    bn = dict(bn)
    for name in BN_NAMES[:4]:
        if name not in bn:
            raise InputError(f"layer {s.index} (convolutional): BN {name} missing from the checkpoint", source)
        _check(bn[name].shape, (s.filters,), s.index, f"BN {name}", source)
    if "bias" in conv:  # conv bias followed by BN: equivalent to shifting the BN mean
        bn["running_mean"] = bn["running_mean"] - conv["bias"]
        report.folded_conv_bias.append(s.index)
    bn.setdefault("num_batches_tracked", torch.tensor(0, dtype=torch.long))
    out.update({f"module_list.{s.index}.bn.{n}": bn[n] for n in BN_NAMES})
    return out


def match_state(state: dict[str, torch.Tensor], spec: ModelSpec, source: str
                ) -> tuple[dict[str, torch.Tensor], MatchReport]:
    """Rename ``state`` to our keys by the cfg's structure; raise naming the first layer that disagrees."""
    report = MatchReport()
    groups = _group_by_layer(state, report)
    if not groups:
        raise InputError("no darknet layer weights found (expected keys like module_list.0.Conv2d.weight, "
                         "module_list.0.conv_0.weight or module_list.0.conv.weight)", source)
    report.toolkit = _toolkit(groups)
    out: dict[str, torch.Tensor] = {}
    for s in spec.layers:
        subs = groups.pop(s.index, {})
        if isinstance(s, ConvSpec):
            out.update(_match_conv(s, subs, source, report))
            report.conv_layers += 1
            continue
        for sub, tensors in subs.items():  # anchors, grids, ... of non-conv layers
            if _roles({sub: tensors}) != (None, None):
                raise InputError(f"the checkpoint has conv/BN weights at layer {s.index}, which is [{s.kind}] "
                                 "in the cfg; wrong cfg?", source)
            report.ignored.extend(f"module_list.{s.index}.{sub}.{n}".replace("..", ".") for n in tensors)
    if groups:
        extra = min(groups)
        raise InputError(f"the checkpoint has weights for layer {extra}, but the cfg has only "
                         f"{len(spec.layers)} layers; wrong cfg?", source)
    return out, report
