"""Transcription API: ``Transcriber.from_checkpoint(path).transcribe(paths_or_arrays)``."""

from __future__ import annotations

import logging
import math
import numbers
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from asr.align import AlignmentError, WordTiming, align_words
from asr.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioError, is_file_object, load_audio
from asr.waveform import check_rate, mono_samples, resample
from asr.checkpoint import load_recognizer
from asr.beam_search import BeamSearchDecoder
from asr.decode import (DecodeError, Decoder, Hypothesis, greedy_decode, join_hypotheses, join_nbest,
                        separator_id)
from asr.recognizer import Recognizer
from asr.segment import MIN_SEGMENT_S, pause_cuts, valid_max_segment_s

logger = logging.getLogger(__name__)

AudioInput = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | np.ndarray | torch.Tensor
Key = tuple[int, int]  # (input index, piece index) of a decoded waveform
WINDOW_BATCHES = 8  # Transcriber.transcribe_iter reads this many batches' worth of audio at a time


@dataclass
class Transcript:
    """The text of one input, with its duration and its decode time: its share, by samples, of the
    time of the batch it was decoded in (summed over its pieces when a long input was cut at pauses),
    so the decode times of all inputs add up to the time spent decoding."""

    source: str  # the path, or "<array N>" for in-memory audio
    text: str
    duration_s: float
    decode_s: float
    hypothesis: Hypothesis
    words: list[WordTiming] | None = None  # with word_timestamps=True (None: alignment failed)
    nbest: list[Hypothesis] | None = None  # with a BeamSearchDecoder: its N-best, best first, texts distinct
    # (cut inputs: the best joins of the pieces' N-best lists, by summed score; asr.decode.join_nbest)
    segments: list[tuple[float, float]] | None = None  # (start_s, end_s) of the pieces of a cut input


