"""Configuration of a training run: the dataclasses behind ``asr train CONFIG.yaml [key=value ...]``.

A recipe's YAML holds overrides only; ``resolve_config`` merges them over the chosen model preset
(``asr/presets/<preset>.yaml``) and the defaults below, and rejects unknown keys.

A ``TrainConfig`` built in Python is checked as one read from YAML (types, ``Literal`` values, ranges,
the preset's name), and without a ``model`` it takes its preset's:

    >>> TrainConfig(preset="tiny").model == load_preset("tiny")
    True
    >>> TrainConfig(device="gpu")
    Traceback (most recent call last):
    ...
    asr.config.ConfigError: device: 'gpu' is not one of 'auto', 'cpu', 'cuda'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from asr.augment import AugmentConfig
from asr.config import ConfigError, apply_overrides, check_ranges, check_types, config_from_dict, merge
from asr.config_file import load_yaml, load_yaml_with_lines
from asr.features import FeatureConfig
from asr.model import ModelConfig, load_preset, preset_path
from asr.optim import OptimConfig


class TrainError(Exception):
    """A training run cannot start or go on (bad config, existing run directory, no data)."""


@dataclass(frozen=True)
class DataConfig:
    train_manifest: str = ""  # JSON-lines manifest of the training utterances
    dev_manifest: str | None = None  # dev set scored (greedy WER) after epochs; picks best.pt
    dev_every_epochs: int = 1  # score the dev set every N epochs (and always after the last one)
    max_batch_s: float = 120.0  # cap on padded audio seconds per batch (B x longest duration)
    max_batch_size: int | None = None  # optional cap on utterances per batch
    sortagrad: bool = True  # first epoch shortest-first (DS2's SortaGrad)
    skip_bad: bool = True  # skip bad manifest lines (logged with file:line and counted)
    num_workers: int = 0  # DataLoader worker processes (0: load in the training process)
    cmvn_max_utts: int = 1000  # utterances (seeded sample) used for global CMVN statistics
    eval_batch_s: float = 300.0  # padded audio seconds per batch when scoring the dev set
    cache_audio: bool = False  # decode train and dev audio once, before training, and keep it in memory

    def __post_init__(self) -> None:
        check_types(self, "data.")
        check_ranges(self, "data.", dev_every_epochs=(1, None), max_batch_s=(1e-3, None), max_batch_size=(1, None),
                     num_workers=(0, None), cmvn_max_utts=(1, None), eval_batch_s=(1e-3, None))
        check_ranges(self, "data.", num_workers=(0, 1024))  # then a bound, apart: the message above stays ">= 0"


@dataclass(frozen=True)
class TokenizerConfig:
    kind: Literal["char", "bpe", "unigram"] = "char"  # characters, or SentencePiece units
    vocab_size: int = 256  # SentencePiece vocabulary size (ignored for characters)

    def __post_init__(self) -> None:  # sentencepiece reads the size as a 32-bit int, and needs <unk> + 1
        check_types(self, "tokenizer.")
        check_ranges(self, "tokenizer.", vocab_size=(2, 2**31 - 1))


@dataclass(frozen=True)
class TrainConfig:
    name: str = "run"  # run name; outputs go to exp/<name> unless out_dir is given
    out_dir: str = ""  # output folder (default: exp/<name>)
    preset: str = "small"  # model preset the `model` section overrides (asr/presets/<preset>.yaml)
    seed: int = 0  # seeds parameters, shuffling, dither, dropout and augmentation
    epochs: int = 10  # passes over the training set
    max_steps: int = 0  # stop after this many optimizer steps in total (0: no limit)
    max_minutes: float = 0.0  # stop after this much training wall time (0: no limit)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when available
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast precision (CUDA only)
    threads: int = 0  # torch intra-op threads on CPU (0: torch's default)
    log_every_steps: int = 10  # steps between log lines / progress events
    checkpoint_every_steps: int = 0  # save last.pt every N steps (0: at epoch ends only)
    ema_decay: float = 0.0  # EMA of the weights per step, e.g. 0.999 (0: off); best.pt/model.pt hold the EMA
    keep_epoch_checkpoints: int = 0  # keep epoch-<N>.pt of the last N epochs, for `asr average` (0: none)
    init_from: str = ""  # fine-tune: start from this checkpoint's weights, CMVN and tokenizer (new optimizer)
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig | None = None  # None: the preset's model (filled in on construction)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        check_types(self)
        if self.model is None:
            object.__setattr__(self, "model", load_preset(self.preset))  # frozen: set once, here
        else:
            preset_path(self.preset)  # an unknown preset is an error even with a model of one's own
        check_ranges(self, seed=(0, 2**32 - 1), epochs=(1, None), max_steps=(0, None), max_minutes=(0, None),
                     threads=(0, None), log_every_steps=(1, None), checkpoint_every_steps=(0, None),
                     keep_epoch_checkpoints=(0, None), ema_decay=(0, 1, "[)"))
        check_ranges(self, threads=(0, 1024))  # torch.set_num_threads(10**10) overflowed with a traceback

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir or Path("exp") / self.name)


def resolve_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Load a YAML config, apply ``key=value`` overrides and merge the model preset under ``model``.

    Paths in the file (manifests, out_dir) are taken as given, relative to the working directory.

    Raises:
        ConfigError: naming the key; a problem of the file's own settings (one the overrides do not
            make) also names the file and the line of the key (or of the nearest section above it
            that the file sets), ``conf.yaml:7: unknown key 'optim.lrr' in OptimConfig (...)``.
    """
    from_file, lines = load_yaml_with_lines(path) if path is not None else ({}, {})
    try:
        return _resolve(from_file, list(overrides))
    except ConfigError as e:
        if path is None or (overrides and not _fails_alike(from_file, e)):
            raise
        line = _line_of(e.key, lines)
        raise ConfigError(f"{path}{f':{line}' if line else ''}: {e}", key=e.key) from None


def _line_of(key: str | None, lines: dict[str, int]) -> int | None:
    """The line ``key`` was set on, else that of its nearest enclosing section in ``lines``.

    >>> _line_of("optim.lr", {"optim": 3}), _line_of("epochs", {"optim": 3}), _line_of(None, {})
    (3, None, None)
    """
    while key:
        if key in lines:
            return lines[key]
        key = key.rpartition(".")[0]
    return None


def _resolve(raw: dict, overrides: list[str]) -> TrainConfig:
    raw = apply_overrides(raw, overrides)
    base = load_yaml(preset_path(raw.get("preset", TrainConfig.preset)))
    if not isinstance(raw.get("model") or {}, dict):
        raise ConfigError(f"model: expected a mapping of model settings, got {raw['model']!r}", key="model")
    raw["model"] = merge(base, raw.get("model") or {})
    return config_from_dict(TrainConfig, raw)


def _fails_alike(from_file: dict, error: ConfigError) -> bool:
    """Whether the file's settings without the overrides fail with the same error."""
    try:
        _resolve(from_file, [])
    except ConfigError as e:
        return str(e) == str(error)
    return False
