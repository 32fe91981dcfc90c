"""Darknet cfg text -> sections of ``key=value`` lines with typed, line-numbered access (no torch), and
darknet's vocabulary of keys and sections: which are kept as data, which change the forward and are refused.

:func:`split_sections` cuts the text; a :class:`SectionReader` reads one section's values (int, float, lists,
choices, activations) and refuses the keys nobody read. Every error names the file and the line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from yolo.errors import InputError
from yolo.model.cfg_specs import ACTIVATIONS, DARKNET_ONLY_ACTIVATIONS


@dataclass
class Section:
    name: str
    line: int
    keys: dict[str, tuple[str, int]]  # key -> (raw value, line)


def split_sections(text: str, source: str) -> list[Section]:
    sections: list[Section] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise InputError(f"malformed section header {raw.strip()!r}, expected [name]", source, lineno)
            sections.append(Section(line[1:-1].strip().lower(), lineno, {}))
            continue
        if not sections:
            raise InputError(f"{raw.strip()!r} appears before the first [section]", source, lineno)
        if "=" not in line:
            raise InputError(f"expected key=value, got {raw.strip()!r}", source, lineno)
        key, value = (part.strip() for part in line.split("=", 1))
        key = key.lower()
        if not key or not value:
            raise InputError(f"expected key=value, got {raw.strip()!r}", source, lineno)
        sect = sections[-1]
        if key in sect.keys:
            raise InputError(f"key {key!r} repeated in [{sect.name}] (first at line {sect.keys[key][1]})", source,
                             lineno)
        sect.keys[key] = (value, lineno)
    return sections


class SectionReader:
    """Typed access to one section's keys; remembers which keys were used to reject unknown ones."""

    def __init__(self, sect: Section, source: str):
        self.sect, self.source, self.used = sect, source, set()

    def error(self, key: str | None, message: str) -> InputError:
        line = self.sect.keys[key][1] if key in self.sect.keys else self.sect.line
        return InputError(message, self.source, line)

    def _get(self, key, default, convert: Callable, what: str):
        self.used.add(key)
        if key not in self.sect.keys:
            if default is REQUIRED:
                raise self.error(None, f"[{self.sect.name}] needs the key {key!r}")
            return default
        value = self.sect.keys[key][0]
        try:
            return convert(value)
        except ValueError:
            raise self.error(key, f"{key}={value!r} in [{self.sect.name}]: expected {what}") from None

    def int(self, key, default=None, lo=None, hi=None):
        v = self._get(key, default, _parse_int, "an integer")
        if v is not None and ((lo is not None and v < lo) or (hi is not None and v > hi)):
            raise self.error(key, f"{key}={v} in [{self.sect.name}]: expected a value in [{lo}, {hi}]")
        return v

    def float(self, key, default=None, lo=None, hi=None):
        v = self._get(key, default, _parse_float, "a finite number")
        if v is not None and ((lo is not None and v < lo) or (hi is not None and v > hi)):
            raise self.error(key, f"{key}={v} in [{self.sect.name}]: expected a value in [{lo}, {hi}]")
        return v

    def ints(self, key, default=None):
        return self._get(key, default, lambda s: tuple(_parse_int(x) for x in _items(s)), "comma-separated integers")

    def floats(self, key, default=None):
        return self._get(key, default, lambda s: tuple(_parse_float(x) for x in _items(s)),
                         "comma-separated finite numbers")

    def choice(self, key, default, choices):
        v = self._get(key, default, str.lower, "a word")
        if v not in choices:
            raise self.error(key, f"{key}={v!r} in [{self.sect.name}]: expected one of {', '.join(choices)}")
        return v

    def raw(self, key):
        self.used.add(key)
        return self.sect.keys[key][0]

    def activation(self, key: str, default: str) -> str:
        v = self._get(key, default, str.lower, "a word")
        if v in DARKNET_ONLY_ACTIVATIONS:
            raise self.error(key, f"activation={v} in [{self.sect.name}] is darknet's but not implemented here "
                                  f"(implemented: {', '.join(ACTIVATIONS)})")
        if v not in ACTIVATIONS:
            raise self.error(key, f"{key}={v!r} in [{self.sect.name}]: expected one of {', '.join(ACTIVATIONS)}")
        return v

    def reject_unknown(self, extra_allowed=()):
        """Refuse keys nobody read: darknet keys that change the forward by name and value, others as unknown.

        Keys that only steer darknet's training (``TRAINING_LAYER_KEYS``) are accepted; the cfg text keeps them.
        """
        refused = UNSUPPORTED_KEYS.get(self.sect.name, {}) | UNSUPPORTED_KEYS["*"]
        for key, (value, line) in self.sect.keys.items():
            if key in self.used or key in extra_allowed:
                continue
            if self.sect.name not in ("net", "network") and key in TRAINING_LAYER_KEYS:
                continue
            if key in refused:
                what, noop = refused[key]
                if noop is not None and convert_value(value.lower()) == noop:
                    continue  # darknet's default: the key changes nothing
                raise InputError(f"{key}={value} in [{self.sect.name}] changes what darknet computes ({what}); "
                                 "this toolkit does not implement it", self.source, line)
            known = sorted(self.used | set(extra_allowed))
            raise InputError(
                f"unknown key {key!r} in [{self.sect.name}] (known: {', '.join(known)})", self.source, line
            )


