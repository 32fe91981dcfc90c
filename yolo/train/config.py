"""The run configuration of ``yolo train``: defaults < YAML file < ``--set key=value`` overrides.

``RunConfig`` is a small tree of dataclasses. Unknown keys and values of the wrong type or range are
``InputError`` s naming the file and line (YAML) or the ``--set`` item. ``to_dict()`` / ``save()`` give the
resolved config that is written as ``run.yaml`` next to the run's checkpoints.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from yolo.errors import InputError, option, read_text
from yolo.resources import builtin, is_builtin, resolve
from yolo.data.yamlkeys import load_yaml
from yolo.utils.sizes import MAX_IMG_SIZE

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "linear", "step")
BOX_LOSSES = ("darknet", "giou", "ciou")
CLS_LOSSES = ("bce", "ce")


@dataclass
class LossConfig:
    """Gains and kinds of the YOLOv3 loss terms (see ``yolo.train.loss.YoloLoss``)."""

    box: float = 0.05  # gain of the box term
    obj: float = 1.0  # gain of the objectness term
    cls: float = 0.5  # gain of the class term
    box_loss: str = "ciou"  # darknet (sigmoid offsets + log wh, weighted 2 - w*h) | giou | ciou
    cls_loss: str = "bce"  # bce (multi-label) | ce (single-label)
    ignore_thresh: float = 0.7  # predictions overlapping a gt above this are not punished as background
    iou_t: float = 0.2  # anchors with wh-IoU above this also learn a gt (1.0: only the best, as darknet)
    label_smoothing: float = 0.0


@dataclass
class EmaConfig:
    enabled: bool = True
    decay: float = 0.9999
    tau: float = 2000.0  # decay ramps in as 1 - exp(-updates / tau)


@dataclass
class ValConfig:
    conf: float = 0.001  # score threshold before NMS
    iou: float = 0.6  # NMS IoU
    period: int = 1  # validate every N epochs (and always after the last)


@dataclass
class RunConfig:
    """Everything a training run needs; ``batch_size`` is the total over all processes."""

    model: str = "yolov3-tiny.cfg"  # darknet cfg (a path or a built-in name); classes are taken from the data
    data: str = "shapes.yaml"  # dataset YAML (a path or a built-in name)
    weights: str | None = None  # starting weights: darknet .weights / backbone file, or our .pt
    cutoff: int | None = None  # read only the first N layers of a .weights file (darknet53.conv.74: 74)
    epochs: int = 100
    batch_size: int = 16
    img_size: int = 416
    device: str = ""  # "" picks cuda:0 when available, else cpu
    workers: int = 4
    seed: int = 0
    deterministic: bool = False
    out: str = "runs/train/exp"  # never overwritten: exp, exp2, exp3 ...
    optimizer: str = "sgd"
    lr0: float = 0.01
    lrf: float = 0.01  # the schedule ends at lr0 * lrf (reached after the last epoch)
    momentum: float = 0.937  # SGD momentum / AdamW beta1
    nesterov: bool = True
    weight_decay: float = 0.0005  # on conv/linear weights only (none on BN and biases)
    schedule: str = "cosine"
    step_milestones: list[float] = field(default_factory=lambda: [0.8, 0.9])  # fractions of epochs (step)
    step_gamma: float = 0.1
    warmup_epochs: float = 3.0
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1
    nbs: int = 64  # nominal batch size: gradients accumulate to about this many images per step
    grad_clip: float = 10.0  # max gradient norm (0: off)
    # auto (or null): on for CUDA (fp16) and for CPUs with bf16 hardware (AVX512_BF16/AMX), off on other CPUs
    # (bf16 is far slower than float32 without it); true/false force it
    amp: bool | str | None = "auto"
    freeze: int | str = 0  # first N layers, or "backbone" (layers before the first [yolo] branch)
    sync_bn: bool = False
    ddp_timeout: float = 600.0  # seconds a DDP process waits for the others before failing ($YOLO_DDP_TIMEOUT wins)
    save_period: int = 0  # also keep epoch_N.pt every N epochs (0: off)
    best_half: bool = False  # best.pt stores its weights as float16 (half the size; last.pt stays float32)
    patience: int = 50  # stop after this many epochs without a better fitness (0: never)
    close_mosaic: int = 0  # turn mosaic off for the last N epochs
    multi_scale: bool = False
    augment: dict = field(default_factory=dict)  # passed to yolo.data.augment.AugmentConfig.from_dict
    loss: LossConfig = field(default_factory=LossConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    val: ValConfig = field(default_factory=ValConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        """Write the resolved config as YAML, atomically (``atomic_write``: temporary file, fsync, rename)."""
        from yolo.utils.checkpoint import atomic_write  # torch comes with it; loading a config needs none

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        with atomic_write(path) as f:
            f.write(text.encode("utf-8"))

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "RunConfig":
        cfg = cls()
        _merge(cfg, data, source, None, "")
        validate(cfg, source)
        return cfg


# ----------------------------------------------------------------------------- merging and types


def _line_of(node, path: list[str]) -> int | None:
    """Line (1-based) of the key ``path`` in a composed YAML node tree, when it can be found."""
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            return None
        for k, v in node.value:
            if k.value == key:
                found, node = k, v
                break
        else:
            return None
    return found.start_mark.line + 1 if path else None


EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")  # 1e-3, 5E4: a number to a user, not YAML 1.1


def _coerce(value, tp, where: str, source: str, line: int | None):
    """``value`` checked (and int -> float widened) against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, where, source, line)
            except InputError:
                continue
        raise InputError(f"{where}: {value!r} is not one of {_type_name(tp)}", source, line)
    if tp is type(None):
        if value is None:
            return None
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and EXPONENT_FLOAT.fullmatch(value):  # YAML 1.1 reads 1e-3 as a string
            return float(value)
    elif tp is int or tp is str or tp is bool:
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
    elif origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, list):
            return [_coerce(v, item, where, source, line) for v in value]
    elif tp is dict:
        if isinstance(value, dict):
            return value
    raise InputError(f"{where}: expected {_type_name(tp)}, got {value!r}", source, line)


