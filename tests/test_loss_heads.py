"""The loss with AlexeyAB's heads (``scale_x_y``, ``new_coords``) on hand-made targets.

The perfect prediction is built by inverting darknet's decoding formulas by hand (logit of
``(frac + (s - 1) / 2) / s`` for a centre, ``log(w / a)`` or ``logit(sqrt(w / 4a))`` for a size), so it does not
come from the loss's own decoding.
"""

from __future__ import annotations

import pytest
import torch

from tests.test_zoo_heads import HEADS_CFG
from yolo.model.cfg_parser import parse_cfg_text
from yolo.model.darknet import Darknet
from yolo.train.loss import YoloLoss

SIZE = 64  # input pixels: head 0 stride 4 (16x16 cells), head 1 stride 8 (8x8)
NC = 2
# Anchors of HEADS_CFG: head 0 (new_coords, s=2.0) 6x8, 12x10, 16x30; head 1 (classic, s=1.2) 30x24, 40x60, 64x50.
# Each target's size is close to one anchor (best-anchor assignment only), and one centre sits on a cell edge.
TARGETS_PX = [  # image, class, cx, cy, w, h (pixels)
    (0, 0, 20.0, 12.0, 7.0, 9.0),   # head 0, anchor 0; cx = 20 = the left edge of column 5 (stride 4)
    (0, 1, 41.3, 30.7, 15.0, 28.0),  # head 0, anchor 2
    (1, 1, 33.0, 30.5, 38.0, 55.0),  # head 1, anchor 1
    (1, 0, 24.0, 40.0, 28.0, 22.0),  # head 1, anchor 0; cx = 24 = the left edge of column 3 (stride 8)
]


def _targets() -> torch.Tensor:
    t = torch.tensor(TARGETS_PX, dtype=torch.float64)
    t[:, 2:] /= SIZE
    return t.float()  # [M, 6] normalized


def _loss(**kw) -> tuple[YoloLoss, Darknet]:
    model = Darknet(parse_cfg_text(HEADS_CFG))
    return YoloLoss.for_model(model, **{"iou_t": 1.0, **kw}), model


