"""The exception types that mean "the user's input is wrong", which the CLI reports in one line."""

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
