"""The command line: fast help without torch, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import CFG, ROOT
from yolo.cli import main


def _run(*args, env=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


def test_help_imports_no_torch():
    code = ("import sys\nfrom yolo.cli import main\n"
            "import argparse\nfrom yolo.cli import build_parser\n"
            "sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))\n"
            "assert len(sub.choices) >= 5, sorted(sub.choices)\n"
            "for argv in [['--help'], ['data', 'check', '--help']] + [[c, '--help'] for c in sub.choices]:\n"
            "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0\n"
            "assert 'torch' not in sys.modules, 'help imported torch'\n"
            "import yolo; assert 'torch' not in sys.modules\n")
    r = _run("-c", code)
    assert r.returncode == 0, r.stderr


def test_python_dash_m_and_version():
    r = _run("-m", "yolo", "--version")
    assert r.returncode == 0 and "yolo-toolkit" in r.stdout
    r = _run("-m", "yolo")
    assert r.returncode == 2 and "convert-weights" in r.stdout


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    assert main(["convert-weights", str(tmp_path / "nope.weights"), "--cfg", str(CFG / "yolov3.cfg")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.weights" in err and "not found" in err


def test_cfg_error_names_file_and_line(tmp_path, capsys):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("[net]\nwidth=64\nheight=64\n\n[convolutional]\nfilters=16\nsize=3\nwat=1\n")
    weights = tmp_path / "w.weights"
    weights.write_bytes(b"\0" * 20)
    assert main(["convert-weights", str(weights), "--cfg", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{cfg}:8: unknown key 'wat' in [convolutional]" in err


def test_missing_cfg_for_weights(tmp_path, capsys):
    weights = tmp_path / "w.weights"
    weights.write_bytes(b"\0" * 20)
    assert main(["convert-weights", str(weights)]) == 2
    assert "needs its cfg" in capsys.readouterr().err


def test_unexpected_failure_is_exit_1(monkeypatch, tmp_path, capsys):
    import yolo.model.convert as convert

    def boom(*a, **k):
        raise RuntimeError("kaput")

    monkeypatch.setattr(convert, "convert_weights", boom)
    assert main(["convert-weights", "x"]) == 1
    err = capsys.readouterr().err
    assert "RuntimeError: kaput" in err and "--verbose" in err and "Traceback" not in err
    assert main(["--verbose", "convert-weights", "x"]) == 1
    assert "Traceback" in capsys.readouterr().err
    assert main(["convert-weights", "x", "--verbose"]) == 1  # where the hint sends people: after the command
    assert "Traceback" in capsys.readouterr().err
    import yolo.commands.data as data_command

    monkeypatch.setattr(data_command, "data_config", boom)
    assert main(["data", "check", "d.yaml", "--verbose"]) == 1  # an action's parser takes it too
    assert "Traceback" in capsys.readouterr().err


def test_usage_errors_are_one_line_with_a_way_out(capsys):
    """argparse's own errors (a value starting with '-', an unknown choice, a missing option) are one line and
    exit 2 like every other error, not the whole usage block; a value that looks like a flag gets the way to
    pass it."""
    import pytest

    for argv, text in (
            (["detect", "--weights", "m.pt", "--source", "-dash.jpg"],
             "yolo detect: error: argument --source: expected one argument (yolo detect --help: the options; a "
             "value starting with '-': --source=-x.jpg or ./-x.jpg)"),
            (["convert-weights", "m.pt", "-o", "-out.weights"], "argument -o/--out: expected one argument"),
            (["data", "check", "d.yaml", "--split", "nope"], "yolo data check: error: argument --split: invalid "
                                                             "choice: 'nope'"),
            (["nosuch"], "yolo: error: argument <command>: invalid choice: 'nosuch'"),
            # an unknown option is the command's error, not "yolo: error: ..." (yolo detect --help lists its own)
            (["detect", "--weights", "m.pt", "--source", "x.jpg", "--show"],
             "yolo detect: error: unrecognized arguments: --show (yolo detect --help: the options)"),
            (["data", "check", "d.yaml", "--bogus"], "yolo data check: error: unrecognized arguments: --bogus"),
            (["--bogus"], "yolo: error: unrecognized arguments: --bogus (yolo --help: the options)")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and text in err and "usage:" not in err, err


def test_under_torchrun_an_error_before_the_processes_join_is_said_once(monkeypatch, tmp_path, capsys):
    """Every torchrun process ran the same bad command and printed the same error, once per rank; now rank 0
    says it and the others only exit 2. After the processes joined, each says its own error with its rank."""
    import torch.distributed as dist

    bad = ["val", "--weights", str(tmp_path / "missing.pt"), "--data", "shapes-mini.yaml"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, said in (("1", ""), ("0", "yolo val: error: ")):
        monkeypatch.setenv("RANK", rank)
        assert main(bad) == 2
        err = capsys.readouterr().err
        assert err.startswith(said) and err.count("\n") == (1 if said else 0)
    monkeypatch.setenv("RANK", "1")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert main(bad) == 2
    finally:
        dist.destroy_process_group()
    assert capsys.readouterr().err.startswith("[rank 1] yolo val: error: ")


def test_the_toolkits_warnings_are_one_line_under_a_command(capsys):
    """``warnings.warn`` printed ``.../fetch.py:52: UserWarning: skipping unreadable image ...`` and the source
    line under a command, beside the other ``warning: ...`` lines; Python callers can filter ``YoloWarning``."""
    import warnings

    import pytest

    from yolo.cli import _one_line_warnings
    from yolo.errors import YoloRuntimeWarning, YoloWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with _one_line_warnings(verbose=False):
            warnings.warn("skipping unreadable image x.png (replaced by another sample)", YoloWarning)
            warnings.warn("native kernels 'gemm' not built", YoloRuntimeWarning)
            with pytest.warns(UserWarning, match="torch's"):  # recorded here, so the test's output stays clean
                warnings.warn("something of torch's", UserWarning)
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == ["warning: skipping unreadable image x.png (replaced by another sample)",
                         "warning: native kernels 'gemm' not built"]
    assert "warning: something of torch's" not in lines  # others' warnings keep Python's own way
    assert issubclass(YoloRuntimeWarning, RuntimeWarning)  # what filters on RuntimeWarning caught before


def test_the_toolkit_warns_one_way():
    """Warnings came two ways: ``print("warning: ...")`` in 15 places, which a Python caller could neither filter
    nor catch, and ``warnings.warn`` in a few. Every one now goes through ``yolo.errors.warn`` (a ``YoloWarning``);
    only the command line's printer spells ``warning:``."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "yolo"
    found = [f"{p.relative_to(root)}: {line.strip()}" for p in sorted(root.rglob("*.py")) if p.name != "cli.py"
             for line in p.read_text().splitlines() if re.search(r"""["']warning: |warnings\.warn\(""", line)]
    assert found == ["errors.py: warnings.warn(message, category, stacklevel=stacklevel + 1)"], found


