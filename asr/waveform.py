"""Waveforms in memory: the sample rate checks, integer PCM and channels turned into mono float32
(:func:`mono_samples`, for arrays and tensors handed to the Transcriber or a Stream) and resampling,
of a whole signal (:func:`resample`, also for files read by :mod:`asr.audio`) or of one that arrives
in chunks (:class:`StreamResampler`, for ``asr stream -`` at another rate).

Every problem with the samples raises :class:`AudioError`, whose one-line message starts with the
input's label and names the cause.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

import numpy as np
import torch
import torchaudio.functional as taf
import torchaudio.transforms as tat

# torchaudio's "kaiser_best" filter (64 zero crossings, Kaiser window): flat to 0.95 of the lower
# Nyquist frequency and over 100 dB down beyond it. torchaudio's default (Hann, 6 zero crossings)
# let a 8.2 kHz tone through at -8 dB from 44.1 kHz to 16 kHz (aliased to 7.8 kHz) and took
# 2-3 dB off 3.6-3.8 kHz in 8 kHz audio; this one costs 2-5x its time, ~1-2 ms per second of audio.
RESAMPLING_FILTER = dict(resampling_method="sinc_interp_kaiser", lowpass_filter_width=64,
                         rolloff=0.9475937167399596, beta=14.769656459379492)
MAX_RESAMPLE_TERMS = 2000  # largest reduced rate ratio resampled exactly (44.1 kHz -> 16 kHz: 160/441)
MAX_CHANNELS = 8  # an in-memory array with a longer short axis is not one multichannel recording
PCM_SCALES = {np.dtype(np.int8): 2**7, np.dtype(np.int16): 2**15, np.dtype(np.int32): 2**31}  # full scale


class AudioError(Exception):
    """An audio file cannot be used; the message is ``"<path or <bytes>>: cause"`` on one line."""


def check_rate(rate: object, name: str = "sample_rate") -> int:
    """``rate`` as an ``int`` if it is a positive integral number (``np.int64(8000)`` and
    ``16000.0`` are); ``name`` is the argument named in the error.

    Raises:
        ValueError: a bool, a non-number, a fraction, NaN/inf, or zero or less.

    >>> check_rate(np.int64(8000)), check_rate(16000.0)
    (8000, 16000)
    """
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, numbers.Real):
        raise ValueError(f"{name}={rate!r}: must be a positive integer (Hz)")
    if not (math.isfinite(rate) and rate == int(rate) and rate > 0):
        raise ValueError(f"{name}={rate!r}: must be a positive integer (Hz)")
    return int(rate)


def mono_samples(samples: np.ndarray | torch.Tensor, label: str) -> np.ndarray:
    """An in-memory recording (numpy array or torch tensor, any device) as mono float32 ``(S,)``.

    Integer PCM is scaled as files are: int8, int16, int32 by their full scale (1/32768 for int16),
    uint8 as offset binary ((x - 128) / 128); floats are kept as they are. A 2-D array is one
    recording of several channels, the short axis (at most ``MAX_CHANNELS``), which are averaged:
    ``(S, C)`` as soundfile reads, ``(C, S)`` as torchaudio loads. A tensor that requires grad is
    detached.

    Raises:
        AudioError: ``"label: cause"``: not an array, a scalar, bool/complex/object or wider integer
            samples (int64: ambiguous scale), more than 2 dimensions or no short axis of at most
            ``MAX_CHANNELS`` (several recordings go as a list of 1-D arrays), no samples, NaN/inf.

    >>> stereo = np.array([[16384, -16384], [8192, 8192], [0, 16384]], dtype=np.int16)  # (S, C)
    >>> mono_samples(stereo, "<array>").tolist(), mono_samples(stereo.T, "<array>").tolist()
    ([0.0, 0.25, 0.25], [0.0, 0.25, 0.25])
    """
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu()
        if samples.dtype == torch.bfloat16:  # numpy has no bfloat16
            samples = samples.float()
        samples = samples.numpy()
    elif isinstance(samples, np.generic):  # a numpy scalar: refused below as a 0-d array
        samples = np.asarray(samples)
    elif not isinstance(samples, np.ndarray):
        raise AudioError(f"{label}: not audio: expected a numpy array or torch tensor, got {type(samples).__name__}")
    if samples.ndim == 0:
        raise AudioError(f"{label}: a single number ({samples.dtype}), not a waveform")
    dtype = samples.dtype
    if dtype in PCM_SCALES:
        wave = samples.astype(np.float32) / PCM_SCALES[dtype]
    elif dtype == np.uint8:
        wave = (samples.astype(np.float32) - 128.0) / 128.0
    elif dtype.kind == "f":
        wave = samples.astype(np.float32, copy=False)
    else:
        what = {"b": "boolean samples", "c": f"complex samples ({dtype})",
                "i": f"{dtype} samples (PCM of unknown full scale)",
                "u": f"{dtype} samples (PCM of unknown full scale)"}.get(dtype.kind, f"{dtype} samples (not numbers)")
        raise AudioError(f"{label}: {what}; give float samples in [-1, 1] or int16/int32/uint8 PCM")
    if wave.size == 0:
        raise AudioError(f"{label}: zero samples (shape {samples.shape})")
    if wave.ndim == 2:
        channels_axis = int(np.argmin(wave.shape))
        if wave.shape[channels_axis] > MAX_CHANNELS or wave.shape[0] == wave.shape[1]:
            raise AudioError(f"{label}: shape {wave.shape} is not one recording of at most {MAX_CHANNELS} "
                             "channels (S, C) or (C, S); pass several recordings as a list of 1-D arrays")
        wave = wave.mean(axis=channels_axis, dtype=np.float32)  # (S,)
    elif wave.ndim > 2:
        raise AudioError(f"{label}: {wave.ndim}-D shape {wave.shape} is not a recording; pass several "
                         "recordings as a list of 1-D arrays")
    if not np.isfinite(wave).all():
        raise AudioError(f"{label}: {int(np.count_nonzero(~np.isfinite(wave)))} NaN or infinite samples")
    return np.ascontiguousarray(wave, dtype=np.float32)


def resample_ratio(orig_rate: int, new_rate: int) -> Fraction:
    """``new_rate / orig_rate`` as :func:`resample` applies it: exact unless its reduced terms exceed
    ``MAX_RESAMPLE_TERMS``, then the nearest fraction with smaller terms.

    >>> resample_ratio(44100, 16000), resample_ratio(8001, 16000)
    (Fraction(160, 441), Fraction(2, 1))
    """
    ratio = Fraction(new_rate, orig_rate)
    if max(ratio.numerator, ratio.denominator) > MAX_RESAMPLE_TERMS:
        ratio = ratio.limit_denominator(MAX_RESAMPLE_TERMS // max(1, math.ceil(ratio)))
    return ratio


def resample(wave: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Anti-aliased resampling of float32 ``wave`` (S,) → (ceil(S * new_rate / orig_rate),).

    A thin wrapper over ``torchaudio.functional.resample`` with :data:`RESAMPLING_FILTER`. Its
    filter bank has one filter per output phase, ``new_rate / gcd`` of them, each about
    ``orig_rate / gcd`` taps wide: 12 GB for 44,101 Hz to 16 kHz. A ratio whose reduced terms exceed ``MAX_RESAMPLE_TERMS`` (no common rate's does) is
    replaced by the nearest fraction with smaller terms: a shift of pitch and speed by at most a few
    hundredths of a percent (8,001 Hz taken as 8,000 Hz: 0.0125 %), far below speed perturbation's.

    Raises:
        ValueError: ``orig_rate`` or ``new_rate`` is not a positive integer (see :func:`check_rate`).

    >>> resample(np.ones(44101, dtype=np.float32), 44101, 16000).shape  # 16,000 samples ± 1
    (16000,)
    """
    orig_rate, new_rate = check_rate(orig_rate, "orig_rate"), check_rate(new_rate, "new_rate")
    if orig_rate == new_rate:
        return wave
    ratio = resample_ratio(orig_rate, new_rate)
    wave_t = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))  # (S,)
    return taf.resample(wave_t, ratio.denominator, ratio.numerator, **RESAMPLING_FILTER).numpy()  # (S',)


