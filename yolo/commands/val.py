"""``yolo val``: a model over a dataset split, or COCO json files."""

from __future__ import annotations

from yolo.commands.common import add_resize_flags, img_size
from yolo.errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser("val", help="mAP of a model on a dataset split, or COCO metrics of a predictions file",
                       description="Two modes. --weights W --data DATA: detect on a split (multi-label NMS) and "
                                   "print P, R, mAP@0.5 and mAP@0.5:0.95 overall and per class, the 12 COCO "
                                   "statistics and the time per image; boxes are compared in the original images' "
                                   "pixels. --predictions R.json --annotations I.json: the 12 COCOeval bbox "
                                   "statistics (AP@[.5:.95], AP50, AP75, AP small/medium/large, AR@1/10/100, AR "
                                   "small/medium/large), equal to pycocotools' without needing it.")
    p.add_argument("--weights", help="model: our .pt, .weights (+ --cfg), .onnx or .torchscript")
    p.add_argument("--cfg", help="darknet .cfg for .weights or another toolkit's checkpoint")
    p.add_argument("--trust", action="store_true",
                   help="load a .torchscript file that has no yolo-toolkit export metadata (refused by default: a "
                        "TorchScript file runs its own code); it must return [B, N, 5+C] as Darknet.decode does")
    p.add_argument("--data", help="data YAML, darknet .data (see yolo data check)")
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--img-size", type=int, nargs="+", metavar="N",
                   help="the square input size, rounded up to the model's stride (default 416; a fixed-size "
                        "export: its own)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--conf", type=float, default=0.001, help="score threshold (default 0.001)")
    p.add_argument("--iou", type=float, default=0.6, help="NMS IoU threshold (default 0.6)")
    p.add_argument("--max-det", type=int, default=300)
    p.add_argument("--device", default="cpu")
    p.add_argument("--half", action="store_true", help="bfloat16 on CPU, float16 on CUDA")
    p.add_argument("--rect", action="store_true", help="rectangular batches (less padding)")
    add_resize_flags(p)
    p.add_argument("--workers", type=int, default=0, help="loader processes (default 0)")
    p.add_argument("--out", default="runs/val/exp", help="folder for plots and --save-json (exp2, ... if taken)")
    p.add_argument("--save-json", action="store_true", help="write predictions.json and annotations.json (COCO)")
    p.add_argument("--no-plots", action="store_true", help="no PR/F1/confusion-matrix pictures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs to a file)")
    p.add_argument("--predictions", metavar="RESULTS.json",
                   help="COCO results: a list of {image_id, category_id, bbox [x, y, w, h], score}")
    p.add_argument("--annotations", metavar="INSTANCES.json",
                   help="COCO instances: {images, annotations, categories}")
    p.add_argument("--json", action="store_true", help="print one JSON object (stats and per-class AP) instead "
                                                       "of the table")
    p.set_defaults(run=_run_val)


def _run_val(args) -> int:
    import json

    from yolo.val.evaluator import evaluate_files

    if (args.weights or args.data) and (args.predictions or args.annotations):
        raise InputError("two modes at once: give --weights W --data DATA, or --predictions RESULTS.json "
                         "--annotations INSTANCES.json, not both")
    if args.weights or args.data:
        return _run_val_dataset(args)
    if not args.predictions or not args.annotations:
        raise InputError("give --weights W --data DATA, or --predictions RESULTS.json --annotations INSTANCES.json")
    stats = evaluate_files(args.predictions, args.annotations)
    print(json.dumps(stats.as_dict(), indent=1) if args.json else stats.format())
    return 0


def _run_val_dataset(args) -> int:
    import json
    import sys

    from yolo.utils.files import discard_run_dir, make_run_dir
    from yolo.val.run import format_result, save_json, validate_dataset

    if not args.weights or not args.data:
        raise InputError("give both --weights and --data")
    if args.img_size is not None and len(args.img_size) != 1:
        raise InputError("--img-size takes one size for validation (square letterbox; use --rect for less padding)")
    size = img_size(args.img_size, 1)[0] if args.img_size is not None else None  # rounded to the model's stride
    out = make_run_dir(args.out) if args.save_json or not args.no_plots else None  # writable, before any work
    from yolo.utils.malloc import reuse_freed_memory

    reuse_freed_memory()  # each batch reuses the last one's pages (see yolo.utils.malloc)
    try:
        result = validate_dataset(args.weights, args.data, args.split, size, args.batch_size, args.conf, args.iou,
                                  args.max_det, args.device, args.half, args.cfg, args.rect, args.workers,
                                  trust=args.trust, letterbox=args.letterbox, progress=not args.no_progress)
    except BaseException:
        if out is not None and not any(out.iterdir()):
            discard_run_dir(out)  # leave no empty run folder behind
        raise
    if out is not None and not args.no_plots:
        result.evaluator.save_plots(out)  # none without matplotlib (said)
        if not args.save_json and not any(out.iterdir()):
            discard_run_dir(out)
            out = None
    if args.save_json:
        for path in save_json(result, out):  # with --json, stdout holds the JSON object alone
            print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        keys = ("map50", "map", "precision", "recall", "fitness", "stats", "per_class")
        print(json.dumps({**{k: result.metrics[k] for k in keys}, "times_ms": result.times_ms}, indent=1))
    else:
        print(format_result(result))
        print("\n".join(f"{k:>14}: {v:.6f}" for k, v in result.metrics["stats"].items()))
        if out is not None:
            print(f"results in {out}")
    return 0
