"""The detection builder ``train(cfg)`` with an in-memory fake loader: run files, checkpoints usable by
``load_model``, exact resume, class-count rebuild, starting weights and freezing."""

from __future__ import annotations

import os
import re

import cv2
import numpy as np
import pytest
import torch
import yaml

from tests.helpers import CFG, yolo_warnings
from yolo.errors import InputError
from yolo.model.cfg_edit import set_num_classes
from yolo.model.cfg_parser import parse_cfg_text
from yolo.model.checkpoint import load_model, save_checkpoint
from yolo.model.darknet import Darknet
from yolo.train.config import RunConfig, load_run_config
from yolo.train.defaults import TrainData
from yolo.train.run import backbone_layers, build_model, config_for_resume, train
from yolo.utils.checkpoint import load_safe

NAMES = ["square", "disc", "bar"]


class FakeDetectionLoader:
    """Batches by the data layer's contract: images ``[B, 3, S, S]`` uint8, targets ``[M, 6]``, paths, infos.
    Shuffled per epoch with the global torch RNG; ``interrupt_at`` raises KeyboardInterrupt at that epoch."""

    def __init__(self, n=4, batch=2, size=64, interrupt_at=None):
        rng = np.random.default_rng(0)
        self.images, self.labels = [], []
        for _ in range(n):
            img = np.full((size, size, 3), 30, np.uint8)
            labels = []
            for _ in range(2):
                w, h = (int(v) for v in rng.integers(10, 30, 2))
                x, y = (int(v) for v in rng.integers(0, size - 30, 2))
                cls = int(rng.integers(0, 3))
                cv2.rectangle(img, (x, y), (x + w, y + h), [(220, 40, 40), (40, 220, 40), (40, 40, 220)][cls], -1)
                labels.append([cls, (x + w / 2) / size, (y + h / 2) / size, w / size, h / size])
            self.images.append(torch.from_numpy(img).permute(2, 0, 1))
            self.labels.append(torch.tensor(labels))
        self.batch, self.interrupt_at, self.epoch = batch, interrupt_at, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.images) // self.batch

    def __iter__(self):
        if self.epoch == self.interrupt_at:
            raise KeyboardInterrupt
        order = torch.randperm(len(self.images)).tolist()
        for i in range(0, len(order), self.batch):
            idx = order[i:i + self.batch]
            targets = torch.cat([torch.cat((torch.full((len(self.labels[j]), 1), float(b)), self.labels[j]), 1)
                                 for b, j in enumerate(idx)])
            yield torch.stack([self.images[j] for j in idx]), targets, [f"img{j}.png" for j in idx], [None] * len(idx)


def fake_data(**loader_kw):
    return lambda cfg, env: TrainData(list(NAMES), FakeDetectionLoader(**loader_kw), None)


def mini_cfg(tmp_path) -> str:
    """yolov3-tiny's layout with 1/16 of the filters: same heads and routes, checkpoints of ~0.2 MB."""
    text = re.sub(r"filters=(\d+)", lambda m: f"filters={m[1] if m[1] == '255' else max(int(m[1]) // 16, 4)}",
                  (CFG / "yolov3-tiny.cfg").read_text())
    path = tmp_path / "mini.cfg"
    path.write_text(text)
    return str(path)


def run_cfg(tmp_path, model=None, **kw) -> RunConfig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    base = dict(model=model or mini_cfg(tmp_path), epochs=3, batch_size=2, nbs=4, img_size=64, device="cpu",
                workers=0, deterministic=True, optimizer="adamw", lr0=0.001, warmup_epochs=1,
                out=str(tmp_path / "runs" / "exp"), ema={"tau": 2})
    return RunConfig.from_dict({**base, **kw})


