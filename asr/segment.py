"""Cut long recordings at pauses, so that each piece is about as long as a training utterance.

A bidirectional model reads a whole input at once, and so does the forced alignment behind word
timestamps: memory grows with the length of a recording (the alignment with the length times the
transcript's length: about 17 GB for an hour of speech), and a model trained on utterances of
seconds sees inputs of an hour. ``pause_cuts`` splits a long recording at the quietest stretch of
each window of ``min_segment_s`` to ``max_segment_s``, where a pause between words or sentences
is most likely; ``asr.transcribe.Transcriber`` transcribes the pieces and joins their texts and
word times.
"""

from __future__ import annotations

import numpy as np

MIN_SEGMENT_S = 1.0  # the shortest max_segment_s accepted: shorter pieces hold no whole word


def valid_max_segment_s(value: float) -> bool:
    """Whether ``value`` is a usable limit for cutting inputs: 0 (never cut) or at least ``MIN_SEGMENT_S``."""
    return value == 0 or value >= MIN_SEGMENT_S


def pause_cuts(
    wave: np.ndarray, sample_rate: int, max_segment_s: float = 30.0, min_segment_s: float | None = None,
    smooth_ms: float = 200.0,
) -> list[tuple[int, int]]:
    """``(start, end)`` sample ranges that cover ``wave`` end to end, each at most ``max_segment_s``
    long: every cut lies at the quietest point (lowest mean power over ``smooth_ms``, in 10 ms
    steps) between ``min_segment_s`` (default a third of ``max_segment_s``) and ``max_segment_s``
    after the previous cut. A recording no longer than ``max_segment_s`` stays whole.

    Raises:
        ValueError: ``wave`` is not one-dimensional, ``max_segment_s`` is below ``MIN_SEGMENT_S``,
            or ``min_segment_s`` is not in ``(0, max_segment_s)``.

    Example:
        >>> rate = 100  # one sample per 10 ms step, for the example
        >>> wave = np.ones(1000, dtype=np.float32)  # 10 s of "speech"...
        >>> wave[420:450] = 0.0  # ...with a 0.3 s pause at 4.2-4.5 s
        >>> pause_cuts(wave, rate, max_segment_s=6.0, smooth_ms=100)
        [(0, 435), (435, 1000)]
    """
    if wave.ndim != 1:
        raise ValueError(f"pause_cuts: expected a mono waveform (N,), got shape {wave.shape}")
    if not max_segment_s >= MIN_SEGMENT_S:
        raise ValueError(f"pause_cuts: max_segment_s ({max_segment_s}) must be at least {MIN_SEGMENT_S} s")
    min_segment_s = max_segment_s / 3 if min_segment_s is None else min_segment_s
    if not 0 < min_segment_s < max_segment_s:
        raise ValueError(f"pause_cuts: need 0 < min_segment_s ({min_segment_s}) < max_segment_s ({max_segment_s})")
    step = max(1, round(sample_rate * 0.010))
    num_steps = len(wave) // step
    power = np.square(wave[: num_steps * step].astype(np.float64)).reshape(num_steps, step).mean(axis=1)  # (N',)
    width = max(1, round(smooth_ms / 10))
    smooth = np.convolve(power, np.ones(width) / width, mode="same")  # (N',), centred moving average
    max_len, min_len = int(max_segment_s * sample_rate), int(min_segment_s * sample_rate)
    cuts, start = [], 0
    while len(wave) - start > max_len:
        lo, hi = (start + min_len) // step, (start + max_len) // step  # steps where the cut may fall
        window = smooth[lo:hi]
        first = last = int(np.argmin(window))
        while last + 1 < len(window) and window[last + 1] == window[first]:  # a flat stretch (silence)
            last += 1
        best = lo + (first + last) // 2
        cut = min(best * step + step // 2, start + max_len)  # the middle of the quietest stretch
        cut = max(cut, start + min_len)  # always forward, whatever the rounding to steps
        cuts.append((start, cut))
        start = cut
    cuts.append((start, len(wave)))
    return cuts
