"""``yolo convert-weights``: darknet ``.weights`` and other toolkits' checkpoints to ours and back."""

from __future__ import annotations

from yolo.commands.common import check_output_file


def add_parser(sub) -> None:
    p = sub.add_parser(
        "convert-weights",
        help="darknet .weights <-> .pt checkpoints; other toolkits' checkpoints -> ours",
        description="Convert model weights. The output's extension picks the direction: .pt writes this "
                    "toolkit's checkpoint (cfg, class names and darknet header inside), .weights a darknet file. "
                    "Inputs: darknet .weights (needs --cfg), our .pt, or a state dict from the cfg-era "
                    "ultralytics/yolov3 or eriklindernoren/PyTorch-YOLOv3 (needs --cfg), also under DDP "
                    "(module.) or torch.compile (_orig_mod.) prefixes, or their pickled whole models "
                    "({'model': <nn.Module>, ...}), read without running their code: the classes they name "
                    "become inert stand-ins and only tensors and plain data are kept; a file that would call "
                    "code is refused (--verbose names the global).",
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
    from yolo.utils.interrupt import settle

    check_output_file(args.out)
    result = convert_weights(args.src, args.out, cfg=args.cfg, cutoff=args.cutoff, names=args.names, force=args.force,
                             bn_eps=args.bn_eps)
    settle()  # written: a Ctrl-C from here on would report a failure after the files are all there
    print(result)
    return 0
