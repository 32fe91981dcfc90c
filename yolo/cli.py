"""Command line: ``yolo <command> ...``. Parses arguments and calls one function per command.

Heavy modules (torch) are imported inside each command so ``yolo --help`` is instant.
Exit codes: 0 success, 2 bad usage or bad input (one line naming the file), 1 unexpected failure
(a full traceback with ``--verbose`` or ``YOLO_VERBOSE=1``), 130 interrupted, 141 the reader of the output
went away (``yolo cfgs | head -1``: nothing more is printed, as for a process SIGPIPE ends).

The ``yolo`` script and ``python -m yolo`` call :func:`entry`: after a read-only command (``FAST_EXIT``) has
written and closed everything, the process leaves without the interpreter's teardown (freeing a loaded model
and unloading torch's libraries: about 0.5 s of a 3.5 s ``python -c "import torch"``); ``main()`` itself, as
the tests and the Python API call it, always returns.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import sys
import traceback

from yolo import __version__
from yolo.commands import anchors, cfgs, convert, data, detect, export, profile, train, val
from yolo.errors import InputError, YoloWarning, command_line


class OneLineErrors(argparse.ArgumentParser):
    """argparse, with a usage error as one line (``yolo detect: error: argument --source: expected one argument
    (yolo detect --help: the options; a value starting with '-': --source=-x.jpg or ./-x.jpg)``), exit 2, like
    every other error, instead of the whole usage block; the sub-commands' parsers are of this class too."""

    def error(self, message: str):
        hint = ""
        missing = re.match(r"argument (\S+): expected one argument", message)
        if missing:
            flag = missing.group(1).split("/")[-1]
            hint = f"; a value starting with '-': {flag}=-x.jpg or ./-x.jpg"
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help: the options{hint})\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(prog="yolo", description="YOLOv3 toolkit: darknet cfg/weights in PyTorch.")
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
    _verbose_anywhere(sub)
    return parser


def _verbose_anywhere(sub: argparse._SubParsersAction) -> None:
    """``--verbose`` after the command too (``yolo detect ... --verbose``, where the unexpected-failure line's
    hint sends people): each command's parser (and action's) takes it, left unset unless given."""
    for command in sub.choices.values():
        command.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="print full tracebacks on errors (as yolo --verbose)")
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                _verbose_anywhere(action)


FAST_EXIT = {"detect", "val", "profile", "cfgs"}  # commands whose every output is closed when they return
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what the shell reports for a process the signal ended
EXIT_TERMINATED = 143  # 128 + SIGTERM, after the command ended as it does on Ctrl-C (130)


def entry() -> None:
    """The console script (``yolo``) and ``python -m yolo``: :func:`main`, then the exit."""
    try:
        code = main(fast_exit=True)
    except BrokenPipeError:  # while argparse printed (--help, --version); main handles the commands' own
        _drop_stdout()
        code = EXIT_BROKEN_PIPE
    from yolo.commands.common import settle

    settle()  # the outcome is decided: a Ctrl-C during the interpreter's teardown must not change it
    sys.exit(code)


def main(argv: list[str] | None = None, fast_exit: bool = False) -> int:
    """Run one command; returns its exit code. ``fast_exit``: after a successful ``FAST_EXIT`` command, flush
    and end the process at once (:func:`_exit_now`) instead of returning."""
    _closed_streams_to_devnull()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's own parser: "yolo detect: error: unrecognized arguments: --show (...)"
        _command_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 2
    verbose = args.verbose or os.environ.get("YOLO_VERBOSE", "") not in ("", "0")
    if not verbose:
        _quiet_opencv()
    from yolo.commands.common import terminate_as_interrupt

    # SIGTERM ends a command as Ctrl-C does (saves, closes, cleans up); errors name --flags, not parameters
    with terminate_as_interrupt() as stop, command_line(), _one_line_warnings(verbose):
        return _run(args, verbose, fast_exit, stop)