def test_multi_scale_sizes_follow_the_batch_index_the_trainer_gives(tmp_path, monkeypatch):
    """The multi-scale clock counted loss calls, so a resumed epoch (which starts past its trained batches
    without computing them) drew the sizes of batch 0, 1, ... again; it is the batch's own index now."""
    from yolo.data.loader import MultiScale
    from yolo.train.defaults import default_data
    from yolo.train.run import detection_task
    from yolo.utils.dist import DistEnv

    seen = []
    real = MultiScale.__call__
    monkeypatch.setattr(MultiScale, "__call__", lambda self, x, epoch, step: seen.append((epoch, step)) or
                        real(self, x, epoch, step))
    cfg = run_cfg(tmp_path, str(CFG / "yolov3-tiny.cfg"), multi_scale=True, data="shapes-mini.yaml")
    monkeypatch.setenv("YOLO_CACHE_DIR", str(tmp_path / "cache"))
    data = default_data(cfg, DistEnv())
    model = Darknet(parse_cfg_text(set_num_classes((CFG / "yolov3-tiny.cfg").read_text(), len(data.names))))
    task = detection_task(cfg, model, data, None, DistEnv())
    batch = next(iter(data.train_loader))
    task.on_epoch_start(2)
    for i in (5, 6):  # a resumed epoch: batches 0-4 were trained before the interruption
        task.on_batch(i)
        task.compute_loss(model, batch, torch.device("cpu"))
    assert seen == [(2, 5), (2, 6)]


def test_run_writes_checkpoints_that_load_as_models(tmp_path):
    validations = []

    def validate_factory(cfg, data, env):
        def validate(model, epoch):
            validations.append((type(model).__name__, model.training))
            return {"map50": 0.1 * epoch, "map": 0.05 * epoch}
        return validate

    out = train(run_cfg(tmp_path, epochs=2), data_factory=fake_data(), validate_factory=validate_factory,
                progress=False, plots=False)
    assert out == tmp_path / "runs" / "exp"
    assert validations == [("Darknet", False)] * 2  # the EMA model, in eval mode
    assert (out / "run.yaml").is_file() and (out / "train_batch0.jpg").stat().st_size > 500
    assert len((out / "results.csv").read_text().strip().splitlines()) == 3
    ckpt = load_safe(out / "weights" / "best.pt")  # weights_only=True
    assert ckpt["epoch"] == 1 and abs(ckpt["best_fitness"] - (0.1 * 0.1 + 0.9 * 0.05)) < 1e-9
    model = load_model(out / "weights" / "best.pt")
    assert model.names == NAMES and model.num_classes == 3
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ckpt["model"][k], atol=0, rtol=0)
    last = load_safe(out / "weights" / "last.pt")
    assert any(not torch.equal(last["model"][k], last["train_model"][k]) for k in last["model"])  # EMA != raw
    again = train(run_cfg(tmp_path, epochs=1), data_factory=fake_data(), progress=False, plots=False)
    assert again.name == "exp2"  # never overwritten


def test_train_returns_an_absolute_run_folder_new_or_resumed(tmp_path, monkeypatch):
    """A new run with a relative ``out`` returned ``runs/exp``; a resumed one returned an absolute path."""
    monkeypatch.chdir(tmp_path)
    out = train(run_cfg(tmp_path, epochs=1, out="runs/exp"), data_factory=fake_data(), progress=False, plots=False)
    assert out == tmp_path / "runs" / "exp" and out.is_absolute()


def test_img_size_is_rounded_up_to_the_stride_with_a_warning(tmp_path, capsys):
    """As detect, val, profile and export do (docs/errors.md): 70 -> 96 for a stride-32 model, said once, and
    run.yaml holds the size trained at (it was an error without a file name)."""
    with yolo_warnings() as said:
        out = train(run_cfg(tmp_path, img_size=70, epochs=1), data_factory=fake_data(), progress=False, plots=False)
    assert said == ["img_size 70 is not a multiple of the model's stride 32; using 96"]
    assert yaml.safe_load((out / "run.yaml").read_text())["img_size"] == 96