def test_a_command_prints_each_warning_every_time(capsys):
    """Python's default filter says a repeated warning once per process and place: under a command the same
    skipped file listed twice, or a second run in one process (``main`` called again), would go unsaid."""
    import warnings

    from yolo.cli import _one_line_warnings
    from yolo.errors import warn

    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("default")  # Python's own default for UserWarning: once per place and text
        for _ in range(2):
            with _one_line_warnings(verbose=False):
                for _ in range(2):
                    warn("x.png: cannot read this image, skipped")
    assert capsys.readouterr().err.splitlines() == ["warning: x.png: cannot read this image, skipped"] * 4


def test_a_refused_run_leaves_no_folder_behind(tmp_path, monkeypatch, capsys):
    """Found by a user's audit: a detect or val refused after its run folder was made (weights not found, a split
    that is not there) removed ``exp`` but left the ``runs/detect`` / ``runs/val`` it had made; a folder that was
    there before stays."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.png").write_bytes((ROOT / "docs/images/detect.png").read_bytes())
    (tmp_path / "d.yaml").write_text("val: images\nnames: [a]\n")
    assert main(["detect", "--weights", "nothing.pt", "--source", "a.png"]) == 2
    assert main(["val", "--weights", "nothing.pt", "--data", "d.yaml"]) == 2
    assert main(["detect", "--weights", "nothing.pt", "--source", "a.png", "--out", "deep/er/exp"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "d.yaml"]
    (tmp_path / "runs/detect").mkdir(parents=True)
    assert main(["detect", "--weights", "nothing.pt", "--source", "a.png"]) == 2
    assert [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*"))] == \
        ["a.png", "d.yaml", "runs", "runs/detect"]
    assert capsys.readouterr().err.count("error:") == 4
    assert main(["val", "--weights", "nothing.pt", "--data", "d.yaml", "--workers", "-1"]) == 2  # was exit 1
    assert capsys.readouterr().err == "yolo val: error: --workers must be >= 0, got -1\n"
    # a side over 16384 (a cfg's bound too) ended in "unexpected MemoryError: Unable to allocate 27.9 GiB"
    assert main(["detect", "--weights", "nothing.pt", "--source", "a.png", "--img-size", "100000"]) == 2
    assert capsys.readouterr().err == "yolo detect: error: --img-size must be at most 16384, got 100000x100000\n"
    assert main(["train", "--set", "img_size=20000"]) == 2
    assert capsys.readouterr().err.endswith("img_size must be at most 16384, got 20000\n")
    from yolo.model.cfg_specs import MAX_NET_SIZE
    from yolo.utils.sizes import MAX_IMG_SIZE

    assert MAX_IMG_SIZE == MAX_NET_SIZE  # a size the commands take is one a cfg may say


def test_a_ctrl_c_after_the_outputs_are_written_does_not_fail_the_command(monkeypatch, capsys):
    """Found by a user's audit: a Ctrl-C during the last moments of convert-weights (its files all written, its
    success line printed) gave exit 130, and the retry then said "output exists". Once the outputs are written
    the command settles: the signal is ignored until it returns, and the handlers are put back."""
    import os
    import signal

    import yolo.model.convert

    class Written:
        def __str__(self):  # the success line: Ctrl-C arrives as it is printed
            os.kill(os.getpid(), signal.SIGINT)
            return "a.pt -> b.weights"

    monkeypatch.setattr(yolo.model.convert, "convert_weights", lambda *a, **k: Written())
    before = signal.getsignal(signal.SIGINT)
    assert main(["convert-weights", "a.pt", "-o", "b.weights"]) == 0
    assert capsys.readouterr().out == "a.pt -> b.weights\n"
    assert signal.getsignal(signal.SIGINT) is before and signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
