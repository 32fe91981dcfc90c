"""COCO box evaluation that reproduces pycocotools' ``COCOeval(iouType='bbox')`` exactly, vectorized in numpy.

The rules are pycocotools' own: per (image, category) the detections are sorted by score (stable mergesort)
and cut at 100; ground truths are sorted with ignored ones (crowd, or area outside the range) last; greedy
matching per IoU threshold takes, for each detection in turn, the unmatched regular gt with the highest IoU
>= threshold (the last one on ties), else the best ignored one (a crowd gt matches any number of detections);
a crowd gt's IoU divides by the detection's area. Unmatched detections outside the area range are ignored.
Precision is made monotone and read at 101 recall points; "maxDets" cuts each (image, category) list.
Statistics with no ground truth are -1. A match to a gt whose annotation id is 0 counts as no match, as in
pycocotools (it stores matches as gt ids and tests them for non-zero).

Speed comes from doing every (image, category) pair at once: IoUs on a flat list of (detection, gt) entries
of the same pair, greedy matching stepping over the detection rank (all pairs, 10 thresholds and 4 area
ranges in one array operation per step), and one sorted pass per category to accumulate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from yolo.errors import InputError

IOU_THRS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)  # [T=10], as pycocotools
REC_THRS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)  # [R=101]
MAX_DETS = (1, 10, 100)
AREA_RANGES = ((0 ** 2, 1e5 ** 2), (0 ** 2, 32 ** 2), (32 ** 2, 96 ** 2), (96 ** 2, 1e5 ** 2))
AREA_LABELS = ("all", "small", "medium", "large")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# (is AP, IoU threshold or None for all, area label, maxDets) for each of the 12 statistics, in pycocotools order
_STAT_SPECS = ((1, None, "all", 100), (1, .5, "all", 100), (1, .75, "all", 100), (1, None, "small", 100),
               (1, None, "medium", 100), (1, None, "large", 100), (0, None, "all", 1), (0, None, "all", 10),
               (0, None, "all", 100), (0, None, "small", 100), (0, None, "medium", 100), (0, None, "large", 100))


@dataclass
class CocoArrays:
    """A COCO evaluation problem as flat arrays (G ground truths, D detections, I images, K categories).

    ``gt_img``/``dt_img`` ``[G]``/``[D]`` index the sorted image ids (0..I-1); ``gt_cat``/``dt_cat`` index
    ``cat_ids`` ``[K]`` (sorted); ``gt_box``/``dt_box`` ``[G, 4]``/``[D, 4]`` COCO x, y, w, h (float64);
    ``gt_area`` ``[G]`` the annotations' ``area``; ``gt_crowd`` ``[G]`` bool; ``gt_id`` ``[G]`` annotation ids
    (only id 0 matters, see the module doc); ``dt_score`` ``[D]``. Order inside each array is the file order.
    """

    cat_ids: np.ndarray
    num_images: int
    gt_img: np.ndarray
    gt_cat: np.ndarray
    gt_box: np.ndarray
    gt_area: np.ndarray
    gt_crowd: np.ndarray
    gt_id: np.ndarray
    dt_img: np.ndarray
    dt_cat: np.ndarray
    dt_box: np.ndarray
    dt_score: np.ndarray


@dataclass
class CocoStats:
    """The result: ``stats`` (12 floats, pycocotools order, -1 where undefined), ``names`` (``STAT_NAMES``),
    ``per_class`` {category id: (AP@[.5:.95], AP50)} (-1 for categories without gt), and the accumulated
    ``precision`` ``[T=10, R=101, K, A=4, M=3]`` and ``recall`` ``[T, K, A, M]`` arrays (as ``COCOeval.eval``).
    ``matches`` holds, for the D' detections kept (top 100 per image and category), ``score`` ``[D']``,
    ``cat`` ``[D']`` (category index), ``tp50``/``fp50`` ``[D']`` bool at IoU 0.5, all areas, and ``npig``
    ``[K]`` (non-ignored gts per category): what P/R-vs-confidence curves need."""

    stats: list[float]
    per_class: dict = field(default_factory=dict)
    precision: np.ndarray | None = None
    recall: np.ndarray | None = None
    matches: dict | None = None
    names: tuple[str, ...] = STAT_NAMES

    def as_dict(self) -> dict:
        """{stat name: value} plus ``per_class``: {category id: {"AP": .., "AP50": ..}} (JSON-ready)."""
        out = {name: float(v) for name, v in zip(self.names, self.stats)}
        out["per_class"] = {k: {"AP": float(ap), "AP50": float(ap50)} for k, (ap, ap50) in self.per_class.items()}
        return out

    def format(self) -> str:
        """The 12 lines pycocotools' ``summarize()`` prints."""
        line = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
        rows = []
        for (is_ap, thr, area, max_det), value in zip(_STAT_SPECS, self.stats):
            title, kind = ("Average Precision", "(AP)") if is_ap else ("Average Recall", "(AR)")
            iou = f"{IOU_THRS[0]:0.2f}:{IOU_THRS[-1]:0.2f}" if thr is None else f"{thr:0.2f}"
            rows.append(line.format(title, kind, iou, area, max_det, value))
        return "\n".join(rows)


