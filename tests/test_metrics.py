"""COCO metrics against pycocotools (the oracle), and the Evaluator's extras against brute-force counts."""

from __future__ import annotations

import contextlib
import copy
import io

import cv2
import numpy as np
import pytest
import torch

from yolo.val.coco import coco_eval
from yolo.val.curves import CONF_GRID, pr_conf_curves
from yolo.val.evaluator import Evaluator

pytest.importorskip("pycocotools")


def pycocotools_eval(gt: dict, results: list):
    """COCOeval(bbox) evaluate + accumulate + summarize, prints silenced; inputs are deep-copied."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev, out.getvalue()


def random_problem(seed: int, n_img: int = 24, n_cat: int = 6, tie_scores: bool = False) -> tuple[dict, list]:
    """Gts in every area range (crowds, duplicates, a COCO 'area' unlike w*h), the last category without gt,
    the last 3 images without gt, every 5th image without detections, detections near gts (sometimes the
    wrong class) and random ones, scores with ties, and one image/category with 130 detections."""
    rng = np.random.default_rng(seed)
    images = [{"id": 1000 - 7 * i} for i in range(n_img)]  # ids not in file order
    cats = [{"id": 3 * c + 2, "name": f"c{c}"} for c in range(n_cat)]
    gt_cats = [c["id"] for c in cats[:-1]]
    anns = []
    for im in images[:-3]:
        for _ in range(rng.integers(0, 8)):
            size = rng.choice([3.0, 20.0, 45.0, 90.0, 150.0, 400.0])
            w, h = rng.uniform(0.6, 1.4, 2) * size
            box = [float(v) for v in (*rng.uniform(0, 300, 2), w, h)]
            ann = {"image_id": im["id"], "category_id": int(rng.choice(gt_cats)), "bbox": box,
                   "area": float(w * h * rng.uniform(0.5, 1.0)), "iscrowd": int(rng.random() < 0.12)}
            anns.append(ann)
            if rng.random() < 0.1:
                anns.append(dict(ann, bbox=list(box)))  # an identical twin: ties in IoU
    rng.shuffle(anns)
    for i, a in enumerate(anns):
        a["id"] = i + 1
    gt = {"images": images, "categories": cats, "annotations": anns}
    return gt, _random_results(rng, gt, tie_scores)


def _random_results(rng, gt: dict, tie_scores: bool) -> list:
    images, cats, anns = gt["images"], gt["categories"], gt["annotations"]
    by_img: dict = {}
    for a in anns:
        by_img.setdefault(a["image_id"], []).append(a)
    results = []
    for k, im in enumerate(images):
        if k % 5 == 4:
            continue
        for _ in range(int(rng.integers(0, 30))):
            src = by_img.get(im["id"])
            if src and rng.random() < 0.75:
                g = src[rng.integers(len(src))]
                x, y, w, h = g["bbox"]
                if rng.random() < 0.1:
                    box = [x, y, w, h]  # exact copy: IoU 1
                else:
                    j = rng.normal(0, 0.12, 4) * [w, h, w, h]
                    box = [x + j[0], y + j[1], max(w + j[2], 0.5), max(h + j[3], 0.5)]
                cat = g["category_id"] if rng.random() < 0.85 else int(rng.choice([c["id"] for c in cats]))
            else:
                box = [*rng.uniform(0, 300, 2), *(rng.uniform(0.5, 1.5, 2) * rng.choice([4.0, 50.0, 200.0]))]
                cat = int(rng.choice([c["id"] for c in cats]))
            score = 0.5 if tie_scores else float(np.round(rng.random(), 1) if rng.random() < 0.5 else rng.random())
            results.append({"image_id": im["id"], "category_id": cat, "bbox": [float(v) for v in box],
                            "score": score})
    first_gt = anns[0]
    for _ in range(130):  # > 100 detections in one image and category
        x, y, w, h = first_gt["bbox"]
        box = [float(x + rng.normal(0, w / 4)), float(y + rng.normal(0, h / 4)), float(w), float(h)]
        results.append({"image_id": first_gt["image_id"], "category_id": first_gt["category_id"], "bbox": box,
                        "score": float(np.round(rng.random(), 2))})
    return [results[i] for i in rng.permutation(len(results))]


@pytest.mark.parametrize("seed", range(6))
def test_matches_pycocotools(seed):
    gt, results = random_problem(seed, tie_scores=seed == 5)
    ref, _ = pycocotools_eval(gt, results)
    ours = coco_eval(gt, results)
    assert np.abs(np.array(ours.stats) - ref.stats).max() <= 1e-6
    # stronger: the accumulated arrays themselves
    np.testing.assert_allclose(ours.precision, ref.eval["precision"], atol=1e-12)
    np.testing.assert_allclose(ours.recall, ref.eval["recall"], atol=1e-12)
    for k, cat in enumerate(ref.params.catIds):
        s = ref.eval["precision"][:, :, k, 0, -1]
        ap = s[s > -1].mean() if (s > -1).any() else -1
        s50 = s[0][s[0] > -1]
        assert ours.per_class[cat][0] == pytest.approx(ap, abs=1e-9)
        assert ours.per_class[cat][1] == pytest.approx(s50.mean() if s50.size else -1, abs=1e-9)
    assert ours.per_class[gt["categories"][-1]["id"]] == (-1.0, -1.0)  # no gt: undefined


def test_summary_text_matches_pycocotools():
    gt, results = random_problem(11)
    _, printed = pycocotools_eval(gt, results)
    summary = [line for line in printed.splitlines() if line.startswith(" Average")]
    assert coco_eval(gt, results).format().splitlines() == summary


def test_undefined_stats_and_no_detections():
    gt = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1}, {"id": 2}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 200, 200], "area": 40000,
                           "iscrowd": 0}]}
    stats = coco_eval(gt, []).stats  # pycocotools cannot load an empty results list
    # only a large gt: small and medium are undefined (-1), everything else is 0 without detections
    assert stats == [0, 0, 0, -1, -1, 0, 0, 0, 0, -1, -1, 0]
    results = [{"image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.9}]
    assert coco_eval(gt, results).stats == pycocotools_eval(gt, results)[0].stats.tolist()


def test_annotation_id_zero_quirk():
    """pycocotools stores matches as gt ids, so a match to annotation id 0 counts as none; so do we."""
    gt = {"images": [{"id": 1}], "categories": [{"id": 1}],
          "annotations": [{"id": i, "image_id": 1, "category_id": 1, "bbox": [50 * i, 0, 40, 40], "area": 1600,
                           "iscrowd": 0} for i in range(3)]}
    results = [{"image_id": 1, "category_id": 1, "bbox": [50 * i + 1, 1, 40, 40], "score": 0.9 - i / 10}
               for i in range(3)]
    assert np.allclose(coco_eval(gt, results).stats, pycocotools_eval(gt, results)[0].stats, atol=1e-12)


def _random_image(rng, n_cls: int, crowd: bool):
    """xyxy gts, their classes and detections near them: ``pred`` [K, 6], ``boxes`` [M, 4], ``cls`` [M]."""
    m = int(rng.integers(0, 7))
    xy, wh = rng.uniform(0, 250, (m, 2)), rng.uniform(4, 120, (m, 2))
    boxes, cls = np.c_[xy, xy + wh], rng.integers(0, n_cls, m)
    k = int(rng.integers(0, 12))
    src = rng.integers(0, max(m, 1), k)
    pb = (boxes[src] if m else rng.uniform(0, 250, (k, 4))) + rng.normal(0, 6, (k, 4))
    pb[:, 2:] = np.maximum(pb[:, 2:], pb[:, :2] + 2)
    pc = np.where(rng.random(k) < 0.8, cls[src] if m else 0, rng.integers(0, n_cls, k))
    pred = np.c_[pb, rng.random(k), pc]
    crowd_boxes = np.array([[0.0, 0.0, 60.0, 60.0]]) if crowd else None
    return pred, boxes, cls, crowd_boxes


def _filled(n_images: int, seed: int, n_cls: int = 4, names=None) -> tuple[Evaluator, list]:
    rng = np.random.default_rng(seed)
    ev, images = Evaluator(n_cls, names), []
    for i in range(n_images):
        pred, boxes, cls, crowd = _random_image(rng, n_cls, crowd=i % 6 == 0)
        images.append((pred, boxes, cls))
        ev.update(torch.tensor(pred, dtype=torch.float32), torch.tensor(boxes, dtype=torch.float32),
                  torch.tensor(cls), crowd_boxes=crowd, crowd_classes=None if crowd is None else [1])
    return ev, images


def test_evaluator_equals_coco_eval_and_pycocotools(tmp_path):
    ev, _ = _filled(30, seed=3)
    result = ev.compute()
    gt, results = ev.to_coco()
    ref, _ = pycocotools_eval(gt, results)
    ours = np.array(list(result["stats"].values()))
    assert np.array_equal(ours, np.array(coco_eval(gt, results).stats))
    assert np.abs(ours - ref.stats).max() <= 1e-6
    assert result["map50"] == result["stats"]["AP50"] and result["map"] == result["stats"]["AP"]
    assert result["fitness"] == pytest.approx(0.1 * result["map50"] + 0.9 * result["map"])
    counts = np.bincount(np.concatenate([g[2] for g in _filled(30, seed=3)[1]]), minlength=4)
    assert [c["instances"] for c in result["per_class"]] == counts.tolist()


def test_a_class_without_ground_truth_has_no_precision_or_recall():
    """Only a false positive of class b: its P and R are undefined (-1, as its AP), not P 1.0 (reported
    before); the mean P and R are over the classes with ground truth."""
    ev = Evaluator(2, ["a", "b"])
    pred = torch.tensor([[10, 10, 50, 50, 0.9, 0], [60, 60, 90, 90, 0.8, 1]], dtype=torch.float64)
    ev.update(pred, torch.tensor([[10, 10, 50, 50]], dtype=torch.float64), torch.tensor([0]))
    r = ev.compute()
    a, b = r["per_class"]
    assert (a["P"], a["R"]) == (pytest.approx(1.0), pytest.approx(1.0))
    assert (b["instances"], b["AP"], b["P"], b["R"]) == (0, -1.0, -1.0, -1.0)
    assert r["precision"] == pytest.approx(1.0) and r["recall"] == pytest.approx(1.0)


def test_a_class_never_detected_has_precision_0_not_1():
    """A class with ground truth but no detection (and a model that detects nothing at all) reported P 1.0,
    which lifted the mean P of an untrained model to 1.000; as ultralytics (TP / detections, 0 without any)."""
    ev = Evaluator(2, ["a", "b"])
    pred = torch.tensor([[10, 10, 50, 50, 0.9, 0]], dtype=torch.float64)
    ev.update(pred, torch.tensor([[10, 10, 50, 50], [60, 60, 90, 90]], dtype=torch.float64), torch.tensor([0, 1]))
    r = ev.compute()
    a, b = r["per_class"]
    assert (a["P"], a["R"], b["P"], b["R"]) == (pytest.approx(1.0), pytest.approx(1.0), 0.0, 0.0)
    assert r["precision"] == pytest.approx(0.5) and r["recall"] == pytest.approx(0.5)
    empty = Evaluator(2, ["a", "b"])
    empty.update(torch.zeros(0, 6, dtype=torch.float64), torch.tensor([[10, 10, 50, 50]], dtype=torch.float64),
                 torch.tensor([0]))
    r = empty.compute()
    assert (r["precision"], r["recall"], r["map50"]) == (0.0, 0.0, 0.0)


def test_state_merge_equals_single_run():
    whole, _ = _filled(20, seed=5)
    rng_parts = [Evaluator(4), Evaluator(4)]
    for i, (pred, gt) in enumerate(zip(whole._pred, whole._gt)):  # two "ranks", interleaved images
        real = gt[:, 5] == 0
        rng_parts[i % 2].update(pred, gt[real, :4], gt[real, 4], gt[~real, :4], gt[~real, 4], image_id=i + 1)
    for i in range(len(whole)):
        whole.image_ids[i] = i + 1
    merged = Evaluator.merge([p.state() for p in rng_parts])
    a, b = whole.compute(), merged.compute()
    assert a["stats"] == b["stats"] and a["precision"] == b["precision"]
    assert np.array_equal(a["confusion_matrix"], b["confusion_matrix"])


def _brute_confusion(images, n_cls: int, conf: float, iou_thr: float) -> np.ndarray:
    """Greedy class-agnostic matching by decreasing IoU, written with plain loops."""
    m = np.zeros((n_cls + 1, n_cls + 1), int)
    for pred, boxes, cls in images:
        dets = [p for p in pred.tolist() if p[4] > conf]
        pairs = []
        for gi, g in enumerate(boxes.tolist()):
            for di, d in enumerate(dets):
                iw = min(g[2], d[2]) - max(g[0], d[0])
                ih = min(g[3], d[3]) - max(g[1], d[1])
                inter = max(iw, 0) * max(ih, 0)
                union = (g[2] - g[0]) * (g[3] - g[1]) + (d[2] - d[0]) * (d[3] - d[1]) - inter
                if inter / union > iou_thr:
                    pairs.append((inter / union, gi, di))
        used_g, used_d = set(), set()
        for _, gi, di in sorted(pairs, key=lambda t: -t[0]):
            if gi not in used_g and di not in used_d:
                used_g.add(gi)
                used_d.add(di)
                m[int(dets[di][5]), int(cls[gi])] += 1
        for gi in set(range(len(boxes))) - used_g:
            m[n_cls, int(cls[gi])] += 1
        for di in set(range(len(dets))) - used_d:
            m[int(dets[di][5]), n_cls] += 1
    return m


def test_confusion_matrix_and_plots(tmp_path):
    ev, images = _filled(25, seed=7, names=["cat", "dog", "bird", "fish"])
    result = ev.compute()
    assert np.array_equal(result["confusion_matrix"], _brute_confusion(images, 4, 0.25, 0.45))
    paths = ev.save_plots(tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["confusion_matrix.png", "f1_curve.png", "p_curve.png", "pr_curve.png",
                                             "r_curve.png"]
    for p in paths:
        img = cv2.imread(str(p))
        assert img is not None and img.shape[0] > 100 and img.std() > 1


def test_pr_conf_curves_against_counts():
    """At grid confidences equal to detection scores the curves are plain counts over score >= conf."""
    rng = np.random.default_rng(0)
    n = 40
    score = rng.choice(CONF_GRID[1:-1], n, replace=False)
    cls = rng.integers(0, 3, n)
    tp = rng.random(n) < 0.6
    fp = ~tp & (rng.random(n) < 0.9)  # the rest are ignored detections
    n_gt = np.array([10, 8, 0])
    curves = pr_conf_curves(score, cls, tp, fp, n_gt)
    for c in (0, 1):
        for s in score[(cls == c) & (tp | fp)]:
            i = int(np.flatnonzero(CONF_GRID == s)[0])
            above = (cls == c) & (score >= s)
            assert curves["r"][c, i] == pytest.approx(tp[above].sum() / n_gt[c])
            assert curves["p"][c, i] == pytest.approx(tp[above].sum() / (tp | fp)[above].sum())
    f1 = 2 * curves["p"] * curves["r"] / (curves["p"] + curves["r"] + 1e-16)
    assert curves["best"] == int(f1[:2].mean(0).argmax())


def _hyp_problem(draw):
    """Tiny problems on an integer grid: exact IoU ties and IoUs exactly at the thresholds are common."""
    from hypothesis import strategies as st

    box = st.tuples(st.integers(0, 12), st.integers(0, 12), st.integers(1, 12), st.integers(1, 12))
    n_img, n_cat = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    gts = draw(st.lists(st.tuples(st.integers(1, n_img), st.integers(1, n_cat), box, st.booleans(),
                                  st.sampled_from([10.0, 40.0, 2000.0, 20000.0])), max_size=8))
    dts = draw(st.lists(st.tuples(st.integers(1, n_img), st.integers(1, n_cat), box,
                                  st.sampled_from([0.1, 0.5, 0.5, 0.9])), min_size=1, max_size=12))
    near = draw(st.lists(st.tuples(st.integers(0, 7), st.tuples(*[st.integers(-2, 2)] * 4), st.booleans(),
                                   st.sampled_from([0.2, 0.5, 0.7])), max_size=12 if gts else 0))
    for k, shift, same, score in near:  # detections near a gt: same image, mostly the same category
        i, c, b, _, _ = gts[k % len(gts)]
        moved = (b[0] + shift[0], b[1] + shift[1], max(b[2] + shift[2], 1), max(b[3] + shift[3], 1))
        dts.append((i, c if same else c % n_cat + 1, moved, score))
    gt = {"images": [{"id": i} for i in range(1, n_img + 1)], "categories": [{"id": c} for c in range(1, n_cat + 1)],
          "annotations": [{"id": k + 1, "image_id": i, "category_id": c, "bbox": [float(v) for v in b],
                           "area": area, "iscrowd": int(crowd and k % 2 == 0)}
                          for k, (i, c, b, crowd, area) in enumerate(gts)]}
    results = [{"image_id": i, "category_id": c, "bbox": [float(v) for v in b], "score": s} for i, c, b, s in dts]
    return gt, results


def test_matches_pycocotools_on_integer_grids():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data):
        gt, results = _hyp_problem(data.draw)
        ref, _ = pycocotools_eval(gt, results)
        ours = coco_eval(gt, results)
        assert np.abs(np.array(ours.stats) - ref.stats).max() <= 1e-6
        np.testing.assert_allclose(ours.precision, ref.eval["precision"], atol=1e-12)
        np.testing.assert_allclose(ours.recall, ref.eval["recall"], atol=1e-12)

    check()


def test_evaluator_rejects_bad_updates():
    ev = Evaluator(3)
    with pytest.raises(ValueError, match="classes must be integers"):
        ev.update([[0, 0, 5, 5, 0.9, 3]], [[0, 0, 5, 5]], [0])
    with pytest.raises(ValueError, match="2 gt boxes with 1 classes"):
        ev.update(None, [[0, 0, 5, 5], [1, 1, 4, 4]], [0])
    assert len(ev) == 0
