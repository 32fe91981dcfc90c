"""Command line: ``yolo <command> ...``. Parses arguments and calls one function per command.

Heavy modules (torch) are imported inside each command so ``yolo --help`` is instant.
Exit codes: 0 success, 2 bad usage or bad input (one line naming the file), 1 unexpected failure
(a full traceback with ``--verbose`` or ``YOLO_VERBOSE=1``), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from yolo import __version__
from yolo.errors import InputError


def _add_convert(sub) -> None:
    p = sub.add_parser(
        "convert-weights",
        help="darknet .weights <-> .pt checkpoints; other toolkits' checkpoints -> ours",
        description="Convert model weights. The output's extension picks the direction: .pt writes this "
                    "toolkit's checkpoint (cfg, class names and darknet header inside), .weights a darknet file. "
                    "Inputs: darknet .weights (needs --cfg), our .pt, or a state dict from the cfg-era "
                    "ultralytics/yolov3 or eriklindernoren/PyTorch-YOLOv3 (needs --cfg), also under DDP "
                    "(module.) or torch.compile (_orig_mod.) prefixes.",
    )
    p.add_argument("src", help="input: .weights, or a PyTorch checkpoint (.pt/.pth/.ckpt)")
    p.add_argument("-o", "--out", help="output path ending in .pt or .weights (default: the input with the other "
                                       "extension)")
    p.add_argument("--cfg", help="darknet .cfg describing the network (needed unless the input is our .pt)")
    p.add_argument("--cutoff", type=int, help="only the first N layers (backbone files such as darknet53.conv.74)")
    p.add_argument("--names", help="class names file (one per line) to store in the .pt (default: COCO for 80 "
                                   "classes)")
    p.add_argument("--bn-eps", type=float, help="BN epsilon the weights were trained with, stored in the .pt "
                                                 "(default: 1e-5; 1e-4 for ultralytics/yolov3 checkpoints)")
    p.add_argument("--force", action="store_true", help="replace the output if it exists")
    p.set_defaults(run=_run_convert)


def _run_convert(args) -> int:
    from yolo.model.convert import convert_weights

    _check_output_file(args.out)
    print(convert_weights(args.src, args.out, cfg=args.cfg, cutoff=args.cutoff, names=args.names, force=args.force,
                           bn_eps=args.bn_eps))
    return 0


def _add_profile(sub) -> None:
    p = sub.add_parser("profile", help="parameters, FLOPs, per-layer table, latency and memory",
                       description="Profile a model. GFLOPs are per image: 'gflops' counts 2 x multiply-adds of "
                                   "conv layers as darknet does; 'gflops_total' adds BN, activations, additions and "
                                   "pooling. Latency is the median of --runs timed forwards after warm-up.")
    p.add_argument("--cfg", help="darknet .cfg; alone: random weights (counts and speed do not depend on them)")
    p.add_argument("--weights", help="our .pt, another toolkit's checkpoint or a darknet .weights (these need --cfg)")
    p.add_argument("--img-size", type=int, nargs="+", default=[416], metavar="N", help="416, or H W (default 416)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--half", action="store_true", help="bfloat16 on CPU, float16 on CUDA")
    p.add_argument("--runs", type=int, default=20, help="timed forwards (0: counts only; default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed forwards first (default 3)")
    p.add_argument("--optimized", action="store_true",
                   help="time the model as yolo detect runs it (BN folded, channels-last and Winograd convs on CPU)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(run=_run_profile)


def _img_size(values: list[int], stride: int) -> tuple[int, int]:
    """One or two sizes; each rounded up to a multiple of ``stride`` with a warning."""
    if len(values) not in (1, 2) or min(values) <= 0:
        raise InputError(f"--img-size takes one or two positive integers, got {values}")
    h, w = (values * 2)[:2]
    rounded = tuple(-(-v // stride) * stride for v in (h, w))
    if rounded != (h, w):
        print(f"warning: image size {h}x{w} is not a multiple of {stride}; using {rounded[0]}x{rounded[1]}",
              file=sys.stderr)
    return rounded


def _check_output_file(path: str | None) -> None:
    """Before any work: ``path``'s folder is (or can be made under) a writable folder, as a one-line error."""
    if not path:
        return
    folder = Path(path).resolve().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write here: {folder} is not a writable folder", path)


def _run_profile(args) -> int:
    import json

    from yolo.model.checkpoint import load_model
    from yolo.model.darknet import Darknet
    from yolo.profile import format_table, profile_model

    if args.batch_size < 1 or args.runs < 0 or args.warmup < 0:
        raise InputError("--batch-size must be >= 1, --runs and --warmup >= 0")
    if not args.cfg and not args.weights:
        raise InputError("give --cfg, --weights, or both")
    model = load_model(args.weights, cfg=args.cfg) if args.weights else Darknet.from_cfg(args.cfg)
    size = _img_size(args.img_size, model.max_stride)
    if args.half:
        from yolo.utils.device import half_warning, select_device

        warning = half_warning(select_device(args.device))
        if warning:
            print(warning, file=sys.stderr)
    result = profile_model(model, size, args.batch_size, args.device, args.half, args.runs, args.warmup,
                           args.optimized)
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    return 0


def _add_data(sub) -> None:
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


def _data_config(data: str, images: str | None = None):
    from yolo.data.formats import coco_config, load_data_config

    if images is not None:
        if not data.endswith(".json"):
            raise InputError("--images goes with a COCO json as DATA", data)
        return coco_config(images, data)
    return load_data_config(data)


def _run_data_check(args) -> int:
    import json
    from pathlib import Path

    from yolo.data.formats import load_split
    from yolo.data.report import plot_labels

    config = _data_config(args.data, args.images)
    splits = list(config.splits) if args.split == "all" else [args.split]
    plots = {s: Path(args.plot) for s in splits} if args.plot else {}
    if args.plot and len(splits) > 1:
        plots = {s: Path(args.plot).with_name(f"{Path(args.plot).stem}_{s}{Path(args.plot).suffix or '.png'}")
                 for s in splits}
    for p in plots.values():
        if p.exists() and not args.force:
            raise InputError("exists; use --force to replace it", str(p))
    reports = {}
    for s in splits:
        index = load_split(config, s, cache=not args.no_cache)
        reports[s] = index.report.to_dict()
        if not args.json:
            print(index.report.format(max_problems=args.problems))
        if s in plots:
            print(f"labels picture: {plot_labels(index, plots[s])}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(reports, indent=1))
    return 0


def _add_anchors(sub) -> None:
    p = sub.add_parser("anchors", help="k-means anchors for a dataset",
                       description="k-means (distance 1 - IoU of boxes sharing a centre, k-means++ seeding) on "
                                   "the label boxes' sizes after letterboxing each image to --img-size. Prints the "
                                   "anchors sorted by area in cfg syntax, with best possible recall (BPR: share of "
                                   "boxes whose best anchor has both side ratios within 4) and mean best IoU, for "
                                   "the new anchors and for the cfg's current ones.")
    p.add_argument("data", help="data .yaml, darknet .data, or COCO instances_*.json")
    p.add_argument("--n", type=int, default=9, help="number of anchors (default 9)")
    p.add_argument("--img-size", type=int, nargs="+", default=[416], metavar="N", help="416, or H W (default 416)")
    p.add_argument("--split", default="train", choices=["train", "val", "test"], help="default train")
    p.add_argument("--cfg", default=None, help="cfg whose anchors to compare (default cfg/yolov3.cfg)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--evolve", type=int, default=0, metavar="G",
                   help="then G generations of mutation that keep only gains in mean best IoU (default 0: off)")
    p.add_argument("--images", help="images folder for a COCO json given as DATA")
    p.set_defaults(run=_run_anchors)


def _run_anchors(args) -> int:
    from pathlib import Path

    import numpy as np

    from yolo.data.anchors import anchor_fitness, evolve_anchors, format_anchors, kmeans_anchors, label_wh
    from yolo.data.formats import load_split
    from yolo.model.cfg_parser import parse_cfg

    if args.n < 1 or args.evolve < 0:
        raise InputError(f"--n must be >= 1 and --evolve >= 0, got {args.n} and {args.evolve}")
    cfg = Path(args.cfg) if args.cfg else Path(__file__).resolve().parents[1] / "cfg" / "yolov3.cfg"
    heads = parse_cfg(cfg).heads if args.cfg or cfg.is_file() else []  # an install without cfg/: no comparison
    size = _img_size(args.img_size, 32)
    index = load_split(_data_config(args.data, args.images), args.split)
    wh, small = label_wh(index, size)
    if len(wh) < args.n:
        raise InputError(f"{len(wh)} boxes (of at least 2 px) are too few for {args.n} anchors", index.source)
    anchors = kmeans_anchors(wh, args.n, seed=args.seed)
    if args.evolve > 0:
        anchors = evolve_anchors(wh, anchors, args.evolve, seed=args.seed)
    print(format_anchors(anchors))
    rows = [("new", anchor_fitness(wh, anchors))]
    if heads:
        rows.append((f"cfg {cfg.name}", anchor_fitness(wh, np.array(heads[0].anchors))))
    for name, fit in rows:
        print(f"{name}: BPR {fit['bpr']:.4f}, mean best IoU {fit['mean_best_iou']:.4f}, anchors per box "
              f"{fit['mean_anchors_per_box']:.2f}")
    print(f"{len(wh)} boxes at {size[0]}x{size[1]} ({small} under 2 px left out)")
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="ONNX / TorchScript with decoding inside, verified against PyTorch",
                       description="Export a model with BN folded and decoding inside (output [B, N, 5+C]), or "
                                   "with NMS inside (--nms, ONNX only: detections [K, 7]). The file is loaded back "
                                   "(onnxruntime / torch.jit.load) and compared with PyTorch on a letterboxed "
                                   "photo before it is renamed into place; on a mismatch nothing is written and "
                                   "the exit code is 1.")
    p.add_argument("--weights", required=True, help="our .pt, another toolkit's checkpoint or a darknet .weights "
                                                    "(these need --cfg)")
    p.add_argument("--cfg", help="darknet .cfg (needed unless the weights are our .pt)")
    p.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    p.add_argument("--img-size", type=int, nargs="+", default=[416], metavar="N", help="416, or H W (default 416)")
    p.add_argument("--batch-size", type=int, default=1, help="batch of the exported graph (default 1)")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    p.add_argument("--half", action="store_true", help="float16 graph (meant for CUDA; verified with a looser "
                                                       "tolerance, 0.1)")
    p.add_argument("--opset", type=int, help="ONNX opset, 11..20 (default 17)")
    p.add_argument("--nms", action="store_true", help="ONNX only: NMS inside the graph, output detections [K, 7] "
                                                      "= batch index, x1, y1, x2, y2, score, class")
    p.add_argument("--conf-thres", type=float, default=0.25, help="with --nms: score threshold (default 0.25)")
    p.add_argument("--iou-thres", type=float, default=0.45, help="with --nms: IoU threshold (default 0.45)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N to trace on (default cpu); TorchScript "
                                                   "files run on that device type only")
    p.add_argument("--out", help="output path (default: the weights with .onnx / .torchscript)")
    p.add_argument("--force", action="store_true", help="replace the output if it exists")
    p.set_defaults(run=_run_export)


