"""Run config: defaults < YAML < --set, unknown keys and bad values are one-line errors naming file and line."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT
from yolo.errors import InputError
from yolo.resources import builtin
from yolo.train.config import RunConfig, load_run_config


def test_layers_of_precedence(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 7\nlr0: 0.02\nloss:\n  box_loss: giou\n  obj: 2\naugment:\n  hsv_h: 0.1\n")
    cfg = load_run_config(path, ["epochs=3", "optimizer=adamw", "augment.mosaic=0", "loss.obj=0.5",
                                 "weights=null", "amp=true", "freeze=backbone", "step_milestones=[0.5, 0.75]"])
    assert cfg.epochs == 3 and cfg.lr0 == 0.02 and cfg.optimizer == "adamw"  # --set beats YAML beats defaults
    assert cfg.loss.box_loss == "giou" and cfg.loss.obj == 0.5 and cfg.loss.cls == RunConfig().loss.cls
    assert cfg.augment == {"hsv_h": 0.1, "mosaic": 0}
    assert cfg.weights is None and cfg.amp is True and cfg.freeze == "backbone"
    assert cfg.step_milestones == [0.5, 0.75] and isinstance(cfg.loss.obj, float)


def test_saved_config_round_trips(tmp_path):
    cfg = load_run_config(None, ["epochs=5", "ema.decay=0.999", "val.period=2"])
    cfg.save(tmp_path / "run.yaml")
    data = yaml.safe_load((tmp_path / "run.yaml").read_text())
    assert data == dataclasses.asdict(cfg)
    again = load_run_config(tmp_path / "run.yaml")
    assert again == cfg and again.to_dict() == cfg.to_dict()


def test_unknown_key_names_file_line_and_valid_keys(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 3\nema:\n  decay: 0.99\n  tua: 5\n")
    with pytest.raises(InputError) as e:
        load_run_config(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:4: unknown key 'ema.tua'") and "ema.tau" in msg and "\n" not in msg
    with pytest.raises(InputError, match=r"^overrides epoch=3: unknown key 'epoch'; valid keys: .*epochs"):
        load_run_config(None, ["epoch=3"])


@pytest.mark.parametrize("item,message", [
    ("epochs=three", "epochs: expected int"),
    ("epochs=0", "epochs must be >= 1"),
    ("lr0=-0.1", "lr0 must be > 0"),
    ("optimizer=adam", "optimizer must be one of"),
    ("schedule=exp", "schedule must be one of"),
    ("loss.box_loss=mse", "loss.box_loss must be one of"),
    ("amp=maybe", "amp must be auto, true or false"),
    ("amp=3", "amp: 3 is not one of bool or str or null"),
    ("freeze=head", "freeze must be a layer count"),
    ("ema=1", "ema must be a mapping"),
    ("nesterov=1", "nesterov: expected bool"),
    ("epochs", "^overrides expects key=value"),  # from Python: the parameter, not --set
])
def test_bad_values_are_input_errors(item, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        load_run_config(None, [item])


def test_range_errors_name_where_the_value_was_set(tmp_path):
    """A value out of range names the --set item that gave it, or its YAML file and line, never a file the user
    did not touch (``--set epochs=-1`` on the built-in shapes.yaml run blamed shapes.yaml)."""
    with pytest.raises(InputError) as e:
        load_run_config("shapes.yaml", ["epochs=-1"])
    assert str(e.value) == "overrides epochs=-1: epochs must be >= 1, got -1"
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 3\nval:\n  period: 0\n")
    with pytest.raises(InputError) as e:
        load_run_config(path)
    assert str(e.value) == f"{path}:3: val.period must be >= 1, got 0"  # it listed three keys, not the value
    with pytest.raises(InputError, match=r"^overrides val.period=-2: val.period must be >= 1, got -2$"):
        load_run_config(path, ["val.period=-2"])
    with pytest.raises(InputError, match=r"^overrides ema.tau=0: ema.tau must be > 0, got 0$"):
        load_run_config(None, ["ema.tau=0"])
    with pytest.raises(InputError, match=r"^overrides loss.obj=-1: loss.obj must be >= 0, got -1$"):
        load_run_config(None, ["loss.obj=-1"])
    cfg = load_run_config(path, ["val.period=2"])  # the file's bad value, mended on the command line
    assert cfg.val.period == 2


def test_bad_yaml_names_the_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 3\nlr0: [0.1\n")
    with pytest.raises(InputError, match=rf"{path}:\d+: invalid YAML"):
        load_run_config(path)
    path.write_text("epochs: 3\nlr0: abc\n")
    with pytest.raises(InputError, match=rf"{path}:2: lr0: expected float"):
        load_run_config(path)


def test_shipped_run_yamls_load():
    for path in sorted((ROOT / "cfg" / "train").glob("*.yaml")):
        cfg = load_run_config(path)
        assert Path(cfg.model).parent == ROOT / "cfg" and Path(cfg.model).is_file(), path  # the built-in cfg
        assert Path(cfg.data).parent == ROOT / "data" and Path(cfg.data).is_file(), path  # the built-in data YAML


def test_augment_errors_name_their_file_line_or_set_item(tmp_path):
    """augment keys are checked with the rest of the config (before a run folder exists), and a bad one names
    where it was set, as every other key's error does."""
    path = tmp_path / "aug.yaml"
    path.write_text("epochs: 3\naugment:\n  fliplr: 0.5\n  mosiac: 0.5\n")
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}:4: augment.mosiac: unknown key \(valid: "):
        load_run_config(path)
    with pytest.raises(InputError, match=r"^overrides augment.mosaic=1.5: augment.mosaic: expected a number in \[0, 1"):
        load_run_config(None, ["augment.mosaic=1.5"])
    assert load_run_config(None, ["augment.mosaic=0.5"]).augment == {"mosaic": 0.5}


def test_relative_paths_become_absolute_for_run_yaml(tmp_path, monkeypatch):
    from yolo.train.config import absolute_paths

    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.yaml").write_text("train: x\nnames: [a]\n")
    cfg = load_run_config(None, ["data=d.yaml", "model=yolov3-tiny.cfg", "weights=missing.pt"])
    absolute_paths(cfg)
    assert cfg.data == str(tmp_path / "d.yaml")  # was kept as 'd.yaml': --resume from elsewhere failed
    # a built-in's name: the built-in's path (a file of that name where the run is resumed stood in for it)
    assert cfg.model == str(builtin("yolov3-tiny.cfg", "model")) and cfg.weights == "missing.pt"  # a missing file


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path):
    """PyYAML keeps the last of two equal keys without a word: ``epochs: 1`` ... ``epochs: 2`` trained 2 epochs,
    and a bad second ``lr0`` was reported at the first one's line. Run configs and data YAMLs now refuse it."""
    from yolo.data.formats import load_data_config

    path = tmp_path / "dup.yaml"
    path.write_text("epochs: 1\nlr0: 0.01\naugment:\n  mosaic: 0.5\n  mixup: 0.1\n  mosaic: 1.0\nepochs: 2\n")
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}:6: 'mosaic' is given twice in one mapping "
                                         r"\(lines 4 and 6\), and only the last would count; keep one$"):
        load_run_config(path)
    path.write_text("epochs: 1\nlr0: 0.01\nepochs: 2\n")
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}:3: 'epochs' is given twice .*\(lines 1 and 3\)"):
        load_run_config(path)
    (tmp_path / "images").mkdir()
    data = tmp_path / "data.yaml"
    data.write_text("train: images\nnames: [a, b]\ntrain: images\n")
    with pytest.raises(InputError, match=rf"^{re.escape(str(data))}:3: 'train' is given twice .*\(lines 1 and 3\)"):
        load_data_config(data)


def test_a_float_written_with_an_exponent_is_a_float(tmp_path):
    """``lr0: 1e-3`` is a string to YAML 1.1 (PyYAML wants ``1.0e-3``) and was refused as "expected float, got
    '1e-3'"; the way everyone writes a learning rate is now read as the number it is, in files and ``--set``."""
    path = tmp_path / "run.yaml"
    path.write_text("lr0: 1e-3\nweight_decay: 5E-4\n")
    cfg = load_run_config(path, ["ema.decay=+9.99e-1"])
    assert (cfg.lr0, cfg.weight_decay, cfg.ema.decay) == (0.001, 0.0005, 0.999)
    with pytest.raises(InputError, match=r"lr0: expected float, got '1e-3x'"):
        load_run_config(path, ["lr0=1e-3x"])
    with pytest.raises(InputError, match=r"epochs: expected int, got '1e3'"):  # an int stays an int
        load_run_config(path, ["epochs=1e3"])
