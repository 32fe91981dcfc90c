"""The generic training loop, tested with a toy model (detectron2's habit): failures point at the loop."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from yolo.train.config import RunConfig
from yolo.train.engine import NonFiniteLossError, Trainer, TrainTask
from yolo.train.optim import lr_factor, param_groups, set_lr
from yolo.utils.checkpoint import load_safe
from yolo.utils.device import cpu_has_fast_bf16
from yolo.utils.ema import ModelEMA


class ToyLoader:
    """Fixed regression data, shuffled each epoch with the GLOBAL torch RNG (so resume must restore it)."""

    def __init__(self, n=48, batch=8, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 6, generator=g)
        self.y = self.x @ torch.randn(6, 1, generator=g) + 0.5
        self.batch = batch

    def __len__(self):
        return math.ceil(len(self.x) / self.batch)

    def __iter__(self):
        order = torch.randperm(len(self.x))
        for i in range(0, len(order), self.batch):
            idx = order[i:i + self.batch]
            yield self.x[idx], self.y[idx]


def toy_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 1))


def mse(model, batch, device):
    x, y = (t.to(device) for t in batch)
    loss = nn.functional.mse_loss(model(x), y)
    return loss, {"mse": loss.detach()}


def toy_cfg(**kw) -> RunConfig:
    base = dict(epochs=4, batch_size=8, nbs=16, lr0=0.05, warmup_epochs=1, optimizer="sgd", seed=0,
                deterministic=True, workers=0)
    return RunConfig.from_dict({**base, **kw})


def toy_trainer(tmp_path, cfg=None, name="run", plots=False, **task_kw):
    task = TrainTask(toy_model(), ToyLoader(), mse, **task_kw)
    return Trainer(cfg or toy_cfg(), task, tmp_path / name, progress=False, plots=plots)


class StopAfter(Trainer):
    """Stops (as patience would) after epoch ``k``: the run ends cleanly with last.pt of that epoch."""

    k = 1

    def after_epoch(self):
        row = super().after_epoch()
        self.stop = self.stop or self.epoch == self.k
        return row


def _state(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_trains_and_writes_run_files(tmp_path):
    tr = toy_trainer(tmp_path, toy_cfg(save_period=2), plots=True)
    tr.fit()
    run = tmp_path / "run"
    rows = (run / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 5 and rows[0].startswith("epoch,train/mse")
    first, last = float(rows[1].split(",")[1]), float(rows[-1].split(",")[1])
    assert last < 0.5 * first
    assert (run / "results.png").stat().st_size > 1000
    ckpt = torch.load(run / "weights" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 3 and ckpt["ema"]["updates"] == 4 * 3  # 6 batches, accumulate 2 -> 3 steps per epoch
    for key in ("model", "train_model", "optimizer", "scaler", "scheduler", "best_fitness", "run_config", "rng"):
        assert key in ckpt
    assert (run / "weights" / "best.pt").is_file()
    assert sorted(p.name for p in (run / "weights").glob("epoch_*.pt")) == ["epoch_2.pt", "epoch_4.pt"]
    assert "time/forward" in rows[0] and "time/data" in rows[0]


@pytest.mark.parametrize("ema", [True, False])
def test_resume_continues_exactly(tmp_path, ema):
    cfg = toy_cfg(ema={"enabled": ema, "tau": 3})
    full = toy_trainer(tmp_path, cfg, "full")
    full.fit()
    first = StopAfter(cfg, TrainTask(toy_model(), ToyLoader(), mse), tmp_path / "part", progress=False, plots=False)
    first.fit()
    assert load_safe(tmp_path / "part" / "weights" / "last.pt")["epoch"] == 1
    torch.manual_seed(123)  # whatever happened in between must not matter
    second = toy_trainer(tmp_path, cfg, "part")
    second.resume(tmp_path / "part" / "weights" / "last.pt")
    second.fit()
    for (k, a), b in zip(_state(full).items(), _state(second).values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=k)
    if ema:
        for a, b in zip(full.ema.ema.state_dict().values(), second.ema.ema.state_dict().values()):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert len((tmp_path / "part" / "results.csv").read_text().strip().splitlines()) == 5


def test_resume_takes_the_configs_optimizer_settings_and_a_fresh_scaler(tmp_path):
    """``--resume --set weight_decay=...`` (or nesterov) was written to run.yaml but the optimizer's state
    brought the old value back; and a checkpoint of a run without a CUDA AMP scaler (an empty state) crashed an
    enabled scaler's load (resuming on a GPU with amp)."""
    first = StopAfter(toy_cfg(), TrainTask(toy_model(), ToyLoader(), mse), tmp_path / "part", progress=False,
                      plots=False)
    first.fit()
    ckpt = load_safe(tmp_path / "part" / "weights" / "last.pt")
    assert ckpt["scaler"] == {} and [g["weight_decay"] for g in ckpt["optimizer"]["param_groups"]] == [0.0005, 0, 0]
    second = toy_trainer(tmp_path, toy_cfg(weight_decay=0.05, nesterov=True), "part")
    second.scaler = torch.amp.GradScaler("cpu", enabled=True)  # what a CUDA run with amp has
    second.resume(tmp_path / "part" / "weights" / "last.pt")
    groups = {g["name"]: g for g in second.optimizer.param_groups}
    assert groups["decay"]["weight_decay"] == pytest.approx(0.05) and groups["bias"]["weight_decay"] == 0
    assert all(g["nesterov"] for g in groups.values())
    assert torch.equal(second.optimizer.state_dict()["state"][0]["momentum_buffer"],
                       ckpt["optimizer"]["state"][0]["momentum_buffer"])  # the state itself is the checkpoint's
    assert second.scaler.is_enabled() and second.scaler.get_scale() == 65536.0  # a fresh one