def _run_export(args) -> int:
    from yolo.export import ExportVerificationError, export_model
    from yolo.model.checkpoint import load_model
    from yolo.utils.device import select_device

    _check_output_file(args.out)
    device = select_device(args.device)
    if args.format == "onnx":
        from yolo.exported import require_onnx

        require_onnx()  # before loading a large model
    if Path(args.weights).suffix.lower() in (".onnx", ".torchscript"):
        from yolo.exported import load_exported

        backend = load_exported(args.weights)  # a corrupt or foreign file fails here with its own message
        raise InputError(f"already an exported model ({backend.metadata.get('export_format')}, cfg "
                         f"{backend.metadata.get('cfg_name')}); export from the .pt or .weights", args.weights)
    model = load_model(args.weights, cfg=args.cfg)
    size = _img_size(args.img_size, model.max_stride)
    out = args.out or str(Path(args.weights).with_suffix("." + args.format))
    try:
        result = export_model(model, args.format, out, img_size=size, batch_size=args.batch_size,
                              dynamic=args.dynamic, half=args.half, opset=args.opset, nms=args.nms,
                              force=args.force, conf_thres=args.conf_thres, iou_thres=args.iou_thres, device=device)
    except ExportVerificationError as e:
        print(f"yolo export: verification failed, nothing written: {e}", file=sys.stderr)
        return 1
    print(result)
    return 0


