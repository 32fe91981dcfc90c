"""A training loop that knows nothing about detection: ``Trainer(cfg, task, out_dir).fit()``.

The task (``TrainTask``) brings the model, the batches, the loss and optionally validation and the
self-describing checkpoint keys; the loop brings optimizer groups, warmup and schedule, accumulation to a
nominal batch, AMP, gradient clipping, EMA, DDP, checkpoints, resume, early stopping and logs.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from yolo.train.config import RunConfig
from yolo.train.optim import accumulate_steps, build_optimizer, set_lr
from yolo.utils.checkpoint import load_safe, save_atomic
from yolo.utils.device import resolve_amp
from yolo.utils.dist import DistEnv, broadcast_object, reduce_mean
from yolo.utils.ema import ModelEMA, unwrap
from yolo.utils.interrupt import STOP_SIGNALS, deferred_interrupt
from yolo.utils.log import ResultsLog, TensorBoard
from yolo.utils.meters import MeterBuffer
from yolo.utils.rng import rng_state, set_rng_state


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the loss part."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped the run; ``checkpoint`` is the resumable ``last.pt`` written on the way out
    (``None`` on ranks other than 0)."""

    def __init__(self, checkpoint: Path | None):
        super().__init__(str(checkpoint) if checkpoint else "interrupted")
        self.checkpoint = checkpoint


@dataclass
class TrainTask:
    """What the loop needs from the outside world.

    ``compute_loss(model, batch, device) -> (loss scalar, {part: scalar})``: the loss to back-propagate (under
    DDP gradients are averaged over processes; scale it yourself if it sums over the batch).
    ``validate(model, epoch) -> metrics`` (rank 0 only; ``fitness`` in it decides best.pt, else the negative
    mean training loss does). ``checkpoint_meta(model) -> dict`` adds self-describing keys (cfg, names, ...).
    ``batch_images(batch) -> int`` counts images for images/s.
    """

    model: nn.Module
    train_loader: Iterable
    compute_loss: Callable[[nn.Module, Any, torch.device], tuple[torch.Tensor, dict]]
    validate: Callable[[nn.Module, int], dict] | None = None
    checkpoint_meta: Callable[[nn.Module], dict] | None = None
    batch_images: Callable[[Any], int] = lambda batch: len(batch[0])
    on_epoch_start: Callable[[int], None] | None = None  # e.g. close mosaic for the last epochs
    on_first_batches: Callable[[Any, int, Path], None] | None = None  # (batch, i, run folder) for i < 3
    on_batch: Callable[[int], None] | None = None  # the batch's index in its epoch, before its step (a resumed
    # epoch starts past the batches it had trained): e.g. the multi-scale sizes, drawn per (epoch, index)


def _skip_batches(loader, batches: int) -> bool:
    """Have ``loader``'s sampler leave out the first ``batches`` batches of its next pass, when it can (a
    sampler with ``skip``, under a plain batch size: yolo.data.loader.EpochSampler); False: the caller draws
    and drops them (any loader)."""
    sampler, size = getattr(loader, "sampler", None), getattr(loader, "batch_size", None)
    if not batches or not hasattr(sampler, "skip") or not isinstance(size, int):
        return False
    sampler.skip = batches * size
    return True


def _set_epoch(loader, epoch: int) -> None:
    """Tell the loader, its dataset and its (distributed) sampler which epoch it is (shuffling and augmentation
    streams differ per epoch and restart exactly on resume)."""
    sampler = getattr(loader, "sampler", None)
    batch_sampler = getattr(getattr(loader, "batch_sampler", None), "sampler", None)
    seen: set[int] = set()
    for obj in (loader, getattr(loader, "dataset", None), sampler, batch_sampler):
        if obj is not None and id(obj) not in seen and hasattr(obj, "set_epoch"):
            seen.add(id(obj))
            obj.set_epoch(epoch)


def _plain_numbers(values: dict) -> dict:
    """The numbers of ``values`` as Python ints and floats (numpy scalars would not load with weights_only)."""
    return {k: int(v) if isinstance(v, numbers.Integral) else float(v) for k, v in values.items()
            if isinstance(v, numbers.Real)}


TRAINING_KEYS = ("train_model", "optimizer", "scaler", "epoch", "rng")  # what resume() reads