REQUIRED = object()


def _parse_int(s: str) -> int:
    return int(s.strip())


def _parse_float(s: str) -> float:
    v = float(s)
    if not math.isfinite(v):
        raise ValueError(s)
    return v


def _items(s: str) -> list[str]:
    items = [x.strip() for x in s.split(",")]
    if not items or any(x == "" for x in items):
        raise ValueError(s)
    return items


def convert_value(s: str):
    """Training keys are kept as data: int, float, a list of numbers, or the string itself."""
    parts = [p.strip() for p in s.split(",")]
    out = []
    for p in parts:
        try:
            out.append(int(p))
        except ValueError:
            try:
                out.append(float(p))
            except ValueError:
                return s
    return out[0] if len(out) == 1 else out


# ----------------------------------------------------------------------------- darknet's vocabulary

# [net] keys darknet (pjreddie and AlexeyAB: parse_net_options) knows; kept as data, none changes the network.
NET_KEYS = frozenset(
    """batch subdivisions width height channels momentum decay angle saturation exposure hue learning_rate
    burn_in max_batches policy steps scales step gamma power max_crop min_crop aspect flip mosaic mixup cutmix
    blur gaussian_noise letter_box label_smooth_eps adam b1 b2 eps time_steps notruth random max_chart_loss
    inputs track augment_speed sequential_subdivisions try_fix_nan loss_scale dynamic_minibatch optimized_memory
    workspace_size_limit_mb adversarial_lr attention contrastive unsupervised mosaic_bound equidistant_point
    burn_out rate seed ema_alpha learning_rate_min sgdr_cycle sgdr_mult seq_scales resize_step scale
    badlabels_rejection_percentage num_sigmas_reject_badlabels weights_reject_freq contrastive_color
    contrastive_jit_flip use_cuda_graph""".split()
)

# Keys darknet reads on any layer that only steer its training (frozen layers, learning-rate scales, update
# schedules) or its GPU streams; accepted on every layer, kept in the cfg text. dropblock* act in training only.
TRAINING_LAYER_KEYS = frozenset(
    """stopbackward onlyforward dont_update burnin_update train_only_bn learning_rate clip stream wait_stream
    dot grad_centr dropblock dropblock_size_rel dropblock_size_abs""".split()
)

# Darknet keys that change the forward (or how .weights are read) and that this toolkit does not build:
# section -> key -> (what it does, the value at which it changes nothing, or None). "*": every section.
UNSUPPORTED_KEYS: dict[str, dict[str, tuple[str, object]]] = {
    "*": {
        "dontload": ("the layer's weights are not read from the .weights file", 0),
        "dontloadscales": ("the layer's BN scales are not read from the .weights file", 0),
    },
    "convolutional": {
        "dilation": ("dilated convolution", 1),
        "antialiasing": ("anti-aliased strided convolution", 0),
        "share_index": ("weights shared with another layer", None),
        "cbn": ("cross-iteration batch norm", 0),
        "binary": ("binary weights", 0),
        "xnor": ("XNOR convolution", 0),
        "bin_output": ("binary output", 0),
        "sway": ("deformable convolution", 0),
        "rotate": ("deformable convolution", 0),
        "stretch": ("deformable convolution", 0),
        "stretch_sway": ("deformable convolution", 0),
        "angle": ("deformable convolution", None),
        "reverse": ("deformable convolution", None),
        "flipped": ("transposed weights", 0),
        "coordconv": ("coordinate channels", 0),
        "assisted_excitation": ("assisted excitation", 0),
    },
    "maxpool": {
        "maxpool_depth": ("max over channels", 0),
        "out_channels": ("max over channels", 1),
        "antialiasing": ("anti-aliased pooling", 0),
        "maxpool_zero_nonmax": ("non-maximum outputs set to zero", 0),
    },
    "shortcut": {
        "weights_type": ("weighted shortcut", "none"),
        "weights_normalization": ("weighted shortcut", "none"),
    },
    "upsample": {"scale": ("output scaled", 1)},
    "scale_channels": {"scale_wh": ("scale by a spatial map instead of per channel", 0)},
}
UNSUPPORTED_KEYS["conv"] = UNSUPPORTED_KEYS["convolutional"]
UNSUPPORTED_KEYS["max"] = UNSUPPORTED_KEYS["maxpool"]

# Darknet section names this toolkit does not build: refused by name.
DARKNET_ONLY_SECTIONS = frozenset(
    """sam reorg3d reorg local_avgpool local_avg implicit region detection gaussian_yolo connected conn crop cost
    local activation crnn gru lstm conv_lstm history rnn normalization lrn batchnorm softmax soft contrastive
    empty silence""".split()
)

YOLO_TRAINING_KEYS = frozenset(
    """jitter ignore_thresh truth_thresh random iou_normalizer cls_normalizer obj_normalizer iou_loss
    iou_thresh_kind iou_thresh nms_kind beta_nms max_delta counters_per_class label_smooth_eps resize
    focal_loss max map objectness_smooth track_history_size sim_thresh dets_for_track dets_for_show
    track_ciou_norm embedding_layer delta_normalizer""".split()
)