def _add_val(sub) -> None:
    p = sub.add_parser("val", help="mAP of a model on a dataset split, or COCO metrics of a predictions file",
                       description="Two modes. --weights W --data DATA: detect on a split (multi-label NMS) and "
                                   "print P, R, mAP@0.5 and mAP@0.5:0.95 overall and per class, the 12 COCO "
                                   "statistics and the time per image; boxes are compared in the original images' "
                                   "pixels. --predictions R.json --annotations I.json: the 12 COCOeval bbox "
                                   "statistics (AP@[.5:.95], AP50, AP75, AP small/medium/large, AR@1/10/100, AR "
                                   "small/medium/large), equal to pycocotools' without needing it.")
    p.add_argument("--weights", help="model: our .pt, .weights (+ --cfg), .onnx or .torchscript")
    p.add_argument("--cfg", help="darknet .cfg for .weights or another toolkit's checkpoint")
    p.add_argument("--data", help="data YAML, darknet .data (see yolo data check)")
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--img-size", type=int, nargs="+", default=[416], metavar="N", help="416 (default)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--conf", type=float, default=0.001, help="score threshold (default 0.001)")
    p.add_argument("--iou", type=float, default=0.6, help="NMS IoU threshold (default 0.6)")
    p.add_argument("--max-det", type=int, default=300)
    p.add_argument("--device", default="cpu")
    p.add_argument("--half", action="store_true", help="bfloat16 on CPU, float16 on CUDA")
    p.add_argument("--rect", action="store_true", help="rectangular batches (less padding)")
    p.add_argument("--workers", type=int, default=0, help="loader processes (default 0)")
    p.add_argument("--out", default="runs/val/exp", help="folder for plots and --save-json (exp2, ... if taken)")
    p.add_argument("--save-json", action="store_true", help="write predictions.json and annotations.json (COCO)")
    p.add_argument("--no-plots", action="store_true", help="no PR/F1/confusion-matrix pictures")
    p.add_argument("--predictions", metavar="RESULTS.json",
                   help="COCO results: a list of {image_id, category_id, bbox [x, y, w, h], score}")
    p.add_argument("--annotations", metavar="INSTANCES.json",
                   help="COCO instances: {images, annotations, categories}")
    p.add_argument("--json", action="store_true", help="print one JSON object (stats and per-class AP) instead "
                                                       "of the table")
    p.set_defaults(run=_run_val)


def _run_val(args) -> int:
    import json

    from yolo.val import evaluate_files

    if args.weights or args.data:
        return _run_val_dataset(args)
    if not args.predictions or not args.annotations:
        raise InputError("give --weights W --data DATA, or --predictions RESULTS.json --annotations INSTANCES.json")
    stats = evaluate_files(args.predictions, args.annotations)
    print(json.dumps(stats.as_dict(), indent=1) if args.json else stats.format())
    return 0