def test_the_last_line_says_the_result_and_an_early_stop(tmp_path, capsys):
    scores = iter([0.5, 0.4, 0.3, 0.2, 0.1])
    train(run_cfg(tmp_path, epochs=5, patience=1), data_factory=fake_data(),
          validate_factory=lambda cfg, data, env: lambda model, epoch: {"map50": next(scores), "map": 0.1},
          progress=False, plots=False)
    done = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train: done")]
    assert done == [f"train: done; epoch 2/5: mAP50 0.400, mAP50-95 0.100; best.pt from epoch 1/5; stopped early: "
                    f"no better fitness in 1 epochs (patience); weights in {tmp_path / 'runs' / 'exp' / 'weights'}"]


def test_detection_resume_continues_exactly(tmp_path):
    full = train(run_cfg(tmp_path / "a"), data_factory=fake_data(), progress=False, plots=False)
    with pytest.raises(KeyboardInterrupt):  # stopped when epoch 1 starts: last.pt holds epoch 0
        train(run_cfg(tmp_path / "b"), data_factory=fake_data(interrupt_at=1), progress=False, plots=False)
    last = tmp_path / "b" / "runs" / "exp" / "weights" / "last.pt"
    assert load_safe(last)["epoch"] == 0
    cfg = config_for_resume(last)
    torch.manual_seed(999)
    resumed = train(cfg, resume=last, data_factory=fake_data(), progress=False, plots=False)
    assert resumed == last.parent.parent
    a = load_safe(full / "weights" / "last.pt")
    b = load_safe(last)
    assert a["epoch"] == b["epoch"] == 2
    for key in ("train_model", "model"):
        for k in a[key]:
            torch.testing.assert_close(a[key][k], b[key][k], atol=1e-6, rtol=0, msg=f"{key} {k}")


def test_python_resume_makes_the_cli_checks_and_keeps_builtin_data(tmp_path, monkeypatch):
    """``train(cfg, resume=...)`` from Python refuses what ``yolo train --resume`` refuses (other data: it trained
    on them; no epoch left: it said done and trained nothing) and takes a run folder; a built-in's name in a
    run's config means the built-in, never a file of that name in the folder the run is resumed from (it
    trained on that file and renamed the classes after it)."""
    from yolo.resources import builtin

    mini = str(builtin("shapes-mini.yaml", "data"))
    with pytest.raises(KeyboardInterrupt):  # stopped when epoch 1 starts
        train(run_cfg(tmp_path, epochs=2, data="shapes-mini.yaml"), data_factory=fake_data(interrupt_at=1),
              progress=False, plots=False)
    run = tmp_path / "runs" / "exp"
    assert yaml.safe_load((run / "run.yaml").read_text())["data"] == mini  # a path, from any folder
    last = run / "weights" / "last.pt"
    ckpt = load_safe(last)
    ckpt["run_config"]["data"] = "shapes-mini.yaml"  # as runs of earlier versions stored it
    torch.save(ckpt, last)
    shadow = tmp_path / "elsewhere"
    shadow.mkdir()
    (shadow / "shapes-mini.yaml").write_text("train: x\nnames: [a, b, c, d, e]\n")
    monkeypatch.chdir(shadow)
    assert config_for_resume(run).data == mini  # the run folder works as its last.pt
    other = load_run_config(run / "run.yaml", [f"data={shadow / 'shapes-mini.yaml'}"])
    with pytest.raises(InputError, match=r"last.pt: a resumed run keeps its data \(shapes-mini.yaml\); to train "
                                         r"from its weights with another data, start a run: load_run_config\("):
        train(other, resume=run, data_factory=fake_data(), progress=False, plots=False)
    cfg = load_run_config(run / "run.yaml")
    assert train(cfg, resume=run, data_factory=fake_data(), progress=False, plots=False) == run
    assert load_safe(last)["epoch"] == 1
    with pytest.raises(InputError, match=r"nothing to resume: the run finished all its 2 epochs; to train on, "
                                         r"raise them \(overrides=\['epochs=12'\]\)$"):
        train(cfg, resume=last, data_factory=fake_data(), progress=False, plots=False)
    with pytest.raises(InputError, match=r"is a folder without weights/last.pt: give a run folder or its last.pt$"):
        train(cfg, resume=shadow, data_factory=fake_data(), progress=False, plots=False)