def test_non_finite_loss_stops_naming_step_and_part(tmp_path):
    calls = {"n": 0}

    def flaky(model, batch, device):
        calls["n"] += 1
        loss, parts = mse(model, batch, device)
        if calls["n"] == 9:  # epoch 1 (6 batches per epoch), batch 2
            parts = {**parts, "obj": torch.tensor(float("nan"))}
            loss = loss + parts["obj"]
        return loss, parts

    tr = Trainer(toy_cfg(), TrainTask(toy_model(), ToyLoader(), flaky), tmp_path / "run", progress=False,
                 plots=False)
    with pytest.raises(NonFiniteLossError, match=r"step 8 \(epoch 1, batch 2\): obj = nan"):
        tr.fit()
    assert load_safe(tmp_path / "run" / "weights" / "last.pt")["epoch"] == 0  # the last good one, intact


@pytest.mark.parametrize("stop_call", [10, 7, 12])
def test_ctrl_c_inside_an_epoch_resumes_exactly(tmp_path, stop_call):
    """Ctrl-C at a micro-batch of epoch 1 (6 batches, accumulate 2: steps after batches 2, 4, 6), then --resume:
    the same weights, EMA and results.csv as a run never stopped. The toy model has BN (its statistics move
    at every forward, also of the micro-batch that had not stepped) and dropout, and its loader shuffles with
    the global RNG: all of it must be taken up where the last optimizer step left it. It used to save the
    weights as they were and redo the whole epoch on top of them (call 10: epoch 1's loss 2.278 against 3.348,
    BN's num_batches_tracked 21 against 18). Calls 7 and 12: the epoch's first and last batch."""
    import csv

    cfg = dict(epochs=3, ema={"enabled": True, "decay": 0.9, "tau": 2})
    ref = Trainer(toy_cfg(**cfg), TrainTask(toy_model(), ToyLoader(), mse), tmp_path / "ref", progress=False,
                  plots=False)
    ref.fit()
    calls = {"n": 0}

    def interrupted(model, batch, device):
        calls["n"] += 1
        if calls["n"] == stop_call:
            raise KeyboardInterrupt
        return mse(model, batch, device)

    tr = Trainer(toy_cfg(**cfg), TrainTask(toy_model(), ToyLoader(), interrupted), tmp_path / "run",
                 progress=False, plots=False)
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    ckpt = load_safe(tmp_path / "run" / "weights" / "last.pt")
    assert ckpt["epoch"] == 0 and ckpt["interrupted_epoch"]["batch"] == {10: 2, 7: 0, 12: 4}[stop_call]
    torch.manual_seed(123)  # a new process: nothing of the old random states is left
    indices = []  # on_batch: each trained batch's index in its epoch (the multi-scale sizes are drawn from it)
    resumed = Trainer(toy_cfg(**cfg), TrainTask(toy_model(), ToyLoader(), mse, on_batch=indices.append),
                      tmp_path / "run", progress=False, plots=False)
    resumed.resume(tmp_path / "run" / "weights" / "last.pt")
    resumed.fit()
    skip = ckpt["interrupted_epoch"]["batch"]
    assert indices == list(range(skip, 6)) + list(range(6)), indices  # epoch 1 from its batch `skip`, then 2
    for name in ("last.pt",):
        a, b = load_safe(tmp_path / "ref" / "weights" / name), load_safe(tmp_path / "run" / "weights" / name)
        for key in ("train_model", "model"):
            for k, v in a[key].items():
                assert torch.equal(v, b[key][k]), (key, k)
    rows = [list(csv.DictReader(open(tmp_path / d / "results.csv"))) for d in ("ref", "run")]
    drop = lambda r: {k: v for k, v in r.items() if not k.startswith("time")}  # noqa: E731
    assert [drop(r) for r in rows[0]] == [drop(r) for r in rows[1]]