def _run_val_dataset(args) -> int:
    import json

    from yolo.utils.files import make_run_dir
    from yolo.val_dataset import format_result, save_json, validate_dataset

    if not args.weights or not args.data:
        raise InputError("give both --weights and --data")
    if len(args.img_size) != 1:
        raise InputError("--img-size takes one size for validation (square letterbox; use --rect for less padding)")
    size = _img_size(args.img_size, 32)[0]
    out = make_run_dir(args.out) if args.save_json or not args.no_plots else None  # writable, before any work
    try:
        result = validate_dataset(args.weights, args.data, args.split, size, args.batch_size, args.conf, args.iou,
                                  args.max_det, args.device, args.half, args.cfg, args.rect, args.workers)
    except BaseException:
        if out is not None and not any(out.iterdir()):
            out.rmdir()  # leave no empty run folder behind
        raise
    if out is not None and not args.no_plots:
        result.evaluator.save_plots(out)
    if args.save_json:
        for path in save_json(result, out):
            print(f"wrote {path}")
    if args.json:
        keys = ("map50", "map", "precision", "recall", "fitness", "stats", "per_class")
        print(json.dumps({**{k: result.metrics[k] for k in keys}, "times_ms": result.times_ms}, indent=1))
    else:
        print(format_result(result))
        print("\n".join(f"{k:>14}: {v:.6f}" for k, v in result.metrics["stats"].items()))
        if out is not None:
            print(f"results in {out}")
    return 0


def _add_detect(sub) -> None:
    p = sub.add_parser("detect", help="detect objects in images, folders, videos, cameras or streams",
                       description="Run a model on a source and write annotated images/videos (and optionally "
                                   "txt labels, a COCO-style JSON and crops) into a new run folder.")
    p.add_argument("--weights", required=True, help="our .pt, darknet .weights (with --cfg), another toolkit's "
                                                    "checkpoint (with --cfg), or an exported .onnx/.torchscript")
    p.add_argument("--cfg", help="darknet .cfg (needed for .weights and other toolkits' checkpoints)")
    p.add_argument("--source", required=True, help="image, folder, glob, .txt list of paths, video, camera index "
                                                   "(0) or stream URL")
    p.add_argument("--img-size", type=int, nargs="+", default=[416], metavar="N",
                   help="network input: 416, or H W; multiples of 32 (default 416)")
    p.add_argument("--conf", type=float, default=0.25, help="score threshold, objectness x class (default 0.25)")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold (default 0.45)")
    p.add_argument("--classes", type=int, nargs="+", metavar="C", help="keep only these class indices")
    p.add_argument("--agnostic-nms", action="store_true", help="NMS across classes")
    p.add_argument("--max-det", type=int, default=300, help="most detections per image (default 300)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward (default 8; live sources: 1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--half", action="store_true", help="bfloat16 on CPU, float16 on CUDA")
    p.add_argument("--names", help="class names file (default: the checkpoint's, else COCO)")
    p.add_argument("--out", default="runs/detect/exp", help="run folder; exp2, exp3, ... when it exists "
                                                            "(default runs/detect/exp)")
    p.add_argument("--save-txt", action="store_true", help="labels/<stem>.txt: class cx cy w h conf, normalized")
    p.add_argument("--save-json", action="store_true", help="predictions.json: COCO-style results")
    p.add_argument("--save-crop", action="store_true", help="crops/<class name>/<stem>_<k>.jpg")
    p.add_argument("--nosave", action="store_true", help="do not write annotated images or videos")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_detect)