def check_resumable(ckpt, path: str | Path) -> None:
    """``InputError`` (one line) unless ``ckpt`` holds the training state ``resume`` needs; for a deployment
    checkpoint (``best.pt``) it says how to fine-tune from it instead."""
    from yolo.errors import InputError, on_command_line

    missing = [k for k in TRAINING_KEYS if k not in ckpt] if isinstance(ckpt, dict) else list(TRAINING_KEYS)
    if not missing:
        return
    run_yaml = Path(path).resolve().parent.parent / "run.yaml"
    if on_command_line():
        how = f"yolo train {f'--cfg {run_yaml} ' if run_yaml.is_file() else ''}--set weights={path}"
    else:
        how = (f"train(load_run_config({str(run_yaml)!r}, ['weights={path}']))" if run_yaml.is_file() else
               f"train() a run config with weights={str(path)!r}")
    raise InputError(f"holds no training state (no {', '.join(missing)}; resume from the run's last.pt); to "
                     f"fine-tune from it instead: {how}", str(path))


# optimizer group settings the run config decides (set_lr sets lr and momentum at each step): a resumed
# optimizer keeps its state but takes these from the config, so --set weight_decay=... on resume is not ignored
_FROM_CONFIG = ("weight_decay", "nesterov", "betas", "eps")
_VAL_COLUMNS = (("map50", "mAP50"), ("map", "mAP50-95"), ("precision", "P"), ("recall", "R"))  # row key, label


