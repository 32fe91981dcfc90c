"""``yolo export``: ONNX and TorchScript."""

from __future__ import annotations

import sys
from pathlib import Path

from yolo.commands.common import check_output_file, img_size
from yolo.errors import InputError


def add_parser(sub) -> None:
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
    p.add_argument("--img-size", type=int, nargs="+", metavar="N",
                   help="N, or H W (default 416, rounded up to the model's stride)")
    p.add_argument("--batch-size", type=int, default=1, help="batch of the exported graph (default 1)")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    p.add_argument("--half", action="store_true", help="float16 graph (meant for CUDA; verified with a looser "
                                                       "tolerance, 0.1)")
    p.add_argument("--opset", type=int, help="ONNX opset, 11..20 (default 17)")
    p.add_argument("--nms", action="store_true", help="ONNX only: NMS inside the graph, output detections [K, 7] "
                                                      "= batch index, x1, y1, x2, y2, score, class")
    p.add_argument("--conf-thres", type=float, help="with --nms: score threshold (default 0.25)")
    p.add_argument("--iou-thres", type=float, help="with --nms: IoU threshold (default 0.45)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N to trace on (default cpu); TorchScript "
                                                   "files run on that device type only")
    p.add_argument("-o", "--out", help="output path (default: the weights with .onnx / .torchscript)")
    p.add_argument("--tolerance", type=float, help="verification bound on the max difference (default: 1e-4 for "
                                                   "float32, or 3x the float32 model's own error against float64 "
                                                   "where that is larger; 0.1 with --half)")
    p.add_argument("--force", action="store_true", help="replace the output if it exists")
    p.set_defaults(run=_run_export)


def _run_export(args) -> int:
    from yolo.export.exporter import ExportVerificationError, export_model
    from yolo.model.checkpoint import load_model
    from yolo.utils.device import select_device
    from yolo.utils.interrupt import settle

    out = args.out or str(Path(args.weights).with_suffix("." + args.format))  # the default is checked too
    check_output_file(out)
    device = select_device(args.device)
    if args.format == "onnx":
        from yolo.runtime.exported import require_onnx

        require_onnx()  # before loading a large model
    if Path(args.weights).suffix.lower() in (".onnx", ".torchscript"):
        from yolo.runtime.exported import load_exported

        try:
            meta = load_exported(args.weights).metadata
            what = f" ({meta.get('export_format')}, cfg {meta.get('cfg_name')})"
        except InputError:  # corrupt, or not ours: its own message would suggest options export does not have
            what = ""
        raise InputError(f"already an exported model{what}; export from the .pt or .weights it came from",
                         args.weights)
    model = load_model(args.weights, cfg=args.cfg)
    size = img_size(args.img_size, model.max_stride)
    try:
        result = export_model(model, args.format, out, img_size=size, batch_size=args.batch_size,
                              dynamic=args.dynamic, half=args.half, opset=args.opset, nms=args.nms,
                              force=args.force, conf_thres=args.conf_thres, iou_thres=args.iou_thres, device=device,
                              tolerance=args.tolerance)
    except ExportVerificationError as e:
        print(f"yolo export: verification failed, nothing written: {e}", file=sys.stderr)
        return 1
    settle()  # written and verified: a Ctrl-C from here on would report a failure after the file is there
    print(result)
    return 0