def _type_name(tp) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(t) for t in typing.get_args(tp))
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


Origins = dict[str, tuple[str, int | None]]  # dotted key -> (the file or --set item that set it, line)


def _merge(obj, data, source: str, root, prefix: str, origins: Origins | None = None) -> None:
    """Set the fields of dataclass ``obj`` from mapping ``data`` (nested dataclasses recurse); ``origins`` gets
    where each key set came from."""
    if not isinstance(data, dict):
        raise InputError(f"{prefix.rstrip('.') or 'the config'} must be a mapping, got {data!r}", source,
                         _line_of(root, prefix.rstrip(".").split(".")) if prefix else None)
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        line = _line_of(root, dotted.split("."))
        if key not in names:
            raise InputError(f"unknown key {dotted!r}; valid keys: {', '.join(sorted(prefix + n for n in names))}",
                             source, line)
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, source, root, dotted + ".", origins)
            continue
        if hints[key] is dict and isinstance(value, dict):
            current.update(value)  # augment: keys are checked by AugmentConfig.from_dict (in validate)
            if origins is not None:
                for sub in value:
                    origins[f"{dotted}.{sub}"] = (source, _line_of(root, [*dotted.split("."), str(sub)]))
        else:
            setattr(obj, key, _coerce(value, hints[key], dotted, source, line))
        if origins is not None:
            origins[dotted] = (source, line)


