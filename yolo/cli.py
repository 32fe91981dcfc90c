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
from yolo.commands import anchors, cfgs, convert, data, detect, export, profile, train, val
from yolo.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolo", description="YOLOv3 toolkit: darknet cfg/weights in PyTorch.")
    parser.add_argument("--version", action="version", version=f"yolo-toolkit {__version__}")
    parser.add_argument("--verbose", action="store_true", help="print full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    convert.add_parser(sub)
    profile.add_parser(sub)
    data.add_parser(sub)
    anchors.add_parser(sub)
    export.add_parser(sub)
    val.add_parser(sub)
    detect.add_parser(sub)
    train.add_parser(sub)
    cfgs.add_parser(sub)
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
        saved = getattr(e, "checkpoint", None)  # yolo.train.engine.TrainingInterrupted
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
