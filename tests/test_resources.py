"""Built-in files by name (yolo.resources): an existing path wins, then the built-in; unknown names list them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT
from yolo.data.formats import load_data_config
from yolo.errors import InputError
from yolo.model.cfg_parser import parse_cfg
from yolo.resources import builtin, builtins, resolve
from yolo.train.config import check_paths, load_run_config
from yolo.utils.names import load_names

# The oracle is the checkout itself: every file of these globs is a built-in of that kind.
EXPECTED = {("model", p.name) for p in (ROOT / "cfg").glob("*.cfg")} | \
    {("run", p.name) for p in (ROOT / "cfg" / "train").glob("*.yaml")} | \
    {("data", p.name) for p in (ROOT / "data").glob("*.yaml")} | {("names", p.name) for p in (ROOT / "data").glob("*.names")}
SMALL_CFG = "[net]\nwidth=64\nheight=64\nchannels=3\n\n[convolutional]\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n"


def _yolo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "YOLO_CACHE_DIR": str(cwd / ".cache")}
    return subprocess.run([sys.executable, "-m", "yolo", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=180)


def test_every_cfg_and_data_file_is_a_builtin():
    assert {(b.kind, b.name) for b in builtins()} == EXPECTED
    assert builtin("yolov3-tiny.cfg", "model") == ROOT / "cfg" / "yolov3-tiny.cfg"
    assert builtin("yolov3-tiny", "model") == ROOT / "cfg" / "yolov3-tiny.cfg"  # the suffix may be left out
    assert builtin("cfg/yolov3-tiny.cfg", "model") == ROOT / "cfg" / "yolov3-tiny.cfg"  # the old README spelling
    assert builtin("coco.yaml", "run") == ROOT / "cfg" / "train" / "coco.yaml"  # one name, two kinds
    assert builtin("coco.yaml", "data") == ROOT / "data" / "coco.yaml"
    assert builtin("other/yolov3-tiny.cfg", "model") is None and builtin("yolov3-tiny.cfg", "data") is None


def test_a_local_file_beats_the_builtin(tmp_path, monkeypatch):
    (tmp_path / "yolov3-tiny.cfg").write_text(SMALL_CFG)
    monkeypatch.chdir(tmp_path)
    assert len(parse_cfg("yolov3-tiny.cfg").layers) == 1  # the local one-layer cfg, not the built-in
    monkeypatch.chdir(ROOT)
    assert len(parse_cfg("yolov3-tiny.cfg").layers) == len(parse_cfg(ROOT / "cfg" / "yolov3-tiny.cfg").layers) > 1
    done = _yolo("profile", "--cfg", "yolov3-tiny.cfg", "--runs", "0", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["params"] == 3 * 9 * 8 + 8  # 8 filters of 3x3x3 weights and a bias each


def test_unknown_name_is_exit_2_listing_the_builtins(tmp_path):
    done = _yolo("profile", "--cfg", "yolov9.cfg", "--runs", "0", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    line, = done.stderr.strip().splitlines()
    assert line.startswith("yolo profile: error: yolov9.cfg: model cfg not found")
    assert all(name in line for kind, name in EXPECTED if kind == "model")
    done = _yolo("data", "check", "nodata.yaml", cwd=tmp_path)
    assert done.returncode == 2 and "shapes.yaml" in done.stderr and "coco.yaml" in done.stderr
    with pytest.raises(InputError, match="built-in names files: coco.names"):
        load_names("missing.names")
    with pytest.raises(InputError, match="class names file not found$"):  # a path, not a name: no listing
        load_names(tmp_path / "missing.names")


def test_builtin_names_inside_a_run_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text("model: yolov3-tiny.cfg\ndata: shapes.yaml\nepochs: 1\n")
    cfg = load_run_config(tmp_path / "run.yaml")
    check_paths(cfg)
    assert parse_cfg(cfg.model).source == str(ROOT / "cfg" / "yolov3-tiny.cfg")
    assert load_data_config(cfg.data).source == str(ROOT / "data" / "shapes.yaml")
    # a file beside the run YAML wins over the built-in of that name
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "yolov3-tiny.cfg").write_text(SMALL_CFG)
    (tmp_path / "sub" / "run.yaml").write_text("model: yolov3-tiny.cfg\n")
    assert len(parse_cfg(load_run_config(tmp_path / "sub" / "run.yaml").model).layers) == 1
    # an unknown name in a run YAML stops the run before it starts, listing the built-ins
    (tmp_path / "bad.yaml").write_text("model: yolov9.cfg\n")
    with pytest.raises(InputError, match="yolov9.cfg: model cfg not found.*yolov3-tiny.cfg"):
        check_paths(load_run_config(tmp_path / "bad.yaml"))


def test_builtin_run_yaml_uses_builtins_whatever_the_folder_holds(tmp_path, monkeypatch):
    """A shapes.yaml (or yolov3-tiny.cfg) in the working folder must not stand in for the demo's own files."""
    (tmp_path / "shapes.yaml").write_text("epochs: 3\n")  # e.g. the user's own run YAML
    (tmp_path / "yolov3-tiny.cfg").write_text(SMALL_CFG)
    monkeypatch.chdir(tmp_path)
    cfg = load_run_config(resolve("cfg/train/shapes.yaml", "run"))
    assert Path(cfg.model) == ROOT / "cfg" / "yolov3-tiny.cfg" and Path(cfg.data) == ROOT / "data" / "shapes.yaml"
    assert load_run_config("shapes.yaml").epochs == 3  # named on the command line, the local file wins
    # a copy of the built-in run saved under the same name: its data: shapes.yaml is not the YAML itself
    (tmp_path / "shapes.yaml").write_text("model: yolov3-tiny.cfg\ndata: shapes.yaml\nepochs: 2\n")
    (tmp_path / "yolov3-tiny.cfg").unlink()
    cfg = load_run_config("shapes.yaml")
    assert cfg.epochs == 2 and Path(cfg.data) == ROOT / "data" / "shapes.yaml"
    assert cfg.model == "yolov3-tiny.cfg" and parse_cfg(cfg.model).source == str(ROOT / "cfg" / "yolov3-tiny.cfg")


