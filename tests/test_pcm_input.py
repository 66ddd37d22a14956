"""Raw PCM read from a byte stream (asr/pcm_input.py) and the streaming resampler
(asr.waveform.StreamResampler): what `asr stream - --rate --channels --format` is made of."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest
import soundfile as sf

from asr.audio import AudioError, load_audio
from asr.pcm_input import MAX_RAW_CHANNELS, PcmReader
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


def test_pcm_reader_carries_part_frames_to_the_next_read_and_averages_channels_as_files(shared_data, tmp_path):
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
        reader = PcmReader(source, channels=2)
        chunks = list(reader.chunks(160))
        assert source.reads > len(chunks) and all(0 < len(c) <= 160 for c in chunks)
        assert np.array_equal(np.concatenate(chunks), expected)
        assert reader.frames_read == len(stereo) and reader.trailing_bytes == 0

    floats = (rng.random((1000, 3), dtype=np.float32) - 0.5) * 1.5  # f32le: 3 channels, kept as they are
    source = Trickle(floats.astype("<f4").tobytes() + b"\x01\x02\x03", 7, most=50)  # a part frame at the end
    reader = PcmReader(source, channels=3, sample_format="f32le")
    streamed = np.concatenate(list(reader.chunks(64)))
    assert np.array_equal(streamed, floats.mean(axis=1))  # the part frame at the end is dropped, and counted
    assert reader.trailing_bytes == 3 and reader.layout() == "f32le, 3 channels: 12 bytes a frame"
    reader = PcmReader(io.BytesIO(b"\x00\x01\x02"), channels=2)
    assert list(reader.chunks(10)) == [] and (reader.frames_read, reader.trailing_bytes) == (0, 3)


def test_pcm_reader_stops_at_a_nan_or_inf_sample_and_names_its_place(shared_data):
    """A NaN or infinite f32le sample ends the input with an error naming its frame, channel, time
    and byte offset; every frame before it, in its chunk too, is given first."""
    wave, rate = sf.read(shared_data / "fsdd" / "recordings" / "3_theo_5.wav", dtype="float32")  # (S,) 8 kHz
    stereo = np.stack([wave, -wave], axis=1).astype("<f4")  # (S, 2)
    stereo[1234, 1] = -np.inf
    reader = PcmReader(io.BytesIO(stereo.tobytes()), channels=2, sample_format="f32le", sample_rate=rate)
    chunks = []
    with pytest.raises(AudioError) as error:
        for chunk in reader.chunks(1000):
            chunks.append(chunk)
    assert str(error.value) == ("-: sample 1234 of channel 2 of 2 (0.154 s in, byte 9876) is -inf, not audio "
                                "(is the input f32le?)")
    assert [len(c) for c in chunks] == [1000, 234] and reader.frames_read == 1234
    assert np.array_equal(np.concatenate(chunks), stereo[:1234].mean(axis=1))
    mono = wave.astype("<f4")
    mono[0] = np.nan  # no rate given: no seconds
    with pytest.raises(AudioError, match=r"^in: sample 0 \(byte 0\) is NaN, not audio \(is the input f32le\?\)$"):
        list(PcmReader(io.BytesIO(mono.tobytes()), sample_format="f32le", label="in").chunks(100))


def test_s16le_read_as_f32le_is_named_without_numpy_warnings(shared_data):
    """16-bit samples read as floats hold NaNs (signalling ones among them: dividing them warned
    'invalid value encountered in divide'); the error says which format was assumed."""
    pcm = (sf.read(shared_data / "fsdd" / "recordings" / "3_theo_5.wav", dtype="int16")[0]).astype("<i2").tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AudioError, match=r"is NaN, not audio \(is the input f32le\?\)$"):
            list(PcmReader(io.BytesIO(pcm), sample_format="f32le").chunks(800))


def test_pcm_reader_refuses_impossible_layouts():
    for channels in (0, -1, MAX_RAW_CHANNELS + 1):
        with pytest.raises(ValueError, match=rf"^channels={channels}: must be from 1 to {MAX_RAW_CHANNELS}$"):
            PcmReader(io.BytesIO(b""), channels=channels)
    with pytest.raises(ValueError, match=r"^sample_format='s24le': must be one of s16le, f32le$"):
        PcmReader(io.BytesIO(b""), sample_format="s24le")
