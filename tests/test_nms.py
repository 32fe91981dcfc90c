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
