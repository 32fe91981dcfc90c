"""``train(cfg)``: build a detection run (model, starting weights, freezing, loss, data, validation) and fit it.

Data and metrics come in through two seams so this module works (and is tested) without them:
``data_factory(cfg, env) -> TrainData`` (default: ``yolo.data``) and
``validate_factory(cfg, data, env) -> validate(model, epoch) -> metrics`` (default: ``yolo.val``).
Both are imported lazily inside the default factories.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from yolo.errors import MATPLOTLIB_MISSING, InputError, on_command_line, override, warn
from yolo.model.cfg_edit import set_letter_box, set_num_classes
from yolo.model.cfg_parser import parse_cfg, parse_cfg_text
from yolo.model.cfg_specs import RouteSpec, ShortcutSpec
from yolo.model.checkpoint import checkpoint_dict, is_darknet_file, load_checkpoint
from yolo.model.darknet import Darknet
from yolo.train import defaults
from yolo.train.config import RunConfig
from yolo.train.defaults import TrainData
from yolo.train.engine import Trainer, TrainTask, check_resumable
from yolo.train.loss import YoloLoss
from yolo.utils.checkpoint import load_safe
from yolo.utils.dist import (
    DistEnv,
    PeerLostError,
    broadcast_object,
    cleanup,
    ddp_timeout,
    env_from_torchrun,
    init_distributed,
    is_peer_failure,
)
from yolo.utils.files import discard_run_dir, make_run_dir, run_lock
from yolo.utils.plots import have_matplotlib
from yolo.utils.rng import seed_everything
from yolo.utils.text import count


def log(message: str, env: DistEnv | None = None) -> None:
    if env is None or env.is_main:
        print(message, file=sys.stderr)


# ----------------------------------------------------------------------------- model


def build_model(cfg: RunConfig, names: list[str], env: DistEnv | None = None, start_weights: bool = True) -> Darknet:
    """Darknet from ``cfg.model`` with one class per name (the cfg's heads rewritten when they differ), starting
    weights loaded (unless ``start_weights`` is False: a resumed run takes every tensor from its checkpoint,
    and its starting weights file may be gone) and the first layers frozen as asked. The model is trained on
    letterboxed images, so its cfg never says ``letter_box=0`` (that key is rewritten to 1)."""
    spec = parse_cfg(cfg.model)
    text = spec.text
    if spec.num_classes != len(names):
        log(f"model: {cfg.model} has {count(spec.num_classes, 'class')}, the data {len(names)}: heads rebuilt for "
            f"{len(names)}", env)
        text = set_num_classes(text, len(names), cfg.model)
    if not spec.net.letterbox:
        log(f"model: {cfg.model} says letter_box=0, but training letterboxes (or makes mosaics of) its images: "
            "the run's cfg says letter_box=1, so detect and val letterbox too", env)
        text = set_letter_box(text, True, cfg.model)
    model = Darknet(parse_cfg_text(text, cfg.model))
    model.names, model.cfg_name = list(names), Path(cfg.model).name
    if cfg.weights and start_weights:
        load_start_weights(model, cfg.weights, cfg.cutoff, spec.text, env)
    n = freeze_layers(model, cfg.freeze)
    if n:
        log(f"model: froze the first {count(n, 'layer')}", env)
    return model


_COUNTER = "num_batches_tracked"  # BN's step counter (momentum is set, so nothing reads it): not a weight


def load_start_weights(model: Darknet, path: str, cutoff: int | None, original_cfg: str,
                       env: DistEnv | None = None) -> None:
    """Darknet ``.weights`` / backbone files (read into the cfg as written, then moved over) or our ``.pt``;
    tensors whose shape differs (heads of another class count) keep their fresh initialization."""
    if not Path(path).is_file():
        raise InputError("starting weights not found", path)
    if is_darknet_file(path):
        source = Darknet.from_cfg_text(original_cfg, str(path))
        source.load_darknet_weights(path, cutoff)
        layers = cutoff if cutoff is not None else len(source.module_list)
        state = {k: v for k, v in source.state_dict().items() if _layer(k) < layers}
    else:
        source, _ = load_checkpoint(path)
        state = source.state_dict()
    own = model.state_dict()
    same = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}  # BN's counters come along
    values = [k for k in own if not k.endswith(_COUNTER)]  # what is counted: the tensors that hold weights
    loaded = sum(k in same for k in values)
    if not loaded:
        what = f"{source.cfg_name}'s" if getattr(source, "cfg_name", None) else "another network's"
        total = sum(not k.endswith(_COUNTER) for k in state)
        raise InputError(f"none of its {count(total, 'tensor')} fits {model.cfg_name} (they are {what}): "
                         "give weights of this network, or the cfg these weights belong to", path)
    model.load_state_dict(same, strict=False)
    other = sorted({_layer(k) for k in values if k in state and k not in same})  # this model's layers, in order
    log(f"weights: {loaded}/{len(values)} tensors from {path}" +
        (f"; re-initialized (other shape): {', '.join(f'module_list.{i}' for i in other)}" if other else ""), env)


def _layer(key: str) -> int:
    """``module_list.15.conv.weight`` -> 15."""
    return int(key.split(".")[1])


def backbone_layers(model: Darknet) -> int:
    """How many leading layers every head depends on (the trunk shared by all heads)."""
    deps: list[set[int]] = []
    for s in model.spec.layers:
        if isinstance(s, RouteSpec):
            mine = set().union(*(deps[i] | {i} for i in s.sources))
        elif isinstance(s, ShortcutSpec):
            mine = deps[s.index - 1] | {s.index - 1} | deps[s.source] | {s.source}
        else:
            mine = deps[s.index - 1] | {s.index - 1} if s.index else set()
        deps.append(mine)
    shared = set.intersection(*(deps[i] for i in model.head_indices))
    n = 0
    while n in shared:
        n += 1
    return n


def freeze_layers(model: Darknet, freeze: int | str) -> int:
    """Stop gradients into the first ``freeze`` layers (``"backbone"``: the shared trunk) and keep them in
    inference mode (their BN running statistics stay as loaded: ``Darknet.train``); returns the count.
    ``InputError`` when that leaves nothing to train."""
    n = backbone_layers(model) if freeze == "backbone" else int(freeze)
    trainable = [i for i, module in enumerate(model.module_list) if list(module.parameters())]
    if n and trainable and n > trainable[-1]:
        raise InputError(f"freeze={freeze} leaves nothing to train: the model's last layer with weights is layer "
                         f"{trainable[-1]} of {len(model.module_list)} (freeze at most {trainable[-1]}, or "
                         f"'backbone': {backbone_layers(model)})")
    for module in list(model.module_list)[:n]:
        for p in module.parameters():
            p.requires_grad_(False)
    model.frozen = n
    model.train(model.training)
    return n


# ----------------------------------------------------------------------------- task


def detection_loss(model: Darknet, cfg: RunConfig) -> YoloLoss:
    """The loss of ``model``'s heads (anchors, strides, ``scale_x_y``, ``new_coords``) with ``cfg.loss``."""
    return YoloLoss.for_model(model, **asdict(cfg.loss))


def make_compute_loss(loss: YoloLoss, cfg: RunConfig, stride: int, world_size: int, clock: dict) -> Callable:
    """``(model, batch, device) -> (loss, parts)``; batch images are ``[B, 3, S, S]`` uint8 or float in [0, 1].

    ``clock`` holds the epoch and the batch's index inside it (``TrainTask.on_batch`` sets it: a resumed epoch
    starts past its trained batches), from which multi-scale sizes are drawn with the seed."""
    multi_scale = None
    if cfg.multi_scale:
        from yolo.data.loader import MultiScale

        multi_scale = MultiScale(cfg.img_size, stride, seed=cfg.seed)

    def compute(model, batch, device):
        images, targets = batch[0], batch[1]
        images = images.to(device, non_blocking=True)
        images = images.float() / 255 if images.dtype == torch.uint8 else images.float()  # [B, 3, S, S]
        if multi_scale is not None:
            images = multi_scale(images, clock["epoch"], clock["step"])  # [B, 3, S', S']
        total, parts = loss(model(images), targets.to(device))
        return total * world_size, parts  # DDP averages gradients; the loss sums over this process's batch

    return compute


def save_batches(names: list[str]) -> Callable[[Any, int, Path], None]:
    def save(batch, i: int, out_dir: Path) -> None:
        from yolo.utils.plots import save_batch_image

        save_batch_image(batch[0], batch[1], out_dir / f"train_batch{i}.jpg", names)

    return save


def epoch_start_hook(cfg: RunConfig, loader, clock: dict) -> Callable[[int], None]:
    """Reset the step clock; turn mosaic off for the last ``cfg.close_mosaic`` epochs (the dataset's
    ``mosaic_enabled`` flag, or its ``close_mosaic()``)."""

    def hook(epoch: int) -> None:
        clock.update(epoch=epoch, step=0)
        dataset = getattr(loader, "dataset", None)
        if cfg.close_mosaic and epoch >= cfg.epochs - cfg.close_mosaic and dataset is not None:
            if hasattr(dataset, "close_mosaic"):
                dataset.close_mosaic()
            elif hasattr(dataset, "mosaic_enabled"):
                dataset.mosaic_enabled = False

    return hook


def detection_task(cfg: RunConfig, model: Darknet, data: TrainData, validate, env: DistEnv) -> TrainTask:
    loss = detection_loss(model, cfg)
    clock = {"epoch": 0, "step": 0}
    return TrainTask(
        model=model, train_loader=data.train_loader,
        compute_loss=make_compute_loss(loss, cfg, model.max_stride, env.world_size, clock),
        validate=validate,
        checkpoint_meta=lambda m: checkpoint_dict(m),  # format keys: load_model reads the run's .pt directly
        on_epoch_start=epoch_start_hook(cfg, data.train_loader, clock),
        on_first_batches=save_batches(data.names),
        on_batch=lambda i: clock.update(step=i),
    )


# ----------------------------------------------------------------------------- entry point


def train(cfg: RunConfig, resume: str | Path | None = None, data_factory: Callable | None = None,
          validate_factory: Callable | None = None, progress: bool = True, plots: bool = True) -> Path:
    """Run (or, with ``resume``, continue) a training run; returns the run folder (an absolute path, a new run's
    and a resumed one's alike).

    Under DDP a process whose peer died or stopped answering for ``ddp_timeout`` seconds raises
    ``PeerLostError`` (one line) instead of hanging."""
    from yolo.utils.device import select_device

    env = env_from_torchrun()
    device = select_device(cfg.device)
    if env.distributed and device.type == "cuda":
        device = torch.device("cuda", env.local_rank)
    timeout = ddp_timeout(cfg.ddp_timeout)
    init_distributed(env, device, timeout)
    where: dict = {}  # the run folder once known (for the message of a failed run)
    finished = False
    try:
        out_dir = _train(cfg, resume, data_factory, validate_factory, progress, plots, env, device, where)
        finished = True
        return Path(out_dir).absolute()
    except RuntimeError as e:
        if not (env.distributed and is_peer_failure(e)):
            raise
        weights = f"; the last good checkpoint is in {where['out'] / 'weights'}" if "out" in where else ""
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PeerLostError(f"process {env.rank} of {env.world_size}: another process died or did not answer "
                            f"within ddp_timeout={timeout:g} s ({first[:200]}){weights}") from None
    finally:
        cleanup(together=finished)  # after a failure a barrier would wait a full timeout for a dead peer


def _train(cfg: RunConfig, resume, data_factory, validate_factory, progress: bool, plots: bool, env: DistEnv,
           device: torch.device, where: dict) -> Path:
    from yolo.train.config import absolute_paths, check_paths

    seed_everything(cfg.seed + env.rank, cfg.deterministic)
    if resume:  # every rank: the same checks give the same answer (config_for_resume made them for the CLI)
        resume = resume_path(resume)
        check_resume(cfg, read_training_checkpoint(resume), resume)
    out_dir = Path(resume).resolve().parent.parent if resume else None
    fresh = None
    if out_dir is None:  # a new run
        if env.is_main:
            check_paths(cfg)  # before the run folder exists
            absolute_paths(cfg)  # run.yaml (and --resume) must not depend on the folder the run started from
        _round_img_size(cfg, env)  # every rank; before run.yaml is written: it holds the size trained at
        if env.is_main:
            out_dir = fresh = make_run_dir(Path(cfg.out))  # never an existing folder; proven writable
            cfg.save(out_dir / "run.yaml")
    out_dir = where["out"] = broadcast_object(out_dir)
    with run_lock(out_dir) if env.is_main else contextlib.nullcontext():  # one process writes a run at a time
        try:
            trainer = _setup(cfg, resume, data_factory, validate_factory, progress, plots, env, device, out_dir)
        except BaseException:
            if fresh is not None:  # bad model cfg, empty data, ...: a run that never started leaves no folder
                discard_run_dir(fresh)
            raise
        row = trainer.fit()
    log(f"train: done{_final_metrics(row, trainer)}; weights in {out_dir / 'weights'}", env)
    return out_dir


def _final_metrics(row: dict, trainer: Trainer) -> str:
    """``; epoch 10/10: mAP50 0.755, mAP50-95 0.336; best.pt from epoch 9/10`` (epochs counted from 1, as the
    progress bar counts; empty when the last epoch was not validated)."""
    if "map50" not in row or "map" not in row:
        return ""
    n = trainer.cfg.epochs
    held = trainer.best_epoch if trainer.best_file_epoch is None else trainer.best_file_epoch
    best = f"; best.pt from epoch {held + 1}/{n}" if held >= 0 else ""
    early = (f"; stopped early: no better fitness in {trainer.cfg.patience} epochs (patience)"
             if row["epoch"] + 1 < n else "")
    return f"; epoch {row['epoch'] + 1}/{n}: mAP50 {row['map50']:.3f}, mAP50-95 {row['map']:.3f}{best}{early}"


def _round_img_size(cfg: RunConfig, env: DistEnv) -> None:
    """``cfg.img_size`` rounded up to a multiple of the model's largest stride, with a warning (as detect, val,
    profile and export round ``--img-size``)."""
    stride = max(s.out_stride for s in parse_cfg(cfg.model).layers)
    rounded = -(-cfg.img_size // stride) * stride
    if rounded != cfg.img_size:
        if env.is_main:
            warn(f"img_size {cfg.img_size} is not a multiple of the model's stride {stride}; using {rounded}")
        cfg.img_size = rounded


def _setup(cfg: RunConfig, resume, data_factory, validate_factory, progress: bool, plots: bool, env: DistEnv,
           device: torch.device, out_dir: Path) -> Trainer:
    """Data, model, validation and the trainer (resumed when asked), for the run folder ``out_dir``."""
    data = (data_factory or defaults.default_data)(cfg, env)
    if data.summary:
        log(f"data: {data.summary}", env)
    charts = plots and env.is_main and have_matplotlib()  # labels.png and results.png; train/val batches are cv2's
    if plots and env.is_main and not charts:
        warn(MATPLOTLIB_MISSING.format(what="labels.png or results.png") + "; the run goes on")
    if charts and not resume:
        _plot_labels(data, out_dir / "labels.png")
    model = build_model(cfg, data.names, env, start_weights=not resume)
    validate = (validate_factory or defaults.default_validate)(cfg, data, env) if data.val_loader is not None or \
        validate_factory else None
    if validate and env.is_main and plots and data.val_loader is not None:
        validate = _with_val_pictures(validate, data, out_dir, cfg.val.iou)
    trainer = Trainer(cfg, detection_task(cfg, model, data, validate, env), out_dir, device, env, progress, charts)
    if resume:
        trainer.resume(resume)
        if env.is_main:
            cfg.save(out_dir / "run.yaml")  # with this session's --set changes (what fine-tuning recipes read)
    resumed = ""
    if resume:  # where it goes on: the epoch (counted from 1, as the progress bar does), and the step inside it
        part = trainer.resume_from
        resumed = (f"; resumed from {Path(resume).name} at epoch {trainer.start_epoch + 1}"
                   + (f", batch {int(part['batch']) + 1}" if part and "batch" in part else ""))
    log(f"train: {out_dir} ({count(cfg.epochs, 'epoch')}, batch {cfg.batch_size} x accumulate {trainer.accumulate}, "
        f"{device}, amp {'on' if trainer.amp else 'off'} ({trainer.amp_reason}){_ddp_note(cfg, env, device)}"
        f"{resumed})", env)
    return trainer


def _ddp_note(cfg: RunConfig, env: DistEnv, device: torch.device) -> str:
    """``; DDP: 2 processes x 4 images, BN statistics per process`` under torchrun, else empty: how the batch is
    shared, and whether BN layers see the whole batch (SyncBatchNorm, CUDA only) or each process's part."""
    if not env.distributed:
        return ""
    synced = cfg.sync_bn and torch.device(device).type == "cuda"
    bn = "SyncBatchNorm" if synced else "BN statistics per process" + (" (sync_bn is CUDA only)" if cfg.sync_bn else "")
    return f"; DDP: {env.world_size} processes x {count(cfg.batch_size // env.world_size, 'image')}, {bn}"


def _with_val_pictures(validate: Callable, data: TrainData, out_dir: Path, iou: float) -> Callable:
    """``validate`` that also draws the first validation batch: ``val_batch0_labels.jpg`` (the truth) and
    ``val_batch0_pred.jpg`` (the model's detections above 0.25 after NMS), rewritten at each validation."""
    from yolo.runtime.postprocess import non_max_suppression
    from yolo.utils.boxes import xyxy_to_cxcywh
    from yolo.utils.plots import save_batch_image

    images, targets = next(iter(data.val_loader))[:2]  # [B, 3, S, S] uint8, [M, 6]
    save_batch_image(images, targets, out_dir / "val_batch0_labels.jpg", data.names)

    @torch.no_grad()
    def validate_and_draw(model, epoch: int) -> dict:
        metrics = validate(model, epoch)
        model.eval()
        x = images.to(next(model.parameters()).device).float() / 255
        h, w = x.shape[-2:]
        dets = non_max_suppression(model.decode(model(x)).float().cpu(), 0.25, iou, image_size=(h, w),
                                   diou_beta=model.diou_beta)  # per image [K, 6] xyxy
        rows = [torch.cat((torch.full((len(d), 1), float(i)), d[:, 5:6],  # [K, 7]: image, class, box, score
                           xyxy_to_cxcywh(d[:, :4]) / d.new_tensor([w, h, w, h]), d[:, 4:5]), 1)
                for i, d in enumerate(dets)]
        save_batch_image(images, torch.cat(rows) if rows else torch.zeros(0, 7), out_dir / "val_batch0_pred.jpg",
                         data.names)
        return metrics

    return validate_and_draw


def _plot_labels(data: TrainData, path: Path) -> None:
    """The training labels' statistics picture (classes, box centres, sizes), when the loader has an index."""
    index = getattr(getattr(data.train_loader, "dataset", None), "index", None)
    if index is not None and len(index):
        from yolo.data.report import plot_labels

        plot_labels(index, path)


def resume_path(value: str | Path) -> Path:
    """What ``--resume`` / ``train(resume=...)`` names: a checkpoint, or a run folder (its ``weights/last.pt``)."""
    path = Path(value)
    if path.is_dir():
        last = path / "weights" / "last.pt"
        if not last.is_file():
            raise InputError("is a folder without weights/last.pt: give a run folder or its last.pt", str(path))
        return last
    return path


def read_training_checkpoint(path: str | Path) -> dict:
    """A training checkpoint's entries, its tensors memory-mapped rather than read (its run config is what is
    wanted here; ``Trainer.resume`` reads the rest); ``InputError`` unless it can be resumed."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip checkpoint, missing, damaged...: the full reader says which, in one line
        ckpt = load_safe(path)
    check_resumable(ckpt, path)  # best.pt and converted .pt files: one line on how to fine-tune from them
    if "run_config" not in ckpt:
        raise InputError("not a training checkpoint (no run_config); pass it as weights instead", str(path))
    return ckpt


def find_last_checkpoint(root: str | Path = "runs/train") -> Path:
    """The newest ``*/weights/last.pt`` under ``root`` (for ``--resume`` without a path)."""
    found = sorted(Path(root).glob("*/weights/last.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        how = "pass --resume PATH" if on_command_line() else "pass the checkpoint's path"
        raise InputError(f"no last.pt to resume under this folder; {how}", str(root))
    return found[-1]


# --set may change the rest of a run config when it is resumed: these define the network, its data, the
# optimizer state's layout (its kind and the parameters it holds: freeze) and the run folder
FIXED_ON_RESUME = ("model", "data", "optimizer", "freeze", "out")


def config_for_resume(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """The run config stored in a training checkpoint (or a run folder's ``weights/last.pt``), with ``--set``
    overrides (e.g. more epochs) on top; refused in one line when it would train another run
    (:func:`check_resume`)."""
    from yolo.train.config import absolute_paths, apply_override, validate

    path = resume_path(path)
    ckpt = read_training_checkpoint(path)
    cfg, origins = RunConfig.from_dict(ckpt["run_config"], str(path)), {}
    absolute_paths(cfg, stored=True)
    for item in overrides or []:
        apply_override(cfg, item, origins)
    validate(cfg, str(path), origins)
    check_resume(cfg, ckpt, path, origins)
    return cfg


def check_resume(cfg: RunConfig, ckpt: dict, path: str | Path, origins: dict | None = None) -> None:
    """``InputError`` (before anything is read or written) when resuming ``ckpt`` with ``cfg`` would not
    continue its run: another model, data, optimizer, freeze or run folder (``FIXED_ON_RESUME``; paths compared
    once made absolute, built-in names as the built-in), or no epoch left to train. ``origins`` names the
    ``--set`` item that changed a key. An epoch interrupted part-way goes on only in batches of the size it
    started with (its position is a count of them, and the rest of its shuffled order is what is left)."""
    from yolo.train.config import absolute_paths

    absolute_paths(cfg)
    stored = RunConfig.from_dict(ckpt["run_config"], str(path))
    absolute_paths(stored, stored=True)
    for key in FIXED_ON_RESUME:
        if getattr(cfg, key) != getattr(stored, key):
            start = ("--cfg <run folder>/run.yaml " if on_command_line() else
                     "load_run_config('<run folder>/run.yaml', ...) with ")
            where = (origins or {}).get(key, (str(path),))[0]
            raise InputError(f"a resumed run keeps its {key} ({ckpt['run_config'].get(key)}); to train from its "
                             f"weights with another {key}, start a run: {start}"
                             f"{override(f'weights={path}', f'{key}=...')}", where)
    done = int(ckpt.get("epoch", -1)) + 1  # epochs finished
    part = ckpt.get("interrupted_epoch")
    if part is not None and int(part["epoch"]) == done and int(part["batch"]) and cfg.batch_size != stored.batch_size:
        raise InputError(f"its epoch {done + 1} was interrupted after {count(int(part['batch']), 'batch')} of "
                         f"{stored.batch_size} images, and goes on only in batches of that size: resume it without "
                         "changing batch_size (another one can go on from a checkpoint between epochs)",
                         (origins or {}).get("batch_size", (str(path),))[0])
    if done >= cfg.epochs:
        asked = int(ckpt["run_config"].get("epochs", cfg.epochs))
        what = (f"all its {count(done, 'epoch')}" if cfg.epochs == asked else
                f"{count(done, 'epoch')}, and {override(f'epochs={cfg.epochs}')} asks for no more than that")
        raise InputError(f"nothing to resume: the run finished {what}; to train on, raise them "
                         f"({override(f'epochs={done + 10}')})", str(path))