def test_keyboard_interrupt_saves_last(tmp_path):
    calls = {"n": 0}

    def interrupted(model, batch, device):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return mse(model, batch, device)

    tr = Trainer(toy_cfg(), TrainTask(toy_model(), ToyLoader(), interrupted), tmp_path / "run", progress=False,
                 plots=False)
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    ckpt = load_safe(tmp_path / "run" / "weights" / "last.pt")
    assert ckpt["interrupted"] is True and ckpt["epoch"] == 0  # epoch 1 was under way: resume redoes it


def test_ctrl_c_during_the_epoch_checkpoints_lets_them_finish_then_stops(tmp_path, monkeypatch):
    """SIGINT arriving as epoch 1's last.pt is written: the write finishes (torch.save cut half-way raised a
    RuntimeError from its zip writer: exit 1 instead of an interruption), then the run stops as interrupted
    with last.pt at epoch 1, which resume continues from (epoch 2)."""
    import os
    import signal

    from yolo.train import engine

    saves, real_save = [], engine.save_atomic

    def save_with_ctrl_c(obj, path):
        saves.append(path.name)
        if len(saves) == 3:  # last.pt and best.pt of epoch 0, then last.pt of epoch 1
            os.kill(os.getpid(), signal.SIGINT)
        real_save(obj, path)

    monkeypatch.setattr(engine, "save_atomic", save_with_ctrl_c)
    tr = toy_trainer(tmp_path, validate=lambda model, epoch: {"map50": 0.0, "map": 0.1 * (epoch + 1)})
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    assert saves[:4] == ["last.pt", "best.pt", "last.pt", "best.pt"]  # epoch 1's writes all ran
    ckpt = load_safe(tmp_path / "run" / "weights" / "last.pt")
    assert ckpt["interrupted"] is True and ckpt["epoch"] == 1
    assert load_safe(tmp_path / "run" / "weights" / "best.pt")["epoch"] == 1
    resumed = toy_trainer(tmp_path, name="run")
    resumed.resume(tmp_path / "run" / "weights" / "last.pt")
    assert resumed.start_epoch == 2


def test_patience_stops_early_and_best_is_kept(tmp_path):
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.4, 0.3, 0.2, 0.1])
    cfg = toy_cfg(epochs=8, patience=2)
    tr = toy_trainer(tmp_path, cfg, validate=lambda model, epoch: {"map50": 0.0, "map": next(scores) / 0.9})
    tr.fit()
    assert tr.epoch == 3 and tr.best_epoch == 1  # no gain in epochs 2 and 3
    assert load_safe(tmp_path / "run" / "weights" / "best.pt")["epoch"] == 1
    assert abs(load_safe(tmp_path / "run" / "weights" / "best.pt")["best_fitness"] - 0.7) < 1e-9


def test_patience_is_decided_on_validated_epochs_only(tmp_path):
    """With val.period 3, epochs 0, 1, 3 and 4 are not validated: their fitness is NaN (not the negative loss,
    another scale, which made the CSV and best.pt mix the two), and patience does not end the run on them (it
    stopped after epoch 4 of 6, before the last validation, without a word)."""
    import csv

    scores = iter([0.5, 0.6])  # epochs 2 and 5
    cfg = toy_cfg(epochs=6, patience=2, **{"val": {"period": 3}})
    tr = toy_trainer(tmp_path, cfg, validate=lambda model, epoch: {"map50": 0.0, "map": next(scores) / 0.9})
    tr.fit()
    assert tr.epoch == 5 and tr.best_epoch == 5
    with open(tmp_path / "run" / "results.csv") as f:
        fitness = [float(r["fitness"]) for r in csv.DictReader(f)]
    assert [math.isnan(v) for v in fitness] == [True, True, False, True, True, False]
    assert fitness[2] == pytest.approx(0.5) and fitness[5] == pytest.approx(0.6)

    scores = iter([0.5, 0.4, 0.3, 0.2, 0.1])  # epochs 1, 3, 5, ...: no gain after epoch 1
    tr = toy_trainer(tmp_path, toy_cfg(epochs=10, patience=2, **{"val": {"period": 2}}), name="run2",
                     validate=lambda model, epoch: {"map50": 0.0, "map": next(scores) / 0.9})
    tr.fit()
    assert tr.epoch == 3 and tr.best_epoch == 1  # stopped on a validated epoch, 2 epochs after the best


