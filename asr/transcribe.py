"""Transcription API: ``Transcriber.from_checkpoint(path).transcribe(paths_or_arrays)``."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr.align import AlignmentError, WordTiming, align_words
from asr.audio import AudioError, load_audio
from asr.checkpoint import Recognizer, load_recognizer
from asr.decode import BeamSearchDecoder, Decoder, Hypothesis, greedy_decode

logger = logging.getLogger(__name__)

AudioInput = str | os.PathLike | bytes | np.ndarray | torch.Tensor


@dataclass
class Transcript:
    """The text of one input, with its duration and the decode time of the batch it was in."""

    source: str  # the path, or "<array N>" for in-memory audio
    text: str
    duration_s: float
    decode_s: float
    hypothesis: Hypothesis
    words: list[WordTiming] | None = None  # with word_timestamps=True (None: alignment failed)
    nbest: list[Hypothesis] | None = None  # with a BeamSearchDecoder: its N-best, best first


class Transcriber:
    """Transcription of files or arrays with a trained checkpoint.

    Args:
        recognizer: features, model and tokenizer.
        max_batch_s: padded audio seconds per batch.
        decoder: maps (log-probs (B, T, V), lengths (B,)) to hypotheses, e.g. a
            ``BeamSearchDecoder`` (whose N-best then lands in ``Transcript.nbest``); default: greedy.
        word_timestamps: time each word by forced alignment (``Transcript.words``).

    Example:
        >>> t = Transcriber.from_checkpoint("exp/digits/model.pt")  # doctest: +SKIP
        >>> t.transcribe(["0_theo_0.wav"])[0].text  # doctest: +SKIP
        'zero'
    """

    def __init__(self, recognizer: Recognizer, max_batch_s: float = 120.0, decoder: Decoder | None = None,
                 word_timestamps: bool = False):
        self.recognizer = recognizer.eval()
        self.sample_rate = recognizer.features.cfg.sample_rate
        self.max_batch_s = max_batch_s
        self.decoder = decoder
        self.word_timestamps = word_timestamps

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", max_batch_s: float = 120.0,
                        decoder: Decoder | None = None, word_timestamps: bool = False) -> "Transcriber":
        return cls(load_recognizer(path, device=device), max_batch_s=max_batch_s, decoder=decoder,
                   word_timestamps=word_timestamps)

    def transcribe(self, items: Sequence[AudioInput], sample_rate: int | None = None) -> list[Transcript]:
        """Transcribe files (any format the audio module reads) or mono arrays.

        Args:
            items: paths, encoded bytes, or 1-D float arrays/tensors.
            sample_rate: rate of the arrays in ``items`` (default: the model's rate); files carry their own.

        Raises:
            AudioError: on the first input that cannot be read (use ``transcribe_iter`` to go on).
        """
        results = []
        for result in self.transcribe_iter(items, sample_rate=sample_rate):
            if isinstance(result, AudioError):
                raise result
            results.append(result)
        return results

    def transcribe_iter(
        self, items: Sequence[AudioInput], sample_rate: int | None = None
    ) -> Iterator[Transcript | AudioError]:
        """Like ``transcribe`` but yields an ``AudioError`` in place of each unreadable input."""
        loaded: list[tuple[int, str, np.ndarray] | tuple[int, str, AudioError]] = []
        for i, item in enumerate(items):
            name = _name(item, i)
            try:
                loaded.append((i, name, self._load(item, sample_rate)))
            except AudioError as e:
                loaded.append((i, name, e))
        good = [(i, name, w) for i, name, w in loaded if not isinstance(w, AudioError)]
        results: dict[int, Transcript] = {}
        for batch in _batches(good, int(self.max_batch_s * self.sample_rate)):
            results.update(self._decode(batch))
        for i, name, wave in loaded:
            yield wave if isinstance(wave, AudioError) else results[i]

    def _load(self, item: AudioInput, sample_rate: int | None) -> np.ndarray:
        if isinstance(item, (np.ndarray, torch.Tensor)):
            wave = torch.as_tensor(item, dtype=torch.float32)
            if wave.ndim != 1 or wave.numel() == 0:
                raise AudioError(f"<array>: expected a non-empty 1-D waveform, got shape {tuple(wave.shape)}")
            rate = sample_rate or self.sample_rate
            if rate != self.sample_rate:
                import torchaudio.functional as AF

                wave = AF.resample(wave, rate, self.sample_rate)
            return wave.numpy()
        return load_audio(item, sample_rate=self.sample_rate)

    def _decode(self, batch: list[tuple[int, str, np.ndarray]]) -> dict[int, Transcript]:
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
        decode_s = time.perf_counter() - start
        results = {}
        for b, ((i, name, w), h) in enumerate(zip(batch, hyps)):
            duration_s = len(w) / self.sample_rate
            words = self._align(log_probs[b, : int(out_lens[b])], h.text, name, duration_s)
            results[i] = Transcript(source=name, text=h.text, duration_s=duration_s, decode_s=decode_s,
                                    hypothesis=h, words=words, nbest=nbests[b])
        return results

    def _align(self, log_probs: torch.Tensor, text: str, name: str, duration_s: float) -> list[WordTiming] | None:
        if not self.word_timestamps:
            return None
        try:
            return align_words(log_probs, text, self.recognizer.tokenizer, self.recognizer.frame_shift_s, duration_s)
        except AlignmentError as e:
            logger.warning("%s: no word timestamps (%s)", name, e)
            return None


def _name(item: AudioInput, index: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    if isinstance(item, bytes):
        return f"<bytes {index}>"
    return f"<array {index}>"


def _batches(items: list[tuple[int, str, np.ndarray]], max_samples: int) -> Iterator[list[tuple[int, str, np.ndarray]]]:
    """Length-sorted batches whose padded size (B x longest) stays under ``max_samples``."""
    batch: list[tuple[int, str, np.ndarray]] = []
    for item in sorted(items, key=lambda x: len(x[2])):
        if batch and len(item[2]) * (len(batch) + 1) > max_samples:
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch
