"""Our ``.pt`` checkpoint: a self-describing dict that rebuilds its own model.

Keys: ``format`` ("yolo-toolkit"), ``format_version`` (1), ``cfg`` (the darknet cfg text), ``cfg_name``,
``names`` (class names), ``bn_eps`` (BN epsilon the weights were trained with), ``darknet`` (``major``,
``minor``, ``revision``, ``seen``, ``cutoff``: enough to write the ``.weights`` file back byte for byte),
``model`` (the state dict). Training runs add their own keys (``yolo.train.engine``): ``last.pt`` everything
resume needs, ``best.pt`` only ``epoch``, ``best_fitness``, ``best_epoch``, ``run_config``, ``metrics`` and
``training_state: False``, its ``model`` in float16 with ``best_half`` (loaded back into float32).
Everything is tensors, strings, numbers, lists and dicts, so it loads with ``torch.load(weights_only=True)``.
Other toolkits' checkpoints that pickled a whole model are read without their code
(:mod:`yolo.utils.legacy_pickle`): only their tensors and plain data are kept.
"""

from __future__ import annotations

from pathlib import Path

import torch

from yolo.errors import InputError, option, warn, weights_file_problem
from yolo.model.cfg_parser import parse_cfg, parse_cfg_text
from yolo.model.cfg_specs import ConvSpec
from yolo.model.darknet import Darknet
from yolo.model.state import MatchReport, extract_state_dict, match_state
from yolo.model.weights import WEIGHTS_SUFFIXES, DarknetHeader
from yolo.utils.checkpoint import foreign_kind, is_torch_file, load_checkpoint_data, save_atomic
from yolo.utils.names import default_names, load_names
from yolo.utils.text import count

FORMAT = "yolo-toolkit"
FORMAT_VERSION = 1
DEFAULT_BN_EPS = 1e-5
# BN epsilon each toolkit built its models with (not stored in their state dicts); cfg-era
# ultralytics/yolov3 used nn.BatchNorm2d(filters, momentum=0.03, eps=1E-4).
TOOLKIT_BN_EPS = {"ultralytics": 1e-4, "eriklindernoren": 1e-5}


def is_darknet_file(path: str | Path) -> bool:
    """Inputs are told apart by content: backbone files such as ``darknet53.conv.74`` have no suffix."""
    return not is_torch_file(path)


def _conv_keys(spec: ConvSpec) -> list[str]:
    """The state-dict keys a checkpoint must hold for one conv layer."""
    tail = ("bn.weight", "bn.bias", "bn.running_mean", "bn.running_var") if spec.batch_normalize else ("conv.bias",)
    return [f"module_list.{spec.index}.{name}" for name in ("conv.weight", *tail)]


def checkpoint_dict(model: Darknet) -> dict:
    """The checkpoint of ``model`` (tensors on CPU). Raises ``ValueError`` for a model whose convs no longer
    hold what its cfg describes (BN folded by ``fuse()``, convs swapped by ``prepare_for_inference``): such a
    file would not load back."""
    state = model.state_dict()
    for spec in model.spec.layers:
        missing = [key for key in _conv_keys(spec) if key not in state] if isinstance(spec, ConvSpec) else []
        if missing:
            raise ValueError(f"layer {spec.index}: the model has no {missing[0].split('.', 2)[2]} (BN folded by "
                             "fuse() or convs prepared for inference); save the checkpoint before that")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "cfg": model.spec.text,
        "cfg_name": model.cfg_name or Path(model.spec.source).name,
        "names": list(model.names or default_names(model.num_classes)),
        "darknet": {**model.header.as_dict(), "cutoff": model.cutoff},
        "bn_eps": model.bn_eps,
        "model": {k: v.detach().cpu() for k, v in state.items()},
    }


def save_checkpoint(model: Darknet, path: str | Path, **extra) -> None:
    """Write ``model`` (plus any ``extra`` keys) as our ``.pt``, atomically (replacing ``path``, as ``torch.save``
    does). A ``.weights`` name is refused: that is darknet's format (:meth:`Darknet.save_darknet_weights`)."""
    if Path(path).suffix.lower() in WEIGHTS_SUFFIXES:
        raise InputError("a .weights name is for darknet's format: write it with model.save_darknet_weights(path), "
                         "or name the checkpoint .pt", str(path))
    save_atomic({**checkpoint_dict(model), **extra}, path)


