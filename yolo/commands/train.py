"""``yolo train``: a run config in, a run folder out (single process or torchrun DDP)."""

from __future__ import annotations

import sys

from yolo.errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (run YAML + --set overrides; torchrun for several GPUs)",
                       description="Train a darknet-cfg model. The run config is the defaults, then --cfg's YAML, then "
                                   "every --set key=value (dotted keys for nested settings; values read as YAML). "
                                   "Writes runs/train/exp (exp2, ... if taken): run.yaml, weights/last.pt (everything "
                                   "--resume needs) and best.pt (the best epoch's EMA weights only, about the size of "
                                   "the model; best_half=true stores them as float16), results.csv and results.png. "
                                   "Several processes: torchrun --nproc_per_node N -m "
                                   "yolo train ... (batch_size is the total over all processes).")
    p.add_argument("--cfg", help="run YAML: a path or a built-in name (yolo cfgs lists them); default: the "
                                 "built-in shapes.yaml, the synthetic shapes demo")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override settings: --set epochs=3 optimizer=adamw augment.mosaic=0")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                   help="continue a run from its last.pt or its run folder (default: the newest "
                        "runs/train/*/weights/last.pt); the "
                        "run config comes from the checkpoint, --set may change it (e.g. epochs). best.pt holds no "
                        "training state: fine-tune from it with --set weights=PATH instead")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs to a file): each epoch is "
                                                                  "still one line")
    p.set_defaults(run=_run_train)


def _run_train(args) -> int:
    from yolo.train.config import load_run_config
    from yolo.train.engine import NonFiniteLossError
    from yolo.train.run import config_for_resume, find_last_checkpoint, train
    from yolo.utils.dist import PeerLostError

    if args.resume is not None:
        if args.cfg:
            raise InputError("--resume takes the run config from the checkpoint; drop --cfg (use --set to change it)")
        path = args.resume or str(find_last_checkpoint())
        cfg = config_for_resume(path, args.overrides)
    else:
        path, cfg = None, load_run_config(args.cfg or _default_run(), args.overrides)
    from yolo.utils.malloc import reuse_freed_memory

    reuse_freed_memory()  # each step reuses the last one's pages: 1.25-1.4x CPU images/s (yolo.utils.malloc)
    try:
        train(cfg, resume=path, progress=not args.no_progress)
    except (NonFiniteLossError, PeerLostError) as e:
        print(f"yolo train: error: {e}", file=sys.stderr)
        return 1
    return 0


def _default_run() -> str:
    """The built-in ``shapes.yaml`` run (by its path, so that a local file of that name cannot stand in)."""
    from yolo.resources import builtin, listing

    found = builtin("shapes.yaml", "run")
    if found is None:
        raise InputError(f"this install has no built-in shapes.yaml run; give --cfg ({listing('run')})")
    return str(found)
