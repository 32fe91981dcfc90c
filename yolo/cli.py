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
    p.add_argument("--bn-eps", type=float, help="BN epsilon the weights were trained with, stored in the .pt "
                                                 "(default: 1e-5; 1e-4 for ultralytics/yolov3 checkpoints)")
    p.add_argument("--force", action="store_true", help="replace the output if it exists")
    p.set_defaults(run=_run_convert)


def _run_convert(args) -> int:
    from yolo.model.convert import convert_weights

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
    result = profile_model(model, size, args.batch_size, args.device, args.half, args.runs, args.warmup)
    print(json.dumps(result, indent=1) if args.json else format_table(result))
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

    if args.resume is not None:
        if args.cfg:
            raise InputError("--resume takes the run config from the checkpoint; drop --cfg (use --set to change it)")
        path = args.resume or str(find_last_checkpoint())
        cfg = config_for_resume(path, args.overrides)
    else:
        path, cfg = None, load_run_config(args.cfg, args.overrides)
    try:
        train(cfg, resume=path)
    except NonFiniteLossError as e:
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
