"""Every transform keeps boxes on their objects: masks warped independently are the oracle."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np
import pytest
import torch

from yolo.data import augment as aug
from yolo.data.synthetic import make_sample
from yolo.errors import InputError
from yolo.utils.boxes import letterbox_boxes, unletterbox_boxes


def _tight(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def _inside(box, shape, margin=0.5):
    h, w = shape[:2]
    return box[0] > margin and box[1] > margin and box[2] < w - margin and box[3] < h - margin


def _contains(box, inner, tol=2.5):
    """``box`` holds ``inner`` (within ``tol``) and is not much bigger (IoU > 0.3): the same object."""
    box, inner = np.asarray(box, float), np.asarray(inner, float)
    if (inner[:2] < box[:2] - tol).any() or (inner[2:] > box[2:] + tol).any():
        return False
    return np.prod(inner[2:] - inner[:2]) > 0.3 * np.prod(box[2:] - box[:2])


def _check_boxes(labels, masks, tol, exact=True):
    """Each box contains its mask's pixels (within ``tol``); boxes away from the border are tight."""
    assert len(labels) == len(masks)
    for (_, *box), mask in zip(labels, masks):
        assert mask.any(), "a kept box lost its object"
        t = _tight(mask)
        assert (t[:2] >= np.array(box[:2]) - tol).all() and (t[2:] <= np.array(box[2:]) + tol).all(), (box, t)
        if exact and _inside(box, mask.shape):
            np.testing.assert_allclose(box, t, atol=tol)


def test_letterbox_roundtrip_and_masks():
    img, labels, masks = make_sample(3, (120, 200))
    out, info = aug.letterbox(img, (256, 256))
    assert out.shape == (256, 256, 3)
    boxes = letterbox_boxes(torch.from_numpy(labels[:, 1:]).double(), info)
    back = unletterbox_boxes(boxes, info)
    np.testing.assert_allclose(back.numpy(), labels[:, 1:], atol=1e-6)  # to the pixel and far below
    (sx, sy), (left, top) = info.scale, info.pad
    M = np.float64([[sx, 0, left + (sx - 1) / 2], [0, sy, top + (sy - 1) / 2]])  # pixel-centre convention
    for box, mask in zip(boxes.numpy(), masks):
        warped = cv2.warpAffine(mask.astype(np.uint8), M, (256, 256), flags=cv2.INTER_NEAREST)
        np.testing.assert_allclose(box, _tight(warped), atol=1.5)


def _affine_case(seed, degrees, shear, scale=0.5, translate=0.2):
    img, labels, masks = make_sample(seed, 160)
    rng = np.random.default_rng(seed)
    out, new, new_masks = aug.random_affine(img, labels, degrees, translate, scale, shear, (0, 0), rng, masks)
    return img, labels, masks, out, new, new_masks


@pytest.mark.parametrize("seed", range(12))
def test_affine_without_rotation_keeps_tight_boxes(seed):
    _, _, _, out, labels, masks = _affine_case(seed, 0, 0)
    assert out.shape == (160, 160, 3)
    _check_boxes(labels, masks, tol=2)


@pytest.mark.parametrize("seed", range(8))
def test_affine_with_rotation_and_shear_boxes_contain_objects(seed):
    _, _, _, _, labels, masks = _affine_case(seed, 30, 10)
    _check_boxes(labels, masks, tol=1.5, exact=False)


@pytest.mark.parametrize("seed", range(12))
def test_affine_drops_only_tiny_or_cut_off_boxes(seed):
    img, labels, masks, out, new, _ = _affine_case(seed, 0, 0, scale=0.9, translate=0.45)
    M, shape, zoom = aug.affine_matrix(img.shape, 0, 0.45, 0.9, 0, (0, 0), np.random.default_rng(seed))
    assert np.array_equal(cv2.warpAffine(img, M[:2], (160, 160), borderValue=(114,) * 3), out)  # same draw
    kept = 0
    for row, mask in zip(labels, masks):
        warped = cv2.warpAffine(mask.astype(np.uint8), M[:2], (160, 160), flags=cv2.INTER_NEAREST).astype(bool)
        survived = warped.any() and any(row[0] == n[0] and _contains(n[1:], _tight(warped)) for n in new)
        full_area = np.prod(row[3:] - row[1:3]) * zoom ** 2
        if survived:
            kept += 1
        elif warped.any():  # dropped although visible: must be thin, or mostly outside the image
            t = _tight(warped)
            w, h = t[2] - t[0], t[3] - t[1]
            assert min(w, h) <= 3.5 or w * h < 0.15 * full_area, (row, t, zoom)
    assert kept == len(new)