def test_set_num_classes_rewrites_heads_only():
    text = (CFG / "yolov3.cfg").read_text()
    out = set_num_classes(text, 3)
    spec, orig = parse_cfg_text(out), parse_cfg_text(text)
    assert [h.classes for h in spec.heads] == [3, 3, 3]
    assert [spec.layers[h.index - 1].filters for h in spec.heads] == [3 * 8] * 3
    changed = [i for i, (a, b) in enumerate(zip(text.splitlines(), out.splitlines())) if a != b]
    assert len(changed) == 6 and len(out.splitlines()) == len(text.splitlines())
    assert [type(s) for s in spec.layers] == [type(s) for s in orig.layers]


def test_finetune_from_other_class_count_keeps_the_rest(tmp_path, capsys):
    torch.manual_seed(1)
    coco = Darknet.from_cfg(CFG / "yolov3-tiny.cfg")  # 80 classes
    save_checkpoint(coco, tmp_path / "coco.pt")
    coco.save_darknet_weights(tmp_path / "coco.weights")
    coco.save_darknet_weights(tmp_path / "coco.conv.9", cutoff=9)  # a backbone file: layers 0..8
    heads = {i - 1 for i in coco.head_indices}
    for weights, cutoff in ((tmp_path / "coco.pt", None), (tmp_path / "coco.weights", None),
                            (tmp_path / "coco.conv.9", 9)):
        model = build_model(run_cfg(tmp_path, str(CFG / "yolov3-tiny.cfg"), weights=str(weights), cutoff=cutoff),
                            NAMES)
        assert model.num_classes == 3
        for k, v in model.state_dict().items():
            layer = int(k.split(".")[1])
            src = coco.state_dict()[k]
            if layer in heads or (cutoff is not None and layer >= cutoff):
                if k.endswith("conv.weight"):  # fresh random init (BN starts at 1/0 either way)
                    assert v.shape != src.shape or not torch.equal(v, src), k
            else:
                assert torch.equal(v, src), k
        # the line counts weights (not BN's step counters) and names this model's re-initialized layers in order
        values = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
        kept = [k for k in values if int(k.split(".")[1]) not in heads and (cutoff is None or
                                                                           int(k.split(".")[1]) < cutoff)]
        line = f"weights: {len(kept)}/{len(values)} tensors from {weights}"
        if cutoff is None:  # a backbone file holds no head
            line += "; re-initialized (other shape): " + ", ".join(f"module_list.{i}" for i in sorted(heads))
        assert line + "\n" in capsys.readouterr().err


def test_start_weights_of_another_network_are_refused(tmp_path):
    """A yolov4-tiny checkpoint as yolov3-tiny's starting weights fits nowhere: no tensor (once BN's step
    counters are not counted as weights) has a place of its shape, so training would start from scratch while
    the log said "8/70 tensors"; it is refused instead, naming both networks."""
    save_checkpoint(Darknet.from_cfg(CFG / "yolov4-tiny.cfg"), tmp_path / "v4.pt")
    with pytest.raises(InputError, match=r"v4.pt: none of its \d+ tensors fits yolov3-tiny.cfg \(they are "
                                         r"yolov4-tiny.cfg's\): give weights of this network, or the cfg"):
        build_model(run_cfg(tmp_path, str(CFG / "yolov3-tiny.cfg"), weights=str(tmp_path / "v4.pt")), NAMES)