@contextlib.contextmanager
def _one_line_warnings(verbose: bool):
    """Within a command, the toolkit's own warnings (``yolo.errors.warn``: a ``YoloWarning``) print as
    ``warning: <message>`` on one line, instead of Python's ``file:line: UserWarning: ...`` plus the source line;
    others' (torch's) keep Python's form, and ``--verbose`` keeps it for all."""
    import warnings

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if verbose or not issubclass(category, YoloWarning):
            return shown(message, category, filename, lineno, file, line)
        print(f"warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show
    try:
        with warnings.catch_warnings():
            if not sys.warnoptions:  # every one, each time (Python's default says a repeat once per process)
                warnings.simplefilter("always", YoloWarning)
            yield
    finally:
        warnings.showwarning = shown


def _command_parser(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The parser of the command (and action) ``args`` holds; ``parser`` itself without one."""
    for dest in ("command", "action"):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, dest, None)
        if not subs or not isinstance(name, str) or name not in subs[0].choices:
            break
        parser = subs[0].choices[name]
    return parser


def _run(args, verbose: bool, fast_exit: bool, stop: dict) -> int:
    """``args.run(args)`` and its exit code, with every failure as one line (see :func:`main`)."""
    from yolo.commands.common import handlers_kept

    try:
        with handlers_kept():  # a command that settled (its outputs written) ignores Ctrl-C until it returns
            code = args.run(args)
        if fast_exit and not code and args.command in FAST_EXIT:
            _exit_now(0)
        return code
    except InputError as e:
        if verbose:
            traceback.print_exc()
        _say(f"yolo {_name(args)}: error: {e}")
        return 2
    except BrokenPipeError:  # stdout's reader is gone: end quietly (there is no one to tell)
        _drop_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as e:
        if e.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS, errno.EACCES,
                           errno.ENAMETOOLONG):
            return _unexpected(args, e, verbose)
        if verbose:
            traceback.print_exc()
        where = f"{e.filename}: " if e.filename else ""  # written atomically: nothing half-written is left
        _say(f"yolo {_name(args)}: error: {where}{e.strerror or e}; nothing was half-written")
        return 1
    except KeyboardInterrupt as e:
        if verbose:
            traceback.print_exc()
        saved = getattr(e, "checkpoint", None)  # yolo.train.engine.TrainingInterrupted
        how = "terminated (SIGTERM)" if stop["terminated"] else "interrupted"
        if saved:
            how += f"; saved {saved}; continue with: yolo {args.command} --resume {saved}"
        elif stop["terminated"] and _world_size() > 1 and args.command == "train":
            how += ("; under torchrun this is how the other processes end when one fails (its error is above); "
                    "the run folder keeps its last finished epoch: yolo train --resume RUN_FOLDER continues it")
        print(f"yolo {_name(args)}: {how}", file=sys.stderr)
        return EXIT_TERMINATED if stop["terminated"] else 130
    except Exception as e:  # unexpected: one line unless verbose
        return _unexpected(args, e, verbose)


def _say(line: str) -> None:
    """An error line on stderr. Under torchrun every process runs the same command: an error met before the
    processes joined (an argument, a config, a file) is the same in each and only rank 0 says it; one met after
    they joined is said by each process that meets it, with its rank."""
    if _world_size() > 1:
        dist = sys.modules.get("torch.distributed")
        if dist is not None and dist.is_available() and dist.is_initialized():
            line = f"[rank {os.environ.get('RANK', '?')}] {line}"
        elif os.environ.get("RANK", "0") != "0":
            return
    print(line, file=sys.stderr)


def _world_size() -> int:
    """Processes in the run, as torchrun's WORLD_SIZE says (1 outside torchrun; the CLI imports no torch)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def _name(args) -> str:
    """The command as typed: ``train``, or ``data check`` for a command with actions."""
    action = getattr(args, "action", None)
    return f"{args.command} {action}" if isinstance(action, str) else args.command


def _unexpected(args, e: Exception, verbose: bool) -> int:
    if verbose:
        traceback.print_exc()
    else:
        print(f"yolo {_name(args)}: unexpected {type(e).__name__}: {e} (rerun with --verbose for the "
              "traceback)", file=sys.stderr)
    return 1


def _closed_streams_to_devnull() -> None:
    """A process started with stdout or stderr closed (``yolo cfgs >&-``, Windows' pythonw) has ``None`` there,
    which progress bars and flushes trip over; such a stream writes to the null device instead."""
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")


def _quiet_opencv() -> None:
    """OpenCV's own log lines and FFmpeg's (``[ERROR:0@0.04] global loadsave.cpp ... can't read header``,
    ``moov atom not found``) would stand beside the one-line warning or error that names the file; they are
    off unless ``--verbose`` (or the user set ``OPENCV_LOG_LEVEL`` / ``OPENCV_FFMPEG_LOGLEVEL``). Read by OpenCV
    when it first logs and when it first opens a video."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush at exit finds no broken pipe either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real stdout (a test's capture): nothing to flush there
        pass


def _exit_now(code: int) -> None:
    """``os._exit(code)`` after flushing stdout and stderr, when nothing else could still be writing: no other
    live non-daemon thread, no child process, no torch.distributed group, no tracer (coverage, a debugger);
    otherwise it returns and the interpreter exits as usual."""
    import threading

    others = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    mp = sys.modules.get("multiprocessing")
    dist = sys.modules.get("torch.distributed")
    if (others or (mp is not None and mp.active_children()) or sys.gettrace() is not None
            or (dist is not None and dist.is_available() and dist.is_initialized())):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
