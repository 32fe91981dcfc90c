"""Issue #8, reliability and security, through the command line: every bad input is one line with exit code 2
naming the file (and line), found before anything is written; pickles that would run code are refused by every
command that loads checkpoints; tracebacks only on request; writes are atomic and run folders never reused.
(Ctrl-C, memory bounds: tests/test_reliability_runs.py; DDP failures: tests/test_ddp_failure.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

from tests.helpers import ROOT

PY = sys.executable


def _env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("YOLO_VERBOSE", "YOLO_DDP_TIMEOUT")}
    return {**env, "YOLO_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT), **extra}


# ----------------------------------------------------------------------------- bad inputs, through the CLI

TINY_CFG = ROOT / "cfg" / "yolov3-tiny.cfg"
CFG_HEAD = "[net]\nwidth=64\nheight=64\nchannels=3\n\n[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\n" \
           "stride=1\npad=1\nactivation=leaky\n"
BAD_CFGS = {  # name: (text, line, message fragment)
    "syntax.cfg": (CFG_HEAD + "\n[maxpool]\nsize 2\n", 15, "expected key=value"),
    "unknown_layer.cfg": (CFG_HEAD + "\n[transformer]\nheads=8\n", 14, "unknown section [transformer]"),
    "future_route.cfg": (CFG_HEAD + "\n[route]\nlayers=5\n", 15, "layer 5"),
    "mask_anchor.cfg": (CFG_HEAD + "\n[convolutional]\nfilters=24\nsize=1\nstride=1\nactivation=linear\n\n[yolo]\n"
                        "mask=0,1,7\nanchors=10,14, 23,27, 37,58\nclasses=3\nnum=3\n", 21, "mask"),
    "huge_filters.cfg": (CFG_HEAD.replace("filters=16", "filters=999999999"), 8, "filters"),
    "huge_input.cfg": (CFG_HEAD.replace("width=64", "width=1000000"), 2, "width"),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Inputs for the table: a good tiny model (.pt and .weights), broken variants and broken data."""
    import cv2
    import numpy as np

    from tests.helpers import calibrated_model
    from yolo.model.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("inputs")
    model = calibrated_model(TINY_CFG, size=(64, 64))
    save_checkpoint(model, d / "tiny.pt")
    model.save_darknet_weights(str(d / "tiny.weights"))
    blob = (d / "tiny.weights").read_bytes()
    (d / "truncated.weights").write_bytes(blob[:len(blob) // 8 * 4])  # whole float32 values, half of them
    (d / "oversized.weights").write_bytes(blob + bytes(400))
    (d / "truncated.pt").write_bytes((d / "tiny.pt").read_bytes()[:50_000])
    (d / "absurd_header.weights").write_bytes(np.array([2**31 - 1, 2**31 - 1, 0, 0, 0], np.int32).tobytes())
    for name, (text, _, _) in BAD_CFGS.items():
        (d / name).write_text(text)
    (d / "img").mkdir()
    cv2.imwrite(str(d / "img" / "a.png"), np.full((40, 50, 3), 120, np.uint8))
    (d / "empty").mkdir()
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 a JPEG header and nothing else")
    (d / "broken.mp4").write_bytes(b"no video here" * 20)
    (d / "notes.docx").write_bytes(b"PK\x03\x04 not media")
    (d / "coco.names").write_text("person\nbicycle\ncar\n")  # a names file given as weights
    (d / "tiny.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")  # suffixes are enough: refused before reading
    (d / "tiny.torchscript").write_bytes(b"PK\x03\x04 a zip")
    (d / "photo.pt").write_bytes(cv2.imencode(".png", np.full((8, 8, 3), 9, np.uint8))[1].tobytes())
    (d / "a_file").write_text("a file, not a folder")
    (d / "shapes.yaml").write_text("synthetic: {kind: shapes, train: 8, val: 4, size: 64, seed: 1}\n"
                                   "names: [circle, rectangle, triangle, star, cross]\n")
    (d / "empty_data.yaml").write_text(f"train: {d / 'empty'}\nval: {d / 'empty'}\nnames: [a]\n")
    return d


def _case_args(d, case: list[str]) -> list[str]:
    return [a.replace("{d}", str(d)).replace("{tiny}", str(TINY_CFG)) for a in case]


TRAIN = ["train", "--set", "model={tiny}", "data={d}/shapes.yaml", "epochs=1", "img_size=64", "workers=0",
         "device=cpu"]
BAD_INPUTS = [  # (issue bullet, argv, fragments the one line must hold)
    ("missing path", ["detect", "--weights", "{d}/nope.pt", "--source", "{d}/img", "--out", "{out}"],
     ["{d}/nope.pt", "not found"]),
    ("missing path", ["detect", "--weights", "{d}/tiny.pt", "--source", "{d}/nope", "--out", "{out}"],
     ["{d}/nope"]),
    ("missing path", ["val", "--weights", "{d}/tiny.pt", "--data", "{d}/nope.yaml", "--out", "{out}"],
     ["{d}/nope.yaml", "not found"]),
    ("missing path", ["train", "--cfg", "{d}/nope.yaml", "--set", "out={out}"], ["{d}/nope.yaml", "not found"]),
    ("missing path", ["profile", "--cfg", "{d}/nope.cfg", "--runs", "0"], ["{d}/nope.cfg", "not found"]),
    ("wrong extension", ["convert-weights", "{d}/tiny.pt", "-o", "{out}.txt"], ["{out}.txt", "output must end in"]),
    ("wrong extension", ["detect", "--weights", "{d}/tiny.pt", "--source", "{d}/notes.docx", "--out", "{out}"],
     ["{d}/notes.docx"]),
    ("truncated .weights", ["convert-weights", "{d}/truncated.weights", "--cfg", "{tiny}", "-o", "{out}.pt"],
     ["{d}/truncated.weights", "runs out"]),
    ("oversized .weights", ["convert-weights", "{d}/oversized.weights", "--cfg", "{tiny}", "-o", "{out}.pt"],
     ["{d}/oversized.weights", "left over"]),
    ("absurd .weights header", ["detect", "--weights", "{d}/absurd_header.weights", "--cfg", "{tiny}", "--source",
                                "{d}/img", "--out", "{out}"], ["{d}/absurd_header.weights"]),
    ("not a model file", ["detect", "--weights", "{d}/coco.names", "--cfg", "{tiny}", "--source", "{d}/img",
                          "--out", "{out}"], ["{d}/coco.names", "not a checkpoint or darknet .weights file: it is a "
                                              "text file"]),
    ("not a model file", ["convert-weights", "{d}/coco.names", "--cfg", "{tiny}", "-o", "{out}.pt"],
     ["{d}/coco.names", "it is a text file"]),
    ("not a model file", ["val", "--weights", "{d}/photo.pt", "--data", "{d}/shapes.yaml", "--out", "{out}"],
     ["{d}/photo.pt", "it is a PNG image"]),
    ("not a model file", ["train", "--resume", "{d}/photo.pt"], ["{d}/photo.pt", "not a PyTorch checkpoint: it is a "
                                                                                "PNG image"]),
    ("an export where weights are read", ["profile", "--weights", "{d}/tiny.onnx", "--runs", "0"],
     ["{d}/tiny.onnx", "an exported model (onnx)"]),
    ("an export where weights are read", ["convert-weights", "{d}/tiny.torchscript", "-o", "{out}.weights"],
     ["{d}/tiny.torchscript", "give the .pt or .weights it was exported from"]),
    ("truncated checkpoint", ["detect", "--weights", "{d}/truncated.pt", "--source", "{d}/img", "--out", "{out}"],
     ["{d}/truncated.pt", "not a readable PyTorch checkpoint"]),
    ("truncated checkpoint", ["train", "--resume", "{d}/truncated.pt"],
     ["{d}/truncated.pt", "not a readable PyTorch checkpoint"]),
    *[(f"cfg: {name}", ["profile", "--cfg", f"{{d}}/{name}", "--runs", "0"], [f"{{d}}/{name}:{line}:", text])
      for name, (_, line, text) in BAD_CFGS.items()],
    *[(f"cfg: {name}", TRAIN + [f"model={{d}}/{name}", "out={out}"], [f"{{d}}/{name}:{line}:", text])
      for name, (_, line, text) in BAD_CFGS.items() if name in ("syntax.cfg", "future_route.cfg")],
    ("class count cfg vs data", ["val", "--weights", "{d}/tiny.pt", "--data", "{d}/shapes.yaml", "--img-size", "64",
                                 "--out", "{out}"], ["{d}/shapes.yaml", "80 classes", "the data 5"]),
    ("empty dataset", ["data", "check", "{d}/empty_data.yaml"], ["{d}/empty", "no images"]),
    ("empty dataset", TRAIN + ["data={d}/empty_data.yaml", "out={out}"], ["{d}/empty", "no images"]),
    ("empty folder", ["detect", "--weights", "{d}/tiny.pt", "--source", "{d}/empty", "--out", "{out}"],
     ["{d}/empty", "no images"]),
    ("corrupt image", ["detect", "--weights", "{d}/tiny.pt", "--source", "{d}/corrupt.jpg", "--out", "{out}"],
     ["{d}/corrupt.jpg", "no readable image"]),
    ("video cannot be opened", ["detect", "--weights", "{d}/tiny.pt", "--source", "{d}/broken.mp4", "--out",
                                "{out}"], ["{d}/broken.mp4", "cannot open"]),
    ("confidence outside [0, 1]", ["detect", "--weights", "{d}/tiny.pt", "--source", "{d}/img", "--conf", "1.5",
                                   "--out", "{out}"], ["--conf", "[0, 1]"]),
    ("IoU outside [0, 1]", ["detect", "--weights", "{d}/tiny.pt", "--source", "{d}/img", "--iou", "-0.1", "--out",
                            "{out}"], ["--iou", "[0, 1]"]),
    ("confidence outside [0, 1]", ["val", "--weights", "{d}/tiny.pt", "--data", "{d}/shapes.yaml", "--conf", "2",
                                   "--out", "{out}"], ["--conf", "[0, 1]"]),
    ("IoU outside [0, 1]", TRAIN + ["val.iou=1.5", "out={out}"], ["val.iou"]),
    ("output not writable", ["detect", "--weights", "{d}/tiny.pt", "--source", "{d}/img", "--out",
                             "{d}/a_file/run"], ["{d}/a_file/run", "{d}/a_file is a file, not a folder"]),
    ("output not writable", ["val", "--weights", "{d}/tiny.pt", "--data", "{d}/shapes.yaml", "--img-size", "64",
                             "--out", "{d}/a_file/run"], ["{d}/a_file/run", "{d}/a_file is a file, not a folder"]),
    ("output not writable", TRAIN + ["out={d}/a_file/run"], ["{d}/a_file/run", "{d}/a_file is a file, not a folder"]),
    ("output not writable", ["convert-weights", "{d}/tiny.pt", "-o", "{d}/a_file/x.weights"], ["{d}/a_file"]),
    ("output not writable", ["export", "--weights", "{d}/tiny.pt", "--format", "torchscript", "--img-size", "64",
                             "--out", "{d}/a_file/x.torchscript"], ["{d}/a_file"]),
]


def _tree(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("bullet, argv, fragments", BAD_INPUTS,
                         ids=[f"{i:02d}-{b}" for i, (b, _, _) in enumerate(BAD_INPUTS)])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(files, tmp_path, monkeypatch, capsys, bullet, argv,
                                                         fragments):
    from yolo.cli import main

    monkeypatch.setenv("YOLO_CACHE_DIR", str(files.parent / "synthetic-cache"))
    monkeypatch.delenv("YOLO_VERBOSE", raising=False)
    monkeypatch.chdir(tmp_path)
    out = str(tmp_path / "out")
    before_inputs, before_here = _tree(files), _tree(tmp_path)
    args = [a.replace("{out}", out) for a in _case_args(files, argv)]
    assert main(args) == 2, args
    captured = capsys.readouterr()
    err = [line for line in captured.err.strip().splitlines() if not line.startswith("warning: ")]
    typed = " ".join(args[:2]) if args[0] == "data" else args[0]  # "yolo data check: error: ..."
    assert len(err) == 1 and err[0].startswith(f"yolo {typed}: error: "), captured.err  # (a skipped file
    # is a warning line of its own)
    for fragment in fragments:
        assert fragment.replace("{out}", out).replace("{d}", str(files)).replace("{tiny}", str(TINY_CFG)) \
            in err[0], err[0]
    assert "Traceback" not in captured.err
    assert _tree(tmp_path) == before_here, "something was written"
    assert _tree(files) == before_inputs, "something was written next to the inputs"


# ----------------------------------------------------------------------------- pickles that would run code


class Evil:
    """Unpickling this calls ``open(marker, 'w')``: creating a file stands in for running any code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


CHECKPOINT_COMMANDS = {
    "convert-weights": ["convert-weights", "{evil}", "--cfg", "{tiny}", "-o", "{out}.weights"],
    "detect": ["detect", "--weights", "{evil}", "--source", "{d}/img", "--out", "{out}"],
    "val": ["val", "--weights", "{evil}", "--data", "{d}/shapes.yaml", "--img-size", "64", "--out", "{out}"],
    "train --weights": TRAIN + ["weights={evil}", "out={out}"],
    "train --resume": ["train", "--resume", "{evil}"],
    "export": ["export", "--weights", "{evil}", "--format", "torchscript", "--out", "{out}.torchscript"],
    "profile": ["profile", "--weights", "{evil}", "--runs", "0"],
}


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump", "pickle.dump protocol 4"])
@pytest.mark.parametrize("command", list(CHECKPOINT_COMMANDS))
def test_code_running_checkpoint_is_refused_by_every_command(files, tmp_path, monkeypatch, capsys, command, writer):
    import pickle

    import torch

    from yolo.cli import main

    monkeypatch.setenv("YOLO_CACHE_DIR", str(files.parent / "synthetic-cache"))
    monkeypatch.chdir(tmp_path)
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"
    payload = {"model": {"module_list.0.conv.weight": torch.zeros(1)}, "epoch": 0, "x": Evil(marker)}
    if writer == "torch.save":
        torch.save(payload, evil)
    else:
        with open(evil, "wb") as f:
            pickle.dump(payload, f, protocol=4 if writer.endswith("4") else 2)  # 4: torch warned about it too
        with open(evil, "rb") as f:  # the attack is real: a plain unpickler creates the marker
            pickle.load(f)["x"].close()
        assert marker.exists()
        marker.unlink()
    before = _tree(tmp_path)
    args = [a.replace("{evil}", str(evil)).replace("{out}", str(tmp_path / "out"))
            for a in _case_args(files, CHECKPOINT_COMMANDS[command])]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(args) == 2
    assert not [str(w.message) for w in caught if "pickle" in str(w.message)]  # torch's "Detected pickle protocol 4"
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith(("data: ", "model: "))]
    assert len(err) == 1 and f"{evil}: refused" in err[0] and "could run code" in err[0], err  # (train logs its
    # data and model first: the starting weights are read once the data set the class count)
    assert not marker.exists(), "the pickle ran code"
    assert _tree(tmp_path) == before


# ----------------------------------------------------------------------------- tracebacks on request


@pytest.mark.parametrize("how", ["plain", "--verbose", "YOLO_VERBOSE=1"])
def test_traceback_only_with_verbose_or_env(tmp_path, how):
    env = _env(tmp_path, **({"YOLO_VERBOSE": "1"} if how == "YOLO_VERBOSE=1" else {}))
    cmd = [PY, "-m", "yolo", *(["--verbose"] if how == "--verbose" else []), "profile", "--cfg",
           str(tmp_path / "nope.cfg"), "--runs", "0"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[-1] == f"yolo profile: error: {tmp_path / 'nope.cfg'}: cfg file not found", r.stderr
    if how == "plain":
        assert len(lines) == 1, r.stderr
    else:
        assert lines[0] == "Traceback (most recent call last):" and "InputError" in r.stderr, r.stderr


def test_unexpected_failure_traceback_with_env(monkeypatch, capsys):
    import yolo.model.convert as convert
    from yolo.cli import main

    def boom(*args, **kwargs):
        raise RuntimeError("kaput")

    monkeypatch.setattr(convert, "convert_weights", boom)
    monkeypatch.delenv("YOLO_VERBOSE", raising=False)
    assert main(["convert-weights", "x.weights"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: kaput" in err and "Traceback" not in err
    monkeypatch.setenv("YOLO_VERBOSE", "1")
    assert main(["convert-weights", "x.weights"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "RuntimeError: kaput" in err


# ----------------------------------------------------------------------------- reported, not fatal


def test_broken_label_rows_and_corrupt_images_are_reported_by_file_and_line(tmp_path, capsys):
    """``yolo data check``: a broken row is named as file:line, a corrupt image by its file; the rest is used."""
    import cv2
    import numpy as np

    from yolo.cli import main

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), np.full((40, 60, 3), 50 * i, np.uint8))
    (tmp_path / "images" / "3.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "labels" / "0.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "labels" / "1.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.5 nan 0.2 0.2\n7 0.5 0.5 0.2 0.2\n0 0.5\n")
    (tmp_path / "d.yaml").write_text("path: .\ntrain: images\nnames: [a, b]\n")
    assert main(["data", "check", str(tmp_path / "d.yaml"), "--no-cache", "--problems", "20"]) == 0
    out = capsys.readouterr().out
    labels = tmp_path / "labels" / "1.txt"
    for line in (2, 3, 4):
        assert f"{labels}:{line}:" in out, out
    assert str(tmp_path / "images" / "3.png") in out and "corrupt" in out


def test_image_size_not_a_multiple_of_32_is_rounded_up_with_a_warning(capsys):
    from yolo.cli import main

    assert main(["profile", "--cfg", str(TINY_CFG), "--img-size", "100", "--runs", "0", "--json"]) == 0
    captured = capsys.readouterr()
    assert "warning: image size 100x100 is not a multiple of 32; using 128x128" in captured.err


# ----------------------------------------------------------------------------- safe loading, atomic writes


LEGACY_READER = ROOT / "yolo" / "utils" / "legacy_pickle.py"


def test_every_deserializer_in_the_package_is_a_safe_one():
    """Read the code: ``torch.load`` only with ``weights_only=True`` (in ``load_safe``), ``np.load`` only with
    ``allow_pickle=False``, YAML only through ``safe_load``, and no ``pickle``/``marshal``/``dill`` at all, except
    in the legacy reader, which may only subclass ``pickle.Unpickler`` (overriding ``find_class``) and hand it to
    ``torch.load`` as its ``pickle_module``."""
    import ast

    problems = []
    for path in sorted((ROOT / "yolo").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        legacy = path == LEGACY_READER
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                allowed = legacy and isinstance(node, ast.Import) and names == ["pickle"]
                if not allowed and any(n and n.split(".")[0] in ("pickle", "marshal", "dill", "cloudpickle", "shelve")
                                       for n in names):
                    problems.append(f"{path}:{node.lineno}: imports {names}")
            if legacy and isinstance(node, ast.Attribute) and ast.unparse(node.value) == "pickle" and \
                    node.attr != "Unpickler":
                problems.append(f"{path}:{node.lineno}: pickle.{node.attr}")
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = ast.unparse(node.func.value)
            kwargs = {k.arg: ast.unparse(k.value) for k in node.keywords}
            call = f"{owner}.{node.func.attr}"
            restricted = legacy and kwargs.get("weights_only") == "False" and "pickle_module" in kwargs
            if call == "torch.load" and kwargs.get("weights_only") != "True" and not restricted:
                problems.append(f"{path}:{node.lineno}: torch.load without weights_only=True")
            if call in ("np.load", "numpy.load") and kwargs.get("allow_pickle") != "False":
                problems.append(f"{path}:{node.lineno}: np.load without allow_pickle=False")
            if owner == "yaml" and node.func.attr in ("load", "load_all", "unsafe_load", "full_load"):
                problems.append(f"{path}:{node.lineno}: {call}")
    assert not problems, problems
    reader = ast.parse(LEGACY_READER.read_text(encoding="utf-8"))
    unpicklers = [n for n in ast.walk(reader) if isinstance(n, ast.ClassDef) and
                  any(ast.unparse(b) == "pickle.Unpickler" for b in n.bases)]
    assert len(unpicklers) == 1 and any(isinstance(f, ast.FunctionDef) and f.name == "find_class"
                                        for f in unpicklers[0].body), "the legacy Unpickler must override find_class"


def test_atomic_write_flushes_fsyncs_then_renames_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    import yolo.utils.checkpoint as ck

    target = tmp_path / "last.pt"
    target.write_bytes(b"old")
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(ck.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(ck.os, "replace", lambda a, b: (events.append(("replace", os.path.getsize(a))),
                                                        real_replace(a, b))[1])
    with pytest.raises(RuntimeError):
        with ck.atomic_write(target) as f:
            f.write(b"half of the new")
            raise RuntimeError("crash in the middle of the write")
    assert target.read_bytes() == b"old" and events == [] and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    ck.save_atomic({"epoch": 3}, target)
    assert events[0] == "fsync" and events[1][0] == "replace" and events[1][1] == target.stat().st_size
    assert ck.load_safe(target) == {"epoch": 3}


def test_run_folder_is_never_overwritten(files, tmp_path, capsys):
    """Two ``yolo detect`` runs with the same ``--out``: the second goes to ``out2``; the first is untouched."""
    from yolo.cli import main

    base = ["detect", "--weights", str(files / "tiny.pt"), "--source", str(files / "img"), "--img-size", "64",
            "--save-txt", "--no-progress", "--out", str(tmp_path / "exp")]
    assert main(base) == 0
    first = {p: p.read_bytes() for p in (tmp_path / "exp").rglob("*") if p.is_file()}
    assert main(base + ["--conf", "0.01"]) == 0
    assert "results in " + str(tmp_path / "exp2") in capsys.readouterr().out
    assert {p: p.read_bytes() for p in (tmp_path / "exp").rglob("*") if p.is_file()} == first


def test_label_parser_on_arbitrary_bytes(tmp_path_factory):
    """Any bytes as a label file (invalid UTF-8, NUL, huge or odd numbers, any line ends): rows ``[N, 5]`` that
    obey the format's ranges, or ``None`` for an unreadable file; never an exception. (The rows themselves are
    checked against an independent reading in tests/test_formats.py.)"""
    import numpy as np
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from yolo.data.formats_yolo import parse_label_file
    from yolo.data.report import DatasetReport

    pieces = st.sampled_from([b"0", b"1", b"2", b" ", b"\t", b"\n", b"\r\n", b"\r", b"0.5", b"1e308", b"-1e308", b"nan",
                              b"1" * 400, b"\x00", b"\xff\xfe", b"\xc3", b"#", b",", b"0x1", b"1_0", b"\xef\xbb\xbf"])
    blobs = st.one_of(st.binary(max_size=200), st.lists(pieces, max_size=60).map(b"".join))

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(blobs)
    def check(blob):
        path = tmp_path_factory.mktemp("labels") / "x.txt"
        path.write_bytes(blob)
        report = DatasetReport(names=["a", "b", "c"])
        rows = parse_label_file(path, 3, report)
        if rows is None:
            assert report.problem_count == 1
            return
        assert rows.dtype == np.float32 and rows.ndim == 2 and rows.shape[1] == 5 and np.isfinite(rows).all()
        assert ((rows[:, 0] >= 0) & (rows[:, 0] < 3) & (rows[:, 0] == np.round(rows[:, 0]))).all()
        assert ((rows[:, 1:] >= 0) & (rows[:, 1:] <= 1)).all() and (rows[:, 3:] > 0).all()

    check()


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, capsys):
    """A disk that fills up while a checkpoint, weights file or label is written: one line naming the file
    (torch.save's own message was '[enforce fail at inline_container.cc:672] . unexpected pos ...', other
    writers' '[Errno 28]' without a path), exit 1, and nothing half-written. On a real 2 MiB tmpfs."""
    import subprocess

    from tests.helpers import CFG
    from yolo.cli import main
    from yolo.model.checkpoint import save_checkpoint
    from yolo.model.darknet import Darknet

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (not root?)")
    try:
        save_checkpoint(Darknet.from_cfg(CFG / "yolov3-tiny.cfg"), tmp_path / "tiny.pt")  # 35 MB: cannot fit
        for argv, name in ((["convert-weights", str(tmp_path / "tiny.pt"), "-o", str(small / "x.weights")],
                            "x.weights"),
                           (["convert-weights", str(tmp_path / "tiny.pt"), "-o", str(small / "x.pt")], "x.pt")):
            assert main(argv) == 1
            err = capsys.readouterr().err
            assert err == f"yolo convert-weights: error: {small / name}: No space left on device; nothing was " \
                          "half-written\n", err
            assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_an_unwritable_cache_for_generated_data_is_one_line(tmp_path, monkeypatch, capsys):
    """YOLO_CACHE_DIR naming a file (or a read-only folder) when the shapes data must be generated: exit 2 with
    the folder and the way out, not 'unexpected FileExistsError' (exit 1)."""
    from yolo.cli import main

    (tmp_path / "afile").write_text("hi")
    monkeypatch.setenv("YOLO_CACHE_DIR", str(tmp_path / "afile"))
    data = tmp_path / "d.yaml"
    data.write_text("synthetic: {kind: shapes, train: 4, val: 2, size: 64, seed: 5}\n"
                    "names: [circle, rectangle, triangle, star, cross]\n")
    assert main(["data", "check", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"yolo data check: error: {tmp_path / 'afile'}: cannot write the "
                                                   "generated dataset (") and "set YOLO_CACHE_DIR" in err, err
