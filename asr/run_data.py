"""What a training run reads before it trains: its manifests, the audio it keeps in memory
(``data.cache_audio``), the tokenizer it builds from the training text and the global CMVN
statistics (``features.normalize: global``). Each raises ``TrainError`` naming the setting or file.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections import Counter
from dataclasses import dataclass

from asr.audio import AudioInfo, audio_headers
from asr.data import AudioCache, available_memory_gb, iter_waves
from asr.features import FeatureExtractor, compute_cmvn
from asr.manifest import DURATION_TOLERANCE, DURATION_TOLERANCE_S, Utterance, duration_off, read_manifest
from asr.text import normalize_text
from asr.tokenizer import CharTokenizer, SentencePieceTokenizer, Tokenizer, encode_apart
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
        raise TrainError("data.train_manifest is not set: nothing to train on (set it in the config's data: "
                         "section, or as data.train_manifest=MANIFEST after the config)")
    train_utts = read_manifest(data.train_manifest, skip_bad=data.skip_bad)
    dev_utts = read_manifest(data.dev_manifest, skip_bad=data.skip_bad) if data.dev_manifest else []
    if not train_utts:
        raise TrainError(f"{data.train_manifest}: no usable training utterances")
    if data.dev_manifest and not dev_utts:
        raise TrainError(f"{data.dev_manifest}: no usable dev utterances (data.dev_manifest); nothing to score "
                         "the model on")
    return train_utts, dev_utts


def check_run_audio(cfg: TrainConfig, train_utts: list[Utterance], dev_utts: list[Utterance]) -> None:
    """Read audio headers before anything trains, so that a wrong audio folder fails at once rather
    than after the first epoch: every dev file, and ``TRAIN_AUDIO_PROBES`` training files drawn
    with ``seed``. Some unreadable dev files are one warning (the dev scoring leaves them out).
    Damage inside compressed data shows only when decoding, where it is reported as before.

    The headers' durations are compared with the manifests': one warning per manifest whose
    durations differ from the audio's (see :func:`duration_mismatches`), as they do when a manifest
    was written for other files or at another sample rate; batching and SortaGrad go by them.

    Raises:
        TrainError: none of the training files drawn, or none of the dev files, can be read.
    """
    probes = random.Random(cfg.seed).sample(train_utts, min(TRAIN_AUDIO_PROBES, len(train_utts)))
    headers = audio_headers(u.audio_filepath for u in probes)
    failures = _unreadable(probes, headers)
    if len(failures) == len(probes):
        drawn = "" if len(probes) == len(train_utts) else f" ({len(probes)} files drawn at random)"
        raise TrainError(f"{cfg.data.train_manifest}: none of the training audio could be read{drawn}, "
                         f"e.g. {failures[0]}; nothing was trained")
    _warn_durations(cfg.data.train_manifest, probes, train_utts, headers)
    headers = audio_headers(u.audio_filepath for u in dev_utts)
    failures = _unreadable(dev_utts, headers)
    if dev_utts and len(failures) == len(dev_utts):
        raise TrainError(f"{cfg.data.dev_manifest}: no utterance of the set could be read, e.g. {failures[0]}; "
                         "nothing to score the model on")
    if failures:
        logger.warning("%s: %d of %d dev utterances cannot be read and are left out of the dev WER, e.g. %s",
                       cfg.data.dev_manifest, len(failures), len(dev_utts), failures[0])
    _warn_durations(cfg.data.dev_manifest, dev_utts, dev_utts, headers)


def _unreadable(utts: list[Utterance], headers: dict[str, AudioInfo | str]) -> list[str]:
    """One header error per utterance whose audio cannot be opened, in order."""
    return [h for h in (headers[u.audio_filepath] for u in utts) if isinstance(h, str)]


@dataclass(frozen=True)
class DurationMismatch:
    """An utterance whose manifest duration differs from what its audio file holds.

    Attributes:
        utt: the utterance (``utt.duration`` is the manifest's).
        audio_s: the seconds of audio training reads for it: the file's from ``utt.offset``, or for a
            segment (a file several utterances share, or one read from an offset) at most
            ``utt.duration`` of them.
    """

    utt: Utterance
    audio_s: float

    @property
    def error_s(self) -> float:
        return abs(self.utt.duration - self.audio_s)


def duration_mismatches(checked: list[Utterance], manifest: list[Utterance],
                        headers: dict[str, AudioInfo | str]) -> list[DurationMismatch]:
    """The utterances of ``checked`` whose manifest duration differs from their audio's by more than
    ``DURATION_TOLERANCE`` of it (and more than ``DURATION_TOLERANCE_S``), in order.

    A segment (a file that several utterances of ``manifest`` share, or one read from an offset)
    may be shorter than its file: only one that runs past the file's end is counted. A duration of
    0 reads the whole file, and is counted (the batches take it for 0 s). Files without a header
    (an error in ``headers``) are left out.

    >>> info = AudioInfo(16000, 32000, 1, 2.0)
    >>> [m.audio_s for m in duration_mismatches([Utterance("a.wav", 4.0, "x")], [], {"a.wav": info})]
    [2.0]
    >>> duration_mismatches([Utterance("a.wav", 2.05, "x")], [], {"a.wav": info})
    []
    """
    shared = Counter(u.audio_filepath for u in manifest)
    found = []
    for utt in checked:
        header = headers.get(utt.audio_filepath)
        if not isinstance(header, AudioInfo):
            continue
        rest_s = max(0.0, header.duration_s - utt.offset)
        segment = utt.offset > 0 or shared[utt.audio_filepath] > 1
        audio_s = min(utt.duration, rest_s) if segment and utt.duration > 0 else rest_s
        if duration_off(utt.duration, audio_s):
            found.append(DurationMismatch(utt, audio_s))
    return found


def _warn_durations(manifest_path: str | None, checked: list[Utterance], manifest: list[Utterance],
                    headers: dict[str, AudioInfo | str]) -> None:
    """One warning for the utterances of ``checked`` whose durations are not their audio's."""
    readable = sum(isinstance(headers[u.audio_filepath], AudioInfo) for u in checked)
    _warn_mismatches(manifest_path, duration_mismatches(checked, manifest, headers),
                     f"{readable} utterances checked have", "off their audio's",
                     "batches (data.max_batch_s) and SortaGrad go by the manifest's durations, and audio is read "
                     "only up to them")


def warn_cut_audio(manifest_path: str, utts: list[Utterance]) -> None:
    """Scoring (evaluate, tune-lm): one warning for the utterances of the manifest ``manifest_path``
    whose durations are shorter than their audio: the audio is read only up to them (as NeMo reads),
    so they would be scored cut short, as a manifest written for other files or at another rate
    gives. Segments may be shorter than their files (:func:`duration_mismatches`)."""
    headers = audio_headers(u.audio_filepath for u in utts)
    cut = [m for m in duration_mismatches(utts, utts, headers) if 0 < m.utt.duration < m.audio_s]
    _warn_mismatches(manifest_path, cut, f"{len(utts)} utterances have", "shorter than their audio",
                     "audio is read only up to the manifest's duration, so they are scored cut short")


def _warn_mismatches(manifest_path: str | None, found: list[DurationMismatch], among: str, how: str,
                     consequence: str) -> None:
    """The one warning of :func:`_warn_durations` and :func:`warn_cut_audio`: how many of ``among``
    are ``how`` (off, shorter), the worst of ``found``, and what it does (``consequence``)."""
    if not found:
        return
    worst = max(found, key=lambda m: m.error_s)
    logger.warning("%s: %d of %s a duration more than %g %% (and %g s) %s, e.g. %s: manifest %.2f s, audio %.2f s; "
                   "%s: was the manifest written for these files?", manifest_path, len(found), among,
                   DURATION_TOLERANCE * 100, DURATION_TOLERANCE_S, how, worst.utt.located(worst.utt.audio_filepath),
                   worst.utt.duration, worst.audio_s, consequence)


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


def check_transcripts(cfg: TrainConfig, train_utts: list[Utterance], tokenizer: Tokenizer) -> None:
    """Warn, before training, of the training transcripts that teach the model less than they say:
    empty once normalized (CTC trains them towards blanks only: right for silence, wrong for a
    transcript left out), or holding characters the tokenizer has no label for (e.g. another
    script than the model's), which training leaves out; a transcript left with no label at all is
    trained as silence. One warning of each kind, naming the first such manifest line."""
    empty: list[Utterance] = []
    foreign: list[Utterance] = []
    skipped: Counter[str] = Counter()
    emptied = 0
    for utt in train_utts:
        text = normalize_text(utt.text)
        if not text:
            empty.append(utt)
            continue
        ids, oov = encode_apart(tokenizer, text)
        if oov:
            foreign.append(utt)
            skipped += oov
            emptied += not ids
    manifest = cfg.data.train_manifest
    if empty:
        logger.warning("%s: %d of %d training utterances have an empty transcript and are trained as silence, "
                       "e.g. %s", manifest, len(empty), len(train_utts), empty[0].source)
    if foreign:
        chars = ", ".join(f"{c!r}×{n}" for c, n in skipped.most_common(10)) + (", ..." if len(skipped) > 10 else "")
        silence = f"; {emptied} of them have no character left and are trained as silence" if emptied else ""
        logger.warning("%s: %d of %d training transcripts hold characters outside the model's vocabulary, which "
                       "training leaves out (%s), e.g. %s%s", manifest, len(foreign), len(train_utts), chars,
                       foreign[0].source, silence)


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
