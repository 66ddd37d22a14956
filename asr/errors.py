"""The exception types that mean "the user's input is wrong", which the CLI and the tools report in
one line (:func:`error_line`, :func:`run_tool`)."""

import sys
from collections.abc import Callable

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

USER_ERRORS: tuple[type[BaseException], ...] = (
    AudioError, CheckpointError, DecodeError, LMError, ConfigError, ManifestError, DownloadError, TrainError,
    OutputError, ResultsError, StreamingError, WsjError, DigitsError, FileNotFoundError, NotADirectoryError,
    PermissionError,
)


def error_line(e: BaseException) -> str:
    """An error in words: ``file: cause`` for one the system raised (FileNotFoundError...), whose
    own text is ``[Errno 2] cause: 'file'``; a FileExistsError comes from making a folder."""
    if not isinstance(e, OSError):
        return str(e)
    cause = "exists and is not a folder" if isinstance(e, FileExistsError) else e.strerror or e
    return f"{e.filename}: {cause}" if e.filename else str(cause)


def run_tool(prog: str, main: Callable[[], int | None]) -> int:
    """Run a script's ``main`` and return its exit status: a user error (``USER_ERRORS``, or a
    ValueError naming a bad option) is one line ``prog: cause`` on stderr and status 2."""
    try:
        return main() or 0
    except (*USER_ERRORS, ValueError) as e:
        print(f"{prog}: {error_line(e)}", file=sys.stderr)
        return 2