def test_names_file_named_in_a_dataset_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "d.yaml").write_text("train: images\nnames: coco.names\n")
    coco = [line.strip() for line in (ROOT / "data" / "coco.names").read_text().splitlines() if line.strip()]
    assert load_data_config(tmp_path / "d.yaml").names == coco  # the built-in coco.names
    (tmp_path / "coco.names").write_text("a\nb\n")
    assert load_data_config(tmp_path / "d.yaml").names == ["a", "b"]  # one beside the YAML wins
    (tmp_path / "old.data").write_text("classes = 80\ntrain = images\nnames = data/coco.names\n")  # darknet's layout
    assert load_data_config(tmp_path / "old.data").names == coco


def test_yolo_cfgs_lists_every_builtin_with_its_kind_and_imports_no_torch(tmp_path):
    done = _yolo("cfgs", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert {(b["kind"], b["name"]) for b in json.loads(done.stdout)} == EXPECTED
    table = _yolo("cfgs", cwd=tmp_path).stdout.splitlines()
    assert {tuple(line.split()[:2]) for line in table[:-1]} == EXPECTED
    shown = _yolo("cfgs", "--show", "yolov3-tiny.cfg", cwd=tmp_path)
    assert shown.stdout == (ROOT / "cfg" / "yolov3-tiny.cfg").read_text()
    assert _yolo("cfgs", "--show", "coco.yaml", cwd=tmp_path).returncode == 2  # two kinds: --kind needed
    code = "import sys; from yolo.cli import main; main(['cfgs']); assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60).returncode == 0


def test_every_builtin_says_what_it_is():
    """`yolo cfgs` gave the 13 unedited zoo cfgs no description (they carry no leading comment) and cut the run
    coco.yaml's two-line comment mid-sentence."""
    from yolo.resources import ZOO, builtins

    models = {b.name: b for b in builtins("model")}
    assert set(ZOO) == {n for n, b in models.items() if not b.path.read_text().startswith("#")}
    assert all(b.description() for b in builtins())
    run = next(b for b in builtins("run") if b.name == "coco.yaml")
    lines = [ln[1:].strip() for ln in run.path.read_text().splitlines()[:2]]
    assert all(ln.startswith("#") for ln in run.path.read_text().splitlines()[:2])
    assert run.description() == " ".join(lines)
