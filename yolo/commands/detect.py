"""``yolo detect``: images, folders, videos and cameras in; boxes, pictures, txt and JSON out."""

from __future__ import annotations

from yolo.commands.common import add_resize_flags, img_size
from yolo.errors import InputError, positive_int, weights_file_problem
from yolo.utils.text import count


def add_parser(sub) -> None:
    p = sub.add_parser("detect", help="detect objects in images, folders, videos, cameras or streams",
                       description="Run a model on a source and write annotated images/videos (and optionally "
                                   "txt labels, a COCO-style JSON and crops) into a new run folder.")
    p.add_argument("--weights", required=True, help="our .pt, darknet .weights (with --cfg), another toolkit's "
                                                    "checkpoint (with --cfg), or an exported .onnx/.torchscript")
    p.add_argument("--cfg", help="darknet .cfg (needed for .weights and other toolkits' checkpoints)")
    p.add_argument("--trust", action="store_true",
                   help="load a .torchscript file that has no yolo-toolkit export metadata (refused by default: a "
                        "TorchScript file runs its own code); it must return [B, N, 5+C] as Darknet.decode does")
    p.add_argument("--source", required=True, help="image, folder, glob, .txt list of paths, video, camera index "
                                                   "(0) or stream URL")
    p.add_argument("--img-size", type=int, nargs="+", metavar="N",
                   help="network input: 416, or H W; rounded up to the model's stride (default 416; a fixed-size "
                        "export: its own)")
    add_resize_flags(p)
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
    from yolo.detect.sources import Source
    from yolo.runtime.postprocess import check_thresholds

    check_thresholds(args.conf, args.iou, args.max_det)
    positive_int(args.batch_size, "batch_size")
    size = img_size(args.img_size, 1) if args.img_size is not None else None  # Detector rounds it to the stride
    problem = weights_file_problem(args.weights)
    if problem:
        raise InputError(problem, args.weights)
    source = Source(args.source)  # a missing source or an empty folder fails here

    from yolo.utils.malloc import reuse_freed_memory

    reuse_freed_memory()  # each batch reuses the last one's pages (see yolo.utils.malloc)

    from yolo.detect.predictor import Detector
    from yolo.detect.run import discard_if_empty, format_summary
    from yolo.runtime.backends import load_backend
    from yolo.utils.files import discard_run_dir, make_run_dir

    run_dir = make_run_dir(args.out)  # writable, before the model is loaded
    try:
        backend = load_backend(args.weights, args.cfg, args.device, args.half, args.names, args.trust)
        detector = Detector(backend, img_size=size, conf=args.conf, iou=args.iou, classes=args.classes,
                            agnostic=args.agnostic_nms, max_det=args.max_det, letterbox=args.letterbox)
    except BaseException:
        discard_run_dir(run_dir)  # still empty: leave no trace of a run that never started
        raise
    summary = detector.run(source, run_dir, save_txt=args.save_txt, save_json=args.save_json,
                           save_crop=args.save_crop, nosave=args.nosave, batch_size=args.batch_size,
                           progress=not args.no_progress, increment=False)
    if summary["unreadable"] and not summary["images"]:  # nothing but corrupt files: no run to keep
        discard_run_dir(run_dir)
        raise InputError(f"no readable image or video frame ({count(summary['unreadable'], 'unreadable file')})",
                         args.source)
    if args.nosave and not (args.save_txt or args.save_json or args.save_crop):
        discard_if_empty(summary)
    print(format_summary(summary))
    return 0
