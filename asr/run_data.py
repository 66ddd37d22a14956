"""What a training run reads before it trains: its manifests, the audio it keeps in memory
(``data.cache_audio``), the tokenizer it builds from the training text and the global CMVN
statistics (``features.normalize: global``). Each raises ``TrainError`` naming the setting or file.
"""

from __future__ import annotations

import logging
import os
import random
import time

from asr.audio import AudioError, audio_info
from asr.data import AudioCache, available_memory_gb, iter_waves
from asr.features import FeatureExtractor, compute_cmvn
from asr.manifest import Utterance, read_manifest
from asr.text import normalize_text
from asr.tokenizer import CharTokenizer, SentencePieceTokenizer, Tokenizer
from asr.train_config import TrainConfig, TrainError

logger = logging.getLogger(__name__)

TRAIN_AUDIO_PROBES = 50  # training files whose headers are read before a run starts, drawn at random


def read_run_manifests(cfg: TrainConfig) -> tuple[list[Utterance], list[Utterance]]:
    """The training and dev utterances (none without ``data.dev_manifest``).

    Raises:
        TrainError: no training manifest, or none of its utterances usable; a dev manifest with
            no usable utterance (the run would go on unscored, its best.pt merely the newest).
        ManifestError: an unreadable manifest, or a bad line without ``data.skip_bad``.
    """
    data = cfg.data
    if not data.train_manifest:
        raise TrainError("data.train_manifest is not set")
    train_utts = read_manifest(data.train_manifest, skip_bad=data.skip_bad)
    dev_utts = read_manifest(data.dev_manifest, skip_bad=data.skip_bad) if data.dev_manifest else []
    if not train_utts:
        raise TrainError(f"{data.train_manifest}: no usable training utterances")
    if data.dev_manifest and not dev_utts:
        raise TrainError(f"{data.dev_manifest}: no usable dev utterances (data.dev_manifest); nothing to score "
                         "the model on")
    empty = [u for u in train_utts if not normalize_text(u.text)]
    if empty:  # CTC trains them towards blanks only: right for silence, wrong for a transcript left out
        logger.warning("%s: %d of %d training utterances have an empty transcript and are trained as silence, "
                       "e.g. %s", data.train_manifest, len(empty), len(train_utts), empty[0].source)
    return train_utts, dev_utts


def check_run_audio(cfg: TrainConfig, train_utts: list[Utterance], dev_utts: list[Utterance]) -> None:
    """Read audio headers before anything trains, so that a wrong audio folder fails at once rather
    than after the first epoch: every dev file, and ``TRAIN_AUDIO_PROBES`` training files drawn
    with ``seed``. Some unreadable dev files are one warning (the dev scoring leaves them out).
    Damage inside compressed data shows only when decoding, where it is reported as before.

    Raises:
        TrainError: none of the training files drawn, or none of the dev files, can be read.
    """
    probes = random.Random(cfg.seed).sample(train_utts, min(TRAIN_AUDIO_PROBES, len(train_utts)))
    failures = _unreadable(probes)
    if len(failures) == len(probes):
        drawn = "" if len(probes) == len(train_utts) else f" ({len(probes)} files drawn at random)"
        raise TrainError(f"{cfg.data.train_manifest}: none of the training audio could be read{drawn}, "
                         f"e.g. {failures[0]}; nothing was trained")
    failures = _unreadable(dev_utts)
    if dev_utts and len(failures) == len(dev_utts):
        raise TrainError(f"{cfg.data.dev_manifest}: no utterance of the set could be read, e.g. {failures[0]}; "
                         "nothing to score the model on")
    if failures:
        logger.warning("%s: %d of %d dev utterances cannot be read and are left out of the dev WER, e.g. %s",
                       cfg.data.dev_manifest, len(failures), len(dev_utts), failures[0])


def _unreadable(utts: list[Utterance]) -> list[str]:
    """One header error per utterance whose audio cannot be opened, in order (a file read once)."""
    causes: dict[str, str | None] = {}
    for path in dict.fromkeys(u.audio_filepath for u in utts):
        try:
            audio_info(path)
            causes[path] = None
        except AudioError as e:
            causes[path] = str(e)
    return [cause for cause in (causes[u.audio_filepath] for u in utts) if cause is not None]


def preload_audio(utts: list[Utterance], sample_rate: int) -> AudioCache:
    """Decode ``utts`` into memory on every CPU core (``data.cache_audio``).

    Raises:
        TrainError: the audio would take more than 80 % of the memory available.
    """
    hours = sum(u.duration for u in utts) / 3600
    need_gb = hours * 3600 * sample_rate * 4 / 1e9  # float32 samples
    free_gb = available_memory_gb()
    if free_gb is not None and need_gb > 0.8 * free_gb:
        raise TrainError(f"data.cache_audio: the {hours:.1f} h of audio need {need_gb:.1f} GB of memory, "
                         f"only {free_gb:.1f} GB is available; set data.cache_audio=false")
    cache = AudioCache(sample_rate)
    start = time.monotonic()
    held_s = cache.preload(utts, threads=os.cpu_count() or 1)
    logger.info("cached_audio_h=%.2f utterances=%d memory_gb=%.2f seconds=%.1f", held_s / 3600, len(cache),
                cache.nbytes / 1e9, time.monotonic() - start)
    return cache


def build_tokenizer(cfg: TrainConfig, train_utts: list[Utterance]) -> Tokenizer:
    """The tokenizer ``cfg.tokenizer`` names: characters, or SentencePiece trained on the training text.

    Raises:
        TokenizerError: sentencepiece refuses ``tokenizer.vocab_size`` for this text.
    """
    if cfg.tokenizer.kind == "char":
        return CharTokenizer()
    return SentencePieceTokenizer.train([u.text for u in train_utts], vocab_size=cfg.tokenizer.vocab_size,
                                        model_type=cfg.tokenizer.kind)


def set_global_cmvn(features: FeatureExtractor, cfg: TrainConfig, train_utts: list[Utterance],
                    cache: AudioCache | None) -> None:
    """Global CMVN statistics from up to ``data.cmvn_max_utts`` training utterances drawn with ``seed``."""
    utts = list(train_utts)
    random.Random(cfg.seed).shuffle(utts)
    utts = utts[: cfg.data.cmvn_max_utts]
    waves = (cache.load(u) for u in utts) if cache else iter_waves(utts, cfg.features.sample_rate)
    mean, std = compute_cmvn(features, waves)
    features.set_cmvn(mean, std)
    logger.info("global CMVN from %d utterances", len(utts))