def _box_iou_entries(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of paired boxes ``[E, 4]`` xywh -> ``[E]``, the formula of pycocotools' ``bbIou`` (crowd: divide
    by the detection's area)."""
    w = np.minimum(dt[:, 2] + dt[:, 0], gt[:, 2] + gt[:, 0]) - np.maximum(dt[:, 0], gt[:, 0])
    h = np.minimum(dt[:, 3] + dt[:, 1], gt[:, 3] + gt[:, 1]) - np.maximum(dt[:, 1], gt[:, 1])
    valid = (w > 0) & (h > 0)
    inter = w * h
    dt_area = dt[:, 2] * dt[:, 3]
    union = np.where(crowd, dt_area, dt_area + gt[:, 2] * gt[:, 3] - inter)
    out = np.zeros(len(dt))
    np.divide(inter, union, out=out, where=valid)
    return out


def _segment_rank(keys: np.ndarray) -> np.ndarray:
    """Position of each element inside its run of equal ``keys`` (``keys`` sorted) ``[N]`` -> ``[N]``."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, np.int64)
    start = np.r_[True, keys[1:] != keys[:-1]]
    first = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    return np.arange(n) - first


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(s, s + l)`` for each start/length ``[N]`` -> ``[sum(lengths)]``."""
    total = int(lengths.sum())
    shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return shift + np.arange(total)


def _sort_inputs(a: CocoArrays):
    """Sort gts by (image, category, file order) and detections by (image, category, -score, file order),
    keep each pair's top ``MAX_DETS[-1]`` detections. Returns (gt order ``[G]``, dt order ``[D']``, dt rank
    within its pair ``[D']``)."""
    k = len(a.cat_ids)
    g_order = np.lexsort((np.arange(len(a.gt_img)), a.gt_cat, a.gt_img))
    d_order = np.lexsort((np.arange(len(a.dt_img)), -a.dt_score, a.dt_cat, a.dt_img))
    d_pair = a.dt_img[d_order].astype(np.int64) * k + a.dt_cat[d_order]
    rank = _segment_rank(d_pair)
    keep = rank < MAX_DETS[-1]
    return g_order, d_order[keep], rank[keep]


class _Problem:
    """Sorted inputs plus the flat (detection, gt) entry list of same-pair boxes."""

    def __init__(self, a: CocoArrays):
        g_order, d_order, self.rank = _sort_inputs(a)
        k = len(a.cat_ids)
        self.gt_cat, self.gt_crowd = a.gt_cat[g_order], a.gt_crowd[g_order].astype(bool)
        self.gt_area, self.gt_id = a.gt_area[g_order].astype(np.float64), a.gt_id[g_order]
        gt_box = a.gt_box[g_order].astype(np.float64)
        self.dt_img, self.dt_cat = a.dt_img[d_order], a.dt_cat[d_order]
        self.dt_score = a.dt_score[d_order].astype(np.float64)
        dt_box = a.dt_box[d_order].astype(np.float64)
        self.dt_area = dt_box[:, 2] * dt_box[:, 3]
        g_pair = a.gt_img[g_order].astype(np.int64) * k + self.gt_cat
        d_pair = self.dt_img.astype(np.int64) * k + self.dt_cat
        g_start = np.searchsorted(g_pair, d_pair, "left")
        self.n_gt = np.searchsorted(g_pair, d_pair, "right") - g_start  # [D] gts in the detection's pair
        self.offset = np.cumsum(self.n_gt) - self.n_gt  # [D] first entry of each detection
        self.e_det = np.repeat(np.arange(len(d_pair)), self.n_gt)  # [E]
        self.e_gt = _ranges(g_start, self.n_gt)  # [E] sorted-gt index
        self.e_iou = _box_iou_entries(dt_box[self.e_det], gt_box[self.e_gt], self.gt_crowd[self.e_gt])
        lo, hi = np.array(AREA_RANGES).T[:, :, None]  # [A, 1] each
        self.gt_ignore = self.gt_crowd[None] | (self.gt_area[None] < lo) | (self.gt_area[None] > hi)  # [A, G]
        self.dt_outside = (self.dt_area[None] < lo) | (self.dt_area[None] > hi)  # [A, D]


def _match(p: _Problem) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching for all pairs, thresholds and area ranges -> (``real`` ``[T, A, D]``: matched to a gt
    whose id is not 0, ``to_ignored`` ``[T, A, D]``: matched to an ignored gt). Steps over the detection rank;
    inside a step every pair moves at once."""
    n_t, n_a, n_d = len(IOU_THRS), len(AREA_RANGES), len(p.rank)
    real, to_ignored = np.zeros((n_t, n_a, n_d), bool), np.zeros((n_t, n_a, n_d), bool)
    if len(p.e_det) == 0:
        return real, to_ignored
    # per area range, each detection's entries in preference order: regular gts first, then higher IoU,
    # then later gt (pycocotools' loop keeps the last of equal IoUs)
    rev = np.arange(len(p.e_det))[::-1]  # a stable sort of the reversed list puts later gts first on ties
    base = rev[np.lexsort((-p.e_iou[rev], p.e_det[rev]))]
    key = p.e_det[base] * 2
    prefer = np.stack([base[np.argsort(key + p.gt_ignore[a][p.e_gt[base]], kind="stable")] for a in range(n_a)])
    used = np.zeros((n_t, n_a, len(p.gt_crowd)), bool)
    a_idx = np.arange(n_a)[:, None]
    thr = IOU_THRS[:, None, None]
    has_gt = p.n_gt > 0
    id_ok = p.gt_id != 0  # pycocotools stores matches as gt ids: id 0 reads as "no match"
    for r in range(int(p.rank[has_gt].max()) + 1):
        dets = np.flatnonzero(has_gt & (p.rank == r))
        if len(dets) == 0:
            continue
        lengths = p.n_gt[dets]
        ent = prefer[:, _ranges(p.offset[dets], lengths)]  # [A, E_r] entries in preference order
        gts = p.e_gt[ent]  # [A, E_r]
        ok = (~used[:, a_idx, gts] | p.gt_crowd[gts][None]) & (p.e_iou[ent][None] >= thr)  # [T, A, E_r] free, close
        n_e = ent.shape[1]
        pos = np.where(ok, np.arange(n_e, dtype=np.int32), np.int32(n_e))  # [T, A, E_r]
        first = np.minimum.reduceat(pos, np.cumsum(lengths) - lengths, axis=2)  # [T, A, n_r]
        t_i, a_i, d_i = np.nonzero(first < n_e)
        g = gts[a_i, first[t_i, a_i, d_i]]
        used[t_i, a_i, g] = True
        real[t_i, a_i, dets[d_i]] = id_ok[g]
        to_ignored[t_i, a_i, dets[d_i]] = p.gt_ignore[a_i, g]
    return real, to_ignored


def _tp_fp(p: _Problem, real: np.ndarray, to_ignored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positive flags ``[T, A, D]`` (ignored detections are neither): a detection is ignored
    when matched to an ignored gt, or when it has no (real) match and lies outside the area range."""
    ignored = to_ignored | (~real & p.dt_outside[None])
    return real & ~ignored, ~real & ~ignored


def _first_count(npig: np.ndarray) -> np.ndarray:
    """``[A]`` gt counts -> ``[A, R]``: the least integer j with ``j / npig >= REC_THRS[r]`` in float64, so that
    "recall < threshold" is "tp count < j" exactly as pycocotools' ``searchsorted(rc, recThrs)`` sees it."""
    n = np.maximum(npig, 1)[:, None, None].astype(np.int64)  # [A, 1, 1]
    guess = np.ceil(REC_THRS[None, :, None] * n).astype(np.int64) + np.arange(-2, 3)  # [A, R, 5]
    guess = np.maximum(guess, 0)
    ok = guess / n >= REC_THRS[None, :, None]
    return np.take_along_axis(guess, ok.argmax(-1)[..., None], -1)[..., 0]


def _pr_curves(tp: np.ndarray, fp: np.ndarray, npig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' accumulate for one (category, maxDets) and every area range and threshold at once:
    ``tp``/``fp`` ``[A, T, n]`` in global score order, ``npig`` ``[A]`` -> (precision ``[A, T, R]``, recall
    ``[A, T]``)."""
    n_a, n_t, n = tp.shape
    if n == 0:
        return np.zeros((n_a, n_t, len(REC_THRS))), np.zeros((n_a, n_t))
    tp_count = np.cumsum(tp, axis=2, dtype=np.int64)  # [A, T, n]
    tp_sum, fp_sum = tp_count.astype(float), np.cumsum(fp, axis=2).astype(float)
    pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    pr = np.maximum.accumulate(pr[..., ::-1], axis=2)[..., ::-1]  # precision envelope from the right
    # searchsorted(rc, REC_THRS, 'left') of every row at once, on exact integer keys: row * (n+1) + tp count
    rows = np.arange(n_a * n_t).reshape(n_a, n_t, 1) * (n + 1)
    keys = (rows + tp_count).ravel()
    idx = np.searchsorted(keys, rows + _first_count(npig)[:, None, :], side="left") - rows // (n + 1) * n
    q = np.take_along_axis(pr, np.minimum(idx, n - 1), axis=2)
    return np.where(idx < n, q, 0.0), tp_sum[..., -1] / np.maximum(npig, 1)[:, None]


def _accumulate(p: _Problem, tp: np.ndarray, fp: np.ndarray, num_cats: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision ``[T, R, K, A, M]`` and recall ``[T, K, A, M]`` as ``COCOeval.accumulate`` (-1: no gt)."""
    n_t, n_r, n_a, n_m = len(IOU_THRS), len(REC_THRS), len(AREA_RANGES), len(MAX_DETS)
    precision = -np.ones((n_t, n_r, num_cats, n_a, n_m))
    recall = -np.ones((n_t, num_cats, n_a, n_m))
    regular = ~p.gt_ignore  # [A, G]
    npig = np.stack([np.bincount(p.gt_cat[regular[a]], minlength=num_cats) for a in range(n_a)], 1)  # [K, A]
    order = np.lexsort((p.rank, p.dt_img, -p.dt_score, p.dt_cat))  # per category: score, image, rank
    for a in range(n_a):
        # a detection ignored at every threshold changes no sampled precision or recall: leave it out
        cols = order[(tp[:, a, order] | fp[:, a, order]).any(0)]
        tp_a, fp_a, rank, cat = tp[:, a, cols], fp[:, a, cols], p.rank[cols], p.dt_cat[cols]  # [T, n], [n]
        bounds = np.searchsorted(cat, np.arange(num_cats + 1))
        for k in np.flatnonzero(npig[:, a] > 0):
            s = slice(bounds[k], bounds[k + 1])
            q = None
            for m in reversed(range(n_m)):  # a cut that keeps every detection repeats the previous result
                keep = rank[s] < MAX_DETS[m]
                if q is None or not keep.all():
                    tp_k, fp_k = tp_a[None, :, s], fp_a[None, :, s]
                    if not keep.all():
                        tp_k, fp_k = tp_k[:, :, keep], fp_k[:, :, keep]
                    q, rc = _pr_curves(tp_k, fp_k, npig[k, a:a + 1])
                precision[:, :, k, a, m] = q[0]
                recall[:, k, a, m] = rc[0]
    return precision, recall


def _mean_valid(s: np.ndarray) -> float:
    valid = s[s > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def summarize(precision: np.ndarray, recall: np.ndarray) -> list[float]:
    """The 12 statistics of ``COCOeval.summarize()`` from ``[T, R, K, A, M]`` precision and ``[T, K, A, M]``
    recall."""
    stats = []
    for is_ap, thr, area, max_det in _STAT_SPECS:
        a, m = AREA_LABELS.index(area), MAX_DETS.index(max_det)
        s = precision if is_ap else recall
        if thr is not None:
            s = s[np.where(thr == IOU_THRS)[0]]
        stats.append(_mean_valid(s[..., a, m]))
    return stats


def evaluate_arrays(a: CocoArrays) -> CocoStats:
    """Evaluate, accumulate and summarize a :class:`CocoArrays` problem."""
    p = _Problem(a)
    tp, fp = _tp_fp(p, *_match(p))
    precision, recall = _accumulate(p, tp, fp, len(a.cat_ids))
    per_class = {}
    for k, cat in enumerate(a.cat_ids.tolist()):
        per_class[cat] = (_mean_valid(precision[:, :, k, 0, -1]), _mean_valid(precision[0, :, k, 0, -1]))
    matches = dict(score=p.dt_score, cat=p.dt_cat, tp50=tp[0, 0], fp50=fp[0, 0],
                   npig=np.bincount(p.gt_cat[~p.gt_ignore[0]], minlength=len(a.cat_ids)))
    return CocoStats(summarize(precision, recall), per_class, precision, recall, matches)


def _ids(items, what: str, path) -> np.ndarray:
    try:
        return np.unique(np.array([x["id"] for x in items]))
    except (KeyError, TypeError):
        raise InputError(f"every entry of '{what}' needs an 'id'", path) from None


def _index_of(sorted_ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each value in ``sorted_ids`` and whether it is there ``[N]``."""
    if len(sorted_ids) == 0:
        return np.zeros(len(values), np.int64), np.zeros(len(values), bool)
    pos = np.clip(np.searchsorted(sorted_ids, values), 0, len(sorted_ids) - 1)
    return pos, sorted_ids[pos] == values


def _gt_arrays(gt: dict, img_ids: np.ndarray, cat_ids: np.ndarray, path) -> dict:
    """Ground-truth annotations -> arrays; annotations of unlisted images or categories are left out (as
    pycocotools does). ``area`` defaults to w*h and ``iscrowd`` to 0."""
    anns = gt.get("annotations", [])
    try:
        box = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        img = np.array([a["image_id"] for a in anns])
        cat = np.array([a["category_id"] for a in anns])
        ann_id = np.array([a["id"] for a in anns], np.int64)
        area = np.array([a["area"] if "area" in a else a["bbox"][2] * a["bbox"][3] for a in anns], np.float64)
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"annotations need bbox [x, y, w, h], image_id, category_id and id ({e})", path) from None
    if len(np.unique(ann_id)) != len(ann_id):
        raise InputError("annotation ids are not unique", path)
    img_pos, img_ok = _index_of(img_ids, img)
    cat_pos, cat_ok = _index_of(cat_ids, cat)
    keep = img_ok & cat_ok
    return dict(gt_img=img_pos[keep], gt_cat=cat_pos[keep], gt_box=box[keep], gt_area=area[keep],
                gt_crowd=crowd[keep], gt_id=ann_id[keep])


def _bad_result(results: list) -> str:
    """Describe the first malformed results entry (slow path, only after a failure)."""
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            return f"results[{i}] is not an object"
        missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in r]
        if missing:
            return f"results[{i}] misses {', '.join(map(repr, missing))}"
        box = r["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            return f"results[{i}]: bbox must be 4 numbers [x, y, w, h]"
        if not isinstance(r["score"], (int, float)):
            return f"results[{i}]: score must be a number"
    return "results are malformed"


def _entries(n: int) -> str:
    return "1 such entry" if n == 1 else f"{n} such entries"


def _dt_arrays(results: list, img_ids: np.ndarray, cat_ids: np.ndarray, path) -> dict:
    """Results list -> arrays; an image or category id the ground truth lacks is an error naming the entry."""
    if not isinstance(results, list):
        raise InputError("results must be a list of {image_id, category_id, bbox, score}", path)
    for key in ("image_id", "category_id"):  # one text id among numbers turned every id into text: all "missing"
        i = next((i for i, r in enumerate(results) if isinstance(r, dict) and key in r
                  and (isinstance(r[key], bool) or not isinstance(r[key], (int, float)))), None)
        if i is not None:
            raise InputError(f"results[{i}]: {key} must be a number, got {results[i][key]!r}", path)
    try:
        box = np.array([r["bbox"] for r in results], np.float64).reshape(-1, 4)
        score = np.array([r["score"] for r in results], np.float64)
        img = np.array([r["image_id"] for r in results])
        cat = np.array([r["category_id"] for r in results])
    except (KeyError, TypeError, ValueError):
        raise InputError(_bad_result(results), path) from None
    if len(box) != len(results) or score.ndim != 1:
        raise InputError(_bad_result(results), path)
    bad = ~np.isfinite(box).all(1) | (box[:, 2] < 0) | (box[:, 3] < 0) | ~np.isfinite(score)  # [N]
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"results[{i}]: bbox [x, y, w, h] must be finite with w, h >= 0 and the score finite, "
                         f"got {results[i]['bbox']} score {results[i]['score']} ({_entries(int(bad.sum()))})", path)
    img_pos, img_ok = _index_of(img_ids, img)
    cat_pos, cat_ok = _index_of(cat_ids, cat)
    for ok, what, values in ((img_ok, "image_id", img), (cat_ok, "category_id", cat)):
        if not ok.all():
            i = int(np.argmin(ok))
            raise InputError(f"results[{i}]: {what} {values[i].item()!r} is not in the annotations "
                             f"({_entries(int((~ok).sum()))})", path)
    return dict(dt_img=img_pos, dt_cat=cat_pos, dt_box=box, dt_score=score)


def coco_arrays(gt: dict, results: list, gt_path: str | None = None, results_path: str | None = None) -> CocoArrays:
    """A COCO instances dict (``images``, ``annotations``, ``categories``) and a results list
    (``image_id``, ``category_id``, ``bbox`` [x, y, w, h], ``score``) -> :class:`CocoArrays`. The paths only
    name the files in error messages."""
    if not isinstance(gt, dict) or "images" not in gt or "categories" not in gt:
        raise InputError("annotations must be a COCO instances object with 'images' and 'categories'", gt_path)
    img_ids, cat_ids = _ids(gt["images"], "images", gt_path), _ids(gt["categories"], "categories", gt_path)
    return CocoArrays(cat_ids=cat_ids, num_images=len(img_ids), **_gt_arrays(gt, img_ids, cat_ids, gt_path),
                      **_dt_arrays(results, img_ids, cat_ids, results_path))


def coco_eval(gt: dict, results: list, gt_path: str | None = None, results_path: str | None = None) -> CocoStats:
    """pycocotools' ``COCOeval(gt, gt.loadRes(results), 'bbox')`` evaluate + accumulate + summarize, exactly.

    Raises :class:`InputError` for malformed entries and for results whose image or category id the ground
    truth lacks (pycocotools asserts on the former and silently drops the latter); the optional paths name
    the files in those messages."""
    return evaluate_arrays(coco_arrays(gt, results, gt_path, results_path))
