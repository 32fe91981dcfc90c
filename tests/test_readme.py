"""README's quick start runs as written (the download line is replaced by a locally made file)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.helpers import ROOT
from yolo import Darknet


def _blocks(section: str, lang: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", body, flags=re.S)


def test_quick_start(tmp_path):
    for name in ("cfg", "data", "scripts"):
        (tmp_path / name).symlink_to(ROOT / name)
    model = Darknet.from_cfg(ROOT / "cfg" / "yolov3-tiny.cfg")
    model.header.seen = 32013312
    model.save_darknet_weights(tmp_path / "yolov3-tiny.weights")  # stands in for the download

    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
           "PYTHONPATH": str(ROOT)}  # this checkout's code, whichever one the editable install points at
    (shell,) = _blocks("Quick start", "bash")
    lines = [ln for ln in shell.splitlines() if ln.strip() and not ln.startswith("bash scripts/download_weights.sh")]
    assert len(lines) == 3
    r = subprocess.run(["bash", "-euc", "\n".join(lines)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "byte-identical" in r.stdout

    (code,) = _blocks("Quick start", "python")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "torch.Size([1, 2535, 85]) person"


def test_test_command_is_what_ci_runs():
    (cmd,) = _blocks("Tests", "bash")
    assert cmd.strip() in (ROOT / ".ci" / "run").read_text()