def _perfect_outputs(loss: YoloLoss, model: Darknet, big: float = 20.0) -> list[torch.Tensor]:
    """Raw maps that decode exactly to the targets at their assigned predictions, everything else background."""
    outputs = [torch.full((2, 3, SIZE // int(h.stride), SIZE // int(h.stride), 5 + NC), -big) for h in model.heads]
    for h, t in enumerate(loss.build_targets(outputs, _targets())):
        s, new_coords = model.heads[h].scale_x_y, model.heads[h].new_coords
        for b, a, j, i, box, c, anchor in zip(t.b, t.a, t.gj, t.gi, t.box.double(), t.cls, t.anchor.double()):
            frac = box[:2] - torch.stack((i, j)).double()  # offset inside the cell, in [0, 1)
            p = (frac + (s - 1) / 2) / s
            raw = outputs[h][b, a, j, i]
            raw[:2] = torch.log(p / (1 - p)).float()
            if new_coords:
                q = torch.sqrt(box[2:4] / (4 * anchor))
                raw[2:4] = torch.log(q / (1 - q)).float()
            else:
                raw[2:4] = torch.log(box[2:4] / anchor).float()
            raw[4] = big
            raw[5 + c] = big
    return outputs


def test_every_target_is_assigned_where_intended():
    loss, model = _loss()
    assigned = loss.build_targets(_perfect_outputs(loss, model), _targets())
    got = sorted((h, int(b), int(a), int(j), int(i)) for h, t in enumerate(assigned)
                 for b, a, j, i in zip(t.b, t.a, t.gj, t.gi))
    assert got == sorted([(0, 0, 0, 3, 5), (0, 0, 2, 7, 10), (1, 1, 1, 3, 4), (1, 1, 0, 5, 3)])


@pytest.mark.parametrize("box_loss", ["ciou", "giou", "darknet"])
def test_perfect_prediction_costs_almost_nothing(box_loss):
    loss, model = _loss(box_loss=box_loss)
    perfect = _perfect_outputs(loss, model)
    total, parts = loss(perfect, _targets())
    assert total.item() < 1e-5, parts
    # ... and the cell-edge centres are where a finite logit put them: decoded, they are the targets
    pred = model.decode(perfect)
    for b, _, cx, cy, w, h in TARGETS_PX:
        confident = pred[b, pred[b, :, 4] > 0.5, :4]  # [2, 4]: the two targets of image b
        err = (confident - torch.tensor([cx, cy, w, h])).abs().max(1).values.min()
        assert len(confident) == 2 and err < 1e-3, (confident, (cx, cy, w, h))
    # one step away from perfect costs clearly more
    worse = [o.clone() for o in perfect]
    worse[0][0, 0, 3, 5, :4] += 0.5
    worse[1][1, 1, 3, 4, 4] = -20.0
    assert loss(worse, _targets())[0].item() > 100 * max(total.item(), 1e-6)


@pytest.mark.parametrize("box_loss", ["ciou", "darknet"])
def test_cell_edge_is_reachable_with_scale_x_y(box_loss):
    """A centre on a cell's left edge, learned by plain gradient descent on the logits: with s = 2 (a finite
    optimum, logit(1/4)) the centre gets there; with s = 1 the optimum is at -inf and the centre stays > 1 px off."""
    errors = {}
    for s in (1.0, 2.0):
        loss = YoloLoss([torch.tensor([[16.0, 16.0]])], [8], 1, iou_t=1.0, box_loss=box_loss, scale_x_y=[s])
        raw = torch.zeros(1, 1, 4, 4, 6, requires_grad=True)  # one 4x4 head of stride 8, one anchor
        target = torch.tensor([[0, 0, 16 / 32, 12 / 32, 16 / 32, 16 / 32]])  # cx = 16 px: column 2's left edge
        opt = torch.optim.SGD([raw], lr=4.0)
        for _ in range(40):
            opt.zero_grad()
            loss([raw], target)[0].backward()
            opt.step()
        with torch.no_grad():
            errors[s] = abs(float((s * raw[0, 0, 1, 2, 0].sigmoid() - (s - 1) / 2 + 2) * 8) - 16)
    assert errors[2.0] < 0.05 and errors[1.0] > 1.0, errors


def test_gradients_reach_every_head_and_every_conv():
    torch.manual_seed(0)
    loss, model = _loss(iou_t=0.2)
    model.train()
    x = torch.rand(2, 3, SIZE, SIZE)
    outputs = model(x)
    for o in outputs:
        o.retain_grad()
    total, parts = loss(outputs, _targets())
    total.backward()
    assert torch.isfinite(total) and all(v > 0 for v in parts.values()), parts
    for o in outputs:
        g = o.grad
        assert g[..., :4].abs().sum() > 0 and g[..., 4].abs().sum() > 0 and g[..., 5:].abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_saturated_outputs_stay_finite_in_half_precision(dtype):
    """AMP hands the loss half-precision maps; saturated logits (|x| = 30, sigmoid exactly 0 or 1 in half) and
    a size far from its anchor keep the loss and its gradients finite."""
    loss, model = _loss(iou_t=0.2)
    gen = torch.Generator().manual_seed(0)
    outputs = []
    for h in model.heads:
        n = SIZE // int(h.stride)
        raw = (torch.randint(0, 2, (2, 3, n, n, 5 + NC), generator=gen) * 60 - 30).to(dtype)
        outputs.append(raw.requires_grad_())
    targets = torch.cat((_targets(), torch.tensor([[0, 1, 0.5, 0.5, 0.95, 0.02]])))  # very unlike any anchor
    total, _ = loss(outputs, targets)
    total.backward()
    assert torch.isfinite(total)
    assert all(torch.isfinite(o.grad).all() and o.grad.abs().sum() > 0 for o in outputs)