def load_run_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults, then the YAML file at ``path`` (or the built-in run of that name, ``shapes.yaml``), then
    ``overrides`` (``["epochs=3", "ema.decay=0.999"]``)."""
    cfg, origins = RunConfig(), {}
    if path is not None:
        path = resolve(path, "run")
        if not path.is_file():
            raise InputError("run config not found", str(path))
        text = read_text(path, "a run config (YAML)")
        try:
            data, root = load_yaml(text, str(path))  # a key given twice is an error naming both lines
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise InputError(f"invalid YAML ({getattr(e, 'problem', e)})", str(path),
                             mark.line + 1 if mark else None) from None
        _merge(cfg, data or {}, str(path), root, "", origins)
        _resolve_paths(cfg, path)
    if overrides is not None and (isinstance(overrides, (str, bytes, dict))
                                  or not all(isinstance(item, str) for item in overrides)):
        raise InputError(f"{option('overrides', flag='set')} must be a list of 'key=value' strings, got "
                         f"{overrides!r}")
    for item in overrides or []:
        apply_override(cfg, item, origins)
    validate(cfg, str(path) if path else "the defaults", origins)
    return cfg


PATH_KEYS = ("model", "data", "weights")
KIND_OF = {"model": "model", "data": "data"}  # the keys that may name a built-in (yolo.resources kinds)


def _resolve_paths(cfg: RunConfig, yaml_path: Path) -> None:
    """Relative ``model``/``data``/``weights`` in a run YAML: as given if that exists from the working folder,
    else next to the YAML, else under one of its parent folders (``cfg/train/x.yaml`` naming ``cfg/yolov3.cfg``
    works from anywhere); the YAML itself never counts. Other values stay as written: a built-in name
    (``yolov3-tiny.cfg``, ``shapes.yaml``) is resolved when the file is read, anything else stops the run before
    it starts. Names in a built-in run YAML, and names whose working-folder file is the YAML itself, become
    the built-in's path at once."""
    builtin_run = is_builtin(yaml_path)
    for key in PATH_KEYS:
        value = getattr(cfg, key)
        if not value or Path(value).is_absolute():
            continue
        local = None if builtin_run and key in KIND_OF else _local_file(value, yaml_path)
        if local is not None:
            setattr(cfg, key, value if local == Path(value) else str(local))
        elif key in KIND_OF and (builtin_run or Path(value).exists()) and builtin(value, KIND_OF[key]):
            setattr(cfg, key, str(builtin(value, KIND_OF[key])))  # not the working folder's file of that name


def _local_file(value: str, yaml_path: Path) -> Path | None:
    """``value`` from the working folder, else from the YAML's folder or one of its parents; never the YAML."""
    here = yaml_path.resolve().parent
    for base in (Path(), here, *here.parents):
        candidate = base / value
        if candidate.exists() and not _same_file(candidate, yaml_path):
            return candidate if base != Path() else Path(value)
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def absolute_paths(cfg: RunConfig, stored: bool = False) -> None:
    """Relative ``model``, ``data`` and ``weights`` paths become absolute: one that exists from the working
    folder, else a built-in's name (the built-in's path: a file of that name in the folder a run is resumed
    from must not stand in for it), so that the run's ``run.yaml`` means the same files from anywhere.
    ``stored=True``: ``cfg`` comes from a run's checkpoint, where a relative name can only be a built-in's
    (runs of earlier versions kept those as names), never a file of the working folder."""
    for key in PATH_KEYS:
        value = getattr(cfg, key)
        if not value or Path(value).is_absolute():
            continue
        if not stored and Path(value).exists():
            setattr(cfg, key, os.path.abspath(value))
        elif key in KIND_OF and builtin(value, KIND_OF[key]) is not None:
            setattr(cfg, key, str(builtin(value, KIND_OF[key])))


def check_paths(cfg: RunConfig) -> None:
    """Raise ``InputError`` for a ``model``, ``data`` or ``weights`` file that does not exist (``model`` and
    ``data`` may name built-ins; the error lists them)."""
    for key in PATH_KEYS:
        value = getattr(cfg, key)
        if value and key in KIND_OF:
            value = resolve(value, KIND_OF[key])  # a missing built-in-like name: the error lists the built-ins
        if value and not Path(value).exists():
            raise InputError(f"{key} file not found (relative paths are tried from the working folder, then "
                             "from the run YAML's folder and its parents)", str(value))