def test_freeze_backbone_is_the_shared_trunk_and_stays_put(tmp_path):
    assert backbone_layers(Darknet.from_cfg(CFG / "yolov3.cfg")) == 80  # layers 0..79 feed all three heads
    model = build_model(run_cfg(tmp_path, str(CFG / "yolov3-tiny.cfg"), freeze="backbone"), NAMES)
    n = backbone_layers(model)
    assert n == 14  # yolov3-tiny: layer 13 is routed into the second head's branch
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen = {k for k in before if int(k.split(".")[1]) < n}
    assert any(k.endswith("bn.running_mean") for k in frozen)
    assert all(not p.requires_grad for m in list(model.module_list)[:n] for p in m.parameters())
    assert all(p.requires_grad for m in list(model.module_list)[n:] for p in m.parameters())
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.eval()
    model.train()  # as the trainer does every epoch: the frozen layers stay in inference mode
    assert [m.training for m in model.module_list] == [False] * n + [True] * (len(model.module_list) - n)
    model(torch.rand(2, 3, 64, 64))[0].sum().backward()
    opt.step()
    after = model.state_dict()
    for k in frozen:  # weights and BN running statistics (these moved before: BN in training mode)
        assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["module_list.14.bn.running_mean"], after["module_list.14.bn.running_mean"])
    build_model(run_cfg(tmp_path, str(CFG / "yolov3-tiny.cfg"), freeze=22), NAMES)  # layer 22: the last conv
    with pytest.raises(InputError, match=r"freeze=23 leaves nothing to train: .* layer 22 of 24 .*'backbone': 14"):
        build_model(run_cfg(tmp_path, str(CFG / "yolov3-tiny.cfg"), freeze=23), NAMES)  # was: an empty optimizer


def _cli_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(f"model: {mini_cfg(tmp_path)}\nepochs: 2\nbatch_size: 2\nnbs: 4\nimg_size: 64\ndevice: cpu\n"
                    f"workers: 0\nout: {tmp_path / 'runs' / 'exp'}\noptimizer: adamw\nlr0: 0.001\n")
    return path