class Trainer:
    """``fit()`` = ``before_train`` + per epoch ``train_epoch`` / ``after_epoch`` + ``after_train``."""

    def __init__(self, cfg: RunConfig, task: TrainTask, out_dir: str | Path, device: torch.device | str = "cpu",
                 env: DistEnv | None = None, progress: bool = True, plots: bool = True):
        self.cfg, self.task, self.env = cfg, task, env or DistEnv()
        self.device = torch.device(device)
        self.out_dir, self.weights_dir = Path(out_dir), Path(out_dir) / "weights"
        self.progress = progress and self.env.is_main
        self.plots = plots and self.env.is_main  # results.png once the run ends (matplotlib is slow per epoch)
        self.model = task.model.to(self.device)
        self.optimizer = build_optimizer(self.model, cfg)
        self.accumulate = accumulate_steps(cfg)
        self.amp, self.amp_reason = resolve_amp(cfg.amp, self.device)
        self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp and self.device.type == "cuda")
        self.ema = ModelEMA(self.model, cfg.ema.decay, cfg.ema.tau) if cfg.ema.enabled else None
        self.start_epoch, self.epoch, self.best_fitness, self.best_epoch = 0, 0, -math.inf, -1
        self.finished_epoch = -1  # the last epoch whose checkpoints are written (set again by fit)
        self.meters = MeterBuffer()
        self.stop = False
        self.boundary: dict | None = None  # the epoch under way at its last optimizer step (a Ctrl-C saves it)
        self.resume_from: dict | None = None  # an interrupted epoch's boundary to continue from (resume)
        self.best_file_epoch: int | None = None  # best.pt's epoch where it is not best_epoch's (_say_earlier_course)
        self._persistent: set[str] | None = None  # names of the model's state-dict buffers

    # ------------------------------------------------------------------ loop

    def fit(self) -> dict:
        """Train from ``start_epoch`` to ``cfg.epochs``; returns the last epoch's log row."""
        self.before_train()
        self.finished_epoch = self.start_epoch - 1  # the last epoch whose checkpoints are written
        row: dict = {}
        try:
            for self.epoch in range(self.start_epoch, self.cfg.epochs):
                self.train_epoch()
                row = self.after_epoch()
                if self.stop:
                    break
        except KeyboardInterrupt:
            raise TrainingInterrupted(self._save_interrupted() if self.env.is_main else None) from None
        finally:
            self.after_train()
        return row

    def before_train(self) -> None:
        if self.env.distributed:
            if self.cfg.sync_bn and self.device.type == "cuda":
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.nb = len(self.task.train_loader)
        self.warmup_steps = round(self.cfg.warmup_epochs * self.nb)
        if self.env.is_main:
            self.weights_dir.mkdir(parents=True, exist_ok=True)
            self.results = ResultsLog(self.out_dir / "results.csv")
            later = self.results.drop_from(self.start_epoch)  # rows of epochs this run is about to train (again)
            if later and max(later) > self.start_epoch:  # more than the one epoch a kill may have left logged
                self._say_earlier_course(later)
            self.tb = TensorBoard(self.out_dir)

    def after_train(self) -> None:
        # DDP's reducer holds the process group: while a Trainer outlives the run (held by a traceback, a
        # Ctrl-C or a reference cycle), destroy_process_group() would leave gloo's threads running into
        # interpreter exit, where they abort the process ("terminate called without an active exception").
        self.model = unwrap(self.model)
        if self.env.is_main and hasattr(self, "tb"):
            self.tb.close()
            if self.plots and self.results.rows:
                from yolo.utils.plots import plot_results

                plot_results(self.results.path)

    def train_epoch(self) -> None:
        """One pass over the loader with accumulation; the optimizer also steps after the last batch.

        A resumed interrupted epoch (``self.resume_from``) starts from the epoch's first random state, leaves
        out the batches already trained (its sampler does, or they are drawn and dropped), then takes up the
        random states and loss totals of its last optimizer step: the epoch goes on as if never stopped."""
        self.model.train()
        self.meters = MeterBuffer()
        resume, self.resume_from = self.resume_from, None
        if resume is not None:
            set_rng_state(resume["rng_epoch"])
        epoch_rng = rng_state()  # what the loader's order and everything after it draw from
        self.boundary = self._boundary(0, epoch_rng)  # nothing trained yet
        if self.task.on_epoch_start:
            self.task.on_epoch_start(self.epoch)
        _set_epoch(self.task.train_loader, self.epoch)
        self.optimizer.zero_grad(set_to_none=True)
        bar = self._progress_bar()
        skip = resume["batch"] if resume is not None else 0
        start = skip if _skip_batches(self.task.train_loader, skip) else 0  # left out by the sampler itself

        def take_up() -> None:  # the interrupted step's random states and loss totals
            set_rng_state(resume["rng"])
            self.meters.load_totals(resume["meters"])
            self.boundary = {**self._boundary(skip, epoch_rng), "meters": resume["meters"]}

        if start:
            take_up()
            if bar is not None:
                bar.update(start)
        tic = time.perf_counter()
        try:
            for i, batch in enumerate(self.task.train_loader, start=start):
                if i < skip:  # trained before the interruption: drawn (as then) and dropped
                    if i + 1 == skip:
                        take_up()
                    if bar is not None:
                        bar.update(1)
                    tic = time.perf_counter()
                    continue
                self.meters.update(data_time=time.perf_counter() - tic)
                if i < 3 and self.epoch == self.start_epoch and self.env.is_main and self.task.on_first_batches:
                    self.task.on_first_batches(batch, i, self.out_dir)  # e.g. pictures of what the model sees
                if self.task.on_batch:
                    self.task.on_batch(i)
                self.train_step(i, batch)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(self._postfix(batch, time.perf_counter() - tic), refresh=False)
                tic = time.perf_counter()
        finally:
            if bar is not None:
                bar.close()

    def _boundary(self, batch: int, epoch_rng: dict) -> dict:
        """The epoch under way after ``batch`` batches, at an optimizer step: what an interrupted ``last.pt``
        needs besides the weights and optimizer (which change only at steps): the model's buffers (BN running
        statistics move at every forward, also of micro-batches that did not step yet), the random states
        (now and at the epoch's start) and the loss totals."""
        model = unwrap(self.model)
        if self._persistent is None:
            self._persistent = set(model.state_dict())  # buffers a state dict holds (not grids or caches)
        # buffers stay on their device: a copy to the host would wait for the GPU at every step
        return {"epoch": self.epoch, "batch": batch, "rng_epoch": epoch_rng, "rng": rng_state(),
                "meters": self.meters.totals(),
                "buffers": {k: v.detach().clone() for k, v in model.named_buffers() if k in self._persistent}}

    def train_step(self, i: int, batch) -> None:
        step = self.epoch * self.nb + i
        lr = set_lr(self.optimizer, self.cfg, self.epoch, step, self.warmup_steps)
        t0 = time.perf_counter()
        step_now = (i + 1) % self.accumulate == 0 or i + 1 == self.nb
        # DDP: gradients are all-reduced only on the micro-batch that steps (no_sync before it)
        sync = contextlib.nullcontext() if step_now or not self.env.distributed else self.model.no_sync()
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp else contextlib.nullcontext()
        with sync:
            with autocast:
                loss, parts = self.task.compute_loss(self.model, batch, self.device)
            self._check_finite(step, loss, parts)
            t1 = time.perf_counter()
            self.scaler.scale(loss).backward()
        t2 = time.perf_counter()
        if step_now:
            with deferred_interrupt():  # the step, the EMA and their record are one: a Ctrl-C waits for them
                self.optimizer_step()
                self.meters.update({k: float(v) for k, v in parts.items()}, loss=float(loss.detach()), lr=lr,
                                   forward_time=t1 - t0, backward_time=t2 - t1,
                                   optim_time=time.perf_counter() - t2)
                if self.env.is_main:
                    self.boundary = self._boundary(i + 1, self.boundary["rng_epoch"])
            return
        self.meters.update({k: float(v) for k, v in parts.items()}, loss=float(loss.detach()), lr=lr,
                           forward_time=t1 - t0, backward_time=t2 - t1, optim_time=time.perf_counter() - t2)

    def optimizer_step(self) -> None:
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)

    def _check_finite(self, step: int, loss: torch.Tensor, parts: dict) -> None:
        values = {k: torch.as_tensor(v).detach().float() for k, v in {"total": loss, **parts}.items()}
        bad = {k: float(v) for k, v in values.items() if not torch.isfinite(v).all()}
        if bad:
            part = next((k for k in bad if k != "total"), "total")
            raise NonFiniteLossError(f"non-finite loss at step {step} (epoch {self.epoch}, batch "
                                     f"{step - self.epoch * self.nb}): {part} = {bad[part]}; the last good "
                                     f"checkpoint is kept in {self.weights_dir}")

    def after_epoch(self) -> dict:
        """Reduce the epoch's losses, validate (rank 0), log, save checkpoints, decide on early stopping."""
        losses = reduce_mean({k: m.global_avg for k, m in self.meters.items()
                              if not k.endswith("_time") and k != "lr"}, self.device)
        row: dict = {}
        if self.env.is_main:
            times = {f"time/{k[:-5]}": m.total for k, m in self.meters.items() if k.endswith("_time")}  # seconds
            row = {"epoch": self.epoch, **{f"train/{k}": v for k, v in losses.items()}, **self._validate(losses),
                   "lr": self.optimizer.param_groups[0]["lr"], "time": sum(times.values()), **times}
            with deferred_interrupt():  # Ctrl-C now waits for the writes (torch.save would fail half-way)
                self._log(row)  # the row first: a checkpoint never claims an epoch results.csv lacks (a redone
                self._save_epoch(row)  # epoch after a kill replaces its row)
                self.finished_epoch = self.epoch
            self._say_epoch(row, losses)
            patience = self.cfg.patience  # epochs without a better fitness; decided on a measured one only
            self.stop = patience > 0 and not math.isnan(row["fitness"]) and self.epoch - self.best_epoch >= patience
        self.stop = broadcast_object(self.stop)
        return row

    def _validate(self, losses: dict) -> dict:
        """This epoch's validation metrics and ``fitness``: from the metrics when validated; NaN on an epoch
        that ``val.period`` skips (it is not compared with validated epochs: another scale); the negative
        training loss when the task has no validation at all."""
        last = self.epoch + 1 == self.cfg.epochs
        metrics: dict = {}
        validated = bool(self.task.validate) and ((self.epoch + 1) % self.cfg.val.period == 0 or last)
        if validated:
            metrics = dict(self.task.validate(self.eval_model, self.epoch))
        if "fitness" not in metrics:
            if "map50" in metrics and "map" in metrics:
                metrics["fitness"] = 0.1 * metrics["map50"] + 0.9 * metrics["map"]
            elif self.task.validate and not validated:
                metrics["fitness"] = math.nan
            else:
                metrics["fitness"] = -losses.get("loss", 0.0)
        return metrics

    @property
    def eval_model(self) -> nn.Module:
        """The EMA model when EMA is on (what validation sees and checkpoints deploy), else the raw one."""
        return self.ema.ema if self.ema is not None else unwrap(self.model)

    # ------------------------------------------------------------------ checkpoints

    def _say_earlier_course(self, later: list[int]) -> None:
        """A run resumed from an earlier checkpoint: say which results.csv rows it drops, and which epoch a
        best.pt written by them holds (``best_file_epoch``: what the run's last line names until a better epoch
        of this course replaces the file)."""
        best = self.weights_dir / "best.pt"
        held = int(load_safe(best).get("epoch", -1)) if best.is_file() else -1
        kept = ""
        if held >= self.start_epoch:
            self.best_file_epoch = held
            kept = (f"; best.pt holds epoch {held + 1} of them, kept until an epoch of this run beats the "
                    "checkpoint's best")
        print(f"results.csv: the rows of epochs {min(later) + 1}-{max(later) + 1} are dropped (this run goes on "
              f"from epoch {self.start_epoch + 1}, an earlier checkpoint){kept}", file=sys.stderr)

    def _save_epoch(self, row: dict) -> None:
        """``last.pt`` (full) every epoch; ``best.pt`` (deployable, no training state) when fitness improved."""
        better = row["fitness"] > self.best_fitness
        if better:
            self.best_fitness, self.best_epoch = row["fitness"], self.epoch
            self.best_file_epoch = None
        self.save("last.pt")
        if better:
            save_atomic(self.deploy_checkpoint(row), self.weights_dir / "best.pt")
        if self.cfg.save_period and (self.epoch + 1) % self.cfg.save_period == 0:
            self.save(f"epoch_{self.epoch + 1}.pt")

    def _save_interrupted(self) -> Path:
        """``last.pt`` with the epoch counter at the last finished epoch, whose checkpoints were written, and the
        epoch under way as it was at its last optimizer step (weights, EMA and optimizer as they are: they change
        only at steps; the buffers, random states and loss totals of that step; ``interrupted_epoch``), which
        resume continues from that batch. After a Ctrl-C during an epoch's writes, resume starts the next epoch.
        A second Ctrl-C is ignored while it is written; the write is atomic anyway."""
        import signal
        import threading

        main = threading.current_thread() is threading.main_thread()
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in STOP_SIGNALS} if main else {}
        try:
            ckpt = self.checkpoint(self.finished_epoch, interrupted=True)
            b = self.boundary
            if b is not None and b["epoch"] == self.finished_epoch + 1:
                buffers = {k: v.cpu() for k, v in b["buffers"].items()}
                ckpt["train_model"].update(buffers)
                if self.ema is None:  # the deployable model is the raw one: the same buffers
                    ckpt["model"].update(buffers)
                ckpt["interrupted_epoch"] = {k: b[k] for k in ("epoch", "batch", "rng_epoch", "rng", "meters")}
            path = self.weights_dir / "last.pt"
            save_atomic(ckpt, path)
            return path
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def checkpoint(self, epoch: int | None = None, interrupted: bool = False) -> dict:
        """Everything to continue exactly, plus the deployable (EMA) model under ``model``."""
        deploy = self.eval_model
        meta = self.task.checkpoint_meta(deploy) if self.task.checkpoint_meta else {}
        return {**meta,
                "model": {k: v.detach().cpu() for k, v in deploy.state_dict().items()},
                "train_model": {k: v.detach().cpu() for k, v in unwrap(self.model).state_dict().items()},
                "ema": {k: v for k, v in self.ema.state_dict().items() if k != "model"} if self.ema else None,
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "scheduler": {"kind": self.cfg.schedule, "epoch": self.epoch if epoch is None else epoch},
                "epoch": self.epoch if epoch is None else epoch, "best_fitness": float(self.best_fitness),
                "best_epoch": self.best_epoch, "interrupted": interrupted, "run_config": self.cfg.to_dict(),
                "rng": rng_state(), "training_state": True}

    def deploy_checkpoint(self, metrics: dict) -> dict:
        """What deployment needs and nothing more (``best.pt``): the task's self-describing keys, the EMA weights
        (float16 floats with ``cfg.best_half``), run config, epoch and this epoch's ``metrics`` (timings left
        out); no raw weights, EMA counters, optimizer, scaler or RNG states (``last.pt`` has those)."""
        deploy = self.eval_model
        meta = self.task.checkpoint_meta(deploy) if self.task.checkpoint_meta else {}
        dtype = torch.float16 if self.cfg.best_half else None
        state = {k: v.detach().cpu().to(dtype) if dtype and v.is_floating_point() else v.detach().cpu()
                 for k, v in deploy.state_dict().items()}
        return {**meta, "model": state, "epoch": self.epoch, "best_fitness": float(self.best_fitness),
                "best_epoch": self.best_epoch, "run_config": self.cfg.to_dict(), "training_state": False,
                "metrics": _plain_numbers({k: v for k, v in metrics.items() if not k.startswith("time")})}

    def save(self, name: str, epoch: int | None = None, interrupted: bool = False) -> Path:
        path = self.weights_dir / name
        save_atomic(self.checkpoint(epoch, interrupted), path)
        return path

    def resume(self, path: str | Path) -> None:
        """Load a training checkpoint: weights, EMA, optimizer, scaler, counters and RNG states."""
        ckpt = load_safe(path)
        check_resumable(ckpt, path)
        unwrap(self.model).load_state_dict(ckpt["train_model"])
        if self.ema is not None and ckpt.get("ema"):
            self.ema.load_state_dict({**ckpt["ema"], "model": ckpt["model"]})
        configured = [{k: g[k] for k in _FROM_CONFIG if k in g} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(ckpt["optimizer"])  # its momentum buffers, and the groups' settings ...
        for group, settings in zip(self.optimizer.param_groups, configured):
            group.update(settings)  # ... of which those the config decides follow this session's (--set)
        if ckpt["scaler"]:  # empty from a run without a CUDA AMP scaler: this one starts afresh
            self.scaler.load_state_dict(ckpt["scaler"])
        self.start_epoch = int(ckpt["epoch"]) + 1
        self.best_fitness, self.best_epoch = float(ckpt["best_fitness"]), int(ckpt.get("best_epoch", -1))
        set_rng_state(ckpt["rng"])
        part = ckpt.get("interrupted_epoch")  # a Ctrl-C inside an epoch: continue it from its last step
        self.resume_from = part if part is not None and int(part["epoch"]) == self.start_epoch else None
        if self.env.is_main:  # temporary files of writes a SIGKILL cut short (the finished files are intact)
            for stale in self.weights_dir.glob(".*.tmp"):
                stale.unlink(missing_ok=True)

    # ------------------------------------------------------------------ seeing the run

    def _log(self, row: dict) -> None:
        self.results.append(row)
        self.tb.scalars(row, self.epoch)

    def _say_epoch(self, row: dict, losses: dict) -> None:
        """One line per epoch on stderr, the run's log with or without progress bars: ``epoch 2/10: box 0.0429
        obj 1.2693 cls 0.3240 loss 13.0897; mAP50 0.412 mAP50-95 0.201 P 0.500 R 0.400 (best); 41.2 s training``
        (validation metrics on validated epochs; "best": best.pt was written)."""
        line = f"epoch {self.epoch + 1}/{self.cfg.epochs}: " + " ".join(f"{k} {v:.4f}" for k, v in losses.items())
        shown = [(label, row[key]) for key, label in _VAL_COLUMNS if isinstance(row.get(key), numbers.Real)]
        if shown:
            line += "; " + " ".join(f"{label} {value:.3f}" for label, value in shown)
            line += " (best)" if self.best_epoch == self.epoch else ""
        print(f"{line}; {row['time']:.1f} s training", file=sys.stderr, flush=True)

    def _progress_bar(self):
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=self.nb, desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}", leave=True,
                    bar_format="{l_bar}{bar:12}{r_bar}")

    def _postfix(self, batch, seconds: float) -> str:
        m = self.meters
        losses = " ".join(f"{k} {m[k].avg:.4f}" for k in ("box", "obj", "cls", "loss") if k in m)
        mem = torch.cuda.memory_reserved(self.device) / 2 ** 30 if self.device.type == "cuda" else 0.0
        speed = self.task.batch_images(batch) * self.env.world_size / max(seconds, 1e-9)
        return f"{losses} lr {m['lr'].latest:.2e} mem {mem:.2f}G {speed:.1f} img/s"
