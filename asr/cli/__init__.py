"""Command-line interface: ``asr SUBCOMMAND ...`` (``python -m asr.cli`` too).

User errors (unreadable audio, bad manifests or configs, missing checkpoints) print one line,
``asr: error: <file>: <cause>``, and exit with status 2; no traceback. The modules' log messages
read the same way: ``asr: warning: ...`` and ``asr: ...`` (with ``--verbose``, the level and the
logger's name, ``DEBUG asr.audio: ...``, and debug messages too).

The parser is in ``parser.py``; the commands, grouped by what they work on, in ``corpora.py``
(prepare, download, build-lm), ``models.py`` (train, sweep, average, export, compare, presets) and
``decoding.py`` (transcribe, evaluate, tune-lm) and ``stream.py`` (stream). Each imports what it needs when it runs,
so ``asr --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

from asr.cli.corpora import cmd_build_lm, cmd_download, cmd_prepare
from asr.cli.decoding import cmd_evaluate, cmd_transcribe, cmd_tune_lm
from asr.cli.models import cmd_average, cmd_compare, cmd_export, cmd_presets, cmd_sweep, cmd_train
from asr.cli.parser import EXIT_USER_ERROR, build_parser, with_negative_values_joined
from asr.cli.stream import cmd_stream
from asr.errors import say

__all__ = ["COMMANDS", "EXIT_USER_ERROR", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command of ``argv`` (default: ``sys.argv[1:]``); returns its exit status.

    A torchrun worker (``WORLD_SIZE`` > 1) does not return: it ends its process with the status at
    once, its output flushed, without the interpreter's shutdown. DistributedDataParallel keeps the
    Gloo process group alive past ``destroy_process_group`` (its reducer holds it), and a Gloo thread
    that drops the last collective's tensors needs the interpreter's lock: during the shutdown that
    aborted the process ('terminate called without an active exception', about 1 run in 30 here),
    after the run had finished and saved everything.

    A Ctrl-C outside the command (while the arguments are read, or in the moment after the
    command's last line) is ``asr: interrupted`` and status 130 too, not a traceback.
    """
    try:
        status = _main(argv)
    except KeyboardInterrupt:
        say("asr: interrupted")
        status = 130
    if _torchrun_rank() is not None:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(status)
    return status


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(with_negative_values_joined(sys.argv[1:] if argv is None else argv))
    if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides += extra  # key=value given after the options
    elif extra and isinstance(getattr(args, "audio", None), list) and not any(a.startswith("-") for a in extra):
        args.audio += extra  # files after an option: argparse gives an optional list nothing past the first
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print as their own bytes
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    handler = logging.StreamHandler()
    rank = _torchrun_rank()
    if args.verbose:
        where = "" if rank is None else f"[rank {rank}] "
        handler.setFormatter(logging.Formatter(f"{where}%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_Lines(rank))
        if rank:  # under torchrun the other ranks' information repeats rank 0's: their warnings only
            handler.setLevel(logging.WARNING)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    from asr.errors import USER_ERRORS, error_line  # USER_ERRORS imports torch: --help stays fast

    if sys.stdout is None:  # started with standard output closed (>&-): the output is dropped, as asked
        sys.stdout = open(os.devnull, "w")
    try:
        status = COMMANDS[args.command](args)
        sys.stdout.flush()  # output still buffered fails here, not in the interpreter's exit (status 120)
        return status
    except USER_ERRORS as e:
        say(f"asr: error: {error_line(e)}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        say("asr: interrupted")
        return 130
    except BrokenPipeError:  # the reader of the output went away (| head): stop quietly, as cat does
        _stdout_failed()
        return 1
    except OSError as e:  # the system refused a read or write: a full disk, a read-only folder, ...
        if args.verbose:
            raise
        where = "" if e.filename else "standard output: " if _stdout_failed() else ""
        say(f"asr: error: {where}{error_line(e)}")
        return EXIT_USER_ERROR


class _Lines(logging.Formatter):
    """Log records as the CLI's own lines: ``asr: warning: <message>``, ``asr: error: ...``, and
    ``asr: <message>`` for information; under torchrun, ``asr: rank 1: warning: ...`` (rank 0's
    lines as they are)."""

    def __init__(self, rank: int | None = None):
        super().__init__()
        self.prefix = f"asr: rank {rank}: " if rank else "asr: "

    def formatMessage(self, record: logging.LogRecord) -> str:
        level = ("error: " if record.levelno >= logging.ERROR else "warning: " if record.levelno >= logging.WARNING
                 else "")
        return f"{self.prefix}{level}{record.message}"


def _torchrun_rank() -> int | None:
    """This process's rank when torchrun started it with others (``WORLD_SIZE`` > 1), else None."""
    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None


def _stdout_failed() -> bool:
    """Whether standard output can no longer be written (its flush fails); if so it is pointed at
    /dev/null, so that the flush at exit does not fail again with a traceback."""
    try:
        sys.stdout.flush()
    except OSError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return True
    return False


COMMANDS = {
    "prepare": cmd_prepare, "train": cmd_train, "sweep": cmd_sweep, "transcribe": cmd_transcribe,
    "evaluate": cmd_evaluate, "stream": cmd_stream, "presets": cmd_presets,
    "download": cmd_download, "compare": cmd_compare, "average": cmd_average, "export": cmd_export, "tune-lm": cmd_tune_lm, "build-lm": cmd_build_lm,
}