def is_our_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def check_names(names: list[str], model: Darknet, source: str) -> list[str]:
    """``names`` if there is one per class of ``model``, else an error naming ``source``."""
    if len(names) != model.num_classes:
        raise InputError(f"{count(len(names), 'class name')} for a model with {count(model.num_classes, 'class')}",
                         source)
    return names


def _bn_eps(obj, ours: bool, report: MatchReport, bn_eps: float | None) -> float:
    """BN epsilon is not in a state dict: given, stored in ours, or the source toolkit's default."""
    if bn_eps is not None:
        return bn_eps
    if ours:
        return float(obj.get("bn_eps", DEFAULT_BN_EPS))
    return TOOLKIT_BN_EPS.get(report.toolkit, DEFAULT_BN_EPS)


def model_from_state(obj, source: str, cfg: str | Path | None = None, bn_eps: float | None = None
                     ) -> tuple[Darknet, MatchReport]:
    """Build a model from a loaded checkpoint: ours (cfg inside) or another toolkit's (``cfg`` needed)."""
    ours = is_our_checkpoint(obj)
    if ours and obj.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(f"checkpoint format version {obj['format_version']} is newer than this toolkit "
                         f"understands ({FORMAT_VERSION}); upgrade yolo-toolkit", source)
    if cfg is not None:
        spec = parse_cfg(cfg)
    elif ours:
        if not isinstance(obj.get("cfg"), str):
            raise InputError("this checkpoint has no cfg text inside (an edited or damaged file?); pass "
                             + option("cfg"), source)
        spec = parse_cfg_text(obj["cfg"], f"{source} (embedded cfg {obj.get('cfg_name', '')})")
    else:
        raise InputError("this checkpoint comes from another toolkit and does not carry its cfg; pass " + option("cfg"),
                         source)
    state, report = match_state(extract_state_dict(obj, source), spec, source)
    model = Darknet(spec, bn_eps=_bn_eps(obj, ours, report, bn_eps), init=False)  # every conv tensor loaded next
    report.bn_eps = model.bn_eps
    missing = model.load_state_dict(state, strict=False).missing_keys  # match_state checked every conv/BN tensor
    if any(".conv." in k for k in missing):  # never left uninitialized (init=False above)
        raise InputError(f"the checkpoint lacks {next(k for k in missing if '.conv.' in k)}", source)
    if ours:
        dk = obj.get("darknet", {})
        model.header = DarknetHeader(*(int(dk.get(k, d)) for k, d in
                                       (("major", 0), ("minor", 2), ("revision", 0), ("seen", 0))))
        model.cutoff = dk.get("cutoff")
        model.cfg_name = obj.get("cfg_name") if cfg is None else None
        names = obj.get("names") or default_names(model.num_classes)
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise InputError(f"the checkpoint's names must be a list of class names, got {type(names).__name__} "
                             "(an edited or damaged file?)", source)
        model.names = check_names(list(names), model, source)
    return model, report


