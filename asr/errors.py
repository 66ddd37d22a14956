"""The exception types that mean "the user's input is wrong", which the CLI and the tools report in
one line, ``prog: error: cause`` (:func:`error_line`, :func:`run_tool`).

``USER_ERRORS`` is built when first asked for: it imports every module that defines one (torch,
soundfile). :func:`error_line` and :func:`run_tool` given its own ``errors`` need none of them, so
a tool run where those are not installed yet (tools/remote_train.py on a bare GPU machine) reports
its errors in the same form.
"""

import os
import sys
from collections.abc import Callable
from functools import cache


@cache
def _user_errors() -> tuple[type[BaseException], ...]:
    from asr.audio import AudioError
    from asr.checkpoint import CheckpointError
    from asr.config import ConfigError
    from asr.datasets.digits import DigitsError
    from asr.datasets.download import DownloadError
    from asr.datasets.wsj import WsjError
    from asr.decode import DecodeError
    from asr.lm import LMError
    from asr.manifest import ManifestError
    from asr.outputs import OutputError
    from asr.results import ResultsError
    from asr.streaming import StreamingError
    from asr.train_config import TrainError

    return (AudioError, CheckpointError, DecodeError, LMError, ConfigError, ManifestError, DownloadError, TrainError,
            OutputError, ResultsError, StreamingError, WsjError, DigitsError, FileNotFoundError, NotADirectoryError,
            PermissionError)


def __getattr__(name: str):  # ``from asr.errors import USER_ERRORS`` (PEP 562): imported when asked for
    if name == "USER_ERRORS":
        return _user_errors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def error_line(e: BaseException, path: str | os.PathLike | None = None) -> str:
    """An error in words: ``file: cause`` for one the system raised (FileNotFoundError...), whose
    own text is ``[Errno 2] cause: 'file'``; a FileExistsError comes from making a folder. ``path``
    names the file of one that carries none (a write that filled the disk).

    >>> error_line(FileNotFoundError(2, "No such file or directory", "a.txt"))
    'a.txt: No such file or directory'
    >>> error_line(OSError(28, "No space left on device"), "out.txt")
    'out.txt: No space left on device'
    """
    if not isinstance(e, OSError):
        return str(e)
    cause = "exists and is not a folder" if isinstance(e, FileExistsError) else e.strerror or e
    filename = e.filename or path
    return f"{filename}: {cause}" if filename else str(cause)


def say(line: str) -> None:
    """Write ``line`` and its newline to stderr in one write: print() writes them apart where
    stderr is unbuffered (PYTHONUNBUFFERED, common in containers), and the ranks of a torchrun
    job, which share one stderr, then made one line of two ("asr: interruptedasr: interrupted")."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run_tool(prog: str, main: Callable[[], int | None],
             errors: tuple[type[BaseException], ...] | None = None,
             path: str | os.PathLike | None = None) -> int:
    """Run a script's ``main`` and return its exit status. A user error is one line
    ``prog: error: cause`` on stderr and status 2: one of ``errors`` (default: ``USER_ERRORS`` and a
    ValueError naming a bad option) or any other OSError (a full disk, a folder where a file goes);
    ``path`` names the file of an OSError that carries none (the tool's output, see :func:`error_line`).
    Ctrl-C is ``prog: interrupted`` and status 130, as in the CLI."""
    try:
        return main() or 0
    except KeyboardInterrupt:
        say(f"{prog}: interrupted")
        return 130
    except _caught(errors) as e:
        say(f"{prog}: error: {error_line(e, path)}")
        return 2


def _caught(errors: tuple[type[BaseException], ...] | None) -> tuple[type[BaseException], ...]:
    """The exception types :func:`run_tool` reports (evaluated only once one is raised)."""
    return (*(errors if errors is not None else (*_user_errors(), ValueError)), OSError)
