"""Raw PCM read from a byte stream (asr/pcm_input.py) and the streaming resampler
(asr.waveform.StreamResampler): what `asr stream - --rate --channels --format` is made of."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import soundfile as sf

from asr.audio import AudioError, load_audio
from asr.pcm_input import pcm_chunks
from asr.waveform import StreamResampler, resample
from conftest import SHORT_UTTS, dev4spk_flac


class Trickle(io.RawIOBase):
    """A pipe or socket that hands over its bytes in reads of random sizes (1 to 2 ``most`` bytes),
    as a live source may: samples and frames are cut anywhere."""

    def __init__(self, data: bytes, seed: int, most: int = 4000):
        self.data, self.at, self.rng, self.most, self.reads = data, 0, np.random.default_rng(seed), most, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size = min(len(buffer), int(self.rng.integers(1, 2 * self.most)), len(self.data) - self.at)
        buffer[:size] = self.data[self.at:self.at + size]
        self.at += size
        self.reads += 1
        return size


def _random_chunks(wave: np.ndarray, seed: int) -> list[np.ndarray]:
    """``wave`` cut at random: chunks of 0 to 5000 samples, single samples among them."""
    rng, chunks, at = np.random.default_rng(seed), [], 0
    while at < len(wave):
        size = int(rng.choice([0, 1, 2, int(rng.integers(3, 5000))]))
        chunks.append(wave[at:at + size])
        at += size
    return chunks


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000, 44101, 16000])
def test_stream_resampler_equals_resampling_the_whole_signal(rate, shared_data):
    """Chunks of random sizes give what `resample` gives the whole signal, to float rounding, ends
    included; each output sample comes out as soon as its input is in (at most latency_s late)."""
    if rate == 8000:  # real 8 kHz speech; the other rates are the 16 kHz recording resampled
        wave = load_audio(shared_data / "fsdd" / "recordings" / "3_theo_5.wav", sample_rate=None)
    else:
        wave = resample(load_audio(dev4spk_flac(shared_data, SHORT_UTTS[0])), 16000, rate)  # (S,) 2.4 s
    whole = resample(wave, rate, 16000)
    for seed in range(3):
        resampler, pieces, given = StreamResampler(rate, 16000), [], 0
        for chunk in _random_chunks(wave, seed):
            pieces.append(resampler.accept(chunk))
            given += len(chunk)
            made = sum(map(len, pieces))
            assert math.floor((given / rate - resampler.latency_s) * 16000) <= made <= len(whole), (given, made)
        pieces.append(resampler.finish())
        streamed = np.concatenate(pieces)
        assert streamed.dtype == np.float32 and streamed.shape == whole.shape
        assert np.abs(streamed - whole).max() < 2e-6, np.abs(streamed - whole).max()
    assert resampler.latency_s == pytest.approx({8000: 0.0086, 11025: 0.0462, 22050: 0.0243, 44100: 0.0142,
                                                 48000: 0.0043, 44101: 0.0463, 16000: 0.0}[rate], abs=1e-4)
    with pytest.raises(ValueError, match="finished"):
        resampler.accept(wave[:10])


def test_stream_resampler_of_a_short_or_empty_signal():
    for length in (0, 1, 5, 400):
        wave = np.linspace(-0.5, 0.5, length, dtype=np.float32)
        resampler = StreamResampler(44100, 16000)
        streamed = np.concatenate([resampler.accept(wave), resampler.finish()])
        expected = resample(wave, 44100, 16000) if length else np.zeros(0, dtype=np.float32)
        assert streamed.shape == expected.shape and np.allclose(streamed, expected, atol=1e-6), length


def test_pcm_chunks_carry_part_frames_to_the_next_read_and_average_channels_as_files(shared_data, tmp_path):
    """Reads that end inside a sample or inside a frame lose nothing and shift nothing: the mono
    samples equal what asr.audio makes of a WAV file of the same frames, whatever the read sizes."""
    rng = np.random.default_rng(0)
    left, rate = sf.read(shared_data / "fsdd" / "recordings" / "3_theo_5.wav", dtype="int16")  # (S,) 8 kHz
    right, _ = sf.read(shared_data / "fsdd" / "recordings" / "3_theo_6.wav", dtype="int16", frames=len(left))
    stereo = np.stack([left, np.pad(right, (0, len(left) - len(right)))], axis=1)  # (S, 2): two recordings
    wav = tmp_path / "stereo.wav"
    sf.write(wav, stereo, rate, subtype="PCM_16")
    expected = load_audio(wav, sample_rate=None)  # (S,) float32, channels averaged
    for seed in range(5):
        source = Trickle(stereo.astype("<i2").tobytes(), seed, most=int(rng.integers(1, 600)))
        chunks = list(pcm_chunks(source, 160, channels=2))
        assert source.reads > len(chunks) and all(0 < len(c) <= 160 for c in chunks)
        assert np.array_equal(np.concatenate(chunks), expected)

    floats = (rng.random((1000, 3), dtype=np.float32) - 0.5) * 1.5  # f32le: 3 channels, kept as they are
    source = Trickle(floats.astype("<f4").tobytes() + b"\x01\x02\x03", 7, most=50)  # a part frame at the end
    streamed = np.concatenate(list(pcm_chunks(source, 64, channels=3, sample_format="f32le")))
    assert np.array_equal(streamed, floats.mean(axis=1))  # the part frame at the end is dropped
    assert list(pcm_chunks(io.BytesIO(b"\x00\x01\x02"), 10, channels=2)) == []  # not even one whole frame

    floats[500, 1] = np.nan  # s16le data read as f32le often holds NaN: the cause is named
    with pytest.raises(AudioError, match=r"^-: 1 NaN or infinite samples in f32le input \(is it f32le\?\)$"):
        list(pcm_chunks(io.BytesIO(floats.tobytes()), 4000, channels=3, sample_format="f32le"))
