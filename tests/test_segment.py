"""asr/segment.py: cutting long recordings at pauses, on real speech."""

from __future__ import annotations

import numpy as np
import pytest

from asr.audio import load_audio
from asr.segment import pause_cuts
from conftest import dev4spk_flac

# eight dev-4spk utterances of 2.5-15 s, two per speaker
UTTS = ["8226-274371-0020", "8226-274371-0000", "5652-19215-0032", "5652-19215-0000", "4088-158077-0078",
        "4088-158077-0000", "4406-16882-0033", "4406-16882-0000"]


def _joined(shared_data, gap_s: float = 0.4) -> np.ndarray:
    """The utterances one after another with ``gap_s`` of faint noise between (as quiet as the
    recordings' own pauses): 70 s at 16 kHz."""
    rng = np.random.default_rng(0)
    parts = []
    for uid in UTTS:
        parts.append(load_audio(dev4spk_flac(shared_data, uid)))  # (S,) 16 kHz
        parts.append((rng.standard_normal(int(gap_s * 16000)) * 1e-4).astype(np.float32))
    return np.concatenate(parts[:-1])


def test_cuts_fall_in_the_pauses_and_cover_the_recording(shared_data):
    wave = _joined(shared_data)
    assert len(wave) / 16000 > 60
    for max_s in (20.0, 30.0):
        cuts = pause_cuts(wave, 16000, max_segment_s=max_s)
        assert cuts[0][0] == 0 and cuts[-1][1] == len(wave)
        assert all(a[1] == b[0] for a, b in zip(cuts, cuts[1:]))  # contiguous, nothing lost or repeated
        assert all(0 < b - a <= max_s * 16000 for a, b in cuts)
        speech_rms = float(np.sqrt(np.mean(wave ** 2)))  # about 0.06
        for _, cut in cuts[:-1]:  # every cut in a pause (inserted, or the speaker's own), none in a word
            around = wave[cut - 1600:cut + 1600]  # +-100 ms
            assert np.sqrt(np.mean(around ** 2)) < 0.01 * speech_rms, (max_s, cut / 16000)
        assert len(cuts) >= len(wave) / (max_s * 16000)
    # a fixed-length cutter would land in speech: the energy test above can fail
    fixed = wave[20 * 16000 - 1600:20 * 16000 + 1600]
    assert np.sqrt(np.mean(fixed ** 2)) > 0.01 * float(np.sqrt(np.mean(wave ** 2)))


def test_short_recordings_stay_whole_and_bad_arguments_are_refused(shared_data):
    wave = load_audio(dev4spk_flac(shared_data, UTTS[0]))
    assert pause_cuts(wave, 16000, max_segment_s=30.0) == [(0, len(wave))]
    with pytest.raises(ValueError, match="min_segment_s"):
        pause_cuts(wave, 16000, max_segment_s=5.0, min_segment_s=5.0)
    with pytest.raises(ValueError, match="at least 1.0 s"):
        pause_cuts(wave, 16000, max_segment_s=0.5)
    with pytest.raises(ValueError, match="mono"):
        pause_cuts(np.stack([wave, wave]), 16000)