@pytest.mark.parametrize("schedule", ["cosine", "linear", "step"])
def test_schedules_match_torch_schedulers(schedule):
    cfg = toy_cfg(epochs=10, lr0=0.1, lrf=0.05, schedule=schedule, step_milestones=[0.3, 0.7], step_gamma=0.2)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    ref = {"cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.1 * 0.05),
           "linear": lambda: torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.05, total_iters=10),
           "step": lambda: torch.optim.lr_scheduler.MultiStepLR(opt, [3, 7], gamma=0.2)}[schedule]()
    for epoch in range(10):
        assert abs(0.1 * lr_factor(cfg, epoch) - opt.param_groups[0]["lr"]) < 1e-9, epoch
        opt.step()
        ref.step()


def test_warmup_ramps_lr_and_momentum():
    cfg = toy_cfg(lr0=0.1, warmup_bias_lr=0.2, warmup_momentum=0.5, momentum=0.9, epochs=10)
    model = toy_model()
    groups = param_groups(model)
    opt = torch.optim.SGD([{"params": groups[g], "name": g} for g in groups], lr=0.1, momentum=0.9)
    set_lr(opt, cfg, 0, 0, 10)
    assert [g["lr"] for g in opt.param_groups] == [0.0, 0.0, 0.2] and opt.param_groups[0]["momentum"] == 0.5
    set_lr(opt, cfg, 0, 5, 10)
    assert [round(g["lr"], 9) for g in opt.param_groups] == [0.05, 0.05, 0.15]
    assert abs(opt.param_groups[0]["momentum"] - 0.7) < 1e-12
    set_lr(opt, cfg, 1, 12, 10)
    assert all(abs(g["lr"] - 0.1 * lr_factor(cfg, 1)) < 1e-12 for g in opt.param_groups)


def test_no_weight_decay_on_norm_and_bias_of_darknet():
    from tests.helpers import CFG
    from yolo.model.darknet import Darknet

    model = Darknet.from_cfg(CFG / "yolov3-tiny.cfg")
    groups = {k: {id(p) for p in v} for k, v in param_groups(model).items()}
    convs = {id(m.weight) for m in model.modules() if isinstance(m, nn.Conv2d)}
    bns = {id(m.weight) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    biases = {id(p) for n, p in model.named_parameters() if n.endswith("bias")}
    assert groups == {"decay": convs, "no_decay": bns, "bias": biases}


def test_ema_matches_hand_computed_average():
    model = toy_model()
    ema = ModelEMA(model, decay=0.9, tau=2.0)
    expected = {k: v.clone().float() for k, v in model.state_dict().items()}
    for n in range(1, 4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * n)
        ema.update(model)
        d = 0.9 * (1 - math.exp(-n / 2.0))
        for k, v in model.state_dict().items():
            expected[k] = expected[k] * d + v.float() * (1 - d) if v.dtype.is_floating_point else v.float()
    for k, v in ema.ema.state_dict().items():
        torch.testing.assert_close(v.float(), expected[k], msg=k)


def test_gradient_clipping_bounds_the_step(tmp_path):
    cfg = toy_cfg(grad_clip=0.01, momentum=0.0, nesterov=False, warmup_epochs=0, lr0=1.0, weight_decay=0.0)
    tr = toy_trainer(tmp_path, cfg)
    before = [p.detach().clone() for p in tr.model.parameters()]
    for p in tr.model.parameters():
        p.grad = torch.full_like(p, 100.0)
    for g in tr.optimizer.param_groups:
        g["lr"] = 1.0
    tr.optimizer_step()
    delta = torch.cat([(p.detach() - b).flatten() for p, b in zip(tr.model.parameters(), before)])
    assert abs(delta.norm().item() - 0.01) < 1e-6  # SGD without momentum: step = lr * clipped gradient


def test_bf16_autocast_on_cpu_when_asked(tmp_path):
    seen = []

    def probe(model, batch, device):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return mse(model, batch, device)

    tr = Trainer(toy_cfg(epochs=1, amp=True), TrainTask(toy_model(), ToyLoader(), probe), tmp_path / "run",
                 progress=False, plots=False)
    tr.fit()
    assert seen and all(seen) and not tr.scaler.is_enabled()  # no gradient scaler for bf16
    off = Trainer(toy_cfg(), TrainTask(toy_model(), ToyLoader(), mse), tmp_path / "b", progress=False, plots=False)
    assert off.amp is cpu_has_fast_bf16()  # default (amp: auto): on only where the CPU has bf16 hardware
    assert off.amp_reason.startswith("auto")
    for amp in (None, "auto"):  # null (configs saved before auto) means auto
        assert Trainer(toy_cfg(amp=amp), TrainTask(toy_model(), ToyLoader(), mse), tmp_path / "c", progress=False,
                       plots=False).amp is off.amp
    forced = Trainer(toy_cfg(amp=False), TrainTask(toy_model(), ToyLoader(), mse), tmp_path / "d", progress=False,
                     plots=False)
    assert forced.amp is False and forced.amp_reason == "as set"


def test_meters_window_and_global_average():
    import statistics

    from yolo.utils.meters import MeterBuffer

    buf = MeterBuffer(window=4)
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0]
    for v in values:
        buf.update(loss=v)
    m = buf["loss"]
    assert m.latest == 2.0 and m.avg == statistics.mean(values[-4:]) and m.median == statistics.median(values[-4:])
    assert m.global_avg == statistics.mean(values) and buf.averages() == {"loss": statistics.mean(values)}


