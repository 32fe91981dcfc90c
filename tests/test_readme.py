"""README's quick start and the docs' examples run as written (files they expect are made locally, and a few
slow or machine-specific values are swapped for small ones, each named below); every relative link resolves."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT
from yolo import Darknet

DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", flags=re.S | re.M)


def _blocks(section: str, lang: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", body, flags=re.S)


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT),  # this checkout's code, whichever one the editable install points at
            "YOLO_CACHE_DIR": str(tmp_path / "cache")}


def _user_folder(tmp_path: Path) -> None:
    """A folder as a user has it after the quick start: the repository's cfg/, data/, scripts/ and a
    yolov3-tiny.weights (random, standing in for the download)."""
    for name in ("cfg", "data", "scripts"):
        (tmp_path / name).symlink_to(ROOT / name)
    model = Darknet.from_cfg(ROOT / "cfg" / "yolov3-tiny.cfg")
    model.header.seen = 32013312
    model.save_darknet_weights(tmp_path / "yolov3-tiny.weights")


def test_quick_start(tmp_path):
    """From a folder holding nothing but the downloaded weights: cfgs are the built-ins."""
    model = Darknet.from_cfg(ROOT / "cfg" / "yolov3-tiny.cfg")
    model.header.seen = 32013312
    model.save_darknet_weights(tmp_path / "yolov3-tiny.weights")  # stands in for the download
    env = _env(tmp_path)
    (shell,) = _blocks("Quick start", "bash")
    lines = [ln for ln in shell.splitlines() if ln.strip() and not ln.startswith("curl ")]
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


# --- the docs' examples ---------------------------------------------------------------------------------------

# Made before a block runs, in a folder prepared by _user_folder (yolov3-tiny.weights, cfg/, data/, scripts/).
_TINY_PT = ("from yolo import load_model, save_checkpoint\n"
            "save_checkpoint(load_model('yolov3-tiny.weights', cfg='cfg/yolov3-tiny.cfg'), 'yolov3-tiny.pt')\n")
_X = "import torch\nx = torch.rand(1, 3, 416, 416)\n"
_TINY_DATA = ("open('tiny.yaml', 'w').write('synthetic: {kind: shapes, train: 8, val: 16, size: 128, seed: 0}\\n'\n"
              "                             'names: [circle, rectangle, triangle, star, cross]\\n')\n")
_IMAGES = ("import os, cv2\nfrom yolo.data.synthetic import make_sample\n"
           "os.makedirs('images', exist_ok=True)\n"
           "for i, name in enumerate(['a.jpg', 'b.png', 'images/c.jpg', 'images/d.png']):\n"
           "    cv2.imwrite(name, make_sample(seed=i, size=(96, 128))[0][:, :, ::-1])\n"
           "clip = cv2.VideoWriter('clip.mp4', cv2.VideoWriter_fourcc(*'mp4v'), 10, (128, 96))\n"
           "for i in range(3):\n"
           "    clip.write(make_sample(seed=i, size=(96, 128))[0][:, :, ::-1].copy())\n"
           "clip.release()\n")
_COCO = """import json, torch
gt_dict = {"images": [{"id": 1, "width": 100, "height": 80}, {"id": 2, "width": 100, "height": 80}],
           "categories": [{"id": c} for c in range(80)],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [10, 10, 30, 20]},
                           {"id": 2, "image_id": 2, "category_id": 3, "bbox": [50, 40, 20, 30]}]}
results_list = [{"image_id": 1, "category_id": 0, "bbox": [11, 10, 30, 21], "score": 0.9},
                {"image_id": 2, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.4}]
json.dump(gt_dict, open("instances.json", "w")); json.dump(results_list, open("results.json", "w"))
names = [f"class{i}" for i in range(80)]
pred = torch.tensor([[11.0, 10, 41, 31, 0.9, 0]])
gt_boxes, gt_classes = torch.tensor([[10.0, 10, 40, 30]]), torch.tensor([0])
"""

# (page, first line of the block) -> (setup code, {text in the block: what runs instead}). Swaps: full yolov3 ->
# yolov3-tiny and fewer timed runs (speed), a small generated dataset for COCO and the 500-image shapes data,
# CPU for "cuda", the one placeholder a reader fills in (list_of_states), and another name for a second output
# (the API block's lines are independent examples; convert_weights would refuse to replace yolov3.pt).
RUN = {
    ("python-api.md", "from yolo import Darknet, load_model, save_checkpoint, convert_weights, parse_cfg, InputError"):
        (_X, {'convert_weights("yolov3.weights", "yolov3.pt"': 'convert_weights("yolov3.weights", "converted.pt"',
              "yolov3": "yolov3-tiny", "runs=20": "runs=2"}),
    ("python-api.md", "from yolo import Detector"):
        (_TINY_PT + _IMAGES, {"yolov3": "yolov3-tiny"}),
    ("python-api.md", "from yolo import coco_eval, evaluate_files, Evaluator"):
        (_COCO, {"Evaluator.merge(list_of_states)": "Evaluator.merge([states])"}),
    ("python-api.md", "from yolo.train.config import load_run_config"):
        (_TINY_DATA, {'["epochs=3", "img_size=128"]':
                      '["epochs=1", "img_size=64", "batch_size=4", "workers=0", "data=tiny.yaml"]'}),
    ("python-api.md", "from yolo import export_model, load_exported"):
        (_TINY_PT + _X, {}),
    ("data.md", "from yolo import load_data_config, load_split, plot_labels, kmeans_anchors, anchor_fitness"):
        (_TINY_DATA, {"data/coco.yaml": "tiny.yaml"}),
    ("data.md", "from yolo.data.synthetic import make_sample, write_dataset, ensure_synthetic"):
        ("", {"n_train=100, n_val=20": "n_train=10, n_val=2"}),
    ("data.md", "from yolo.data.augment import AugmentConfig"):
        (_TINY_DATA + "from yolo import load_data_config, load_split\n"
         "index = load_split(load_data_config('tiny.yaml'), 'train')\nepochs = 2\n", {'"cuda"': '"cpu"'}),
}
# Blocks that are not run, and why.
NOT_RUN = {
    ("train.md", "yolo train --cfg cfg/train/shapes.yaml                                   # yolov3-tiny on the built-in shapes data"):
        "full trainings (minutes); tests/test_train_e2e.py runs the command on a small dataset",
}


def _doc_blocks() -> list[tuple[str, str, str]]:
    """(page, first line, code) of every python and bash block in docs/*.md."""
    out = []
    for page in sorted(DOCS.glob("*.md")):
        for lang, code in FENCE.findall(page.read_text()):
            if lang in ("python", "bash"):
                out.append((page.name, code.splitlines()[0].rstrip(), code))
    return out


def test_every_docs_example_is_run_or_excused():
    keys = {(p, first) for p, first, _ in _doc_blocks()}
    unknown = keys - RUN.keys() - NOT_RUN.keys()
    assert not unknown, f"docs examples neither run nor excused in tests/test_readme.py RUN / NOT_RUN: {unknown}"
    stale = (RUN.keys() | NOT_RUN.keys()) - keys
    assert not stale, f"RUN / NOT_RUN name blocks the docs no longer have: {stale}"


@pytest.mark.parametrize("key", sorted(RUN), ids=lambda k: f"{k[0]}:{k[1][:40]}")
def test_docs_example_runs(key, tmp_path):
    codes = [code for p, first, code in _doc_blocks() if (p, first) == key]
    assert len(codes) == 1, f"{key}: {len(codes)} blocks start with this line"
    setup, swaps = RUN[key]
    code = codes[0]
    for old, new in swaps.items():
        assert old in code, f"{key}: {old!r} is no longer in the block"
        code = code.replace(old, new)
    _user_folder(tmp_path)
    r = subprocess.run([sys.executable, "-c", setup + code], cwd=tmp_path, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


# --- links ----------------------------------------------------------------------------------------------------

def _slugs(md: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file (headings inside code blocks left out)."""
    text = FENCE.sub("", md.read_text())
    slugs: set[str] = set()
    for heading in re.findall(r"^#+ (.*)$", text, flags=re.M):
        base = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        slug, n = base, 0
        while slug in slugs:
            n += 1
            slug = f"{base}-{n}"
        slugs.add(slug)
    return slugs


def _links(md: Path) -> list[str]:
    text = FENCE.sub("", md.read_text())
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_relative_links_resolve():
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    broken = []
    for md in pages:
        for link in _links(md):
            if re.match(r"[a-z]+:", link):
                continue  # http(s), mailto
            path, _, anchor = link.partition("#")
            target = (md.parent / path).resolve() if path else md
            if not target.exists():
                broken.append(f"{md.relative_to(ROOT)}: {link} (no such file)")
            elif anchor and target.suffix == ".md" and anchor not in _slugs(target):
                broken.append(f"{md.relative_to(ROOT)}: {link} (no such heading)")
    assert not broken, "\n".join(broken)


def test_readme_links_every_docs_page():
    linked = {(ROOT / link.partition("#")[0]).resolve() for link in _links(ROOT / "README.md")}
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not missing, f"docs pages README.md does not link: {missing}"
