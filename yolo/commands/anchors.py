"""``yolo anchors``: k-means anchors for a dataset."""

from __future__ import annotations


from yolo.commands.common import data_config, img_size
from yolo.errors import InputError, warn
from yolo.utils.text import count


def add_parser(sub) -> None:
    p = sub.add_parser("anchors", help="k-means anchors for a dataset",
                       description="k-means (distance 1 - IoU of boxes sharing a centre, k-means++ seeding) on "
                                   "the label boxes' sizes after letterboxing each image to --img-size. Prints the "
                                   "anchors sorted by area in cfg syntax, with best possible recall (BPR: share of "
                                   "boxes whose best anchor has both side ratios within 4) and mean best IoU, for "
                                   "the new anchors and for the cfg's current ones.")
    p.add_argument("data", help="data .yaml, darknet .data, or COCO instances_*.json")
    p.add_argument("--n", type=int, default=None, help="number of anchors (default: as many as the --cfg has, "
                                                       "else 9)")
    p.add_argument("--img-size", type=int, nargs="+", metavar="N", help="N, or H W (default 416)")
    p.add_argument("--split", default="train", choices=["train", "val", "test"], help="default train")
    p.add_argument("--cfg", default=None, help="cfg whose anchors to compare: a path or a built-in name (default "
                                               "the built-in yolov3.cfg)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--evolve", type=int, default=0, metavar="G",
                   help="then G generations of mutation that keep only gains in mean best IoU (default 0: off)")
    p.add_argument("--images", help="images folder for a COCO json given as DATA")
    p.set_defaults(run=_run_anchors)


def _run_anchors(args) -> int:

    import numpy as np

    from yolo.data.anchors import anchor_fitness, evolve_anchors, format_anchors, kmeans_anchors, label_wh
    from yolo.data.split import load_split
    from yolo.model.cfg_parser import parse_cfg
    from yolo.resources import builtin

    cfg = args.cfg or builtin("yolov3.cfg", "model")
    spec = parse_cfg(cfg) if cfg is not None else None  # an install without built-ins: no comparison
    heads = spec.heads if spec is not None else []
    if args.n is None:  # as many as the cfg has: pasted into its [yolo] sections, the line fits their num
        args.n = len(heads[0].anchors) if heads and args.cfg else 9
    if args.n < 1 or args.evolve < 0:
        raise InputError(f"--n must be >= 1 and --evolve >= 0, got {args.n} and {args.evolve}")
    size = img_size(args.img_size, 32)
    index = load_split(data_config(args.data, args.images), args.split)
    if index.report is not None:
        index.report.warn_dropped()  # rows and images dropped change the boxes fitted, as for train and val
    wh, small = label_wh(index, size)
    if len(wh) < args.n:
        raise InputError(f"only {count(len(wh), 'box')} of at least 2 px: too few for {count(args.n, 'anchor')}",
                         index.source)
    anchors = kmeans_anchors(wh, args.n, seed=args.seed)
    if args.evolve > 0:
        anchors = evolve_anchors(wh, anchors, args.evolve, seed=args.seed)
    print(format_anchors(anchors))
    shown = np.array([[round(w), round(h)] for w, h in np.asarray(anchors)], float)  # the cfg line's integers
    distinct = len(np.unique(shown, axis=0))
    if distinct < args.n:
        warn(f"{args.n - distinct} of the {args.n} anchors repeat another: the labels have too few distinct box "
             f"sizes for {count(args.n, 'anchor')} (give a smaller --n)")
    rows = [("new", anchor_fitness(wh, shown))]  # what pasting that line gives (the unrounded ones differ a bit)
    if heads:
        theirs = len(heads[0].anchors)
        note = f" ({count(theirs, 'anchor')} against {args.n}: not a fair comparison)" if theirs != args.n else ""
        shown_cfg = spec.source if args.cfg else "yolov3.cfg"  # the file read (a local one may shadow a built-in)
        rows.append((f"cfg {shown_cfg}{note}", anchor_fitness(wh, np.array(heads[0].anchors))))
    for name, fit in rows:
        print(f"{name}: BPR {fit['bpr']:.4f}, mean best IoU {fit['mean_best_iou']:.4f}, anchors per box "
              f"{fit['mean_anchors_per_box']:.2f}")
    print(f"{count(len(wh), 'box')} at {size[0]}x{size[1]} ({small} under 2 px left out)")
    return 0