def test_cli_train_resume_and_errors(tmp_path, monkeypatch, capsys):
    import yolo.train.defaults as seams
    from yolo.cli import main

    loaders = {"interrupt_at": None}
    monkeypatch.setattr(seams, "default_data", lambda cfg, env: fake_data(**loaders)(cfg, env))
    path = _cli_yaml(tmp_path)
    start = tmp_path / "start.pt"
    save_checkpoint(Darknet.from_cfg(mini_cfg(tmp_path)), start)
    loaders["interrupt_at"] = 1
    monkeypatch.chdir(tmp_path)  # weights named relative to it: run.yaml must name them from anywhere
    assert main(["train", "--cfg", str(path), "--set", "epochs=2", "ema.tau=2", "weights=start.pt"]) == 130
    last = tmp_path / "runs" / "exp" / "weights" / "last.pt"  # (Ctrl-C in epoch 1)
    assert load_safe(last)["epoch"] == 0 and load_safe(last)["run_config"]["epochs"] == 2
    assert yaml.safe_load((last.parent.parent / "run.yaml").read_text())["weights"] == str(start)
    start.unlink()  # resuming needs last.pt only (it stopped on "starting weights not found")
    loaders["interrupt_at"] = None
    capsys.readouterr()
    assert main(["train", "--resume", str(last), "--set", "data=other.yaml"]) == 2
    assert "--set data=other.yaml: a resumed run keeps its data" in capsys.readouterr().err
    assert main(["train", "--resume", str(last), "--set", "epochs=3"]) == 0  # redo epoch 1, and one more
    assert "; resumed from last.pt at epoch 2" in (err := capsys.readouterr().err), err
    assert load_safe(last)["epoch"] == 2 and not (tmp_path / "runs" / "exp2").exists()
    assert yaml.safe_load((last.parent.parent / "run.yaml").read_text())["epochs"] == 3  # what was run
    capsys.readouterr()
    before = last.read_bytes()
    assert main(["train", "--resume", str(last)]) == 2  # all 3 epochs done: it said "done" and trained nothing
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing to resume: the run finished all its 3 epochs" in err
    assert "--set epochs=13" in err and last.read_bytes() == before
    with pytest.raises(InputError, match=r"finished all its 3 epochs; to train on, raise them "
                                         r"\(overrides=\['epochs=13'\]\)$"):
        config_for_resume(last)  # from Python: no --set there
    assert main(["train", "--resume", str(last), "--set", "epochs=0"]) == 2
    assert "--set epochs=0: epochs must be >= 1" in capsys.readouterr().err
    assert main(["train", "--resume", str(last), "--set", "epochs=2"]) == 2  # said "all its 2 epochs" (it ran 3)
    assert "the run finished 3 epochs, and --set epochs=2 asks for no more than that" in capsys.readouterr().err
    run_yaml = (last.parent.parent / "run.yaml").read_bytes()
    # the optimizer's kind and the parameters it holds (freeze) are in last.pt's optimizer state (they crashed
    # a step later, after run.yaml was rewritten); the run folder is where last.pt is (out was ignored)
    for item in ("optimizer=sgd", "freeze=3", f"out={tmp_path / 'elsewhere'}"):
        assert main(["train", "--resume", str(last), "--set", "epochs=4", item]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--set {item}: a resumed run keeps its {item.split('=')[0]}" in err
    assert last.read_bytes() == before and (last.parent.parent / "run.yaml").read_bytes() == run_yaml
    from yolo.utils.files import run_lock

    with run_lock(last.parent.parent):  # another process trains this run (two resumes mixed their checkpoints)
        assert main(["train", "--resume", str(last), "--set", "epochs=4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"this run is in use by another process (PID {os.getpid()})" in err, err
    assert last.read_bytes() == before and (last.parent.parent / "run.yaml").read_bytes() == run_yaml
    assert main(["train", "--cfg", str(path), "--set", "epoch=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key 'epoch'" in err
    assert main(["train", "--resume", str(tmp_path / "nope.pt")]) == 2


def test_cli_non_finite_loss_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    import yolo.train.defaults as seams
    from yolo.cli import main
    from yolo.train.loss import YoloLoss

    monkeypatch.setattr(seams, "default_data", fake_data())
    original = YoloLoss.__call__

    def poisoned(self, outputs, targets):
        total, parts = original(self, outputs, targets)
        return total * float("inf"), {**parts, "cls": parts["cls"] * float("nan")}

    monkeypatch.setattr(YoloLoss, "__call__", poisoned)
    assert main(["train", "--cfg", str(_cli_yaml(tmp_path))]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1
    assert errors[0].startswith("yolo train: error: non-finite loss at step 0 (epoch 0, batch 0): cls = nan")


def test_an_epoch_interrupted_part_way_resumes_only_at_its_batch_size(tmp_path):
    """Resuming an epoch interrupted after 2 batches of 8 with batch_size=24 skipped 2 batches of 24: 48
    images of a 24-image epoch, one batch never trained, without a word. It is now refused, naming the size to
    keep; between epochs another batch size goes on as before."""
    with pytest.raises(KeyboardInterrupt):  # stopped when epoch 1 starts: last.pt holds epoch 0
        train(run_cfg(tmp_path, epochs=3), data_factory=fake_data(interrupt_at=1), progress=False, plots=False)
    last = tmp_path / "runs" / "exp" / "weights" / "last.pt"
    ckpt = load_safe(last)
    size = ckpt["run_config"]["batch_size"]
    between = config_for_resume(last, [f"batch_size={size * 2}"])  # between epochs: fine
    assert between.batch_size == size * 2
    ckpt["interrupted_epoch"] = {"epoch": 1, "batch": 2, "rng_epoch": None, "rng": None, "meters": {}}
    torch.save(ckpt, last)  # as a Ctrl-C after epoch 1's second batch leaves it
    with pytest.raises(InputError, match=rf"^overrides batch_size={size * 2}: its epoch 2 was interrupted after 2 "
                                         rf"batches of {size} images, and goes on only in batches of that size: "
                                         "resume it without changing batch_size"):
        config_for_resume(last, [f"batch_size={size * 2}"])
    assert config_for_resume(last).batch_size == size