class Transcriber:
    """Transcription of files or arrays with a trained checkpoint.

    An input is a path, an encoded file (``bytes``/``bytearray``/``memoryview``, or a binary file
    object such as ``io.BytesIO``), or a recording in memory: a numpy array or torch tensor of float
    samples in [-1, 1] or integer PCM (int16, int32, uint8: scaled as files are). A 1-D array is
    mono; a 2-D array is one recording whose short axis, of at most 8 channels, holds the channels
    (soundfile's ``(S, C)`` or torchaudio's ``(C, S)``), averaged to mono as files' channels are.
    Several recordings go as a list; one input alone is taken as a list of one.

    Args:
        recognizer: features, model and tokenizer (run in eval mode, whatever mode it is left in).
        max_batch_s: padded audio seconds per batch (> 0).
        decoder: maps (log-probs (B, T, V), lengths (B,)) to hypotheses, e.g. a
            ``BeamSearchDecoder`` (whose N-best then lands in ``Transcript.nbest``); default: greedy.
        word_timestamps: time each word by forced alignment (``Transcript.words``).
        max_segment_s: an input longer than this is cut at pauses into pieces of at most this
            length (``asr.segment.pause_cuts``), transcribed piece by piece and joined, which keeps
            memory bounded for long recordings; 0 keeps every input whole.

    Example:
        >>> t = Transcriber.from_checkpoint("exp/digits/model.pt")  # doctest: +SKIP
        >>> t.transcribe(["0_theo_0.wav"])[0].text  # doctest: +SKIP
        'zero'
    """

    def __init__(self, recognizer: Recognizer, max_batch_s: float = 120.0, decoder: Decoder | None = None,
                 word_timestamps: bool = False, max_segment_s: float = 40.0):
        if not valid_max_segment_s(_check_number("max_segment_s", max_segment_s)):
            raise ValueError(f"max_segment_s={max_segment_s}: must be 0 (never cut) or at least {MIN_SEGMENT_S} s")
        if not (math.isfinite(_check_number("max_batch_s", max_batch_s)) and max_batch_s > 0):
            raise ValueError(f"max_batch_s={max_batch_s!r}: must be a finite number of seconds > 0")
        if decoder is not None and not callable(decoder):
            raise TypeError(f"decoder={decoder!r}: must be callable (log-probs, lengths) -> hypotheses")
        self.recognizer = recognizer  # Recognizer.log_probs runs it in eval mode
        self.sample_rate = recognizer.features.cfg.sample_rate
        self.max_batch_s = float(max_batch_s)
        self.decoder = decoder
        self.word_timestamps = word_timestamps
        self.max_segment_s = max_segment_s

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", max_batch_s: float = 120.0,
                        decoder: Decoder | None = None, word_timestamps: bool = False,
                        max_segment_s: float = 40.0) -> "Transcriber":
        return cls(load_recognizer(path, device=device), max_batch_s=max_batch_s, decoder=decoder,
                   word_timestamps=word_timestamps, max_segment_s=max_segment_s)

    def transcribe(self, items: Sequence[AudioInput], sample_rate: int | None = None) -> list[Transcript]:
        """Transcribe files (any format the audio module reads) or mono arrays.

        Args:
            items: inputs as the class docstring describes (one of them alone is taken as a list of
                one).
            sample_rate: rate of the arrays in ``items`` in Hz, any integral number (default: the
                model's rate); they are resampled as files are (``asr.waveform.resample``). Files carry
                their own rate.

        Raises:
            AudioError: on the first input that cannot be read, is not audio (a number, None, a
                bool or complex array, an array of more than 2 dimensions), holds NaN/inf samples, or
                samples so large that its features are not finite (use ``transcribe_iter`` to go on).
            ValueError: ``sample_rate`` is not None or an integer from 8000 to 768000 Hz.
            DecodeError: ``decoder`` gave a number of hypotheses other than its batch's.
        """
        results = []
        for result in self.transcribe_iter(items, sample_rate=sample_rate):
            if isinstance(result, AudioError):
                raise result
            results.append(result)
        return results

    def transcribe_iter(
        self, items: Iterable[AudioInput], sample_rate: int | None = None
    ) -> Iterator[Transcript | AudioError]:
        """Like ``transcribe`` but yields an ``AudioError`` in place of each unreadable input.

        The inputs are read and decoded a window of about ``WINDOW_BATCHES`` batches of audio at a
        time, in their order, so memory stays bounded on a long list of files and the first
        transcripts come before the last files are read.
        """
        if sample_rate is not None:
            sample_rate = _array_rate(sample_rate)
        if _is_single_input(items):
            items = [items]  # one input, not a sequence of them (a path's characters, an array's samples)
        window: list[tuple[int, str, np.ndarray | AudioError]] = []
        window_samples = 0
        for i, item in enumerate(items):
            name = _name(item, i)
            try:
                wave: np.ndarray | AudioError = self._load(item, sample_rate, name)
                window_samples += len(wave)
            except AudioError as e:
                wave = e
            window.append((i, name, wave))
            if window_samples >= WINDOW_BATCHES * self.max_batch_s * self.sample_rate:
                yield from self._transcribe_window(window)
                window, window_samples = [], 0
        yield from self._transcribe_window(window)

    def _transcribe_window(self, loaded: list[tuple[int, str, np.ndarray | AudioError]]) -> Iterator[Transcript | AudioError]:
        pieces: list[tuple[Key, str, np.ndarray]] = []
        cuts: dict[int, list[tuple[int, int]]] = {}
        for i, name, wave in loaded:
            if isinstance(wave, AudioError):
                continue
            long = self.max_segment_s and len(wave) > self.max_segment_s * self.sample_rate
            cuts[i] = pause_cuts(wave, self.sample_rate, self.max_segment_s) if long else [(0, len(wave))]
            pieces += [((i, k), name, wave[a:b]) for k, (a, b) in enumerate(cuts[i])]
        results: dict[Key, Transcript | AudioError] = {}
        for batch in _batches(pieces, int(self.max_batch_s * self.sample_rate)):
            results.update(self._decode(batch))
        for i, name, wave in loaded:
            parts = [] if isinstance(wave, AudioError) else [results[(i, k)] for k in range(len(cuts[i]))]
            failed = [part for part in parts if isinstance(part, AudioError)]
            if isinstance(wave, AudioError) or failed:
                yield wave if isinstance(wave, AudioError) else failed[0]
            elif len(parts) == 1:
                yield parts[0]
            else:
                yield self._join(name, cuts[i], parts)

    def _load(self, item: AudioInput, sample_rate: int | None, name: str) -> np.ndarray:
        if isinstance(item, (np.ndarray, torch.Tensor, np.generic)):
            wave = mono_samples(item, name)  # (S,)
            return resample(wave, sample_rate or self.sample_rate, self.sample_rate)
        if not isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)) and not is_file_object(item):
            raise AudioError(f"{name}: not audio: expected a path, the file's bytes or a 1-D array, "
                             f"got {type(item).__name__}")
        return load_audio(item, sample_rate=self.sample_rate)

    def _decode(self, batch: list[tuple[Key, str, np.ndarray]]) -> dict[Key, Transcript | AudioError]:
        """The transcript of each piece of ``batch``, or an ``AudioError`` for one whose samples are so
        large (float samples of 1e20 and up) that its features, and so its log-probs, are not finite."""
        lens = torch.tensor([len(w) for _, _, w in batch], dtype=torch.long)
        waves = torch.zeros(len(batch), int(lens.max()))  # (B, S)
        for b, (_, _, w) in enumerate(batch):
            waves[b, : len(w)] = torch.from_numpy(w)
        start = time.perf_counter()
        log_probs, out_lens = self.recognizer.log_probs(waves, lens)  # (B, T', V), (B,)
        if isinstance(self.decoder, BeamSearchDecoder):
            nbests: list[list[Hypothesis] | None] = list(self.decoder.decode_nbest(log_probs, out_lens))
            hyps = [n[0] if n else Hypothesis(text="") for n in nbests]
        else:
            decoder = self.decoder or (lambda lp, ln: greedy_decode(lp, ln, self.recognizer.tokenizer))
            hyps, nbests = decoder(log_probs, out_lens), [None] * len(batch)
        _check_hypotheses(hyps, len(batch), self.decoder)
        batch_s = time.perf_counter() - start
        results = {}
        for b, ((i, name, w), h) in enumerate(zip(batch, hyps)):
            duration_s = len(w) / self.sample_rate
            decode_s = batch_s * len(w) / int(lens.sum())
            if not bool(torch.isfinite(log_probs[b, : int(out_lens[b])]).all()):  # (T'_b, V)
                results[i] = AudioError(f"{name}: samples up to {float(np.abs(w).max()):.3g} make features that are "
                                        "not finite: far too loud to be audio (float samples lie in [-1, 1])")
                continue
            if int(out_lens[b]) == 0:
                logger.warning("%s: %s: empty transcript", name, self.recognizer.too_short(len(w)))
            words = self._align(log_probs[b, : int(out_lens[b])], h.text, name, duration_s)
            results[i] = Transcript(source=name, text=h.text, duration_s=duration_s, decode_s=decode_s,
                                    hypothesis=h, words=words, nbest=nbests[b])
        return results

    def _join(self, name: str, cuts: list[tuple[int, int]], parts: list[Transcript]) -> Transcript:
        """One transcript from those of an input's consecutive pieces (sample ranges ``cuts``); with a
        beam search, its n-best is the best joins of the pieces' n-best lists (``join_nbest``)."""
        rate, frame_s = self.sample_rate, self.recognizer.frame_shift_s
        separator = separator_id(self.recognizer.tokenizer)
        frame_offsets = [round(start / rate / frame_s) for start, _ in cuts]
        hypothesis = join_hypotheses([part.hypothesis for part in parts], frame_offsets, separator)
        nbest = None
        if isinstance(self.decoder, BeamSearchDecoder) and all(part.nbest is not None for part in parts):
            nbest = join_nbest([part.nbest or [] for part in parts], frame_offsets, separator, self.decoder.config.nbest)
        words: list[WordTiming] = []
        for (start, _), part in zip(cuts, parts):
            offset_s = start / rate
            words += [replace(w, start_s=round(w.start_s + offset_s, 6), end_s=round(w.end_s + offset_s, 6))
                      for w in part.words or []]
        timed = self.word_timestamps and any(part.words is not None for part in parts)
        return Transcript(source=name, text=hypothesis.text, duration_s=cuts[-1][1] / rate,
                          decode_s=sum(part.decode_s for part in parts), hypothesis=hypothesis,
                          words=words if timed else None, nbest=nbest,
                          segments=[(round(a / rate, 3), round(b / rate, 3)) for a, b in cuts])

    def _align(self, log_probs: torch.Tensor, text: str, name: str, duration_s: float) -> list[WordTiming] | None:
        if not self.word_timestamps:
            return None
        try:
            return align_words(log_probs, text, self.recognizer.tokenizer, self.recognizer.frame_shift_s, duration_s)
        except AlignmentError as e:
            logger.warning("%s: no word timestamps (%s)", name, e)
            return None


