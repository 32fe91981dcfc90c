"""yolo.utils.nms: torchvision's NMS operator without the torchvision package, equal to torchvision.ops."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torchvision.ops

from tests.helpers import ROOT
from yolo.utils import nms as ynms


def _boxes(n: int, seed: int, classes: int = 4, ties: bool = False):
    """``n`` random xyxy boxes in a 0..500 image (many overlaps), scores ``[n]`` and classes ``[n]``."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 400
    wh = torch.rand(n, 2, generator=g) * 100 + 1
    scores = torch.rand(n, generator=g)
    if ties:
        scores = (scores * 8).round() / 8  # equal scores: the order among them must match too
    return torch.cat((xy, xy + wh), 1), scores, torch.randint(0, classes, (n,), generator=g)


@pytest.mark.parametrize("n", [0, 1, 7, 300, 999, 1001, 3000])  # 1000 boxes = 4000 coordinates: the switch
@pytest.mark.parametrize("iou", [0.3, 0.45, 0.7])
def test_batched_nms_equals_torchvision(n, iou):
    for seed, ties in ((n, False), (n + 1, True)):
        boxes, scores, idxs = _boxes(n, seed, ties=ties)
        assert torch.equal(ynms.batched_nms(boxes, scores, idxs, iou),
                           torchvision.ops.batched_nms(boxes, scores, idxs, iou))
        assert torch.equal(ynms.nms(boxes, scores, iou), torchvision.ops.nms(boxes, scores, iou))


def test_batched_nms_never_suppresses_across_classes():
    box = torch.tensor([[10.0, 10, 50, 50]])
    boxes, scores = box.repeat(3, 1), torch.tensor([0.9, 0.8, 0.7])
    assert ynms.batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1]
    assert ynms.nms(boxes, scores, 0.5).tolist() == [0]


def test_batched_nms_keeps_classes_apart_with_negative_coordinates():
    """A box reaching far past the top-left edge (candidates are not clipped before NMS): torchvision's offset
    trick, which assumes coordinates >= 0, let it suppress a box of another class."""
    boxes = torch.tensor([[0.0, 0, 416, 416], [-400, -400, 20, 20], [-390, -390, 20, 20]])
    scores, idxs = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 1, 1])
    assert torchvision.ops.batched_nms(boxes, scores, idxs, 0.45).tolist() == [0]  # the flaw itself
    assert ynms.batched_nms(boxes, scores, idxs, 0.45).tolist() == [0, 1]  # and 2 by 1, within class 1


def test_the_library_is_found_without_importing_torchvision():
    """In a fresh process: NMS runs through the compiled library and neither torchvision nor torch._dynamo
    (what makes importing torchvision slow) is imported."""
    code = ("import sys, torch\nfrom yolo.utils.nms import batched_nms, loaded_via, torchvision_library\n"
            "b = torch.tensor([[0., 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])\n"
            "print(batched_nms(b, torch.tensor([.9, .8, .7]), torch.tensor([0, 0, 0]), .5).tolist(), loaded_via(),"
            " 'torchvision' in sys.modules, 'torch._dynamo' in sys.modules, torchvision_library() is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[0,", "2]", "library", "False", "False", "True"]


def test_falls_back_to_importing_torchvision(monkeypatch):
    monkeypatch.setattr(ynms, "_state", {})
    monkeypatch.setattr(ynms, "torchvision_library", lambda: None)
    boxes, scores, idxs = _boxes(50, 3)
    assert torch.equal(ynms.batched_nms(boxes, scores, idxs, 0.5),
                       torchvision.ops.batched_nms(boxes, scores, idxs, 0.5))
    assert ynms.loaded_via() == "torchvision"


def _darknet_diounms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, threshold: float,
                     beta: float) -> set[int]:
    """Darknet's ``diounms_sort`` (src/box.c) written out as its loops: per class, boxes by decreasing score;
    each box still standing zeroes every later one whose ``box_diounms`` with it is > threshold. -> kept rows."""
    def measure(a, b):  # box_diounms: IoU - (d / c) ** beta, d centre distance^2, c enclosing diagonal^2
        iw = min(a[2], b[2]) - max(a[0], b[0])
        ih = min(a[3], b[3]) - max(a[1], b[1])
        inter = iw * ih if iw > 0 and ih > 0 else 0.0
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        iou = inter / union if inter > 0 and union > 0 else 0.0
        cw = max(a[2], b[2]) - min(a[0], b[0])
        ch = max(a[3], b[3]) - min(a[1], b[1])
        c = cw * cw + ch * ch
        d = ((a[0] + a[2]) / 2 - (b[0] + b[2]) / 2) ** 2 + ((a[1] + a[3]) / 2 - (b[1] + b[3]) / 2) ** 2
        return iou if c == 0 else iou - (d / c) ** beta

    rows, kept = boxes.tolist(), set()
    for k in set(classes.tolist()):
        members = sorted((i for i in range(len(rows)) if classes[i] == k), key=lambda i: -float(scores[i]))
        alive = dict.fromkeys(members, True)
        for a, i in enumerate(members):
            if alive[i]:
                kept.add(i)
                for j in members[a + 1:]:
                    if alive[j] and measure(rows[i], rows[j]) > threshold:
                        alive[j] = False
    return kept


@pytest.fixture(params=["native", "numpy"])
def diou_path(request, monkeypatch):
    """``diou_nms`` through the C kernel (skipped where none can be built), or through the NumPy blocks."""
    from yolo.utils import nms_native

    if request.param == "native":
        if nms_native.checked_library(ynms._native_agrees) is None:
            pytest.skip("no C compiler: the DIoU-NMS kernel is not built")
        monkeypatch.setattr(ynms, "_greedy", lambda *a: pytest.fail("the NumPy path ran"))
    else:
        monkeypatch.setattr(nms_native, "checked_library", lambda agrees: None)
    return request.param


@pytest.mark.parametrize("n,block", [(0, 1024), (1, 1024), (40, 1024), (300, 1024), (300, 7), (700, 64)])
@pytest.mark.parametrize("threshold,beta", [(0.45, 0.6), (0.3, 1.0), (0.6, 0.3)])
def test_diou_nms_is_darknets(n, block, threshold, beta, diou_path):
    """``diou_nms`` (per category: darknet's loop in C, or a block of boxes at a time in NumPy) keeps exactly the
    boxes darknet's one-by-one ``diounms_sort`` keeps, in decreasing score; checked once more, in the session that
    wrote the NumPy path, against darknet's own box.c compiled (140 random cases, 2 to 2,500 boxes, up to 4
    classes: all equal)."""
    boxes, scores, classes = _boxes(n, seed=n + block, classes=3)
    keep = ynms.diou_nms(boxes, scores, threshold, beta, classes, block=block)
    assert set(keep.tolist()) == _darknet_diounms(boxes, scores, classes, threshold, beta)
    assert torch.equal(scores[keep], scores[keep].sort(descending=True).values)


def test_the_c_kernel_keeps_what_the_numpy_path_keeps_on_one_large_class(monkeypatch):
    """One category of 4,000 crowded boxes (a one-class model at conf 0.001: the NumPy blocks took 7.2 s on
    30,000 such boxes, the kernel 0.4 s; ``scripts/bench_nms.py``), coincident boxes and score ties included."""
    from yolo.utils import nms_native

    if nms_native.checked_library(ynms._native_agrees) is None:
        pytest.skip("no C compiler: the DIoU-NMS kernel is not built")
    boxes, scores, _ = _boxes(4000, seed=11, ties=True)
    boxes[3000:] = boxes[:1000]
    native = ynms.diou_nms(boxes, scores, 0.45, 0.6)
    monkeypatch.setattr(nms_native, "checked_library", lambda agrees: None)
    numpy = ynms.diou_nms(boxes, scores, 0.45, 0.6)
    assert torch.equal(native, numpy) and 100 < len(native) < 4000


def test_diou_nms_keeps_an_offset_box_iou_nms_drops():
    """Two 2x2 boxes 0.6 apart: IoU 0.538, DIoU 0.408 (darknet's box_diounms gives the same): at 0.45 IoU NMS
    drops the second, DIoU-NMS keeps it; with beta 1 the distance counts less and it is dropped again."""
    boxes = torch.tensor([[-1.0, -1.0, 1.0, 1.0], [-0.4, -1.0, 1.6, 1.0]])
    scores, classes = torch.tensor([0.9, 0.8]), torch.zeros(2, dtype=torch.long)
    assert ynms.diou(boxes[:1], boxes[1:], 0.6).item() == pytest.approx(0.538462 - (0.36 / 10.76) ** 0.6, abs=1e-6)
    assert ynms.batched_nms(boxes, scores, classes, 0.45).tolist() == [0]
    assert ynms.diou_nms(boxes, scores, 0.45, 0.6, classes).tolist() == [0, 1]
    assert ynms.diou_nms(boxes, scores, 0.45, 1.0, classes).tolist() == [0]
    assert ynms.diou_nms(boxes, scores, 0.45, 0.6, torch.tensor([0, 1])).tolist() == [0, 1]  # never across classes


def test_bench_nms_runs_every_path_and_checks_they_agree():
    """``scripts/bench_nms.py`` (the speed figures of the DIoU-NMS kernel) at a tiny size: a row per case, each
    with torchvision's time, the kernel's and the NumPy path's, after checking both kept the same boxes."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_nms.py"), "--cases", "300x3,300x1",
                           "--repeats", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.lstrip().startswith("300 x")]
    assert [r[2] for r in rows] == ["3", "1"] and all(r.count("ms") == 3 for r in rows), done.stdout