class StreamResampler:
    """:func:`resample` of a signal that arrives in chunks: the concatenated outputs of ``accept``
    and ``finish`` equal ``resample`` of the whole signal (up to float rounding, the ends included),
    for any chunk sizes.

    The filter is the same torchaudio kernel (:data:`RESAMPLING_FILTER`, the same rate ratio). It
    makes the output in blocks: each block of ``new`` samples (the reduced ratio is ``new / orig``)
    is made once its ``orig`` input samples and the ``width`` after them have arrived, the last
    ``width`` before them being kept from the chunk before. So the output is behind the input by at
    most ``latency_s`` = (width + orig) input samples: 14.2 ms from 44.1 kHz to 16 kHz, 4.3 ms from
    48 kHz, 8.6 ms from 8 kHz, 24.3 ms from 22.05 kHz. ``finish`` pads the end with zeros, as
    ``resample`` does, and returns what was held back. Equal rates pass the chunks through.

    Args:
        orig_rate: the rate of the chunks given, Hz.
        new_rate: the rate of the chunks returned, Hz.

    Raises:
        ValueError: a rate that is not a positive integer (see :func:`check_rate`).

    >>> resampler, wave = StreamResampler(44100, 16000), np.sin(np.arange(44100, dtype=np.float32) / 7)
    >>> pieces = [resampler.accept(wave[i:i + 1000]) for i in range(0, len(wave), 1000)] + [resampler.finish()]
    >>> bool(np.allclose(np.concatenate(pieces), resample(wave, 44100, 16000), atol=1e-6))
    True
    """

    def __init__(self, orig_rate: int, new_rate: int):
        orig_rate, new_rate = check_rate(orig_rate, "orig_rate"), check_rate(new_rate, "new_rate")
        ratio = resample_ratio(orig_rate, new_rate)
        self.orig, self.new = ratio.denominator, ratio.numerator  # one block: orig samples in, new out
        self.width, self._kernel = 0, None
        if orig_rate != new_rate:  # the kernel taf.resample makes (float32 here too: the same numbers)
            filt = tat.Resample(self.orig, self.new, **RESAMPLING_FILTER, dtype=torch.float32)
            self.width, self._kernel = filt.width, filt.kernel  # (new, 1, 2 * width + orig)
        self.latency_s = (self.width + self.orig) / orig_rate if self._kernel is not None else 0.0
        self._held = np.zeros(self.width, dtype=np.float32)  # the input of blocks not yet made; zeros before the start
        self._num_in = self._num_out = 0  # samples given and returned so far
        self.finished = False

    def accept(self, wave: np.ndarray) -> np.ndarray:
        """The output samples (M,) that the float32 ``wave`` (N,) completes; M is about
        ``N * new_rate / orig_rate`` and may be 0.

        Raises:
            ValueError: after ``finish``.
        """
        if self.finished:
            raise ValueError("StreamResampler.accept: finished; start a new one")
        if self._kernel is None:
            return wave
        self._num_in += len(wave)
        self._held = np.concatenate([self._held, np.asarray(wave, dtype=np.float32)])
        return self._blocks(final=False)

    def finish(self) -> np.ndarray:
        """The last output samples: the blocks held back, the end padded with zeros as ``resample``
        pads it, cut to ``ceil(total_in * new_rate / orig_rate)`` samples in all."""
        if self.finished:
            raise ValueError("StreamResampler.finish: already finished")
        self.finished = True
        if self._kernel is None:
            return np.zeros(0, dtype=np.float32)
        self._held = np.concatenate([self._held, np.zeros(self.width + self.orig, dtype=np.float32)])
        return self._blocks(final=True)

    def _blocks(self, final: bool) -> np.ndarray:
        taps = self._kernel.shape[-1]  # 2 * width + orig
        count = (len(self._held) - taps) // self.orig + 1 if len(self._held) >= taps else 0
        if count == 0:
            return np.zeros(0, dtype=np.float32)
        x = torch.from_numpy(self._held[:(count - 1) * self.orig + taps])  # (S,)
        # taf.resample's strided conv1d as matrix products (5x faster on 100 ms chunks at 48 kHz), over
        # at most 4 MB of input windows at a time: 10 s at 96 kHz at once would copy 0.5 GB of them
        windows, filters = x.unfold(0, taps, self.orig), self._kernel[:, 0].T  # (count, taps) a view, (taps, new)
        out, step = torch.empty(count, self.new), max(1, 2**20 // taps)  # (count, new)
        for i in range(0, count, step):
            torch.matmul(windows[i:i + step], filters, out=out[i:i + step])
        out = out.reshape(-1).numpy()  # (count * new,) in time order
        self._held = self._held[count * self.orig:]
        if final:  # the whole signal's length, as resample cuts it
            out = out[:max(0, -(-self._num_in * self.new // self.orig) - self._num_out)]
        self._num_out += len(out)
        return out