def _run_detect(args) -> int:
    from pathlib import Path

    from yolo.postprocess import check_thresholds
    from yolo.sources import Source

    check_thresholds(args.conf, args.iou, args.max_det)
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    _img_size(args.img_size, 1)  # shape check before any work; rounded to the model's stride below
    if not Path(args.weights).is_file():
        raise InputError("weights file not found", args.weights)
    source = Source(args.source)  # a missing source or an empty folder fails here

    from yolo.detect import Detector, load_backend
    from yolo.utils.files import make_run_dir
    from yolo.detect_io import format_summary

    run_dir = make_run_dir(args.out)  # writable, before the model is loaded
    try:
        backend = load_backend(args.weights, args.cfg, args.device, args.half, args.names)
    except BaseException:
        run_dir.rmdir()  # still empty: leave no trace of a run that never started
        raise
    size = _img_size(args.img_size, backend.stride)
    detector = Detector(backend, img_size=size, conf=args.conf, iou=args.iou, classes=args.classes,
                        agnostic=args.agnostic_nms, max_det=args.max_det)
    summary = detector.run(source, run_dir, save_txt=args.save_txt, save_json=args.save_json,
                           save_crop=args.save_crop, nosave=args.nosave, batch_size=args.batch_size,
                           progress=not args.no_progress, increment=False)
    if summary["unreadable"] and not summary["images"]:  # nothing but corrupt files: no run to keep
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
        raise InputError(f"no readable image or video frame ({summary['unreadable']} unreadable file(s))",
                         args.source)
    print(format_summary(summary))
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model (run YAML + --set overrides; torchrun for several GPUs)",
                       description="Train a darknet-cfg model. The run config is the defaults, then --cfg's YAML, then "
                                   "every --set key=value (dotted keys for nested settings; values read as YAML). "
                                   "Writes runs/train/exp (exp2, ... if taken): run.yaml, weights/last.pt and best.pt, "
                                   "results.csv and results.png. Several processes: torchrun --nproc_per_node N -m "
                                   "yolo train ... (batch_size is the total over all processes).")
    p.add_argument("--cfg", help="run YAML (e.g. cfg/train/shapes.yaml); without it the defaults are used")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override settings: --set epochs=3 optimizer=adamw augment.mosaic=0")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                   help="continue a run from its last.pt (default: the newest runs/train/*/weights/last.pt); the "
                        "run config comes from the checkpoint, --set may change it (e.g. epochs)")
    p.set_defaults(run=_run_train)


def _run_train(args) -> int:
    from yolo.config import load_run_config
    from yolo.engine import NonFiniteLossError
    from yolo.train import config_for_resume, find_last_checkpoint, train
    from yolo.utils.dist import PeerLostError

    if args.resume is not None:
        if args.cfg:
            raise InputError("--resume takes the run config from the checkpoint; drop --cfg (use --set to change it)")
        path = args.resume or str(find_last_checkpoint())
        cfg = config_for_resume(path, args.overrides)
    else:
        path, cfg = None, load_run_config(args.cfg, args.overrides)
    try:
        train(cfg, resume=path)
    except (NonFiniteLossError, PeerLostError) as e:
        print(f"yolo train: error: {e}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolo", description="YOLOv3 toolkit: darknet cfg/weights in PyTorch.")
    parser.add_argument("--version", action="version", version=f"yolo-toolkit {__version__}")
    parser.add_argument("--verbose", action="store_true", help="print full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    _add_convert(sub)
    _add_profile(sub)
    _add_data(sub)
    _add_anchors(sub)
    _add_export(sub)
    _add_val(sub)
    _add_detect(sub)
    _add_train(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    verbose = args.verbose or os.environ.get("YOLO_VERBOSE", "") not in ("", "0")
    try:
        return args.run(args)
    except InputError as e:
        if verbose:
            traceback.print_exc()
        print(f"yolo {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        if verbose:
            traceback.print_exc()
        saved = getattr(e, "checkpoint", None)  # yolo.engine.TrainingInterrupted
        print(f"yolo {args.command}: interrupted" + (f"; saved {saved}; continue with: yolo {args.command} "
                                                      f"--resume {saved}" if saved else ""), file=sys.stderr)
        return 130
    except Exception as e:  # unexpected: one line unless verbose
        if verbose:
            traceback.print_exc()
        else:
            print(f"yolo {args.command}: unexpected {type(e).__name__}: {e} (rerun with --verbose for the "
                  "traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