def refuse_exported(path: str | Path) -> None:
    """``InputError`` for an ``.onnx`` / ``.torchscript`` file where a model's weights are read (read as darknet
    weights or a foreign checkpoint, they gave absurd errors)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".onnx", ".torchscript"):
        raise InputError(f"an exported model ({suffix[1:]}) is for detection and validation only; here give the .pt or "
                         ".weights it was exported from", str(path))


def companion(path: Path, suffix: str) -> Path:
    """The file named like darknet file ``path`` with ``suffix`` beside it: ``x.weights`` -> ``x.cfg``; a backbone
    file keeps its whole name (``darknet53.conv.74`` -> ``darknet53.conv.74.cfg``)."""
    stem = path.stem if path.suffix.lower() in WEIGHTS_SUFFIXES else path.name
    return path.with_name(stem + suffix)


def _existing_companion(path: Path, suffix: str) -> Path | None:
    found = companion(path, suffix)
    return found if found.is_file() else None


def load_model(path: str | Path, cfg: str | Path | None = None, names: str | Path | None = None,
               cutoff: int | None = None, bn_eps: float | None = None) -> Darknet:
    """Load our ``.pt``, another toolkit's checkpoint (with ``cfg``) or a darknet ``.weights`` (with ``cfg``;
    without one, ``X.weights`` reads ``X.cfg`` beside it: the layout of darknet's downloads and of
    ``convert-weights``' output). A ``.weights`` without ``names`` takes ``X.names`` beside it (or, with a ``cfg``,
    the names file beside that cfg) when it names one class per class of the model; a names file beside them
    with another count is not used, with a warning.

    The model is returned in eval mode on the CPU.
    """
    path = Path(path)
    problem = weights_file_problem(path)
    if problem:
        raise InputError(problem, str(path))
    refuse_exported(path)
    if is_darknet_file(path):
        kind = foreign_kind(path)
        if kind is not None:
            raise InputError(f"not a checkpoint or darknet .weights file: it is {kind}", str(path))
        beside = None
        if cfg is None:  # X.weights with X.cfg (and X.names) beside it: as darknet's zoo and convert-weights lay them
            cfg = beside = _existing_companion(path, ".cfg")
        if cfg is None:
            raise InputError(f"a darknet .weights file needs its cfg: pass {option('cfg')} (or put "
                             f"{companion(path, '.cfg').name} beside it)", str(path))
        # A whole file (no cutoff) must hold every conv's tensors (read_darknet_weights checks its size first),
        # so their random init would only be overwritten: skipped (0.66 s of yolov3's 1.3 s load on 2 cores).
        eps = bn_eps if bn_eps is not None else DEFAULT_BN_EPS
        try:
            model = Darknet.from_cfg(cfg, bn_eps=eps, init=cutoff is not None)
            model.load_darknet_weights(path, cutoff)
        except InputError as e:
            if beside is None:
                raise
            raise InputError(f"{e} (read with {beside.name}, found beside the weights; pass {option('cfg')} to "
                             "choose another)") from None
        if names is None:
            names = _names_beside(model, path, cfg)
    else:
        model, _ = load_checkpoint(path, cfg, bn_eps)
    if names is not None:
        model.names = check_names(load_names(names), model, str(names))
    elif model.names is None:
        model.names = default_names(model.num_classes)
    _warn_if_not_finite(model, path)
    return model.eval()


def _warn_if_not_finite(model: Darknet, path: Path) -> None:
    """A warning naming the first tensor holding NaN or infinity (a training that diverged): such a model
    detects nothing, or garbage, and said nothing. One summing pass over the weights (about 25 ms for yolov3's:
    a non-finite element makes its tensor's sum non-finite), each tensor looked at only when that fails."""
    named = [(name, t, what) for what, tensors in (("weights", model.named_parameters()),
                                                  ("statistics", model.named_buffers()))
             for name, t in tensors if t.is_floating_point() and t.numel()]
    sums = torch.stack([t.detach().sum(dtype=torch.float32) for _, t, _ in named]) if named else torch.zeros(1)
    if bool(torch.isfinite(sums).all()):
        return
    for name, t, what in named:
        if not bool(torch.isfinite(t).all()):
            warn(f"{path}: {name} holds NaN or infinite {what} (a training that diverged?): its detections will be "
                 "empty or wrong")
            return


def _names_beside(model: Darknet, weights: Path, cfg) -> Path | None:
    """``X.names`` beside ``X.weights``, else the names file beside a cfg file, when it names one class per class
    of ``model``; one with another count is passed over with a warning (a cfg of other classes was given)."""
    found = [_existing_companion(weights, ".names")]
    if isinstance(cfg, (str, Path)) and Path(cfg).with_suffix(".names").is_file():
        found.append(Path(cfg).with_suffix(".names"))
    for f in dict.fromkeys(f for f in found if f):
        n = len(load_names(f))
        if n == model.num_classes:
            return f
        warn(f"{f}: {count(n, 'class name')} for a model with {count(model.num_classes, 'class')}; not used")
    return None


def load_checkpoint(path: str | Path, cfg: str | Path | None = None, bn_eps: float | None = None
                    ) -> tuple[Darknet, MatchReport]:
    """Like :func:`load_model` for ``.pt`` files, also returning how the tensors were matched."""
    obj, stand_ins = load_checkpoint_data(path)
    model, report = model_from_state(obj, str(path), cfg, bn_eps)
    report.stand_ins = stand_ins
    return model.eval(), report