def test_hflip_and_vflip_are_exact():
    img, labels, masks = make_sample(11, (100, 150))
    for flip in (aug.hflip, aug.vflip):
        out, new, new_masks = flip(img, labels, masks)
        assert np.array_equal(new_masks, masks[:, :, ::-1] if flip is aug.hflip else masks[:, ::-1])
        assert np.array_equal(out, img[:, ::-1] if flip is aug.hflip else img[::-1])
        for (_, *box), mask in zip(new, new_masks):
            assert box == list(_tight(mask))


@pytest.mark.parametrize("seed", range(6))
def test_mosaic_then_crop_keeps_boxes_on_objects(seed):
    rng = np.random.default_rng(seed)
    samples = [make_sample(seed * 10 + k, (96 + 16 * k, 128)) for k in range(4)]
    canvas, labels, masks = aug.mosaic4(samples, 128, rng)
    assert canvas.shape == (256, 256, 3) and canvas.dtype == np.uint8
    _check_boxes(labels, masks, tol=0)  # shifts are whole pixels: exact away from the canvas edge
    out, labels, masks = aug.random_affine(canvas, labels, 0, 0.1, 0.5, 0, (-64, -64), rng, masks)
    assert out.shape == (128, 128, 3)
    _check_boxes(labels, masks, tol=2)


def test_mosaic_pixels_come_from_the_tiles():
    samples = [(np.full((64, 64, 3), 10 * (k + 1), np.uint8), np.zeros((0, 5), np.float32)) for k in range(4)]
    canvas, labels, masks = aug.mosaic4(samples, 64, np.random.default_rng(0))
    assert masks is None and labels.shape == (0, 5)
    assert set(np.unique(canvas)) <= {10, 20, 30, 40, aug.PAD_VALUE}
    xc, yc = np.argwhere(canvas[:, :, 0] == 40)[0][::-1]  # bottom-right tile starts at the centre
    assert canvas[yc - 1, xc - 1, 0] == 10 and canvas[yc - 1, xc, 0] == 20 and canvas[yc, xc - 1, 0] == 30


def test_mixup_blends_and_keeps_both_label_sets():
    a, b = make_sample(1, 64), make_sample(2, 64)
    img, labels, masks = aug.mixup(a, b, np.random.default_rng(0))
    assert len(labels) == len(a[1]) + len(b[1]) and len(masks) == len(labels)
    lo, hi = np.minimum(a[0], b[0]).astype(int), np.maximum(a[0], b[0]).astype(int)
    assert ((img >= lo) & (img <= hi)).all()


def test_filter_boxes_brute_force():
    before = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 100, 100], [0, 0, 50, 5]], float)
    after = np.array([[0, 0, 10, 10], [0, 0, 2, 10], [0, 0, 9, 0.5], [0, 0, 5, 5], [0, 0, 49, 2.4]], float)
    assert aug.filter_boxes(before, after).tolist() == [True, False, False, False, False]
    assert aug.filter_boxes(before[4:], after[4:], ar_thr=30).tolist() == [True]


def test_hsv_value_gain_scales_brightness_only():
    img, _, _ = make_sample(4, 64)
    same = img.copy()
    aug.augment_hsv(same, 0, 0, 0, np.random.default_rng(0))
    assert np.array_equal(same, img)
    out = img.copy()
    aug.augment_hsv(out, 0, 0, 0.5, np.random.default_rng(1))
    v_in, v_out = img.max(2).astype(float), out.max(2).astype(float)  # V = max(R, G, B)
    ok = (v_in > 40) & (v_out < 250)
    gain = np.median(v_out[ok] / v_in[ok])
    assert abs(gain - 1) > 0.01
    np.testing.assert_allclose(v_out[ok], v_in[ok] * gain, atol=2.5)
    sat = (img.max(2).astype(int) - img.min(2)) > 60
    for y, x in np.argwhere(sat & ok)[::97]:
        h_in = colorsys.rgb_to_hsv(*(img[y, x] / 255))[0]
        h_out = colorsys.rgb_to_hsv(*(out[y, x] / 255))[0]
        assert min(abs(h_in - h_out), 1 - abs(h_in - h_out)) < 0.03


def test_augment_config_from_dict():
    cfg = aug.AugmentConfig.from_dict({"mosaic": 0, "degrees": 5})
    assert cfg.mosaic == 0.0 and cfg.degrees == 5.0 and cfg.fliplr == 0.5 and cfg.hsv_h == 0.015
    with pytest.raises(InputError, match=r"run.yaml: augment.mosiac: unknown key \(valid: mosaic, mixup"):
        aug.AugmentConfig.from_dict({"mosiac": 1}, "run.yaml")
    for bad in ({"fliplr": 1.5}, {"scale": 1.0}, {"hsv_v": "x"}, {"mixup": True}, {"degrees": float("nan")}):
        with pytest.raises(InputError, match=f"augment.{next(iter(bad))}"):
            aug.AugmentConfig.from_dict(bad)
