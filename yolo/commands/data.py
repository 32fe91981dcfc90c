"""``yolo data check``: read a dataset and report what was found and dropped."""

from __future__ import annotations

import sys

from yolo.commands.common import data_config
from yolo.errors import MATPLOTLIB_MISSING, InputError, warn


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="check datasets", description="Dataset tools.")
    actions = p.add_subparsers(dest="action", metavar="<action>", required=True)
    c = actions.add_parser("check", help="read every split, report what was found and dropped",
                           description="Read a dataset (data YAML, darknet .data, or a COCO instances json) and "
                                       "print per split: images, labels found/missing/empty, corrupt images, "
                                       "dropped rows by kind, duplicates, clipped boxes, boxes per class and the "
                                       "first problems as file:line: message. Dropped rows are reported, not "
                                       "fatal: the exit code is 0 unless the input is unusable.")
    c.add_argument("data", help="data .yaml, darknet .data, or COCO instances_*.json")
    c.add_argument("--split", default="all", choices=["train", "val", "test", "all"],
                   help="which split (default: all the data has)")
    c.add_argument("--images", help="images folder for a COCO json given as DATA (default: ../<name> of the json)")
    c.add_argument("--plot", metavar="PATH", help="write a PNG of the label statistics (several splits: "
                                                  "PATH with _<split> before the suffix)")
    c.add_argument("--problems", type=int, default=10, help="problems listed per split (default 10)")
    c.add_argument("--no-cache", action="store_true", help="read every file again; do not read or write the cache")
    c.add_argument("--json", action="store_true", help="print one JSON object {split: report} instead")
    c.add_argument("--force", action="store_true", help="replace an existing --plot file")
    c.set_defaults(run=_run_data_check)


def _run_data_check(args) -> int:
    import json
    from pathlib import Path

    from yolo.data.report import plot_labels
    from yolo.data.split import describe_shared, load_split, shared_images

    config = data_config(args.data, args.images)
    splits = list(config.splits) if args.split == "all" else [args.split]
    plots = {s: Path(args.plot) for s in splits} if args.plot else {}
    if args.plot and len(splits) > 1:
        plots = {s: Path(args.plot).with_name(f"{Path(args.plot).stem}_{s}{Path(args.plot).suffix or '.png'}")
                 for s in splits}
    for p in plots.values():
        if p.exists() and not args.force:
            raise InputError("exists; use --force to replace it", str(p))
    if plots:  # before any split is read: the picture asked for cannot be drawn
        from yolo.utils.plots import have_matplotlib

        if not have_matplotlib():
            raise InputError(MATPLOTLIB_MISSING.format(what="labels picture") + "; check without --plot",
                             str(next(iter(plots.values()))))
    reports, indexes = {}, {}
    for s in splits:
        index = indexes[s] = load_split(config, s, cache=not args.no_cache)
        reports[s] = index.report.to_dict()
        if not args.json:
            print(index.report.format(max_problems=args.problems))
        if s in plots:
            print(f"labels picture: {plot_labels(index, plots[s])}", file=sys.stderr if args.json else sys.stdout)
    for s, other in (pair for pair in (("val", "train"), ("test", "train"), ("test", "val"))
                     if pair[0] in indexes and pair[1] in indexes):  # a split checked against those before it
        shared = shared_images(indexes[s], indexes[other])
        reports[s].setdefault("shared", {})[other] = [str(p) for p in shared]
        if shared and not args.json:
            warn(describe_shared(s, indexes[s], other, shared))
    if args.json:
        print(json.dumps(reports, indent=1))
    return 0
