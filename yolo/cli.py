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
    p.add_argument("--force", action="store_true", help="replace the output if it exists")
    p.set_defaults(run=_run_convert)


def _run_convert(args) -> int:
    from yolo.model.convert import convert_weights

    print(convert_weights(args.src, args.out, cfg=args.cfg, cutoff=args.cutoff, names=args.names, force=args.force))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolo", description="YOLOv3 toolkit: darknet cfg/weights in PyTorch.")
    parser.add_argument("--version", action="version", version=f"yolo-toolkit {__version__}")
    parser.add_argument("--verbose", action="store_true", help="print full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    _add_convert(sub)
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
    except KeyboardInterrupt:
        print(f"yolo {args.command}: interrupted", file=sys.stderr)
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