def _check_number(name: str, value: object) -> float:
    """``value`` as a float if it is a real number (not a bool, not a string), else ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}={value!r}: must be a number")
    return float(value)


def _array_rate(sample_rate: object) -> int:
    """The rate of in-memory arrays, checked: an integral number from MIN_SAMPLE_RATE to MAX_SAMPLE_RATE."""
    message = (f"sample_rate={sample_rate!r}: must be an integer from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz, "
               "or None for the model's rate")
    try:
        rate = check_rate(sample_rate)
    except ValueError:
        raise ValueError(message) from None
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ValueError(message)
    return rate


def _is_single_input(items: object) -> bool:
    """Whether ``items`` is one input rather than a collection of them: a path, an encoded file, an
    array of any shape (a 2-D one is one multichannel recording), or anything not iterable."""
    single = (str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, np.generic, torch.Tensor)
    return isinstance(items, single) or is_file_object(items) or not isinstance(items, Iterable)


def _check_hypotheses(hyps: object, batch_size: int, decoder: object) -> None:
    """Raise ``DecodeError`` unless ``hyps`` is a sequence of ``batch_size`` ``Hypothesis``."""
    if isinstance(hyps, Sequence) and len(hyps) == batch_size and all(isinstance(h, Hypothesis) for h in hyps):
        return
    name = getattr(decoder, "__qualname__", None) or type(decoder).__name__
    if not isinstance(hyps, Sequence):
        got = f"a {type(hyps).__name__}"
    else:
        got = f"{len(hyps)} results" + (f" ({', '.join(sorted({type(h).__name__ for h in hyps}))})" if hyps else "")
    raise DecodeError(f"decoder {name}: returned {got} for a batch of size {batch_size}; "
                      "it must return a list of one Hypothesis per input")


def _name(item: AudioInput, index: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"<bytes {index}>"
    if isinstance(item, (np.ndarray, torch.Tensor, np.generic)):
        return f"<array {index}>"
    if is_file_object(item):
        name = getattr(item, "name", None)
        return name if isinstance(name, str) else f"<file {index}>"
    return f"<item {index}>"


def _batches(items: list[tuple[Key, str, np.ndarray]], max_samples: int) -> Iterator[list[tuple[Key, str, np.ndarray]]]:
    """Length-sorted batches whose padded size (B x longest) stays under ``max_samples``."""
    batch: list[tuple[Key, str, np.ndarray]] = []
    for item in sorted(items, key=lambda x: len(x[2])):
        if batch and len(item[2]) * (len(batch) + 1) > max_samples:
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch
