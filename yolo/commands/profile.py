"""``yolo profile``: parameters, FLOPs, per-layer table, latency and memory."""

from __future__ import annotations


from yolo.commands.common import img_size
from yolo.errors import InputError, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="parameters, FLOPs, per-layer table, latency and memory",
                       description="Profile a model. GFLOPs are per image: 'gflops' counts 2 x multiply-adds of "
                                   "conv layers as pjreddie's darknet does; 'bflops' is the Total BFLOPS AlexeyAB's "
                                   "darknet prints (gflops + max-pool and shortcut terms); 'gflops_total' adds BN, "
                                   "activations, additions and pooling. Latency is the median of --runs timed "
                                   "forwards after warm-up.")
    p.add_argument("--cfg", help="darknet .cfg; alone: random weights (counts and speed do not depend on them)")
    p.add_argument("--weights", help="our .pt, another toolkit's checkpoint or a darknet .weights (these need --cfg)")
    p.add_argument("--img-size", type=int, nargs="+", metavar="N",
                   help="N, or H W (default 416, rounded up to the model's stride)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--half", action="store_true", help="bfloat16 on CPU, float16 on CUDA")
    p.add_argument("--runs", type=int, default=20, help="timed forwards (0: counts only; default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed forwards first (default 3)")
    p.add_argument("--optimized", action="store_true",
                   help="time the model as yolo detect runs it (BN folded, channels-last and Winograd convs on CPU)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(run=_run_profile)


def _run_profile(args) -> int:
    import json

    from yolo.model.checkpoint import load_model
    from yolo.model.darknet import Darknet
    from yolo.model.profile import format_table, profile_model

    positive_int(args.batch_size, "batch_size")
    positive_int(args.runs, "runs", minimum=0)
    positive_int(args.warmup, "warmup", minimum=0)
    if not args.cfg and not args.weights:
        raise InputError("give --cfg, --weights, or both")
    model = load_model(args.weights, cfg=args.cfg) if args.weights else Darknet.from_cfg(args.cfg)
    size = img_size(args.img_size, model.max_stride)
    if args.half:
        from yolo.utils.device import select_device, warn_slow_half

        warn_slow_half(select_device(args.device))
    result = profile_model(model, size, args.batch_size, args.device, args.half, args.runs, args.warmup,
                           args.optimized)
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    return 0