def apply_override(cfg: RunConfig, item: str, origins: Origins | None = None) -> None:
    """One ``key=value`` (dotted key for nesting; value read as YAML: ``3``, ``adamw``, ``null``, ``[1, 2]``);
    ``origins`` records it as where the key came from."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise InputError(f"{option('overrides', flag='set')} expects key=value, got {item!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        raise InputError(f"{option('overrides', flag='set')} {item!r}: the value is not valid YAML") from None
    nested: dict = value
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    _merge(cfg, nested, f"{option('overrides', flag='set')} {item}", None, "", origins)


def validate(cfg: RunConfig, source: str, origins: Origins | None = None) -> None:
    """Ranges and choices; the first problem is an ``InputError`` naming where the offending key was set (its
    ``--set`` item, or its file and line, from ``origins``), else ``source``."""

    def check(ok: bool, message: str, *keys: str) -> None:
        if not ok:
            found = [origins[k] for k in keys if origins and k in origins]
            where, line = found[-1] if found else (source, None)
            raise InputError(message, where, line)

    check(cfg.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {cfg.optimizer!r}", "optimizer")
    check(cfg.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {cfg.schedule!r}", "schedule")
    check(cfg.loss.box_loss in BOX_LOSSES, f"loss.box_loss must be one of {BOX_LOSSES}", "loss.box_loss")
    check(cfg.loss.cls_loss in CLS_LOSSES, f"loss.cls_loss must be one of {CLS_LOSSES}", "loss.cls_loss")
    for name in ("epochs", "batch_size", "img_size", "nbs"):
        check(getattr(cfg, name) >= 1, f"{name} must be >= 1, got {getattr(cfg, name)}", name)
    check(cfg.img_size <= MAX_IMG_SIZE, f"img_size must be at most {MAX_IMG_SIZE}, got {cfg.img_size}", "img_size")
    for name in ("workers", "save_period", "patience", "close_mosaic", "grad_clip", "weight_decay",
                 "warmup_epochs", "warmup_bias_lr"):
        check(getattr(cfg, name) >= 0, f"{name} must be >= 0, got {getattr(cfg, name)}", name)
    check(0 < cfg.ddp_timeout < float("inf"), f"ddp_timeout must be > 0 seconds, got {cfg.ddp_timeout}",
          "ddp_timeout")
    check(cfg.lr0 > 0, f"lr0 must be > 0, got {cfg.lr0}", "lr0")
    check(0 < cfg.lrf <= 1, f"lrf must be in (0, 1], got {cfg.lrf}", "lrf")
    ranges = (  # key, test, the range in words: one message per key, with its value
        ("momentum", lambda v: 0 <= v < 1, "in [0, 1)"), ("warmup_momentum", lambda v: 0 <= v < 1, "in [0, 1)"),
        ("loss.label_smoothing", lambda v: 0 <= v < 1, "in [0, 1)"),
        ("loss.ignore_thresh", lambda v: 0 < v <= 1, "in (0, 1]"), ("loss.iou_t", lambda v: 0 < v <= 1, "in (0, 1]"),
        ("loss.box", lambda v: v >= 0, ">= 0"), ("loss.obj", lambda v: v >= 0, ">= 0"),
        ("loss.cls", lambda v: v >= 0, ">= 0"),
        ("ema.decay", lambda v: 0 <= v < 1, "in [0, 1)"), ("ema.tau", lambda v: v > 0, "> 0"),
        ("val.conf", lambda v: 0 <= v < 1, "in [0, 1)"), ("val.iou", lambda v: 0 < v <= 1, "in (0, 1]"),
        ("val.period", lambda v: v >= 1, ">= 1"))
    for key, test, words in ranges:
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        check(test(value), f"{key} must be {words}, got {value:g}", key)
    check(cfg.freeze == "backbone" or (isinstance(cfg.freeze, int) and cfg.freeze >= 0),
          f"freeze must be a layer count >= 0 or 'backbone', got {cfg.freeze!r}", "freeze")
    check(cfg.cutoff is None or cfg.cutoff >= 1, "cutoff must be >= 1", "cutoff")
    check(not isinstance(cfg.amp, str) or cfg.amp == "auto", f"amp must be auto, true or false, got {cfg.amp!r}",
          "amp")
    check(all(0 < m < 1 for m in cfg.step_milestones), "step_milestones are fractions of the run in (0, 1)",
          "step_milestones")
    from yolo.data.augment import AugmentConfig

    check(isinstance(cfg.augment, dict), f"augment must be a mapping, got {cfg.augment!r}", "augment")
    for key, value in cfg.augment.items():  # one at a time, so the error names where that key was set
        try:
            AugmentConfig.from_dict({key: value})
        except InputError as e:
            check(False, str(e), "augment", f"augment.{key}")  # the last found is named: the key's own line