def test_increment_path_never_reuses_a_folder(tmp_path):
    from yolo.utils.files import increment_path

    paths = [increment_path(tmp_path / "runs" / "exp") for _ in range(3)]
    assert [p.name for p in paths] == ["exp", "exp2", "exp3"] and all(p.is_dir() for p in paths)


def test_resume_from_an_earlier_checkpoint_rewrites_the_later_rows(tmp_path, capsys):
    """Resuming a 4-epoch run from epoch_2.pt: epochs 3-4 are trained again. Their old rows stayed, and the
    redone ones went to the end (epochs 0, 1, 3, 2, 3 ... out of order, two courses of the run mixed)."""
    import csv

    toy_trainer(tmp_path, toy_cfg(save_period=2)).fit()
    assert load_safe(tmp_path / "run" / "weights" / "best.pt")["epoch"] == 3  # the loss falls every epoch
    for lr0, kept in ((50.0, True), (0.05, False)):  # epoch 3 again: far worse (best.pt stays), or better
        again = toy_trainer(tmp_path, toy_cfg(save_period=2, epochs=3, lr0=lr0, grad_clip=1.0))
        again.resume(tmp_path / "run" / "weights" / "epoch_2.pt")
        again.fit()
        said = capsys.readouterr().err
        assert not kept or "results.csv: the rows of epochs 3-4 are dropped (this run goes on from epoch 3, an " \
            "earlier checkpoint); best.pt holds epoch 4 of them, kept until an epoch of this run beats the " \
            "checkpoint's best\n" in said, said
        with open(tmp_path / "run" / "results.csv", newline="") as f:
            assert [r["epoch"] for r in csv.DictReader(f)] == ["0", "1", "2"]
        held = load_safe(tmp_path / "run" / "weights" / "best.pt")["epoch"]
        assert held == (3 if kept else 2), (lr0, held)
        # the epoch the run's last line names (train: done; ... best.pt from epoch N) is the one best.pt holds
        assert (again.best_epoch if again.best_file_epoch is None else again.best_file_epoch) == held


def test_results_log_keeps_rows_of_a_resumed_run(tmp_path):
    import csv

    from yolo.utils.log import ResultsLog

    log = ResultsLog(tmp_path / "results.csv")
    log.append({"epoch": 0, "loss": 1.5})
    log.append({"epoch": 1, "loss": 1.25, "map50": 0.5})
    again = ResultsLog(tmp_path / "results.csv")
    again.append({"epoch": 1, "loss": 1.0, "map50": 0.75})  # the same epoch redone replaces its row
    with open(tmp_path / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["epoch"], r["loss"], r["map50"]) for r in rows] == [("0", "1.5", ""), ("1", "1", "0.75")]
